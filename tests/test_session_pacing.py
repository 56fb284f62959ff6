"""stream() paces chunks as asked and records how; sessions keep the audio they send;
bad chunk sizes and oversized chunks are refused before anything is sent."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avatar_nb import LocalService, _pcm, new_avatar_session
from avatar_nb.audio import speech_like
from avatar_nb.pacing import DEFAULT_PACING, PACING_MODES, send_offset
from avatar_nb.protocol import MAX_AUDIO_CHUNK_BYTES

CHUNK_S = 0.04
PCM = _pcm.to_s16le(speech_like(0.4, 16000, seed=3))  # ten 40 ms chunks
N_CHUNKS = 10


async def paced_run(svc, **stream_kwargs):
    async with new_avatar_session(**svc.session_kwargs()) as session:
        req = await session.stream(PCM, chunk_ms=40, **stream_kwargs)
        await session.wait_for_end(req, timeout=10)
    return session.timeline


async def test_capture_sends_each_chunk_once_its_audio_is_captured(service):
    tl = await paced_run(service, pacing="capture")
    sent = tl.chunk_sent_at
    assert sent.shape == (N_CHUNKS,)
    # chunk i leaves (i + 1) * 40 ms after the stream started (the timeline's origin)
    assert np.all(sent >= (np.arange(N_CHUNKS) + 1) * CHUNK_S - 1e-3)
    assert (tl.meta["pacing"], tl.meta["chunk_ms"]) == ("capture", 40.0)


async def test_playback_sends_each_chunk_when_its_audio_starts(service):
    tl = await paced_run(service, pacing="playback")
    sent = tl.chunk_sent_at
    assert np.all(sent >= np.arange(N_CHUNKS) * CHUNK_S - 1e-3)
    assert sent[0] < sent[1] and tl.meta["pacing"] == "playback"


async def test_fast_is_unpaced_and_the_realtime_flag_still_works(service):
    capture = await paced_run(service, pacing="capture")
    fast = await paced_run(service, realtime=False)
    assert fast.meta["pacing"] == "fast"
    # the unpaced run sends its ten chunks in a fraction of the paced run's time
    assert fast.chunk_sent_at[-1] < capture.chunk_sent_at[-1] / 2
    default = await paced_run(service, realtime=True)
    assert default.meta["pacing"] == DEFAULT_PACING
    explicit = await paced_run(service, realtime=False, pacing="playback")  # pacing wins
    assert explicit.meta["pacing"] == "playback"


def test_send_offsets_follow_each_mode():
    # chunk 2 of 640 samples at 16 kHz: its audio runs from 80 ms to 120 ms
    assert send_offset("capture", 1280, 640, 16000) == pytest.approx(0.12)
    assert send_offset("playback", 1280, 640, 16000) == pytest.approx(0.08)
    assert send_offset("fast", 1280, 640, 16000) is None
    assert PACING_MODES == ("capture", "playback", "fast")


async def test_mixed_pacing_is_recorded_as_no_single_mode(service):
    async with new_avatar_session(**service.session_kwargs()) as session:
        await session.stream(PCM, pacing="fast")
        assert session.timeline.meta["pacing"] == "fast"
        req = await session.stream(PCM, pacing="fast", chunk_ms=20)
        assert session.timeline.meta["chunk_ms"] is None  # two chunk sizes
        await session.stream(PCM, pacing="playback")
        await session.wait_for_end(req, timeout=10)
        assert session.timeline.meta["pacing"] is None


async def test_the_timeline_holds_the_audio_sent(service):
    expected = np.frombuffer(PCM, "<i2")
    async with new_avatar_session(**service.session_kwargs()) as session:
        req = await session.stream(PCM, pacing="fast")
        await session.wait_for_end(req, timeout=10)
    np.testing.assert_array_equal(session.timeline.audio, expected)
    async with new_avatar_session(**service.session_kwargs()) as session:
        for i in range(0, len(PCM), 1000):
            req = await session.send_audio(memoryview(PCM)[i : i + 1000], end=i + 1000 >= len(PCM))
        await session.wait_for_end(req, timeout=10)
    tl = session.timeline
    np.testing.assert_array_equal(tl.audio, expected)
    assert tl.chunk_sent_at[0] == 0.0 and "pacing" not in tl.meta  # send_audio records no pacing


@pytest.mark.parametrize("chunk_ms", [math.inf, math.nan, True, 0, -40, "40", None, 1e12])
async def test_bad_chunk_ms_is_refused_before_anything_is_sent(chunk_ms):
    async with LocalService(realtime=False) as svc:
        async with new_avatar_session(**svc.session_kwargs()) as session:
            before = svc.stats["messages_in"]
            with pytest.raises(ValueError, match="chunk_ms"):
                await session.stream(PCM, chunk_ms=chunk_ms)
            assert session.current_req_id is None and session.timeline.chunk_samples.size == 0
            assert svc.stats["messages_in"] == before


async def test_oversized_and_strided_audio_is_refused_before_anything_is_sent():
    async with LocalService(realtime=False) as svc:
        async with new_avatar_session(**svc.session_kwargs()) as session:
            before = svc.stats["messages_in"]
            with pytest.raises(ValueError, match=f"audio has {17 * 1024 * 1024} bytes, above the {MAX_AUDIO_CHUNK_BYTES}"):
                await session.send_audio(bytes(17 * 1024 * 1024))
            with pytest.raises(TypeError, match="audio is a non-contiguous memoryview"):
                await session.send_audio(memoryview(PCM)[::2])
            with pytest.raises(TypeError, match="pcm is a non-contiguous memoryview"):
                await session.stream(memoryview(PCM)[::2])
            with pytest.raises(ValueError, match="unknown pacing 'warp'"):
                await session.stream(PCM, pacing="warp")
            assert session.current_req_id is None and svc.stats["messages_in"] == before
            # the largest chunk that fits is sent, and the service takes it
            req = await session.send_audio(bytes(MAX_AUDIO_CHUNK_BYTES), end=True)
            await session.wait_for_end(req, timeout=60)
            assert session.timeline.chunk_samples.tolist() == [MAX_AUDIO_CHUNK_BYTES // 2]


async def test_time_origin_set_before_streaming_counts_times_from_it(service, speech_pcm):
    import time

    from avatar_nb import InvalidStateError, new_avatar_session

    session = new_avatar_session(**service.session_kwargs())
    async with session:
        assert session.time_origin is None
        origin = time.monotonic() - 0.5  # capture started half a second before the first send
        session.set_time_origin(origin)
        req = await session.send_audio(speech_pcm[:1280], end=True)
        await session.wait_for_end(req, timeout=10)
        assert session.time_origin == origin
        assert session.timeline.chunk_sent_at[0] >= 0.5
        with pytest.raises(InvalidStateError, match="before any audio"):
            session.set_time_origin(time.monotonic())
