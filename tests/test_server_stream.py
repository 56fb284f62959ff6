"""Streaming over real sockets: keyframes for every frame of audio, utterances, interrupt,
preemption, bad messages next to good sessions, and determinism."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avatar_nb import _pcm, _wire
from avatar_nb.audio import speech_like
from avatar_nb.flame import DEFAULT_FPS, FIXED_COLUMNS
from avatar_nb.proto import message_pb2 as pb
from avatar_nb.protocol import build_interrupt
from avatar_nb.server import LocalService

from .helpers import collect_until_end, expected_frames, handshake, keyframes_of, open_raw, stream


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
async def test_stream_returns_every_keyframe_then_end(service, rate):
    pcm = _pcm.to_s16le(speech_like(1.3, rate))
    ws = await open_raw(service)
    confirm = await handshake(ws, rate)
    await stream(ws, pcm, "req-1", chunk=int(rate / DEFAULT_FPS) * 2)  # a frame a chunk
    messages = await collect_until_end(ws, "req-1")
    kf = keyframes_of(messages)
    assert kf.shape == (expected_frames(len(pcm) // 2, rate), FIXED_COLUMNS + 50)
    assert [m.end for m in messages] == [False] * (len(messages) - 1) + [True]
    assert all(
        m.connection_id == confirm.connection_id and m.avatar_id == service.avatar_id
        for m in messages
    )
    await ws.close()


async def test_utterances_interrupt_and_preemption(service, speech_pcm):
    ws = await open_raw(service)
    await handshake(ws)
    half = speech_pcm[: len(speech_pcm) // 2]
    # 1: half of an utterance, then an interrupt: the request ends with what it had
    await stream(ws, half, "u1", end=False)
    await ws.send(build_interrupt("u1"))
    got = keyframes_of(await collect_until_end(ws, "u1"))
    assert got.shape[0] == len(half) // 2 // 640
    # 2: a full new utterance works after the interrupt
    await stream(ws, speech_pcm, "u2")
    assert keyframes_of(await collect_until_end(ws, "u2")).shape[0] == expected_frames(
        len(speech_pcm) // 2
    )
    # 3: a new req_id while u3 is still open ends u3 (preemption), then u4 runs
    await stream(ws, half, "u3", end=False)
    await stream(ws, half, "u4")
    messages = await collect_until_end(ws, "u4")
    ends = [(m.req_id, m.end) for m in messages if m.end]
    assert ends == [("u3", True), ("u4", True)]
    # 4: audio for a request that already ended is an error, and the session goes on
    await stream(ws, half[:1280], "u2")
    err = _wire.decode_message(await ws.recv())
    assert (
        err.type == pb.MESSAGE_SERVER_ERROR
        and err.error_code == 3
        and "already ended" in err.error_message
    )
    await stream(ws, half, "u5")
    assert keyframes_of(await collect_until_end(ws, "u5")).shape[0] == expected_frames(
        len(half) // 2
    )
    await ws.close()


@pytest.mark.parametrize(
    "bad,expected",
    [
        (
            _wire.encode_audio_messages(b"\x00" * 4, "x", 4)[0].replace(
                b"\x1a\x04\x00\x00\x00\x00", b"\x1a\x03\x00\x00\x00"
            ),
            None,
        ),
        ("hello", "text frame"),
        (b"\x08\x03\x22\xff\xff", "failed to unmarshal"),
    ],
)
async def test_bad_messages_get_an_error_and_the_session_continues(
    service, speech_pcm, bad, expected
):
    ws = await open_raw(service)
    await handshake(ws)
    if expected is None:  # patch the inner length too: an odd-length but well-formed audio chunk
        msg = pb.Message(type=3)
        msg.client_audio_input.req_id = "x"
        msg.client_audio_input.audio = b"\x00\x01\x02"
        bad = msg.SerializeToString()
        expected = "odd number"
    await ws.send(bad)
    err = _wire.decode_message(await ws.recv())
    assert err.type == pb.MESSAGE_SERVER_ERROR and expected in err.error_message
    await stream(ws, speech_pcm, "after")
    assert keyframes_of(await collect_until_end(ws, "after")).shape[0] == expected_frames(
        len(speech_pcm) // 2
    )
    await ws.close()


async def test_misbehaving_client_next_to_a_good_one(service, speech_pcm):
    async def bad_client():
        ws = await open_raw(service)
        await handshake(ws)
        # (a bare pause, type 8, is no junk: a service without playout ignores it silently)
        for junk in (b"\x00", "text", b"\x0a\xff\xff\xff\xff\x0f", b"\x08\x63" * 25):
            await ws.send(junk)
            await ws.recv()
        await ws.close()

    async def good_client(name: str):
        ws = await open_raw(service)
        await handshake(ws)
        await stream(ws, speech_pcm, name)
        kf = keyframes_of(await collect_until_end(ws, name))
        await ws.close()
        return kf

    results = await asyncio.gather(
        bad_client(), *(good_client(f"g{i}") for i in range(4)), bad_client()
    )
    good = results[1:5]
    for kf in good:
        assert kf.shape[0] == expected_frames(len(speech_pcm) // 2)
        np.testing.assert_array_equal(kf, good[0])  # deterministic: same audio, same animation


async def test_same_audio_same_keyframes_whatever_the_chunking(service, speech_pcm):
    results = []
    for chunk in (640, 1280, 4000, len(speech_pcm)):
        ws = await open_raw(service)
        await handshake(ws)
        await stream(ws, speech_pcm, "d", chunk=chunk)
        results.append(keyframes_of(await collect_until_end(ws, "d")))
        await ws.close()
    for kf in results[1:]:
        np.testing.assert_array_equal(kf, results[0])


async def test_interrupt_with_nothing_to_stop_sends_nothing(service, speech_pcm):
    """Before any audio, or after the request's end went out, an interrupt is a no-op
    (avatarkit interrupts its latest request even when it has ended)."""
    ws = await open_raw(service)
    await handshake(ws)
    await ws.send(build_interrupt(""))
    await stream(ws, speech_pcm, "a")
    first = await collect_until_end(ws, "a")
    await ws.send(build_interrupt("a"))
    await stream(ws, speech_pcm, "b")
    second = await collect_until_end(ws, "b")
    assert {m.req_id for m in first} == {"a"} and {m.req_id for m in second} == {"b"}
    assert [m.end for m in first + second].count(True) == 2
    await ws.close()


async def test_realtime_interrupt_drops_what_is_not_due_yet(speech_pcm):
    """Paced: keyframes wait for their due time; an interrupt ends the request at once
    without them, and no end message follows later for it."""
    async with LocalService(realtime=True, latency_ms=30_000) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        await stream(ws, speech_pcm, "long", end=True)  # its end is queued, 30 s away
        await ws.send(build_interrupt("long"))
        messages = await collect_until_end(ws, "long")
        assert [(m.req_id, m.end, m.keyframes.shape[0]) for m in messages] == [("long", True, 0)]
        # the session goes on: a new request's keyframes wait for their due time again
        await stream(ws, speech_pcm[:1280], "next", end=False)
        await ws.send(build_interrupt("next"))
        assert [(m.req_id, m.end) for m in await collect_until_end(ws, "next")] == [("next", True)]
        await ws.close()


async def test_concurrent_paced_sessions_each_get_their_own_animation(realtime_service, speech_pcm):
    """Eight paced sessions at once, each streaming in real time, each complete and separate."""
    clip = speech_pcm[: 16000 * 2 // 2]  # 0.5 s

    async def one(i: int) -> tuple[str, np.ndarray, set[str]]:
        ws = await open_raw(realtime_service)
        confirm = await handshake(ws)
        for message in _wire.encode_audio_messages(clip, f"s{i}", 640):
            await ws.send(message)
            await asyncio.sleep(0.02)
        messages = await collect_until_end(ws, f"s{i}")
        await ws.close()
        return confirm.connection_id, keyframes_of(messages), {m.connection_id for m in messages}

    results = await asyncio.gather(*(one(i) for i in range(8)))
    assert len({conn for conn, _, _ in results}) == 8
    for conn, kf, seen in results:
        assert seen == {conn}
        assert kf.shape[0] == expected_frames(len(clip) // 2)
        np.testing.assert_array_equal(kf, results[0][1])  # same audio, same seed: same animation
