"""The compiled FLAME layout (``_flame_layout.pxd``) agrees with ``avatar_nb.flame`` and the schema."""

from __future__ import annotations

import numpy as np

from avatar_nb import _flame, flame
from avatar_nb.proto import message_pb2 as pb


def test_compiled_offsets_and_widths_match_avatar_nb_flame():
    expected = tuple((number, flame.CHANNELS[name].start, width) for name, number, width in flame.FIELDS)
    assert _flame.LAYOUT == expected
    assert _flame.LAYOUT_FIXED_COLUMNS == flame.FIXED_COLUMNS
    assert _flame.LAYOUT_EXPRESSION_FIELD == flame.EXPRESSION_FIELD


def test_compiled_field_numbers_match_the_schema():
    fields = pb.Flame.DESCRIPTOR.fields_by_name
    assert {number for number, _, _ in _flame.LAYOUT} | {_flame.LAYOUT_EXPRESSION_FIELD} == {
        f.number for f in pb.Flame.DESCRIPTOR.fields
    }
    for name, number, _ in flame.FIELDS:
        assert fields[name].number == number
    assert fields[flame.EXPRESSION].number == _flame.LAYOUT_EXPRESSION_FIELD
    assert pb.FlameAnimation.DESCRIPTOR.fields_by_name["keyframes"].number == _flame.LAYOUT_KEYFRAMES_FIELD


def test_decoded_columns_land_where_avatar_nb_flame_says():
    """Each channel set through protobuf by name comes back in the columns flame.CHANNELS names."""
    anim = pb.FlameAnimation()
    kf = anim.keyframes.add()
    for i, (name, _, width) in enumerate(flame.FIELDS):
        getattr(kf, name).extend([float(i + 1)] * width)
    getattr(kf, flame.EXPRESSION).extend([9.0, 9.0])
    row = _flame.decode_animation(anim.SerializeToString())[0]
    for i, (name, _, _) in enumerate(flame.FIELDS):
        assert np.all(flame.channel(row[None, :], name) == i + 1), name
    assert flame.channel(row[None, :], flame.EXPRESSION).tolist() == [[9.0, 9.0]]
