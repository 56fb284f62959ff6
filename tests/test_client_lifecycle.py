"""The client protocol object owns each request's lifecycle, validates audio once, and
holds a constant-size state however many requests a session runs (no sockets here)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from avatar_nb import _wire
from avatar_nb.errors import InvalidStateError
from avatar_nb.proto import message_pb2 as pb
from avatar_nb.protocol import (
    MAX_AUDIO_CHUNK_BYTES,
    AnimationReceived,
    ClientConnection,
    MessageType,
    OneofField,
    RequestStatus,
    WirePlaybackState,
    build_audio,
    build_confirm_session,
    build_playback_state,
    build_server_error,
)

KF = np.zeros((2, 70), np.float32)


def open_client(**kwargs) -> ClientConnection:
    client = ClientConnection(sample_rate=16000, **kwargs)
    client.configure()
    client.receive(build_confirm_session("conn-1", ["fps:25"]))
    return client


def anim(req_id: str, *, end: bool = False, frames: np.ndarray = KF) -> bytes:
    return _wire.encode_animation_message(frames, connection_id="conn-1", req_id=req_id, end=end)


def run_requests(client: ClientConnection, count: int) -> None:
    for _ in range(count):
        req_id, _ = client.audio(b"\x00\x00" * 8, end=True)
        client.receive(anim(req_id))
        event = client.receive(anim(req_id, end=True))
        assert event.status is RequestStatus.COMPLETE


def test_state_is_constant_size_however_many_requests():
    client = open_client()
    run_requests(client, 2_000)
    after_2k = client.tracked_requests
    run_requests(client, 20_000)
    assert client.tracked_requests == after_2k == ClientConnection.FINISHED_WINDOW
    assert client.open_requests == ()
    assert client.current_req_id is None


def test_open_requests_are_tracked_until_their_end_frame():
    client = open_client()
    req, _ = client.audio(b"\x00\x00")
    assert client.open_requests == (req,) and client.status(req) is RequestStatus.OPEN
    client.receive(anim(req))
    client.audio(b"\x00\x00", end=True)
    assert client.is_pending(req)  # sent its end, its end frame is still to come
    assert client.receive(anim(req, end=True)).status is RequestStatus.COMPLETE
    assert not client.is_pending(req) and client.status(req) is RequestStatus.COMPLETE


def test_an_end_frame_before_the_client_ends_does_not_finish_the_request():
    client = open_client()
    req, _ = client.audio(b"\x00\x00")
    assert client.receive(anim(req, end=True)).status is None
    assert client.is_pending(req)
    client.audio(b"\x00\x00", end=True)  # the request finishes when the client ends it too
    assert client.status(req) is RequestStatus.COMPLETE and not client.is_pending(req)


def test_interrupted_request_finishes_as_interrupted():
    client = open_client()
    req, _ = client.audio(b"\x00\x00")
    rid, message = client.interrupt()
    assert rid == req and client.status(req) is RequestStatus.INTERRUPTED
    assert pb.Message.FromString(message).client_interrupt.req_id == req
    event = client.receive(anim(req, end=True))
    assert event.status is RequestStatus.INTERRUPTED and not client.is_pending(req)
    # interrupting a finished request sends the message but keeps its status
    other, _ = client.audio(b"\x00\x00", end=True)
    client.receive(anim(other, end=True))
    client.interrupt()
    assert client.status(other) is RequestStatus.COMPLETE


def test_playback_states_pause_preempt_and_interrupt_requests():
    client = open_client()
    req, _ = client.audio(b"\x00\x00", end=True)
    ps = client.receive(build_playback_state(WirePlaybackState.PAUSED, req_id=req, played_ms=40))
    assert ps.status is None and ps.anomaly is None and client.is_paused(req)
    client.receive(build_playback_state(WirePlaybackState.PLAYING, req_id=req, played_ms=40))
    assert not client.is_paused(req)
    ps = client.receive(build_playback_state(WirePlaybackState.INTERRUPTED, req_id=req, reason="preempted"))
    assert ps.status is RequestStatus.PREEMPTED
    assert client.receive(anim(req, end=True)).status is RequestStatus.PREEMPTED
    # playout can be cut short after generation ended: a finished request changes status too
    done, _ = client.audio(b"\x00\x00", end=True)
    client.receive(anim(done, end=True))
    ps = client.receive(build_playback_state(WirePlaybackState.INTERRUPTED, req_id=done, reason="pause_timeout"))
    assert ps.status is RequestStatus.INTERRUPTED and client.status(done) is RequestStatus.INTERRUPTED
    ended = client.receive(build_playback_state(WirePlaybackState.ENDED, req_id=done, played_ms=80))
    assert ended.status is None and ended.anomaly is None
    stranger = client.receive(build_playback_state(WirePlaybackState.PLAYING, req_id="nobody"))
    assert stranger.anomaly == "unknown_request"


def test_anomalies_unknown_request_after_end_and_duplicate_end():
    client = open_client()
    event = client.receive(anim("not-mine", end=True))
    assert isinstance(event, AnimationReceived) and event.anomaly == "unknown_request" and event.status is None
    req, _ = client.audio(b"\x00\x00", end=True)
    assert client.receive(anim(req, end=True)).anomaly is None
    late = client.receive(anim(req))
    assert late.anomaly == "after_end"
    duplicate = client.receive(anim(req, end=True, frames=np.zeros((0, 70), np.float32)))
    assert duplicate.duplicate_end and duplicate.anomaly is None  # egress may repeat an end signal


def test_server_error_fails_an_open_request_and_close_settles_the_rest():
    client = open_client()
    a, _ = client.audio(b"\x00\x00", end=True)
    event = client.receive(build_server_error(0, "driven server request failed", req_id=a))
    assert event.status is RequestStatus.FAILED
    assert client.receive(build_server_error(0, "something else", req_id="unknown")).status is None
    client.receive(anim(a, end=True))
    assert client.status(a) is RequestStatus.FAILED
    b, _ = client.audio(b"\x00\x00")
    c_message = client.interrupt()
    assert c_message[0] == b
    d, _ = client.audio(b"\x00\x00")
    assert client.close() == [(b, RequestStatus.INTERRUPTED), (d, RequestStatus.FAILED)]
    assert client.close() == [] and client.open_requests == ()


def test_audio_is_validated_once_and_refused_whole():
    client = open_client()
    with pytest.raises(ValueError, match=f"above the {MAX_AUDIO_CHUNK_BYTES} bytes"):
        client.audio(bytes(MAX_AUDIO_CHUNK_BYTES + 2))
    with pytest.raises(TypeError, match="non-contiguous memoryview"):
        client.audio(memoryview(bytes(16))[::2])
    with pytest.raises(TypeError, match="audio must be s16le PCM bytes, got a numpy array"):
        client.audio(np.zeros(4, np.int16))
    assert client.current_req_id is None and client.last_req_id is None and client.open_requests == ()
    req, message = client.audio(memoryview(np.arange(4, dtype=np.int16)))  # a typed view is its bytes
    assert pb.Message.FromString(message).client_audio_input.audio == np.arange(4, dtype="<i2").tobytes()


def test_the_largest_chunk_fits_the_service_limit():
    message = build_audio("20261128163000_AbCdEfGhIjKl", bytes(MAX_AUDIO_CHUNK_BYTES), True)
    assert len(message) <= 16 * 1024 * 1024
    assert MAX_AUDIO_CHUNK_BYTES % 2 == 0


def test_audio_is_not_copied_before_it_is_framed():
    client = open_client()
    chunk = bytearray(8 * 1024 * 1024)
    client.audio(chunk)  # warm up
    tracemalloc.start()
    try:
        _, message = client.audio(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(message) > len(chunk)
    assert peak < 1.5 * len(chunk)  # the message itself, and no second copy of the audio


@pytest.mark.parametrize("audio", [b"", b"\x01", b"OggS\x00\x02", b"\x00" * 300, bytes(range(256)) * 3 + b"x"])
@pytest.mark.parametrize("end", [False, True])
def test_audio_messages_are_what_protobuf_makes(audio, end):
    expected = pb.Message(type=pb.MESSAGE_CLIENT_AUDIO_INPUT)
    expected.client_audio_input.req_id = "r-1"
    expected.client_audio_input.end = end
    expected.client_audio_input.audio = audio
    if not audio and not end:
        expected.client_audio_input.SetInParent()
    assert build_audio("r-1", audio, end) == expected.SerializeToString()


def test_ogg_opus_chunks_start_with_a_page_and_may_be_cut_anywhere():
    client = open_client(audio_format=pb.AUDIO_FORMAT_OGG_OPUS)
    with pytest.raises(ValueError, match="does not start with an Ogg page"):
        client.audio(b"RIFF....")
    assert client.current_req_id is None
    req, first = client.audio(b"OggS\x00\x02abc")  # odd length is fine for Ogg
    same, middle = client.audio(b"\x07")  # a slice cut mid-page
    assert same == req
    assert pb.Message.FromString(middle).client_audio_input.audio == b"\x07"
    same, last = client.audio(b"", end=True)
    assert same == req and pb.Message.FromString(last).client_audio_input.end
    with pytest.raises(InvalidStateError, match="Ogg Opus"):
        client.audio_messages(b"\x00\x00", 2)
    nxt, _ = client.audio(b"OggS" + bytes(100))  # a new request starts a new stream
    assert nxt != req


def test_message_types_and_oneof_fields_match_the_schema():
    oneof = {f.name: f.number for f in pb.Message.DESCRIPTOR.oneofs_by_name["data"].fields}
    assert {name.upper(): number for name, number in oneof.items()} == {
        f.name: f.value for f in OneofField if f is not OneofField.UNSPECIFIED
    }
    types = {v.name.removeprefix("MESSAGE_"): v.number for v in pb.MessageType.DESCRIPTOR.values}
    assert types == {t.name: t.value for t in MessageType}
    for kind in MessageType:
        if kind is not MessageType.UNSPECIFIED:
            assert oneof[kind.name.lower()] == kind.data_field


async def test_a_session_over_loopback_keeps_constant_state(service):
    from avatar_nb import new_avatar_session

    async with new_avatar_session(**service.session_kwargs()) as session:
        for _ in range(ClientConnection.FINISHED_WINDOW + 200):
            req = await session.send_audio(b"\x00\x00" * 640, end=True)
            await session.wait_for_end(req, timeout=10)
        protocol = session._protocol
        assert protocol.open_requests == () and protocol.tracked_requests == ClientConnection.FINISHED_WINDOW
        assert session._end_waiters == {}
        # a request finished long ago is still known to have ended, from the Timeline's record
        first = session.timeline.req_ids[0]
        assert protocol.status(first) is None
        await session.wait_for_end(first, timeout=0.001)
    assert session.timeline.complete and len(session.timeline.req_ids) == ClientConnection.FINISHED_WINDOW + 200
