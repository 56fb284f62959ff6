"""Replay: a capture answers a client as the recorded service did, with its timing.

A real-time avatar_nb session is recorded through the proxy against a paced local
service with jitter; replayed by ``LocalService(replay=...)`` (and ``avatar-nb serve
--replay``) to the same client, each keyframe arrives as long after the chunk that
completed its frame as it did in the capture. The figure asserted is a generous
quantile (the machine may be loaded); the precise one is printed with ``-s``.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import avatar_nb as an
from avatar_nb import _pcm
from avatar_nb.audio import speech_like
from avatar_nb.server import LocalService
from avatar_nb.tap import Replay, read_capture

PCM = _pcm.to_s16le(speech_like(3.0, 16000, seed=9))


@pytest.fixture(autouse=True)
def _no_network(loopback_only):
    yield
    assert loopback_only == []


async def _stream(kwargs: dict, chunk_ms: float = 40) -> an.Timeline:
    session = an.new_avatar_session(**kwargs)
    async with session:
        await session.stream(PCM, chunk_ms=chunk_ms)  # real time, capture pacing
        await session.wait_for_end(timeout=30)
        await session.stream(PCM[:16000], chunk_ms=chunk_ms)
        await session.wait_for_end(timeout=30)
    return session.timeline


class _Process:
    """A command of the avatar-nb CLI in its own process (no GIL shared with the client),
    read until it says it is ready."""

    def __init__(self, *args: str, ready: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "avatar_nb", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ},
        )
        lines: list[str] = []
        while not any(ready in line for line in lines):
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(10)
                raise AssertionError("".join(lines))
            lines.append(line)
        self.text = "".join(lines)
        self.values = dict(re.findall(r"^\s+(\w+)\s+= (\S+)", self.text, re.MULTILINE))

    def session_kwargs(self) -> dict:
        keys = ("console_endpoint_url", "ingress_endpoint_url", "api_key", "app_id", "avatar_id")
        return {k: self.values[k] for k in keys}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A real-time session recorded by ``avatar-nb tap`` in front of ``avatar-nb serve``
    (130 ms latency, 25 ms jitter), each in its own process."""
    out = tmp_path_factory.mktemp("captures")
    service = _Process("serve", "--port", "0", "--latency-ms", "130", "--jitter-ms", "25", ready="press Ctrl-C")
    try:
        kwargs = service.session_kwargs()
        tap = _Process("tap", "--listen", "127.0.0.1:0", "--upstream-console", kwargs["console_endpoint_url"],
                       "--upstream-ingress", kwargs["ingress_endpoint_url"], "--out", str(out), ready="press Ctrl-C")
        try:
            kwargs.update(console_endpoint_url=tap.values["console_endpoint_url"],
                          ingress_endpoint_url=tap.values["ingress_endpoint_url"])
            asyncio.run(_stream(kwargs))
            for _ in range(100):
                paths = list(out.glob("*.anbcap"))
                if paths and read_capture(paths[0]).complete:
                    break
                time.sleep(0.05)
        finally:
            tap.stop()
    finally:
        service.stop()
    (path,) = out.glob("*.anbcap")
    return path


def _offsets_ms(replayed: an.Timeline, captured: an.Timeline) -> np.ndarray:
    """Per keyframe: its arrival after the chunk completing its frame, replayed minus recorded."""
    return np.abs(replayed.latency - captured.latency) * 1000


def _check_timing(replayed: an.Timeline, captured: an.Timeline, what: str) -> None:
    """A ratio, generous on a loaded machine: the median error is under half the error of
    a replay that kept only the median latency (what the recorded timing adds; the
    recorded jitter spreads latencies by about 12 ms). The precise figures are printed
    (``pytest -s``); on an idle machine the median error is a millisecond or two."""
    diff = _offsets_ms(replayed, captured)
    baseline = np.abs(captured.latency - np.median(captured.latency)) * 1000
    p50, p99 = np.percentile(diff, [50, 99])
    print(f"{what}: arrival offsets vs capture p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {diff.max():.2f} ms "
          f"(recorded latencies spread p50 {np.median(baseline):.1f} ms around their median)")
    assert p50 < np.median(baseline) / 2, f"p50 {p50:.2f} ms against {np.median(baseline):.2f} ms"


def test_replay_reproduces_arrival_offsets(recorded):
    captured = an.load_capture(recorded)
    with LocalService(replay=recorded) as svc:
        assert svc.app_id == captured.meta["app_id"] and svc.avatar_id == captured.meta["avatar_id"]
        replayed = asyncio.run(_stream(svc.session_kwargs()))
    np.testing.assert_array_equal(replayed.keyframes, captured.keyframes)
    assert list(replayed.requests["status"]) == ["complete", "complete"]
    assert replayed.errors == [] and replayed.anomalies.empty  # the request ids were mapped
    # the recorded latencies spread over tens of ms (jitter 25 ms): replay keeps each one
    assert np.ptp(captured.latency) > 0.03
    _check_timing(replayed, captured, "LocalService(replay=...)")


