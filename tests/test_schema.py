"""The wire schema: generated code is fresh, and field numbers are docs/protocol.md's."""

from __future__ import annotations

import importlib.machinery
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor as FD

import avatar_nb
from avatar_nb.proto import message_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent

# docs/protocol.md sections 3 and 4, transcribed: message -> {field: (number, type, repeated)}
S, I32, I64, U32, B, BY, F, E, M = (
    FD.TYPE_STRING,
    FD.TYPE_INT32,
    FD.TYPE_INT64,
    FD.TYPE_UINT32,
    FD.TYPE_BOOL,
    FD.TYPE_BYTES,
    FD.TYPE_FLOAT,
    FD.TYPE_ENUM,
    FD.TYPE_MESSAGE,
)
EXPECTED_FIELDS = {
    "Message": {
        "type": (1, E, False),
        "client_configure_session": (2, M, False),
        "server_confirm_session": (3, M, False),
        "client_audio_input": (4, M, False),
        "server_error": (5, M, False),
        "server_response_animation": (6, M, False),
        "client_interrupt": (8, M, False),
        "client_pause": (9, M, False),
        "client_resume": (10, M, False),
        "server_playback_state": (11, M, False),
    },
    "ClientConfigureSession": {
        "sample_rate": (1, I32, False),
        "bitrate": (2, I32, False),
        "audio_format": (3, E, False),
        "transport_compression": (4, E, False),
        "egress_type": (5, E, False),
        "livekit_egress": (6, M, False),
        "agora_egress": (7, M, False),
    },
    "ServerConfirmSession": {"connection_id": (1, S, False), "capabilities": (2, S, True)},
    "ClientAudioInput": {"req_id": (1, S, False), "end": (2, B, False), "audio": (3, BY, False)},
    "ServerError": {
        "connection_id": (1, S, False),
        "req_id": (2, S, False),
        "code": (3, I32, False),
        "message": (4, S, False),
    },
    "ServerResponseAnimation": {
        "connection_id": (1, S, False),
        "req_id": (2, S, False),
        "end": (3, B, False),
        "animation": (4, BY, False),
        "avatar_id": (5, S, False),
    },
    "ClientInterrupt": {"req_id": (1, S, False)},
    "ClientPause": {"req_id": (1, S, False)},
    "ClientResume": {"req_id": (1, S, False)},
    "ServerPlaybackState": {
        "connection_id": (1, S, False),
        "req_id": (2, S, False),
        "state": (3, E, False),
        "played_ms": (4, I64, False),
        "reason": (5, S, False),
    },
    "LiveKitEgressConfig": {
        "url": (1, S, False),
        "api_key": (2, S, False),
        "api_secret": (3, S, False),
        "room_name": (4, S, False),
        "publisher_id": (5, S, False),
        "extra_attributes": (6, M, True),
        "idle_timeout": (7, I32, False),
        "api_token": (8, S, False),
    },
    "AgoraEgressConfig": {
        "channel_name": (1, S, False),
        "token": (2, S, False),
        "uid": (3, U32, False),
        "publisher_id": (4, S, False),
    },
    "FlameAnimation": {"keyframes": (1, M, True)},
    "Flame": {
        "translation": (1, F, True),
        "rotation": (2, F, True),
        "neck_pose": (3, F, True),
        "jaw_pose": (4, F, True),
        "eye_pose": (5, F, True),
        "eye_lid": (6, F, True),
        "expression": (7, F, True),
    },
}
EXPECTED_ENUMS = {
    "MessageType": {
        "MESSAGE_UNSPECIFIED": 0,
        "MESSAGE_CLIENT_CONFIGURE_SESSION": 1,
        "MESSAGE_SERVER_CONFIRM_SESSION": 2,
        "MESSAGE_CLIENT_AUDIO_INPUT": 3,
        "MESSAGE_SERVER_ERROR": 4,
        "MESSAGE_SERVER_RESPONSE_ANIMATION": 5,
        "MESSAGE_CLIENT_INTERRUPT": 7,
        "MESSAGE_CLIENT_PAUSE": 8,
        "MESSAGE_CLIENT_RESUME": 9,
        "MESSAGE_SERVER_PLAYBACK_STATE": 10,
    },
    "AudioFormat": {"AUDIO_FORMAT_PCM_S16LE": 0, "AUDIO_FORMAT_OGG_OPUS": 1},
    "TransportCompression": {"TRANSPORT_COMPRESSION_NONE": 0},
    "EgressType": {"EGRESS_TYPE_UNSPECIFIED": 0, "EGRESS_TYPE_LIVEKIT": 1, "EGRESS_TYPE_AGORA": 2},
}


