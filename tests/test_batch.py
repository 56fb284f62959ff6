"""avatar_nb.batch: clips x settings over one service, failures as rows, files after streaming."""

from __future__ import annotations

import asyncio
import csv
import statistics

import numpy as np
import pytest

from avatar_nb import LocalService, Timeline, batch
from avatar_nb.audio import speech_like, write_wav
from avatar_nb.batch import FIGURE, NPZ, BadInput, Clip, RunSettings, run_batch, run_clip
from avatar_nb.experiments import Output


def _wavs(tmp_path, n: int, seconds: float = 0.4) -> list:
    return [write_wav(tmp_path / f"c{i}.wav", speech_like(seconds, 16000, seed=i), 16000) for i in range(n)]


async def test_clips_times_settings_in_input_order(tmp_path, service):
    a, b = _wavs(tmp_path, 2)
    stereo = np.stack([speech_like(0.5, 22050), speech_like(0.5, 22050, seed=4)], axis=1)
    settings = [RunSettings(pacing="fast"), RunSettings(pacing="fast", chunk_ms=100, sample_rate=8000)]
    results = await run_batch([a, (stereo, 22050), b], settings, service=service, progress=False)
    assert [(r.clip.name, r.settings.chunk_ms) for r in results] == [
        ("c0", 40.0), ("c0", 100.0), ("clip_1", 40.0), ("clip_1", 100.0), ("c1", 40.0), ("c1", 100.0),
    ]
    assert all(r.status == "ok" and r.timeline.complete for r in results)
    rows = [r.row() for r in results]
    assert rows[1]["sample_rate"] == 8000 and rows[1]["chunk_ms"] == 100.0 and rows[1]["pacing"] == "fast"
    assert results[1].timeline.sample_rate == 8000 and results[1].timeline.chunk_samples[0] == 800
    assert rows[2]["source"] == "<array 1>" and rows[2]["source_rate"] == 22050 and rows[2]["source_channels"] == 2
    assert rows[2]["clip_seconds"] == pytest.approx(0.5)
    assert rows[0]["source_rate"] == 16000 and rows[0]["source_channels"] == 1
    assert rows[0]["service"] == "local" and rows[0]["latency_ms"] == 80.0
    assert rows[0]["lateness_p99"] is None and rows[0]["latency_p99"] is not None  # fast pacing
    assert results[2].timeline.meta["clip"] == "clip_1"


async def test_a_failing_clip_is_a_row_not_an_exception(tmp_path, service):
    good = _wavs(tmp_path, 1)[0]
    (tmp_path / "garbage.wav").write_bytes(b"not audio at all")
    seen = []
    results = await run_batch(
        [tmp_path / "garbage.wav", good], RunSettings(pacing="fast"), service=service, progress=False,
        on_result=seen.append,
    )
    assert [r.status for r in results] == ["failed", "ok"]
    assert results[0].bad_input and "garbage.wav: not a WAV file" in results[0].error
    assert results[0].row()["error"] == results[0].error and results[0].row()["keyframes"] is None
    assert len(seen) == 2


async def test_a_refused_session_keeps_its_partial_timeline(tmp_path):
    async with LocalService(realtime=True, latency_ms=10, session_time_limit=0.3) as svc:
        results = await run_batch(
            [(speech_like(2.0, 16000), 16000)], RunSettings(pacing="playback"), service=svc, progress=False
        )
    (result,) = results
    assert result.status == "failed" and not result.bad_input
    assert result.timeline is not None and 0 < result.timeline.n_keyframes


def test_bad_settings_and_inputs_are_refused_when_made(tmp_path):
    with pytest.raises(ValueError, match="unknown pacing 'slow'"):
        RunSettings(pacing="slow")
    with pytest.raises(ValueError, match="chunk_ms must be a finite positive number of milliseconds, got nan"):
        RunSettings(chunk_ms=float("nan"))
    with pytest.raises(ValueError, match="unsupported sample_rate 12345"):
        RunSettings(sample_rate=12345)
    with pytest.raises(BadInput, match="no such file or directory"):
        batch.as_clips([tmp_path / "missing.wav"])
    with pytest.raises(TypeError, match=r"accepted: a path, a folder, a glob pattern, an \(array, sample_rate\) pair"):
        batch.as_clips([42])
    names = [c.name for c in batch.as_clips([(np.zeros(10), 8000), Clip("x", "x"), Clip("x", "y")])]
    assert names == ["clip_0", "x", "x_2"]