def test_replay_follows_the_audio_not_the_chunking(recorded):
    """Recorded with 40 ms chunks, replayed to a client sending 20 ms chunks: each
    keyframe still comes its recorded time after the chunk completing its frame."""
    captured = an.load_capture(recorded)
    with LocalService(replay=recorded) as svc:
        replayed = asyncio.run(_stream(svc.session_kwargs(), chunk_ms=20))
    np.testing.assert_array_equal(replayed.keyframes, captured.keyframes)
    assert len(replayed.chunk_samples) > 1.8 * len(captured.chunk_samples)
    _check_timing(replayed, captured, "replay to 20 ms chunks")


def test_replay_plan_anchors_keyframes_to_the_chunk_completing_their_frame(recorded):
    replay = Replay(recorded)
    items = [i for i in replay.items if i.close is None]
    assert items[0].anchor == 0  # the confirm answers the ClientConfigureSession
    anchors = [i.anchor for i in items[1:] if i.anchor > 0]
    assert anchors == sorted(anchors)
    # 130 ms of latency plus jitter: never less than the processing latency
    assert min(i.offset for i in items[1:4]) >= 0.12


def test_serve_replay_from_the_command_line(recorded):
    """``avatar-nb serve --replay``, in its own process, as a user runs it: the timing
    figure of the replay is measured here."""
    captured = an.load_capture(recorded)
    service = _Process("serve", "--port", "0", "--replay", str(recorded), ready="press Ctrl-C")
    try:
        assert service.values["avatar_id"] == captured.meta["avatar_id"]
        replayed = asyncio.run(_stream(service.session_kwargs()))
    finally:
        service.stop()
    np.testing.assert_array_equal(replayed.keyframes, captured.keyframes)
    assert list(replayed.requests["status"]) == ["complete", "complete"]
    _check_timing(replayed, captured, "serve --replay")


async def _record(tmp_path, svc: LocalService, body, **options):
    from avatar_nb.tap import TapProxy

    async with TapProxy(svc.console_url, svc.ingress_url, tmp_path) as tap:
        kwargs = svc.session_kwargs(console_endpoint_url=tap.console_url, ingress_endpoint_url=tap.ingress_url)
        session = an.new_avatar_session(**kwargs, **options)
        async with session:
            await body(session)
        for _ in range(100):
            if read_capture(tap.captures[0]).complete:
                break
            await asyncio.sleep(0.05)
    return tap.captures[0], session.timeline


async def _replay(path, body, **options) -> an.Timeline:
    with LocalService(replay=path) as svc:
        session = an.new_avatar_session(**svc.session_kwargs(), **options)
        async with session:
            await body(session)
    return session.timeline


async def test_replay_of_an_interrupted_session_with_playback_states(tmp_path):
    async def body(session):
        await session.stream(PCM[:16000], chunk_ms=40, pacing="fast", end=False)
        await session.interrupt()
        await session.wait_for_end(timeout=20)
        await session.stream(PCM[:8000], chunk_ms=40, pacing="fast")
        await session.wait_for_end(timeout=20)
        await asyncio.sleep(0.5)  # the playout's ENDED state

    with LocalService(realtime=True, latency_ms=10.0, playout=True) as svc:
        path, recorded = await _record(tmp_path, svc, body)
    replayed = await _replay(path, body)
    assert list(replayed.requests["status"]) == list(recorded.requests["status"]) == ["interrupted", "complete"]
    assert list(replayed.playback_states["state"]) == list(recorded.playback_states["state"])
    np.testing.assert_array_equal(replayed.keyframes, recorded.keyframes)
    assert replayed.anomalies.empty


async def test_replay_of_an_ogg_opus_session(tmp_path):
    async def body(session):
        await session.stream(PCM, chunk_ms=40, pacing="fast")
        await session.wait_for_end(timeout=20)

    with LocalService(realtime=False) as svc:
        path, recorded = await _record(tmp_path, svc, body, audio_format="ogg_opus")
    replayed = await _replay(path, body, audio_format="ogg_opus")
    np.testing.assert_array_equal(replayed.keyframes, recorded.keyframes)
    assert list(replayed.requests["status"]) == ["complete"]


async def test_replay_closes_as_the_service_did(tmp_path):
    async def body(session):
        await session.stream(PCM[:8000], chunk_ms=40, pacing="fast")
        await session.wait_for_end(timeout=20)
        for _ in range(100):
            if session.closed:
                return
            await asyncio.sleep(0.05)

    with LocalService(realtime=False, session_time_limit=1.0) as svc:
        path, _ = await _record(tmp_path, svc, body)
    assert read_capture(path).close_code == 4002
    replayed = await _replay(path, body)
    assert any("4002" in e or "session time limit" in e for e in replayed.errors)
