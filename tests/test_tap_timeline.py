"""load_capture: an avatar_nb session through the proxy, read back from its capture, is
the session's own Timeline: the same keyframes, requests (with statuses), audio,
playback states and errors, and latencies within a millisecond (the proxy's clock
instead of the client's: the two loopback hops are all that differs)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import avatar_nb as an
from avatar_nb import _pcm
from avatar_nb.audio import speech_like
from avatar_nb.server import LocalService
from avatar_nb.tap import TapProxy, read_capture

PCM = _pcm.to_s16le(speech_like(2.0, 16000, seed=5))


@pytest.fixture(autouse=True)
def _no_network(loopback_only):
    yield
    assert loopback_only == []


async def _finished(tap: TapProxy) -> None:
    for _ in range(200):
        if tap.captures and all(read_capture(p).complete for p in tap.captures):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the proxy did not finish its capture")


async def _session_through(svc: LocalService, tmp_path, body, **options):
    async with TapProxy(svc.console_url, svc.ingress_url, tmp_path) as tap:
        kwargs = svc.session_kwargs(console_endpoint_url=tap.console_url, ingress_endpoint_url=tap.ingress_url)
        session = an.new_avatar_session(**kwargs, **options)
        async with session:
            await body(session)
        await _finished(tap)
    (path,) = tap.captures
    return session.timeline, an.load_capture(path)


def _same_requests(mine, theirs) -> None:
    a, b = mine.requests, theirs.requests
    assert list(a["req_id"]) == list(b["req_id"])
    assert list(a["status"]) == list(b["status"])
    assert list(mine.request_history["status"]) == list(theirs.request_history["status"])


async def test_realtime_session_equals_its_capture(tmp_path):
    async def body(session):
        await session.stream(PCM, chunk_ms=40)  # capture pacing, in real time
        await session.wait_for_end(timeout=20)
        await session.stream(PCM[: len(PCM) // 2], chunk_ms=40)
        await session.wait_for_end(timeout=20)

    with LocalService(realtime=True, latency_ms=80.0, jitter_ms=10.0) as svc:
        mine, captured = await _session_through(svc, tmp_path, body)
    assert captured.n_keyframes == mine.n_keyframes > 0
    np.testing.assert_array_equal(captured.keyframes, mine.keyframes)
    np.testing.assert_array_equal(captured.audio, mine.audio)
    np.testing.assert_array_equal(captured.chunk_samples, mine.chunk_samples)
    np.testing.assert_array_equal(captured.message_keyframes, mine.message_keyframes)
    np.testing.assert_array_equal(captured.message_end, mine.message_end)
    _same_requests(mine, captured)
    assert captured.errors == mine.errors == []
    assert captured.fps == mine.fps and captured.sample_rate == mine.sample_rate
    # latencies: the proxy reads each chunk after the client sent it and each keyframe
    # before the client gets it, so the capture's are a little shorter, within 1 ms
    diff = (mine.latency - captured.latency) * 1000
    assert np.median(np.abs(diff)) < 1.0, f"median {np.median(np.abs(diff)):.3f} ms"
    assert np.mean(np.abs(diff) < 1.0) >= 0.8, f"p80 {np.percentile(np.abs(diff), 80):.3f} ms"
    assert captured.meta["source"] == "capture" and captured.meta["connection_id"]


async def test_interrupt_and_playback_states_equal_the_sessions(tmp_path):
    async def body(session):
        await session.stream(PCM[: len(PCM) // 4], chunk_ms=40, pacing="fast", end=False)
        await session.interrupt()
        await session.wait_for_end(timeout=20)
        await session.stream(PCM[: len(PCM) // 4], chunk_ms=40, pacing="fast")
        await session.wait_for_end(timeout=20)
        await asyncio.sleep(0.6)  # the playout's ENDED state

    with LocalService(realtime=True, latency_ms=10.0, playout=True) as svc:
        mine, captured = await _session_through(svc, tmp_path, body)
    _same_requests(mine, captured)
    assert "interrupted" in set(captured.requests["status"])
    a, b = mine.playback_states, captured.playback_states
    assert len(a) == len(b) > 0
    assert list(a["state"]) == list(b["state"]) and list(a["req_id"]) == list(b["req_id"])
    np.testing.assert_array_equal(captured.keyframes, mine.keyframes)


async def test_ogg_opus_session_audio_is_decoded(tmp_path):
    async def body(session):
        await session.stream(PCM, chunk_ms=40, pacing="fast")
        await session.wait_for_end(timeout=20)

    with LocalService(realtime=False) as svc:
        mine, captured = await _session_through(svc, tmp_path, body, audio_format="ogg_opus")
    np.testing.assert_array_equal(captured.keyframes, mine.keyframes)
    _same_requests(mine, captured)
    assert captured.meta["audio_format"] == "ogg_opus"
    # the audio is what the service decoded: as long as what was encoded, give or take a frame
    assert abs(len(captured.audio) - len(mine.audio)) <= 960
    assert np.corrcoef(captured.audio[: len(mine.audio)].astype(float)[2000:20000],
                       mine.audio[: len(captured.audio)].astype(float)[2000:20000])[0, 1] > 0.5


def test_load_capture_on_a_folder_and_the_dataset(tmp_path):
    async def body(session):
        await session.stream(PCM[:16000], chunk_ms=40, pacing="fast")
        await session.wait_for_end(timeout=20)

    out = tmp_path / "caps"
    with LocalService(realtime=False, app_id="app-prod", avatar_ids=["face-1"]) as svc:
        for _ in range(2):
            asyncio.run(_session_through(svc, out, body))
    timelines = an.load_capture(out)
    assert len(timelines) == 2 and all(t.n_keyframes == 13 for t in timelines)
    result = an.sweep(captures=out, out=tmp_path / "ds")
    runs = an.load_results(tmp_path / "ds").runs
    assert len(runs) == 2 and set(runs["status"]) == {"ok"}
    assert set(runs["app"]) == {"app-prod"} and set(runs["avatar"]) == {"face-1"}
    assert set(runs["sample_rate"]) == {16000} and set(runs["audio_format"]) == {"pcm_s16le"}
    assert len(an.load_results(tmp_path / "ds").keyframes()) == 26
    assert len(result.runs) == 2
