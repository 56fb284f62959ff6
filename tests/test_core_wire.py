"""The compiled core's contracts, the wire (avatar_nb._wire): encoding, byte offsets in errors, protobuf's wire rules."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_nb import _flame, _pcm, _wire
from avatar_nb import _reference as ref
from avatar_nb.proto import message_pb2 as pb


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


def test_oneof_replacement_follows_protobuf():
    anim = _wire.encode_animation_message(np.ones((1, 70), np.float32), req_id="r")
    then_error = anim + pb.Message(server_error=pb.ServerError(code=3)).SerializeToString()
    assert _wire.decode_message(then_error).data_field == 5
    assert _wire.decode_message(then_error).keyframes.shape[0] == 0
    assert _flame.decode_animation_batch([then_error]).shape[0] == 0
    assert pb.Message.FromString(then_error).WhichOneof("data") == "server_error"


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
    def group(depth: int) -> bytes:  # field 20
        return b"\xa3\x01" * depth + b"\x08\x01" + b"\xa4\x01" * depth

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