def _descriptor_of(module) -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(fd)
    return fd


def _check_schema(fd: descriptor_pb2.FileDescriptorProto) -> None:
    messages = {m.name: m for m in fd.message_type}
    assert set(messages) == set(EXPECTED_FIELDS)
    for name, fields in EXPECTED_FIELDS.items():
        got = {
            f.name: (f.number, f.type, f.label == FD.LABEL_REPEATED) for f in messages[name].field
        }
        assert got == fields, name
    enums = {e.name: {v.name: v.number for v in e.value} for e in fd.enum_type}
    assert enums == EXPECTED_ENUMS
    state = {v.name: v.number for v in messages["ServerPlaybackState"].enum_type[0].value}
    assert state == {"STATE_UNSPECIFIED": 0, "PLAYING": 1, "PAUSED": 2, "ENDED": 3, "INTERRUPTED": 4}
    # every Message member is in the oneof `data`
    msg = messages["Message"]
    assert [o.name for o in msg.oneof_decl] == ["data"]
    assert all(f.HasField("oneof_index") for f in msg.field if f.name != "type")


def test_generated_schema_matches_protocol():
    fd = _descriptor_of(pb)
    assert fd.name == "avatar_nb/v2/message.proto"
    assert fd.package == "avatar_nb.v2"
    _check_schema(fd)


def test_proto_compiled_independently_matches_protocol(tmp_path):
    """Compile proto/message.proto afresh with protoc and check the result, not the committed code."""
    from grpc_tools import protoc

    out = tmp_path / "desc.pb"
    rc = protoc.main(
        ["protoc", f"-Iavatar_nb/v2={ROOT / 'proto'}", f"--descriptor_set_out={out}", "avatar_nb/v2/message.proto"]
    )
    assert rc == 0
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    (fd,) = fds.file
    _check_schema(fd)


def test_committed_generated_code_is_fresh(tmp_path):
    """Regenerating with the pinned protoc gives the committed files byte for byte."""
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_proto.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in ("message_pb2.py", "message_pb2.pyi"):
        fresh = (tmp_path / name).read_text()
        committed = (ROOT / "src" / "avatar_nb" / "proto" / name).read_text()
        assert fresh == committed, f"{name} is stale: run `make proto` and commit the result"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _ld(field: int, payload: bytes) -> bytes:
    return _tag(field, 2) + _varint(len(payload)) + payload


