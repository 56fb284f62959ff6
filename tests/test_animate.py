"""animate() and animate_sync(): audio in, Timeline out, against real services on loopback."""

from __future__ import annotations

import os

import numpy as np

import pytest

from avatar_nb import (
    AnimationTimeout,
    AvatarSDKError,
    AvatarSDKErrorCode,
    LocalService,
    Timeline,
    _pcm,
    animate,
    animate_sync,
)
from avatar_nb.audio import speech_like
from avatar_nb.endpoints import ENV_VARS

from .helpers import expected_frames


@pytest.fixture
def no_env(monkeypatch):
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)


async def test_animate_with_a_service(service):
    tl = await animate(speech_like(1.5, 22050), 22050, service=service, realtime=False)
    assert isinstance(tl, Timeline) and tl.complete
    assert tl.n_keyframes == expected_frames(24000)
    assert tl.audio.shape[0] == 24000 and tl.sample_rate == 16000
    assert tl.meta["service"] == "local" and tl.meta["connection_id"].startswith("conn-")


async def test_animate_from_environment(service, monkeypatch):
    for key, var in ENV_VARS.items():
        monkeypatch.setenv(var, service.session_kwargs()[key])
    before = service.stats["sessions_total"]
    tl = await animate(_pcm.to_s16le(speech_like(0.5, 16000)), realtime=False)
    assert tl.complete and service.stats["sessions_total"] == before + 1


async def test_animate_embedded_service_by_default(monkeypatch):
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    tl = await animate(speech_like(0.5, 8000), 8000, realtime=False, target_rate=8000)
    assert tl.complete and tl.sample_rate == 8000 and tl.n_keyframes == 13


async def test_animate_timeout_returns_partial_timeline():
    async with LocalService(realtime=True, latency_ms=5000) as svc:
        with pytest.raises(AnimationTimeout) as info:
            await animate(speech_like(0.4), 16000, service=svc, realtime=False, timeout=0.2)
        tl = info.value.timeline
        assert tl.chunk_samples.sum() == 6400 and not tl.complete


async def test_animate_fills_a_given_timeline(service):
    watched = Timeline()
    tl = await animate(speech_like(0.4), 16000, service=service, realtime=False, timeline=watched)
    assert tl is watched and watched.n_keyframes == 10


async def test_animate_argument_errors(service):
    with pytest.raises(ValueError, match="unsupported target_rate 12345"):
        await animate(speech_like(0.4), 16000, service=service, target_rate=12345)
    with pytest.raises(TypeError, match="unknown session option 'sample_rat'"):
        await animate(speech_like(0.4), 16000, service=service, sample_rat=8000)
    with pytest.raises(ValueError, match="needs its sample_rate"):
        await animate(speech_like(0.4), service=service)


async def test_animate_sync_inside_a_running_loop(service):
    tl = animate_sync(speech_like(0.4), 16000, service=service, realtime=False)
    assert tl.complete and tl.n_keyframes == 10


def test_animate_sync_without_a_loop(service):
    tl = animate_sync(speech_like(0.4), 16000, service=service, realtime=False)
    assert tl.complete


async def test_animate_sync_refuses_to_block_the_loop_that_serves_its_service():
    # the service answers on this thread's loop, which animate_sync would block
    async with LocalService(realtime=False) as svc:
        with pytest.raises(RuntimeError, match=r"animate_sync\(\) would block .*`await animate\(\.\.\.\)`"):
            animate_sync(speech_like(0.4), 16000, service=svc)
        assert svc.running


def test_no_environment_leaks_into_other_tests():
    assert not any(os.environ.get(v) for v in ENV_VARS.values())


async def test_animate_paced_run_is_realtime(realtime_service):
    tl = await animate(speech_like(0.6), 16000, service=realtime_service, realtime=True)
    assert tl.complete and tl.meta["pacing"] == "capture"  # the default
    # chunks left on the audio clock, not in a burst: the last one 560 ms after the first
    assert tl.chunk_sent_at[-1] >= 0.56 - 0.002
    assert tl.first_frame_latency >= 0.08  # the service's processing latency


async def test_dropped_session_hands_back_what_arrived():
    """The service ends the session (4002) while the clip is still streaming."""
    async with LocalService(realtime=True, latency_ms=10, session_time_limit=0.5) as svc:
        with pytest.raises(AvatarSDKError) as info:
            await animate(speech_like(3.0), 16000, service=svc, realtime=True)
    err = info.value
    assert err.code is AvatarSDKErrorCode.sessionDurationExceeded
    tl = err.timeline
    assert isinstance(tl, Timeline) and not tl.complete
    assert 0 < tl.chunk_samples.sum() < 48000 and tl.n_keyframes > 0
    assert tl.errors


