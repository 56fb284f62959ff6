"""sweep(): one row per (clip, condition, repeat), ground truth recovered, resume, failures as rows."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import avatar_nb
from avatar_nb import load_results, sweep
from avatar_nb.analysis import av_offset
from avatar_nb.audio import speech_like, write_wav
from avatar_nb.dataset import finished_runs
from avatar_nb.sweeps import RunSpec, collect_clips, plan

RATE = 16000


def clips(n: int = 2, seconds: float = 0.6) -> dict[str, tuple[np.ndarray, int]]:
    return {f"speech{i}": (speech_like(seconds, RATE, seed=i), RATE) for i in range(n)}


def test_one_row_per_clip_condition_and_repeat():
    res = sweep(
        clips(2),
        grid={"chunk_ms": [20, 40], "sample_rate": [16000, 24000]},
        repeats=2,
        pacing="fast",
        progress=False,
    )
    runs = res.runs
    assert len(runs) == 2 * 2 * 2 * 2
    assert runs.groupby(["clip", "chunk_ms", "sample_rate", "repeat"]).size().eq(1).all()
    # one identifying column (run_id), in the plan's order: clips, then the grid, then repeats
    assert "run" not in runs.columns and runs["run_id"].is_unique
    assert list(runs["clip"]) == ["speech0"] * 8 + ["speech1"] * 8
    assert list(runs["repeat"]) == [0, 1] * 8
    assert str(runs["started_at"].dtype) == "datetime64[us, UTC]"
    assert set(runs["status"]) == {"ok"} and set(runs["error"]) == {""}
    assert set(runs["pacing"]) == {"fast"}
    # every summary figure is a column, in seconds
    for column in (
        "keyframes",
        "latency_p50",
        "latency_p99",
        "first_frame_latency",
        "jitter",
        "clip_seconds",
        "worker",
    ):
        assert column in runs.columns
    assert (runs["keyframes"] == 15).all()  # 0.6 s at 25 fps
    # keyframes of every run, read when asked
    table = res.keyframes(columns=["latency", "jaw_open"], with_runs=["chunk_ms"])
    assert len(table) == runs["keyframes"].sum()
    assert set(table["run_id"]) == set(runs["run_id"])
    assert list(table.columns) == ["run_id", "latency", "jaw_open", "chunk_ms"]
    by_run = table.groupby("run_id", observed=True)["chunk_ms"].first()
    assert by_run.to_dict() == runs.set_index("run_id")["chunk_ms"].to_dict()
    early = res.keyframes(
        columns=["latency"], filters=[("frame", "<", 2)], with_runs=["sample_rate"]
    )
    assert list(early.columns) == ["run_id", "latency", "sample_rate"] and len(early) == 2 * len(
        runs
    )
    # the sample rate reached the session
    for run_id, rate in zip(runs["run_id"], runs["sample_rate"]):
        assert res.timelines[run_id].sample_rate == rate


def test_service_latency_is_recovered_at_the_median():
    # latency 0 measures what the client and loopback add themselves (about a millisecond:
    # timer wake-ups, socket, decoding); each service latency is recovered on top of it
    res = sweep(
        clips(1, seconds=1.2),
        grid={"latency_ms": [0, 40, 80, 160]},
        pacing="capture",
        concurrency=1,
        progress=False,
    )
    runs = res.runs.set_index("latency_ms")
    assert set(runs["status"]) == {"ok"}
    table = res.keyframes(columns=["latency"], with_runs=["latency_ms"])
    medians = table.groupby("latency_ms")["latency"].median()
    own = medians[0]
    assert 0 <= own < 0.010, medians
    for latency_ms in (40, 80, 160):
        assert abs(medians[latency_ms] - own - latency_ms / 1000) < 0.002, medians
        assert runs.loc[latency_ms, "latency_p50"] == pytest.approx(medians[latency_ms], abs=1e-6)
        assert "service_latency_ms" not in runs.columns  # one column for one value
    # one service per configuration: each run saw its own service's latency
    assert runs["service"].eq("local").all()


def test_service_av_offset_is_recovered():
    offsets = [-80, 0, 40, 120]
    res = sweep(
        clips(1, seconds=4.0), grid={"av_offset_ms": offsets}, pacing="fast", progress=False
    )
    assert set(res.runs["status"]) == {"ok"}, res.runs["error"].tolist()
    for run_id, offset in zip(res.runs["run_id"], res.runs["av_offset_ms"]):
        found = av_offset(res.timelines[run_id])
        assert abs(found.lag - offset / 1000) < 0.010, (offset, found)


def test_resume_runs_only_what_is_missing(tmp_path):
    out = tmp_path / "study"
    grid = {"chunk_ms": [20, 40]}
    first = sweep(clips(2), grid=grid, repeats=2, pacing="fast", out=out, progress=False)
    assert len(first.runs) == 8 and set(first.runs["status"]) == {"ok"}
    pd.testing.assert_frame_equal(
        first.runs.sort_values("run_id", ignore_index=True),
        load_results(out).runs.sort_values("run_id", ignore_index=True),
    )
    # a sweep killed before two of its runs were committed: no runs file names them (their
    # keyframes may be on disk, as rows no runs file points at)
    lost = list(first.runs["run_id"][[1, 6]])
    for path in (out / "runs").glob("*.json"):
        document = json.loads(path.read_text())
        document["rows"] = [r for r in document["rows"] if r["run_id"] not in lost]
        for run_id in lost:
            document["keyframes"].pop(run_id, None)
        path.write_text(json.dumps(document))
    assert finished_runs(out) == set(first.runs["run_id"]) - set(lost)
    again = sweep(clips(2), grid=grid, repeats=2, pacing="fast", out=out, progress=False)
    assert len(again.runs) == 8 and set(again.runs["status"]) == {"ok"}
    kept = again.runs[~again.runs["run_id"].isin(lost)]
    before = first.runs[~first.runs["run_id"].isin(lost)]
    # finished runs were skipped: their rows are the very same (same start times)
    assert list(kept["started_at"]) == list(before["started_at"])
    redone = again.runs[again.runs["run_id"].isin(lost)].set_index("run_id")["started_at"]
    assert (redone > first.runs["started_at"].max()).all()
    assert len(load_results(out).keyframes(columns=["frame"])) == again.runs["keyframes"].sum()
    # the end of the sweep left the keyframe files with each run once, for plain readers
    plain = pd.read_parquet(out / "keyframes", columns=["run_id", "frame"])
    assert (
        plain.groupby("run_id").size().to_dict()
        == again.runs.set_index("run_id")["keyframes"].to_dict()
    )


def test_the_writer_process_commits_while_no_run_arrives(tmp_path):
    from avatar_nb.experiments import WriterProcess

    from .test_dataset import synthetic_timeline

    writer = WriterProcess(tmp_path, commit_seconds=0.2)
    try:
        writer.submit({"run": 0, "run_id": "a", "status": "ok"}, synthetic_timeline(20, seed=1))
        # no other run comes: the writer commits on its own once the segment is due
        deadline = time.monotonic() + 60.0
        while "a" not in writer._errors:
            assert time.monotonic() < deadline, "the writer process never committed"
            time.sleep(0.02)
        assert writer._errors["a"] is None and finished_runs(tmp_path) == {"a"}
        writer.submit({"run": 1, "run_id": "b", "status": "ok"}, synthetic_timeline(30, seed=2))
        writer.submit({"run": 2, "run_id": "bad/name", "status": "ok"}, None)
    finally:
        failed = writer.close()
    assert [r["run_id"] for r in failed] == ["bad/name"] and "run_id" in failed[0]["error"]
    assert finished_runs(tmp_path) == {"a", "b"}


def test_a_failed_run_is_a_row_and_the_sweep_goes_on(tmp_path):
    good = tmp_path / "good.wav"
    write_wav(good, speech_like(0.5, RATE, seed=1), RATE)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav")
    out = tmp_path / "study"
    res = sweep([good, bad], grid={"chunk_ms": [40]}, pacing="fast", out=out, progress=False)
    runs = res.runs.set_index("clip")
    assert runs.loc["good", "status"] == "ok"
    assert runs.loc["bad", "status"] == "failed"
    assert "bad.wav" in runs.loc["bad", "error"] or "RIFF" in runs.loc["bad", "error"]
    assert load_results(out).runs.set_index("clip").loc["bad", "status"] == "failed"
    # a resume retries the failed run (and fails it again), not the finished one
    again = sweep(
        [good, bad], grid={"chunk_ms": [40]}, pacing="fast", out=out, progress=False
    ).runs.set_index("clip")
    assert again.loc["good", "started_at"] == runs.loc["good", "started_at"]
    assert again.loc["bad", "started_at"] > runs.loc["bad", "started_at"]


def test_clips_from_a_folder_and_bad_options(tmp_path):
    for i in range(3):
        write_wav(tmp_path / f"c{i}.wav", speech_like(0.3, RATE, seed=i), RATE)
    (tmp_path / "notes.txt").write_text("not audio")
    found = collect_clips(tmp_path)
    assert [c.name for c in found] == ["c0", "c1", "c2"]
    with pytest.raises(ValueError, match="unknown sweep option 'chunk_size'.*chunk_ms"):
        sweep(found, grid={"chunk_size": [20]}, progress=False)
    with pytest.raises(ValueError, match="pacing"):
        sweep(found, grid={"pacing": ["slow"]}, progress=False)
    with pytest.raises(ValueError, match="sample_rate 11025"):
        sweep(found, grid={"sample_rate": [11025]}, progress=False)
    with pytest.raises(ValueError, match="unique"):
        collect_clips([tmp_path / "c0.wav", tmp_path / "c0.wav"])
    with pytest.raises(ValueError, match="concurrency"):
        sweep(found, concurrency=0, progress=False)


def test_run_ids_are_stable_and_name_the_whole_condition():
    sources = collect_clips(clips(1))
    a = plan(sources, {"latency_ms": [40, 80]}, 2, pacing="capture", seed=0, local=True)
    b = plan(sources, {"latency_ms": [40, 80]}, 2, pacing="capture", seed=0, local=True)
    c = plan(sources, {"latency_ms": [40, 80]}, 2, pacing="fast", seed=0, local=True)
    assert [r.run_id for r in a] == [r.run_id for r in b]
    assert not {r.run_id for r in a} & {r.run_id for r in c}
    assert all(isinstance(r, RunSpec) for r in a) and len({r.service_key for r in a}) == 2
    with pytest.raises(ValueError, match="local service"):
        plan(sources, {"latency_ms": [40]}, 1, pacing=None, seed=0, local=False)


async def test_sweep_refuses_to_block_the_loop_that_serves_its_service():
    # the service answers on this thread's loop, which sweep() would block
    async with avatar_nb.LocalService(realtime=False) as svc:
        with pytest.raises(
            RuntimeError, match=r"sweep\(\) would block .*`await sweep_async\(\.\.\.\)`"
        ):
            sweep(clips(1), service=svc, progress=False)


def test_public_names():
    assert avatar_nb.sweep is sweep and avatar_nb.load_results is load_results
    assert avatar_nb.analysis.av_offset is av_offset
    # importing the modules first (as unpickling on a cluster worker does) keeps the functions
    code = (
        "import avatar_nb.sweeps, avatar_nb.dataset, avatar_nb.scaleout, avatar_nb; "
        "assert avatar_nb.sweep is avatar_nb.sweeps.sweep and callable(avatar_nb.load_results); "
        "import sys; assert 'pandas' not in sys.modules and 'pyarrow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