def test_hand_built_bytes_parse_to_the_right_fields():
    """Messages built byte by byte from docs/protocol.md's table parse to the expected fields."""
    # ClientConfigureSession in a Message: type=1 (field 1), data at field 2
    cfg = _tag(1, 0) + _varint(24000) + _tag(2, 0) + _varint(32) + _tag(3, 0) + _varint(1) + _tag(5, 0) + _varint(2)
    m = pb.Message.FromString(_tag(1, 0) + _varint(1) + _ld(2, cfg))
    assert m.type == pb.MESSAGE_CLIENT_CONFIGURE_SESSION
    assert m.WhichOneof("data") == "client_configure_session"
    c = m.client_configure_session
    assert (c.sample_rate, c.bitrate, c.audio_format, c.egress_type) == (24000, 32, 1, 2)

    confirm = _ld(1, b"conn-1") + _ld(2, b"fps:25") + _ld(2, b"playback_state")
    m = pb.Message.FromString(_tag(1, 0) + _varint(2) + _ld(3, confirm))
    assert m.server_confirm_session.connection_id == "conn-1"
    assert list(m.server_confirm_session.capabilities) == ["fps:25", "playback_state"]

    audio = _ld(1, b"req") + _tag(2, 0) + b"\x01" + _ld(3, b"\x01\x02\x03\x04")
    m = pb.Message.FromString(_tag(1, 0) + _varint(3) + _ld(4, audio))
    a = m.client_audio_input
    assert (a.req_id, a.end, a.audio) == ("req", True, b"\x01\x02\x03\x04")

    err = _ld(1, b"c") + _ld(2, b"r") + _tag(3, 0) + _varint(4001) + _ld(4, b"credits exhausted")
    m = pb.Message.FromString(_tag(1, 0) + _varint(4) + _ld(5, err))
    e = m.server_error
    assert (e.connection_id, e.req_id, e.code, e.message) == ("c", "r", 4001, "credits exhausted")

    floats = struct.pack("<3f", 0.5, 0.25, -1.0)
    flame = _ld(4, floats) + _tag(6, 5) + struct.pack("<f", 0.75) + _tag(6, 5) + struct.pack("<f", 0.125)
    anim_payload = _ld(1, flame)
    anim = _ld(1, b"c") + _ld(2, b"r") + _tag(3, 0) + b"\x01" + _ld(4, anim_payload) + _ld(5, b"av")
    m = pb.Message.FromString(_tag(1, 0) + _varint(5) + _ld(6, anim))
    r = m.server_response_animation
    assert (r.connection_id, r.req_id, r.end, r.avatar_id) == ("c", "r", True, "av")
    fa = pb.FlameAnimation.FromString(r.animation)
    assert list(fa.keyframes[0].jaw_pose) == [0.5, 0.25, -1.0]
    assert list(fa.keyframes[0].eye_lid) == [0.75, 0.125]  # unpacked floats accepted

    for number, field, kind in ((7, 8, "client_interrupt"), (8, 9, "client_pause"), (9, 10, "client_resume")):
        m = pb.Message.FromString(_tag(1, 0) + _varint(number) + _ld(field, _ld(1, b"rq")))
        assert m.type == number and m.WhichOneof("data") == kind
        assert getattr(m, kind).req_id == "rq"

    ps = _ld(2, b"rq") + _tag(3, 0) + _varint(4) + _tag(4, 0) + _varint(1234) + _ld(5, b"preempted")
    m = pb.Message.FromString(_tag(1, 0) + _varint(10) + _ld(11, ps))
    p = m.server_playback_state
    assert (p.req_id, p.state, p.played_ms, p.reason) == ("rq", 4, 1234, "preempted")


def test_coexists_with_official_clients_in_one_process():
    """The official clients' schemas and ours load into the same default descriptor pool."""
    code = (
        "import avatarkit, spatialreal, avatar_nb\n"
        "from avatar_nb.proto import message_pb2 as pb\n"
        "import avatarkit.proto.generated.message_pb2 as a\n"
        "import spatialreal.proto.generated.message_pb2 as s\n"
        "print(pb.DESCRIPTOR.name, a.DESCRIPTOR.name, s.DESCRIPTOR.name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == [
        "avatar_nb/v2/message.proto",
        "message.proto",
        "driveningress/v2/driveningress.proto",
    ]


def test_pcm_is_a_compiled_extension():
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    assert avatar_nb._pcm.__file__.endswith(suffixes), avatar_nb._pcm.__file__


@pytest.mark.parametrize("name", ["message.proto", "driveningress/v2/driveningress.proto"])
def test_schema_name_differs_from_official_clients(name):
    assert pb.DESCRIPTOR.name != name


# ----------------------------------------------------------------------------- the compiled decoder's numbers


def test_decoder_handles_every_oneof_member_of_the_schema():
    """Adding a member to Message.data in proto/message.proto without teaching the
    envelope walker (_wire_numbers.pxd, _envelope.pyx) fails here."""
    from avatar_nb import _envelope

    oneof = pb.Message.DESCRIPTOR.oneofs_by_name["data"]
    assert _envelope.DATA_FIELDS == frozenset(f.number for f in oneof.fields)


def test_decoder_message_types_match_the_schema():
    from avatar_nb import _envelope

    assert _envelope.MESSAGE_TYPES == dict(pb.MessageType.items())


def test_decoder_field_numbers_match_the_schema():
    """Every field of every message the walker reads, by name and number, nested map entries included."""
    from avatar_nb import _envelope

    def fields_of(descriptor, prefix=""):
        out = {prefix + descriptor.name: {f.name: f.number for f in descriptor.fields}}
        for f in descriptor.fields:
            if f.message_type is not None and f.message_type.name not in ("FlameAnimation", "Flame"):
                nested = f.message_type
                name = f"{descriptor.name}." if nested.containing_type is descriptor else ""
                out.update(fields_of(nested, name))
        return out

    assert _envelope.FIELD_NUMBERS == fields_of(pb.Message.DESCRIPTOR)