async def test_partial_environment_names_the_missing_variables(service, monkeypatch, no_env):
    monkeypatch.setenv("AVATAR_NB_CONSOLE_URL", service.console_url)
    monkeypatch.setenv("AVATAR_NB_INGRESS_URL", service.ingress_url)
    before = service.stats["sessions_total"]
    with pytest.raises(ValueError, match=r"missing avatar_id, api_key, app_id.*AVATAR_NB_API_KEY \(api_key\)"):
        await animate(speech_like(0.2), 16000, realtime=False)
    assert service.stats["sessions_total"] == before  # refused before connecting


async def test_animate_sync_refuses_a_service_served_by_the_blocked_loop():
    async with LocalService(realtime=False) as svc:
        with pytest.raises(RuntimeError, match="use `await animate"):
            animate_sync(speech_like(0.2), 16000, service=svc)
        # and the asynchronous form works with the same service
        tl = await animate(speech_like(0.2), 16000, service=svc, realtime=False)
        assert tl.complete


@pytest.mark.parametrize("chunk_ms", [0, -40, float("nan"), float("inf"), True, "40", None])
async def test_bad_chunk_ms_is_refused_before_any_session(service, chunk_ms):
    before = service.stats["sessions_total"]
    with pytest.raises(ValueError, match=r"chunk_ms must be a .*positive number of milliseconds, got"):
        await animate(speech_like(0.2), 16000, service=service, chunk_ms=chunk_ms)
    assert service.stats["sessions_total"] == before


async def test_bad_pacing_is_refused_before_any_session(service):
    before = service.stats["sessions_total"]
    with pytest.raises(ValueError, match="unknown pacing 'slow'; accepted: 'capture', 'playback', 'fast'"):
        await animate(speech_like(0.2), 16000, service=service, pacing="slow")
    assert service.stats["sessions_total"] == before


async def test_run_settings_are_recorded(no_env):
    async with LocalService(realtime=False, latency_ms=30, jitter_ms=2) as svc:
        tl = await animate(speech_like(0.4), 16000, service=svc, pacing="fast", chunk_ms=100, target_rate=16000)
    assert tl.meta["pacing"] == "fast" and tl.meta["chunk_ms"] == 100.0 and tl.meta["sample_rate"] == 16000
    assert tl.meta["service"] == "local"
    assert tl.meta["service_latency_ms"] == 30.0 and tl.meta["service_jitter_ms"] == 2.0
    assert tl.meta["service_realtime"] is False
    # fast pacing: no lateness, but a latency for every keyframe
    assert np.isnan(tl.lateness).all() and np.isfinite(tl.latency).all()
    assert tl.summary()["lateness_p99"] is None


async def test_embedded_service_is_realtime_unless_fast(no_env):
    tl = await animate(speech_like(0.2), 16000, pacing="fast")
    assert tl.meta["service_realtime"] is False and tl.meta["pacing"] == "fast"
    tl = await animate(speech_like(0.2), 16000, pacing="playback")
    assert tl.meta["service_realtime"] is True and tl.meta["pacing"] == "playback"
    # the realtime service holds each keyframe back by its latency after its audio
    assert np.nanmin(tl.latency) >= tl.meta["service_latency_ms"] / 1000 - 0.005


async def test_realtime_false_is_fast_pacing(service):
    tl = await animate(speech_like(0.2), 16000, service=service, realtime=False)
    assert tl.meta["pacing"] == "fast"


@pytest.mark.parametrize("latency_ms", [0.0, 40.0])
async def test_capture_pacing_is_never_early(latency_ms):
    """Under capture pacing a frame's audio leaves only once it was captured, so no keyframe
    arrives before it is due, whatever the service's (non-negative) latency."""
    async with LocalService(realtime=True, latency_ms=latency_ms) as svc:
        tl = await animate(speech_like(0.8), 16000, service=svc, pacing="capture", chunk_ms=100)
    assert tl.complete and tl.meta["pacing"] == "capture"
    assert (tl.lateness >= 0).all(), tl.lateness.min()
    assert (tl.latency >= latency_ms / 1000 - 0.002).all()
    # the sent audio is attached by the session: every figure has its waveform
    assert tl.audio is not None and tl.audio.shape[0] == 12800


async def test_a_chunk_too_large_for_one_message_is_refused_before_any_session(service):
    before = service.stats["sessions_total"]
    with pytest.raises(ValueError, match=r"chunk_ms=1000000 makes chunks of 32000000 bytes.*use at most \d+ ms"):
        await animate(speech_like(0.2), 16000, service=service, chunk_ms=1_000_000)
    assert service.stats["sessions_total"] == before
