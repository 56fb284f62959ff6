"""avatar_nb.flame: the one definition of the keyframe layout."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_nb import flame
from avatar_nb.proto import message_pb2 as pb


def test_fields_follow_the_schema_numbers_and_fill_the_fixed_columns():
    flame_fields = pb.Flame.DESCRIPTOR.fields_by_name
    for name, number, _width in flame.FIELDS:
        assert flame_fields[name].number == number
    assert flame_fields[flame.EXPRESSION].number == flame.EXPRESSION_FIELD
    assert flame.FIXED_COLUMNS == 20
    covered = np.zeros(flame.FIXED_COLUMNS, dtype=int)
    for sl in flame.CHANNELS.values():
        covered[sl] += 1
    assert (covered == 1).all()  # every fixed column belongs to exactly one channel


def test_scalar_channels_are_columns_of_their_vector_channel():
    assert flame.SCALAR_CHANNELS["jaw_open"] == flame.CHANNELS["jaw_pose"].start
    assert flame.SCALAR_CHANNELS["eyelid_right"] == flame.CHANNELS["eye_lid"].stop - 1
    for name in ("head_pitch", "head_yaw", "head_roll"):
        col = flame.SCALAR_CHANNELS[name]
        assert flame.CHANNELS["rotation"].start <= col < flame.CHANNELS["rotation"].stop


def test_column_names_and_channel_access():
    names = flame.column_names(3)
    assert len(names) == flame.FIXED_COLUMNS + 3
    assert names[flame.SCALAR_CHANNELS["jaw_open"]] == "jaw_pose_0"
    assert names[-1] == "expression_2"
    kf = np.arange(2 * 23, dtype=np.float32).reshape(2, 23)
    assert flame.channel(kf, "expression").shape == (2, 3)
    assert flame.channel(kf, "eye_pose").shape == (2, 6)
    np.testing.assert_array_equal(flame.channel(kf, "jaw_open"), kf[:, 9])
    with pytest.raises(KeyError, match="known: translation"):
        flame.channel(kf, "nose")
    with pytest.raises(ValueError, match="n_expression"):
        flame.column_names(-1)