async def test_at_most_concurrency_sessions_over_one_service(tmp_path, service, monkeypatch):
    paths = _wavs(tmp_path, 5, 0.3)
    from avatar_nb.experiments import engine  # the run engine batches use

    real_stream = engine.stream_clip
    in_flight, peak, handles = 0, 0, []
    two_running = asyncio.Event()

    async def counting_stream(handle, *args, **kwargs):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        handles.append(handle)
        if in_flight == 2:
            two_running.set()
        try:
            if len(handles) <= 2:  # the first two clips wait for each other: two run at once
                await asyncio.wait_for(two_running.wait(), timeout=30)
            return await real_stream(handle, *args, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(engine, "stream_clip", counting_stream)
    results = await run_batch(paths, RunSettings(pacing="fast"), concurrency=2, progress=False)
    assert [r.status for r in results] == ["ok"] * 5
    assert peak == 2
    # one embedded service, opened once by open_service, for every clip
    assert len(handles) == 5 and handles[0].source == "embedded" and all(h is handles[0] for h in handles)


async def test_files_are_written_after_every_session_ended(tmp_path, service):
    events: list[tuple[str, str]] = []

    def note(result, stem):
        # nothing streams any more when a file is written
        events.append(("write", result.clip.name))
        assert service.stats["sessions_active"] == 0
        path = stem.parent / f"{stem.name}.txt"
        path.write_text(str(result.timeline.n_keyframes))
        return path

    def broken(result, stem):
        raise OSError("disk full")

    writers = [NPZ, Output("txt", note), Output("bad", broken)]
    results = await run_batch(
        _wavs(tmp_path, 3), RunSettings(pacing="fast"), service=service, out=tmp_path / "out", writers=writers,
        progress=False, on_result=lambda r: events.append(("streamed", r.clip.name)),
    )
    kinds = [kind for kind, _ in events]
    assert kinds == ["streamed"] * 3 + ["write"] * 3
    for r in results:
        assert Timeline.load(r.outputs["npz"]).n_keyframes == r.timeline.n_keyframes
        assert r.outputs["txt"].endswith(f"{r.clip.name}.txt")
        assert r.status == "failed" and r.error == "writing bad: disk full"  # the other files are there
    path = batch.write_summary_csv(results, tmp_path / "out" / "summary.csv", [w.kind for w in writers])
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["clip"] for r in rows] == ["c0", "c1", "c2"] and rows[0]["bad"] == ""


async def test_several_settings_of_one_clip_get_their_own_files(tmp_path, service):
    settings = [RunSettings(pacing="fast", chunk_ms=ms) for ms in (40, 80)]
    results = await run_batch(_wavs(tmp_path, 1), settings, service=service, out=tmp_path / "o", writers=[NPZ],
                              progress=False)
    assert [r.outputs["npz"].rsplit("/", 1)[1] for r in results] == ["c0_s0.npz", "c0_s1.npz"]


async def test_run_clip_is_the_unit_of_a_sweep(tmp_path, service):
    from avatar_nb.endpoints import open_service

    (clip,) = batch.as_clips(_wavs(tmp_path, 1))
    async with open_service(service, sample_rate=16000) as handle:
        result = await run_clip(handle, clip, RunSettings(pacing="fast", chunk_ms=80))
    assert result.status == "ok" and result.timeline.meta["chunk_ms"] == 80.0
    row = result.row()
    assert row["clip"] == "c0" and row["keyframes"] == result.timeline.n_keyframes
    assert row["pacing"] == "fast" and row["complete"] is True


def _summary_row_columns():
    row = batch.ClipResult(Clip("c", "c"), RunSettings()).row(["npz", "png"])
    return list(row)


def test_rows_carry_every_setting_and_both_percentile_families():
    columns = _summary_row_columns()
    for name in (
        "pacing", "chunk_ms", "sample_rate", "latency_ms", "jitter_ms", "source_rate",
        "source_channels", "clip_seconds", "latency_p50", "latency_p99", "lateness_p50", "lateness_p99",
        "first_frame_latency", "jitter", "real_time_factor", "npz", "png",
        "started_at", "wall_seconds", "worker",
    ):
        assert name in columns, name
    assert not [c for c in columns if c.endswith("_ms") and c not in ("chunk_ms", "latency_ms", "jitter_ms")]


async def test_figures_do_not_change_the_timing_they_describe(tmp_path):
    """A batch drawing figures and one without give the same latency figures, within a
    tolerance derived from the service's own jitter and the spread of the run without
    figures. Clips of different lengths, so that short clips end while long ones still
    stream: figures drawn beside those (the old behaviour) tripled the median p99 here."""
    jitter_ms = 10.0
    paths = [write_wav(tmp_path / f"s{i}.wav", speech_like(0.5 + 0.5 * i, 16000, seed=i), 16000) for i in range(6)]
    medians, spreads = {}, []
    for label, writers in (("figures", [NPZ, FIGURE]), ("none", [NPZ])):
        async with LocalService(realtime=True, latency_ms=40, jitter_ms=jitter_ms) as svc:
            results = await run_batch(paths, RunSettings(pacing="playback"), service=svc, concurrency=3,
                                      out=tmp_path / label, writers=writers, progress=False)
        assert all(r.status == "ok" for r in results), [r.error for r in results]
        if label == "figures":
            assert all(r.outputs["png"].endswith(".png") for r in results)
        else:
            spreads = [float(np.nanstd(r.timeline.latency)) for r in results]
        medians[label] = statistics.median(r.row()["latency_p99"] for r in results)
    tolerance = jitter_ms / 1000.0 + 3 * statistics.median(spreads)
    assert abs(medians["figures"] - medians["none"]) <= tolerance, (medians, tolerance)
