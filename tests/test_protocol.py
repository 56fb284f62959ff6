"""The sans-I/O protocol: messages and both ends' state machines, without sockets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from avatar_nb import _wire
from avatar_nb.errors import AvatarSDKError, AvatarSDKErrorCode, InvalidStateError
from avatar_nb.logid import LOG_ID_PATTERN
from avatar_nb.proto import message_pb2 as pb
from avatar_nb.protocol import (
    AnimationReceived,
    AudioReceived,
    ClientConnection,
    ClientState,
    InterruptRequested,
    MessageType,
    PlaybackControlRequested,
    PlaybackStateReceived,
    ProtocolViolation,
    ServerConnection,
    ServerErrorReceived,
    ServerState,
    SessionConfigured,
    UnknownMessage,
    WirePlaybackState,
    build_playback_state,
    build_server_error,
    check_pcm_chunk,
    fps_from_capabilities,
)

# ----------------------------------------------------------------------------- server errors


def test_egress_refused_with_code_16_is_invalid_egress_config():
    client, server = pair()
    server.receive(client.configure())
    with pytest.raises(AvatarSDKError) as info:
        client.receive(build_server_error(16, "livekit: unauthorized: invalid api token"))
    assert info.value.code is AvatarSDKErrorCode.invalidEgressConfig and info.value.server_code == "16"


# ----------------------------------------------------------------------------- audio validation


def test_check_pcm_chunk():
    assert check_pcm_chunk(bytearray(b"\x00\x01")) == 2
    assert check_pcm_chunk(memoryview(b"\x00\x01\x02\x03")) == 4
    assert check_pcm_chunk(memoryview(np.zeros(3, np.int16))) == 6  # a view of int16 counts bytes
    with pytest.raises(ValueError, match="audio has 5 bytes, an odd number; mono s16le PCM has 2 bytes per sample"):
        check_pcm_chunk(b"\x00" * 5)
    with pytest.raises(TypeError, match="audio must be s16le PCM bytes, got a numpy array.*to_s16le"):
        check_pcm_chunk(np.zeros(3, np.int16))
    for bad in ("text", 12, None, [0, 1]):
        with pytest.raises(TypeError, match="audio must be bytes-like"):
            check_pcm_chunk(bad)
    with pytest.raises(TypeError, match="audio is a non-contiguous memoryview"):
        check_pcm_chunk(memoryview(b"\x00" * 8)[::2])
    with pytest.raises(ValueError, match="pcm has 3 bytes"):
        check_pcm_chunk(b"abc", "pcm")


def test_fps_from_capabilities():
    assert fps_from_capabilities(()) == 25.0
    assert fps_from_capabilities(["playback_state", "fps:30"]) == 30.0
    assert fps_from_capabilities(["fps:abc", "fps:-1", "fps:29.97"]) == 29.97
    assert fps_from_capabilities(["fps:0"], default=60.0) == 60.0


# ----------------------------------------------------------------------------- the two ends together


def pair(**server_kwargs):
    client = ClientConnection(sample_rate=16000)
    server = ServerConnection("conn-1", capabilities=["fps:25"], **server_kwargs)
    return client, server


def test_handshake_and_audio_round_trip():
    client, server = pair()
    assert client.state is ClientState.IDLE and server.state is ServerState.AWAITING_CONFIGURE
    event = server.receive(client.configure())
    assert event == SessionConfigured(16000, 0, 0, 0)
    assert client.state is ClientState.AWAITING_CONFIRM
    confirmed = client.receive(server.confirm())
    assert confirmed.connection_id == "conn-1" and confirmed.capabilities == ("fps:25",)
    assert client.state is ClientState.OPEN and server.state is ServerState.STREAMING

    req, message = client.audio(b"\x01\x00" * 320)
    assert LOG_ID_PATTERN.match(req)
    got = server.receive(message)
    assert got == AudioReceived(req, b"\x01\x00" * 320, False, True, None)
    req2, message = client.audio(b"\x02\x00" * 10, end=True)
    assert req2 == req
    assert server.receive(message) == AudioReceived(req, b"\x02\x00" * 10, True, False, None)
    req3, messages = client.audio_messages(b"\x00\x00" * 1000, 640)
    assert req3 != req and len(messages) == 4
    events = [server.receive(m) for m in messages]
    assert [e.new_utterance for e in events] == [True, False, False, False]
    assert [e.end for e in events] == [False, False, False, True]
    assert sum(len(e.audio) for e in events) == 2000


def test_client_receives_every_kind_of_message():
    client, server = pair()
    server.receive(client.configure())
    client.receive(server.confirm())
    kf = np.arange(2 * 70, dtype=np.float32).reshape(2, 70)
    anim = _wire.encode_animation_message(kf, connection_id="conn-1", req_id="r", end=True, avatar_id="av")
    event = client.receive(anim)
    assert isinstance(event, AnimationReceived)
    assert (event.req_id, event.end, event.avatar_id, event.raw) == ("r", True, "av", anim)
    np.testing.assert_array_equal(event.keyframes, kf)
    # made without the dataclass's __init__: still every field, frozen, and equal to one made with it
    assert set(vars(event)) == {f.name for f in dataclasses.fields(AnimationReceived)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.end = False
    same = dataclasses.replace(event)
    assert same == event and repr(same) == repr(event)
    err = client.receive(build_server_error(0, "no audio input for 30s", connection_id="conn-1", req_id="r"))
    assert isinstance(err, ServerErrorReceived)
    assert err.error.code is AvatarSDKErrorCode.idleTimeout and err.error.req_id == "r"
    ps = client.receive(build_playback_state(WirePlaybackState.INTERRUPTED, req_id="r", played_ms=1200, reason="explicit"))
    assert ps == PlaybackStateReceived(
        "r", WirePlaybackState.INTERRUPTED, 1200, "explicit", "", anomaly="unknown_request"
    )  # "r" is no request of this client's
    unknown = client.receive(pb.Message(type=pb.MESSAGE_CLIENT_PAUSE).SerializeToString())
    assert isinstance(unknown, UnknownMessage) and unknown.type == 8


def test_client_protocol_errors():
    client, server = pair()
    server.receive(client.configure())
    with pytest.raises(AvatarSDKError) as info:
        client.receive("text")
    assert info.value.code is AvatarSDKErrorCode.protocolError and info.value.phase == "websocket_handshake"
    with pytest.raises(AvatarSDKError, match="empty connection_id"):
        client.receive(pb.Message(type=2).SerializeToString())
    with pytest.raises(AvatarSDKError, match="unexpected message type 5 during the handshake"):
        client.receive(_wire.encode_animation_message(np.zeros((0, 20), np.float32)))
    with pytest.raises(AvatarSDKError) as info:
        client.receive(build_server_error(0, "unsupported sample rate: 16000"))
    assert info.value.code is AvatarSDKErrorCode.unsupportedSampleRate
    assert client.state is ClientState.AWAITING_CONFIRM
    client.receive(server.confirm())
    with pytest.raises(AvatarSDKError, match="invalid protobuf message: length 5 runs past the end") as info:
        client.receive(b"\x0a\x05ab")
    assert info.value.phase == "websocket_runtime"
    assert client.state is ClientState.OPEN  # still usable


def test_client_illegal_transitions():
    client = ClientConnection()
    for action in (lambda: client.audio(b""), client.interrupt, lambda: client.receive(b"")):
        with pytest.raises(InvalidStateError, match="state idle"):
            action()
    client.configure()
    with pytest.raises(InvalidStateError, match="cannot configure the session in state awaiting_confirm"):
        client.configure()
    client.close()
    with pytest.raises(InvalidStateError):
        client.audio(b"\x00\x00")


def test_client_rejects_bad_audio_without_changing_state():
    client, server = pair()
    server.receive(client.configure())
    client.receive(server.confirm())
    with pytest.raises(ValueError):
        client.audio(b"\x00")
    assert client.current_req_id is None and client.last_req_id is None
    with pytest.raises(ValueError, match="chunk_bytes"):
        client.audio_messages(b"\x00\x00", 3)
    assert client.current_req_id is None


def test_client_interrupt_and_playback_control():
    client, server = pair()
    server.receive(client.configure())
    client.receive(server.confirm())
    req, audio = client.audio(b"\x00\x00")
    server.receive(audio)
    rid, message = client.interrupt()
    assert rid == req and client.current_req_id is None
    assert server.receive(message) == InterruptRequested(req, streaming=True, pending=True)
    rid, message = client.playback_control(MessageType.CLIENT_PAUSE)
    assert server.receive(message) == PlaybackControlRequested(MessageType.CLIENT_PAUSE, req)


def test_unsupported_client_sample_rate():
    with pytest.raises(ValueError, match="unsupported sample_rate 12345; accepted: 8000, 16000"):
        ClientConnection(sample_rate=12345)


# ----------------------------------------------------------------------------- server violations


def decode(reply: bytes) -> _wire.DecodedMessage:
    return _wire.decode_message(reply)


@pytest.mark.parametrize(
    "first,message,code",
    [
        (pb.Message(type=3).SerializeToString(), "expected ClientConfigureSession message", 0),
        ("hi", "unexpected message type: text frame", 0),
        (b"\xff", "failed to unmarshal initial message", 0),
    ],
)
def test_server_handshake_violations_close(first, message, code):
    server = ServerConnection("c")
    event = server.receive(first)
    assert isinstance(event, ProtocolViolation) and event.close
    err = decode(event.reply)
    assert err.error_message.startswith(message) and err.error_code == code and err.connection_id == "c"
    assert server.state is ServerState.CLOSED
    with pytest.raises(InvalidStateError):
        server.receive(first)


def test_server_runtime_violations_keep_the_session():
    client, server = pair()
    server.receive(client.configure())
    client.receive(server.confirm())
    odd = pb.Message(type=3)
    odd.client_audio_input.req_id = "r"
    odd.client_audio_input.audio = b"\x00"
    no_req = pb.Message(type=3)
    no_req.client_audio_input.audio = b"\x00\x00"
    for data, text, code in (
        (odd.SerializeToString(), "odd number", 3),
        (no_req.SerializeToString(), "without req_id", 3),
        ("text", "text frame", 3),
        (b"\x12\x01", "failed to unmarshal", 3),
        (pb.Message(type=1).SerializeToString(), "unexpected message type 1", 0),
    ):
        event = server.receive(data)
        assert isinstance(event, ProtocolViolation) and not event.close, text
        err = decode(event.reply)
        assert text in err.error_message and err.error_code == code
    assert server.state is ServerState.STREAMING


def test_server_preemption_and_finished_requests():
    client, server = pair()
    server.receive(client.configure())
    client.receive(server.confirm())
    a, m = client.audio(b"\x00\x00")
    server.receive(m)
    client.current_req_id = None  # the client starts a new request without ending the first
    b, m = client.audio(b"\x00\x00")
    assert server.receive(m) == AudioReceived(b, b"\x00\x00", False, True, a)
    stale = pb.Message(type=3)
    stale.client_audio_input.req_id = a
    stale.client_audio_input.audio = b"\x00\x00"
    event = server.receive(stale.SerializeToString())
    assert isinstance(event, ProtocolViolation) and "already ended" in event.message


@pytest.mark.parametrize("rate", [0, 11025, 96000])
def test_server_refuses_unsupported_sample_rates_with_code_0(rate):
    server = ServerConnection("c")
    msg = pb.Message(type=1)
    msg.client_configure_session.sample_rate = rate
    event = server.receive(msg.SerializeToString())
    err = decode(event.reply)
    assert (err.error_code, err.error_message) == (0, f"unsupported sample rate: {rate}")


def test_wire_playback_state_old_name_is_deprecated():
    from avatar_nb import protocol

    with pytest.warns(DeprecationWarning, match="WirePlaybackState"):
        old = protocol.PlaybackState
    assert old is WirePlaybackState
    assert "PlaybackState" not in protocol.__all__ and "WirePlaybackState" in protocol.__all__


def test_default_fps_leaves_through_flame_only():
    from avatar_nb import flame, protocol

    assert "DEFAULT_FPS" not in protocol.__all__
    with pytest.warns(DeprecationWarning, match="avatar_nb.flame"):
        assert protocol.DEFAULT_FPS is flame.DEFAULT_FPS


def test_protocol_package_keeps_every_name_and_the_shared_part_knows_no_end():
    import ast
    import pathlib

    from avatar_nb import protocol

    for name in protocol.__all__:
        assert getattr(protocol, name) is not None
    assert protocol.ClientConnection.__module__ == "avatar_nb.protocol.client"
    assert protocol.ServerConnection.__module__ == "avatar_nb.protocol.server"
    # the shared part imports neither end, the ends do not import each other, and
    # nothing in the package imports the session
    folder = pathlib.Path(protocol.__file__).parent
    for module, banned in (
        ("messages", {"client", "server", "session"}),
        ("client", {"server", "session"}),
        ("server", {"client", "session"}),
    ):
        tree = ast.parse((folder / f"{module}.py").read_text())
        imported = {
            part
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
            for part in node.module.split(".")
        }
        assert not imported & banned, (module, imported & banned)
