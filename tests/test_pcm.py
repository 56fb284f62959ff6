"""The compiled core's contracts: accepted inputs, errors that say what is accepted, offsets, protobuf's wire rules."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_nb import _flame, _pcm, _reference as ref, _wire
from avatar_nb.proto import message_pb2 as pb


def test_to_s16le_values():
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0, 1 / 65536, -1 / 65536], dtype=np.float32)
    got = np.frombuffer(_pcm.to_s16le(x), dtype="<i2")
    assert got.tolist() == [0, 16384, -16384, 32767, -32768, 32767, -32768, 1, -1]
    assert np.frombuffer(_pcm.to_s16le(np.array([-32768, 5, 32767], np.int16)), "<i2").tolist() == [-32768, 5, 32767]
    assert np.frombuffer(_pcm.to_s16le(np.array([-(2**31), 65536 * 3 + 5], np.int32)), "<i2").tolist() == [-32768, 3]
    assert np.frombuffer(_pcm.to_s16le(np.array([0, 128, 255], np.uint8)), "<i2").tolist() == [-32768, 0, 32512]


def test_to_s16le_downmixes_channels():
    stereo = np.array([[0.5, -0.5], [1.0, 0.0], [0.25, 0.25]], dtype=np.float64)
    assert np.frombuffer(_pcm.to_s16le(stereo), "<i2").tolist() == [0, 16384, 8192]
    ints = np.array([[100, 101], [-3, 0]], dtype=np.int16)
    assert np.frombuffer(_pcm.to_s16le(ints), "<i2").tolist() == [100, -2]  # floor of the mean


def test_to_s16le_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"sample 1 \(channel 1\) is inf; NaN and infinity are not audio"):
        _pcm.to_s16le(np.array([[0.0, 0.0], [0.0, np.inf]]))
    with pytest.raises(ValueError, match=r"sample 2 is 1.5, outside \[-1, 1\]; pass clip=True"):
        _pcm.to_s16le(np.array([0.0, 0.1, 1.5], np.float32), clip=False)
    with pytest.raises(TypeError, match=r"unsupported sample dtype complex64; accepted: float32 or float64 in \[-1, 1\], int16"):
        _pcm.to_s16le(np.zeros(3, np.complex64))
    with pytest.raises(TypeError, match="unsupported sample dtype int64"):
        _pcm.to_s16le([1, 2, 3])
    with pytest.raises(TypeError, match="takes a numpy array of samples, got bytes"):
        _pcm.to_s16le(b"\x00\x00")
    with pytest.raises(ValueError, match=r"1-D \(mono\) or 2-D \(frames, channels\), got shape \(2, 2, 2\)"):
        _pcm.to_s16le(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="no channels"):
        _pcm.to_s16le(np.zeros((4, 0), np.float32))
    assert _pcm.to_s16le(np.zeros(0, np.float32)) == b""


def test_to_s16le_big_endian_input():
    x = np.array([1000, -2], dtype=">i2")
    assert _pcm.to_s16le(x) == np.array([1000, -2], "<i2").tobytes()


def test_from_s16le():
    assert _pcm.from_s16le(b"\x00\x80\xff\x7f").tolist() == [-1.0, 32767 / 32768]
    assert _pcm.from_s16le(memoryview(b"")).shape == (0,)
    with pytest.raises(ValueError, match="even number of bytes, got 3"):
        _pcm.from_s16le(b"abc")
    with pytest.raises(TypeError, match="bytes-like"):
        _pcm.from_s16le("text")


def test_encode_audio_messages_chunks_and_end():
    pcm = bytes(range(10))
    messages = _wire.encode_audio_messages(pcm, "r1", 4)
    parsed = [pb.Message.FromString(m) for m in messages]
    assert [p.client_audio_input.audio for p in parsed] == [pcm[0:4], pcm[4:8], pcm[8:10]]
    assert [p.client_audio_input.end for p in parsed] == [False, False, True]
    assert {p.client_audio_input.req_id for p in parsed} == {"r1"} and {p.type for p in parsed} == {3}
    assert _wire.encode_audio_messages(pcm, "r", 4, end=False)[-1] == ref.encode_audio_messages(pcm, "r", 4, end=False)[-1]
    assert pb.Message.FromString(_wire.encode_audio_messages(b"", "r", 4)[0]).client_audio_input.end
    assert _wire.encode_audio_messages(b"", "r", 4, end=False) == []
    for bad in (0, -2, 3):
        with pytest.raises(ValueError, match=f"positive even number of bytes, got {bad}"):
            _wire.encode_audio_messages(pcm, "r", bad)
    with pytest.raises(ValueError, match="even number of bytes, got 3"):
        _wire.encode_audio_messages(b"abc", "r", 4)


def test_encode_animation_shape_errors():
    with pytest.raises(ValueError, match=r"shape \(n, 20 \+ E\), got \(3, 19\)"):
        _flame.encode_animation(np.zeros((3, 19), np.float32))
    assert _flame.encode_animation(np.zeros((0, 20), np.float32)) == b""


def test_decode_message_errors_carry_byte_offsets():
    good = _wire.encode_animation_message(np.ones((2, 70), np.float32), req_id="r", end=True)
    with pytest.raises(ValueError, match=r"length 604 runs past the end of the buffer at byte offset 3"):
        _wire.decode_message(good[:-1])
    with pytest.raises(ValueError, match="truncated varint at byte offset 0"):
        _wire.decode_message(b"\x80")
    with pytest.raises(ValueError, match="unterminated group of field 1 at byte offset 1"):
        _wire.decode_message(b"\x0b")
    with pytest.raises(ValueError, match="invalid wire type 7"):
        _wire.decode_message(b"\x0f")
    with pytest.raises(ValueError, match="invalid field number 0"):
        _wire.decode_message(b"\x00\x00")
    with pytest.raises(ValueError, match="varint longer than 10 bytes"):
        _wire.decode_message(b"\x08" + b"\xff" * 11)
    bad_utf8 = _wire.encode_audio_messages(b"", "r", 2)[0].replace(b"\x0a\x01r", b"\x0a\x01\xff")
    with pytest.raises(ValueError, match="invalid UTF-8 in string field at byte offset 6"):
        _wire.decode_message(bad_utf8)


def test_unreadable_animation_keeps_raw_payload_and_envelope():
    payload = _flame.encode_animation(np.ones((2, 70), np.float32))[:-3]  # the last Flame is cut short
    msg = pb.Message(type=5)
    msg.server_response_animation.req_id = "r9"
    msg.server_response_animation.end = True
    msg.server_response_animation.animation = payload
    decoded = _wire.decode_message(msg.SerializeToString())
    assert decoded.req_id == "r9" and decoded.end
    assert decoded.keyframes.shape[0] == 0 and decoded.animation == payload
    assert "runs past the end" in decoded.animation_error
    with pytest.raises(ValueError, match="message 1: .*runs past the end"):
        _flame.decode_animation_batch([_wire.encode_animation_message(np.ones((1, 70), np.float32)), msg.SerializeToString()])


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


def test_oneof_replacement_follows_protobuf():
    anim = _wire.encode_animation_message(np.ones((1, 70), np.float32), req_id="r")
    then_error = anim + pb.Message(server_error=pb.ServerError(code=3)).SerializeToString()
    assert _wire.decode_message(then_error).data_field == 5
    assert _wire.decode_message(then_error).keyframes.shape[0] == 0
    assert _flame.decode_animation_batch([then_error]).shape[0] == 0
    assert pb.Message.FromString(then_error).WhichOneof("data") == "server_error"


def test_peak_envelope_and_features_inputs():
    mins, maxs = _pcm.peak_envelope(np.array([0, 16384, -32768, 5], np.int16), 2)
    assert mins.tolist() == [0.0, -1.0] and maxs.tolist() == [0.5, 5 / 32768]
    assert [a.shape for a in _pcm.peak_envelope(np.zeros(3, np.float32), 10)] == [(3,), (3,)]
    with pytest.raises(ValueError, match="n_bins must be positive, got 0"):
        _pcm.peak_envelope(np.zeros(3), 0)
    with pytest.raises(TypeError, match="unsupported sample dtype int64"):
        _pcm.peak_envelope(np.zeros(3, np.int64), 2)
    f = _pcm.frame_features(np.ones(1000, np.float32) * 0.5, 16000, 25)
    assert f["rms"].tolist() == [0.5, 0.5] and f["zcr"].tolist() == [0.0, 0.0]
    assert _pcm.frame_count(641, 16000, 25) == 2 and _pcm.frame_count(640, 16000, 25) == 1
    with pytest.raises(ValueError, match="fps must be a positive number"):
        _pcm.frame_features(b"\x00\x00", 16000, 0)
    with pytest.raises(ValueError, match="even number of bytes"):
        _pcm.frame_features(b"\x00", 16000, 25)


def test_to_s16le_names_what_it_was_given():
    with pytest.raises(TypeError, match=r"takes a numpy array \(or a sequence\) of samples, got NoneType; accepted dtypes: float32"):
        _pcm.to_s16le(None)
    with pytest.raises(TypeError, match="got dict"):
        _pcm.to_s16le({"a": 1})
    with pytest.raises(ValueError, match="got a single float value"):
        _pcm.to_s16le(0.5)
    with pytest.raises(TypeError, match="unsupported sample dtype bool"):
        _pcm.to_s16le(np.zeros(3, bool))


def test_non_contiguous_buffers_are_read_in_order():
    """A strided memoryview is taken as its bytes in order, as bytes(view) gives them."""
    view = memoryview(b"a\x00b\x00c\x00d\x00")[::2]
    assert not view.c_contiguous
    assert _wire.encode_audio_messages(view, "r", 2) == _wire.encode_audio_messages(bytes(view), "r", 2)
    assert _pcm.from_s16le(view).tolist() == _pcm.from_s16le(bytes(view)).tolist()
    anim = _wire.encode_animation_message(np.ones((1, 21), np.float32), req_id="r")
    spread = np.frombuffer(anim, np.uint8).repeat(2)[::2]  # a non-contiguous numpy view of the bytes
    assert _wire.decode_message(memoryview(spread)).req_id == "r"
    with pytest.raises(TypeError, match=r"expected a bytes-like object \(bytes, bytearray, memoryview\), got NoneType"):
        _wire.decode_message(None)


def test_wire_rules_follow_protobuf():
    """Issue reproducers: tags of more than 5 bytes or 32 bits, groups, strings in egress configs."""
    # a tag padded to 5 bytes is still a tag; 6 bytes, or a value past 32 bits, is not
    assert _wire.decode_message(b"\x88\x80\x80\x80\x00\x05").type == 5
    assert pb.Message.FromString(b"\x88\x80\x80\x80\x00\x05").type == 5
    with pytest.raises(ValueError, match="tag longer than 5 bytes at byte offset 0"):
        _wire.decode_message(b"\x88\x80\x80\x80\x80\x00\x05")
    with pytest.raises(ValueError, match="does not fit 32 bits"):
        _wire.decode_message(b"\x88\x80\x80\x80\x10\x05")
    # unknown groups are skipped, nested up to 100 deep
    group = lambda depth: b"\xa3\x01" * depth + b"\x08\x01" + b"\xa4\x01" * depth  # field 20
    assert _wire.decode_message(b"\x08\x05" + group(1)).type == 5
    assert _wire.decode_message(group(100)).type == 0
    with pytest.raises(ValueError, match="groups nested deeper than 100 levels"):
        _wire.decode_message(group(101))
    with pytest.raises(ValueError, match="end-group tag of field 21 closes the group of field 20"):
        _wire.decode_message(b"\xa3\x01\xac\x01")
    with pytest.raises(ValueError, match="end-group tag without a start-group tag at byte offset 2"):
        _wire.decode_message(b"\xa4\x01")
    # a group with a known field's number and the wrong wire type is an unknown field too
    assert _wire.decode_message(b"\x13\x14").data_field == 0
    # invalid UTF-8 inside livekit_egress (a map value) and agora_egress
    livekit = pb.Message(type=1)
    livekit.client_configure_session.livekit_egress.extra_attributes["k"] = "\u00e9"
    bad = livekit.SerializeToString().replace("\u00e9".encode(), b"\xc3\x28")
    for data in (bad, pb.Message(type=1).SerializeToString() + b"\x12\x05\x3a\x03\x12\x01\xff"):
        with pytest.raises(Exception):
            pb.Message.FromString(data)
        with pytest.raises(ValueError, match="invalid UTF-8 in string field"):
            _wire.decode_message(data)
        with pytest.raises(ValueError, match="message 0: invalid UTF-8 in string field"):
            _flame.decode_animation_batch([data])


def test_batch_rejects_what_decode_message_rejects():
    """Issue reproducer: a malformed earlier oneof member used to be skipped by length in a batch."""
    anim = _wire.encode_animation_message(np.ones((1, 70), np.float32))
    data = b"\x08\x05\x12\x01\x07" + anim[2:]  # client_configure_session holding a bad tag
    with pytest.raises(ValueError, match="invalid field number 0 at byte offset 4"):
        _wire.decode_message(data)
    with pytest.raises(ValueError, match="message 0: invalid field number 0 at byte offset 4"):
        _flame.decode_animation_batch([data])


def test_capabilities_merge_across_repeated_members_like_protobuf():
    data = b"\x08\x02" + b"\x1a\x03\x12\x01a" * 3 + b"\x1a\x03\x0a\x01c" + b"\x1a\x03\x12\x01b"
    assert _wire.decode_message(data).capabilities == tuple(pb.Message.FromString(data).server_confirm_session.capabilities)
    assert _wire.decode_message(data).capabilities == ("a", "a", "a", "b")
    replaced = data + b"\x22\x00" + b"\x1a\x03\x12\x01z"  # another member in between drops them
    assert _wire.decode_message(replaced).capabilities == ("z",)
    assert list(pb.Message.FromString(replaced).server_confirm_session.capabilities) == ["z"]
