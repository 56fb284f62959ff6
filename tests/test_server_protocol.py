"""The service end of the protocol without I/O: the per-request lifecycle it owns, in
memory bounded by the requests still open."""

from __future__ import annotations

import numpy as np

from avatar_nb import _wire
from avatar_nb.errors import ServerErrorCode
from avatar_nb.flame import FIXED_COLUMNS
from avatar_nb.protocol import (
    AudioReceived,
    InterruptRequested,
    ProtocolViolation,
    RequestPhase,
    ServerConnection,
    build_configure_session,
    build_interrupt,
)

_EMPTY = np.zeros((0, FIXED_COLUMNS), np.float32)


def _audio(req_id: str, end: bool = False) -> bytes:
    return _wire.encode_audio_messages(b"\x00\x00" * 4, req_id, 8, end=end)[0]


def _configured() -> ServerConnection:
    server = ServerConnection("c")
    server.receive(build_configure_session(16000))
    return server


def test_lifecycle_of_one_request():
    server = _configured()
    assert server.phase("a") is None
    server.receive(_audio("a"))
    assert server.phase("a") is RequestPhase.STREAMING
    server.receive(_audio("a", end=True))
    assert server.phase("a") is RequestPhase.ENDED  # its end message has not gone out
    server.animation("a", _EMPTY, end=True)
    assert server.phase("a") is RequestPhase.FINISHED
    event = server.receive(_audio("a"))
    assert isinstance(event, ProtocolViolation) and "already ended" in event.message
    assert _wire.decode_message(event.reply).error_code == ServerErrorCode.INVALID_ARGUMENT


def test_interrupts_say_what_to_stop():
    server = _configured()
    server.receive(_audio("a"))
    assert server.receive(build_interrupt("a")) == InterruptRequested(
        "a", streaming=True, pending=True
    )
    assert server.phase("a") is RequestPhase.ENDED and server.current_req_id is None
    # again before its end went out: nothing streams any more, the end is still owed
    assert server.receive(build_interrupt("a")) == InterruptRequested(
        "a", streaming=False, pending=True
    )
    server.animation("a", _EMPTY, end=True)
    assert server.receive(build_interrupt("a")) == InterruptRequested("a")  # nothing to stop
    assert server.receive(build_interrupt("never-seen")) == InterruptRequested("never-seen")


def test_preemption_ends_the_streaming_request():
    server = _configured()
    server.receive(_audio("a"))
    assert server.receive(_audio("b")) == AudioReceived("b", b"\x00\x00" * 4, False, True, "a")
    assert server.phase("a") is RequestPhase.ENDED and server.phase("b") is RequestPhase.STREAMING


def test_tracked_requests_stay_bounded_over_many_requests():
    """A million short requests must not grow the state: only unfinished requests and a
    fixed window of finished ones are held (20,000 here, the same bound)."""
    server = _configured()
    peak = 0
    for i in range(20_000):
        req = f"r{i}"
        server.receive(_audio(req))
        if i % 3 == 0:
            server.receive(build_interrupt(req))
        else:
            server.receive(_audio(req, end=True))
        server.animation(req, _EMPTY, end=True)
        peak = max(peak, server.tracked_requests)
    assert peak <= ServerConnection.FINISHED_WINDOW + 1
    assert server.tracked_requests == ServerConnection.FINISHED_WINDOW
    # the latest finished ones are still known as finished
    assert server.phase("r19999") is RequestPhase.FINISHED
    assert server.phase("r0") is None


def test_unfinished_requests_are_tracked_until_their_end_goes_out():
    server = _configured()
    for i in range(10):  # each preempts the previous; none has had its end sent
        server.receive(_audio(f"p{i}"))
    assert server.tracked_requests == 10
    for i in range(10):
        server.animation(f"p{i}", _EMPTY, end=True)
    assert server.tracked_requests == 10 and all(
        server.phase(f"p{i}") is RequestPhase.FINISHED for i in range(10)
    )


def test_error_codes_come_from_server_error_code():
    server = ServerConnection("c")
    event = server.receive("text before the handshake")
    assert _wire.decode_message(event.reply).error_code == ServerErrorCode.OK
    server = _configured()
    event = server.receive("text after it")
    assert _wire.decode_message(event.reply).error_code == ServerErrorCode.INVALID_ARGUMENT


def test_an_egress_config_with_invalid_utf8_is_refused_at_the_handshake():
    from avatar_nb.proto import message_pb2 as pb

    msg = pb.Message(type=1)
    cfg = msg.client_configure_session
    cfg.sample_rate, cfg.egress_type = 16000, pb.EGRESS_TYPE_LIVEKIT
    cfg.livekit_egress.url, cfg.livekit_egress.room_name = "U", "r"
    data = msg.SerializeToString().replace(b"\x0a\x01U", b"\x0a\x01\xff")
    server = ServerConnection("c", supports_egress=True)
    event = server.receive(data)
    assert isinstance(event, ProtocolViolation) and event.close
    assert "failed to unmarshal initial message" in event.message
