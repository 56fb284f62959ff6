"""The compiled core's contracts, FLAME payloads (avatar_nb._flame): shapes, lengths and widths, batches."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_nb import _flame, _wire
from avatar_nb import _reference as ref
from avatar_nb.proto import message_pb2 as pb


def test_encode_animation_shape_errors():
    with pytest.raises(ValueError, match=r"shape \(n, 20 \+ E\), got \(3, 19\)"):
        _flame.encode_animation(np.zeros((3, 19), np.float32))
    assert _flame.encode_animation(np.zeros((0, 20), np.float32)) == b""


def test_flame_length_and_width_errors():
    two = ref.flame_animation(np.zeros((2, 30), np.float32))
    two.keyframes[1].eye_lid.append(1.0)
    with pytest.raises(ValueError, match="keyframe 1 at byte offset .*: field eye_lid has 3 values, expected 2"):
        _flame.decode_animation(two.SerializeToString())
    mixed = ref.flame_animation(np.zeros((2, 30), np.float32))
    mixed.keyframes[1].expression.append(0.5)
    with pytest.raises(ValueError, match="keyframe 1 .* has 11 expression coefficients, earlier keyframes have 10"):
        _flame.decode_animation(mixed.SerializeToString())
    a = _wire.encode_animation_message(np.zeros((1, 70), np.float32))
    b = _wire.encode_animation_message(np.zeros((1, 120), np.float32))
    with pytest.raises(ValueError, match="message 1: .*100 expression coefficients, earlier keyframes have 50"):
        _flame.decode_animation_batch([a, b])


def test_batch_skips_messages_without_animation_and_accepts_generators():
    anim = _wire.encode_animation_message(np.full((3, 25), 2.0, np.float32))
    err = pb.Message(type=4, server_error=pb.ServerError(message="x")).SerializeToString()
    out = _flame.decode_animation_batch(m for m in [err, anim, err, anim])
    assert out.shape == (6, 25) and np.all(out == 2.0)
    assert _flame.decode_animation_batch([]).shape == (0, 20)
    assert _flame.decode_animation_batch([err]).shape == (0, 20)
