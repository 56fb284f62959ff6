"""The realtime timing model: keyframes leave when due (audio arrival + latency + jitter),
never before, in order; the pacer's jitter is seeded."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avatar_nb import _wire
from avatar_nb.server import LocalService
from avatar_nb.server.latency import Pacer

from .helpers import handshake, open_raw


async def _paced_run(svc, pcm: bytes, chunk_bytes: int = 1280) -> tuple[np.ndarray, np.ndarray]:
    """Stream ``pcm`` in real time; (send time of each chunk, arrival time of each keyframe)."""
    ws = await open_raw(svc)
    await handshake(ws)
    loop = asyncio.get_running_loop()
    sent: list[float] = []
    arrivals: list[tuple[float, int]] = []

    async def receive():
        while True:
            msg = _wire.decode_message(await ws.recv())
            arrivals.append((loop.time(), msg.keyframes.shape[0]))
            if msg.end:
                return

    reader = asyncio.create_task(receive())
    for message in _wire.encode_audio_messages(pcm, "rt", chunk_bytes):
        sent.append(loop.time())
        await ws.send(message)
        await asyncio.sleep(chunk_bytes / 2 / 16000)
    await asyncio.wait_for(reader, 10)
    await ws.close()
    return np.array(sent), np.repeat([t for t, _ in arrivals], [n for _, n in arrivals])


async def test_realtime_keyframes_are_never_early(realtime_service, speech_pcm):
    """A keyframe leaves no sooner than the service latency after its audio arrived."""
    sent, keyframe_arrival = await _paced_run(realtime_service, speech_pcm[:32000])
    # chunk i completes keyframe i: it cannot arrive before chunk i was sent + 80 ms
    assert keyframe_arrival.shape[0] == 25
    assert np.all(keyframe_arrival - sent[:25] >= 0.080 - 0.002)


async def test_jittered_keyframes_are_never_early_and_stay_in_order(speech_pcm):
    async with LocalService(realtime=True, latency_ms=40.0, jitter_ms=25.0) as svc:
        sent, arrival = await _paced_run(svc, speech_pcm[:16000])  # 0.5 s: 12.5 frames
    assert arrival.shape[0] == 13
    assert np.all(np.diff(arrival) >= 0)
    # keyframe k is complete with chunk k (1280 bytes = one 40 ms frame); the last is partial
    completing = np.minimum(np.arange(13), len(sent) - 1)
    assert np.all(arrival - sent[completing] >= 0.040 - 0.002)


def test_pacer_without_jitter_is_arrival_plus_latency():
    pacer = Pacer(80.0)
    assert [pacer.due(t) for t in (1.0, 1.04, 1.08)] == [1.0 + 0.08, 1.04 + 0.08, 1.08 + 0.08]


def test_pacer_jitter_is_half_normal_seeded_and_ordered():
    arrivals = np.arange(4000) * 1.0  # far apart: the ordering rule never binds
    pacer = Pacer(80.0, 20.0, seed=3)
    dues = np.array([pacer.due(t) for t in arrivals])
    extra = dues - arrivals - 0.080
    assert extra.min() >= -1e-12
    # the mean of |N(0, s)| is s * sqrt(2 / pi)
    assert extra.mean() == pytest.approx(0.020 * np.sqrt(2 / np.pi), rel=0.05)
    again = Pacer(80.0, 20.0, seed=3)
    assert [again.due(t) for t in arrivals[:50]] == dues[:50].tolist()
    other = Pacer(80.0, 20.0, seed=(0, 4))
    assert [other.due(t) for t in arrivals[:50]] != dues[:50].tolist()
    # a burst: messages made at the same instant leave in order, none before the latency
    burst = Pacer(80.0, 20.0, seed=5)
    in_burst = [burst.due(10.0) for _ in range(100)]
    assert in_burst == sorted(in_burst) and in_burst[0] >= 10.08


def test_pacer_rejects_negative_times():
    with pytest.raises(ValueError, match="latency_ms and jitter_ms"):
        Pacer(-1.0)
    with pytest.raises(ValueError, match="latency_ms and jitter_ms"):
        Pacer(80.0, float("nan"))
