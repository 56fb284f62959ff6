"""Simulated conditions with known ground truth: service latency, audio-to-motion offset,
network delay and bandwidth. Analyses are validated against these, so each must be
exactly what was asked for."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avatar_nb import _pcm, _wire
from avatar_nb.audio import speech_like
from avatar_nb.flame import DEFAULT_FPS
from avatar_nb.server import Animator, LocalService
from avatar_nb.server.latency import Link

from .helpers import collect_until_end, expected_frames, handshake, keyframes_of, open_raw, stream

RATE = 16000
FRAME = int(RATE / DEFAULT_FPS)  # samples per keyframe at the service's rate


async def _paced(svc, pcm: bytes, chunk_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Stream ``pcm`` in real time in ``chunk_bytes`` chunks; per keyframe, (the send time
    of the chunk that completed its frame, its arrival)."""
    ws = await open_raw(svc)
    await handshake(ws)
    loop = asyncio.get_running_loop()
    sent: list[float] = []
    arrivals: list[tuple[float, int]] = []

    async def receive() -> None:
        while True:
            msg = _wire.decode_message(await ws.recv())
            arrivals.append((loop.time(), msg.keyframes.shape[0]))
            if msg.end:
                return

    reader = asyncio.create_task(receive())
    start = loop.time()
    messages = _wire.encode_audio_messages(pcm, "rt", chunk_bytes)
    for i, message in enumerate(messages):
        await asyncio.sleep(max(0.0, start + i * chunk_bytes / 2 / RATE - loop.time()))
        sent.append(loop.time())
        await ws.send(message)
    await asyncio.wait_for(reader, 30)
    await ws.close()
    arrival = np.repeat([t for t, _ in arrivals], [n for _, n in arrivals])
    # keyframe k's frame ends at sample (k + 1) * FRAME: the chunk holding that sample completes it
    n = arrival.shape[0]
    samples_sent = np.arange(1, len(messages) + 1) * (chunk_bytes // 2)
    frame_end = np.minimum((np.arange(n) + 1) * FRAME, len(pcm) // 2)
    completing = np.searchsorted(samples_sent, frame_end)
    return np.array(sent)[completing], arrival


@pytest.mark.parametrize("chunk_ms", [40, 100])
async def test_latency_is_recovered_from_the_client_side(speech_pcm, chunk_ms):
    """The service's due time is exactly ``latency_ms`` after the audio that completed a
    frame arrived, also for frames completed in the middle of a chunk (100 ms chunks
    complete 2.5 frames each). A sweep over 40, 80 and 160 ms, run side by side so that
    all three see the same machine load: no keyframe is early, and the medians of the
    per-keyframe latency a client measures are as far apart as the settings, within
    2 ms (on an idle machine each median is within about 1.5 ms of its setting; the
    scheduling delay of a busy one adds to all three alike)."""
    settings = (40.0, 80.0, 160.0)
    services = [LocalService(realtime=True, latency_ms=ms) for ms in settings]
    for svc in services:
        await svc.__aenter__()
    try:
        clip = speech_pcm * 2  # 4 s: 100 keyframes per setting
        runs = await asyncio.gather(
            *(_paced(svc, clip, chunk_ms * RATE // 1000 * 2) for svc in services)
        )
    finally:
        for svc in services:
            await svc.__aexit__(None, None, None)
    medians = []
    for ms, (sent, arrival) in zip(settings, runs):
        assert arrival.shape[0] == expected_frames(4 * RATE)
        latency = arrival - sent
        assert latency.min() >= ms / 1000 - 0.001  # never early
        medians.append(float(np.median(latency)))
    medians = np.array(medians)
    np.testing.assert_allclose(
        medians - medians[0], (np.array(settings) - settings[0]) / 1000, atol=0.002
    )


async def test_network_delay_adds_to_the_latency(speech_pcm):
    """Side by side with the same service latency and no delay: 60 ms more, never less."""
    services = [LocalService(realtime=True, latency_ms=40.0, net_delay_ms=d) for d in (0.0, 60.0)]
    for svc in services:
        await svc.__aenter__()
    try:
        runs = await asyncio.gather(*(_paced(svc, speech_pcm, 1280) for svc in services))
    finally:
        for svc in services:
            await svc.__aexit__(None, None, None)
    (sent0, arrival0), (sent1, arrival1) = runs
    assert (
        arrival1 - sent1
    ).min() >= 0.100 - 0.001  # 40 ms of service latency, then 60 ms on the way
    assert abs(np.median(arrival1 - sent1) - np.median(arrival0 - sent0) - 0.060) < 0.002


async def test_bandwidth_limit_serialises_messages(speech_pcm):
    """A clip sent at once over a slow link: messages arrive no faster than their bits
    go through the link, one after another."""
    bps = 40_000.0
    async with LocalService(realtime=True, latency_ms=0.0, bandwidth_bps=bps) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await stream(ws, speech_pcm[:RATE], "b")  # 25 messages of one keyframe each, at once
        arrivals, sizes = [], []
        while True:
            raw = await asyncio.wait_for(ws.recv(), 30)
            arrivals.append(loop.time() - start)
            sizes.append(len(raw))
            if _wire.decode_message(raw).end:
                break
        await ws.close()
    # message i cannot arrive before the bits of messages 0..i went through the link
    needed = np.cumsum(sizes) * 8 / bps
    assert np.all(np.array(arrivals) >= needed - 0.002)
    assert len(arrivals) == expected_frames(RATE // 2)


def test_link_model():
    link = Link(delay_ms=50.0, bandwidth_bps=8000.0)  # 1000 bytes a second
    assert link.arrival(10.0, 100) == pytest.approx(10.0 + 0.1 + 0.05)
    assert link.arrival(10.0, 100) == pytest.approx(10.0 + 0.2 + 0.05)  # queued behind the first
    assert link.arrival(20.0, 0) == pytest.approx(20.05)  # an idle link: only the delay
    assert not Link().active and Link(delay_ms=1).active and Link(bandwidth_bps=1).active
    with pytest.raises(ValueError, match="bandwidth_bps"):
        Link(bandwidth_bps=0)


# ----------------------------------------------------------------------------- A/V offset


def _shifted(pcm: bytes, samples: int) -> bytes:
    """``pcm`` shifted by ``samples`` (later when positive), silence filling in, same length."""
    x = np.frombuffer(pcm, "<i2")
    if samples >= 0:
        y = np.concatenate((np.zeros(samples, np.int16), x[: x.shape[0] - samples]))
    else:
        y = np.concatenate((x[-samples:], np.zeros(-samples, np.int16)))
    return y.tobytes()


def _animate(pcm: bytes, **kwargs) -> np.ndarray:
    animator = Animator(RATE, **kwargs)
    return np.concatenate(
        [animator.feed(pcm[i : i + 1000]) for i in range(0, len(pcm), 1000)] + [animator.finish()]
    )


@pytest.mark.parametrize("offset_ms", [-80.0, -12.5, 0.0, 17.3, 40.0, 120.0])
async def test_av_offset_shifts_the_motion_exactly(offset_ms):
    """With ``av_offset_ms`` the service's keyframes are those of the audio shifted by the
    offset, to the sample (sub-frame amounts included): the mouth lags (positive) or
    leads (negative) by exactly that much. Same frame count as without an offset."""
    pcm = _pcm.to_s16le(speech_like(3.0, RATE, seed=12))
    async with LocalService(realtime=False, av_offset_ms=offset_ms) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        await stream(ws, pcm, "o", chunk=1234)
        got = keyframes_of(await collect_until_end(ws, "o"))
        await ws.close()
    samples = round(offset_ms * RATE / 1000)
    np.testing.assert_array_equal(got, _animate(_shifted(pcm, samples)))
    assert got.shape[0] == expected_frames(len(pcm) // 2)


def test_offset_keyframes_do_not_depend_on_chunking():
    pcm = _pcm.to_s16le(speech_like(2.0, RATE, seed=3))
    for samples in (-1500, -7, 333, 2000):
        whole = Animator(RATE, offset_samples=samples)
        a = np.concatenate([whole.feed(pcm), whole.finish()])
        np.testing.assert_array_equal(a, _animate(pcm, offset_samples=samples))


async def test_a_leading_mouth_waits_for_the_audio_it_anticipates(speech_pcm):
    """Motion 80 ms ahead of the sound needs the sound 80 ms ahead: the keyframes leave
    that much later than without an offset (and never before their own audio)."""
    async with LocalService(realtime=True, latency_ms=40.0, av_offset_ms=-80.0) as svc:
        sent, arrival = await _paced(svc, speech_pcm[: 2 * RATE], 1280)
    # one 40 ms chunk per keyframe: keyframe k needs chunk k + 2 too (the last ones, the end)
    n = arrival.shape[0]
    anticipated = sent[np.minimum(np.arange(n) + 2, n - 1)]
    assert np.all(arrival - anticipated >= 0.040 - 0.001)
    assert np.median(arrival - sent) > 0.040 + 0.060  # later than its own audio alone allows


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(av_offset_ms=float("nan")), "av_offset_ms"),
        (dict(av_offset_ms=5000), "av_offset_ms"),
        (dict(net_delay_ms=-1), "net_delay_ms"),
        (dict(bandwidth_bps=0), "bandwidth_bps"),
    ],
)
def test_bad_condition_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LocalService(**kwargs)
