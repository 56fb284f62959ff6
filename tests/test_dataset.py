"""The Parquet dataset: exact round trip, whole files only, pruned and filtered reads, resume bookkeeping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from avatar_nb import Timeline
from avatar_nb.dataset import (
    KEYFRAMES_DIR,
    LOCK_FILE,
    RUNS_DIR,
    DatasetWriteError,
    DatasetWriter,
    consolidate,
    finished_runs,
    keyframe_table,
    load_results,
    runs_frame,
    write_result,
    write_run,
)
from avatar_nb.flame import column_names


def synthetic_timeline(n: int, *, seed: int, requests: int = 2, n_expression: int = 10) -> Timeline:
    """A run of ``n`` keyframes over ``requests`` requests, one keyframe a message, 80 ms latency."""
    rng = np.random.default_rng(seed)
    tl = Timeline(25.0, sample_rate=16000, meta={"pacing": "capture"})
    per = n // requests
    t = 0.0
    for r in range(requests):
        req = f"req-{seed}-{r}"
        for i in range(per):
            tl.add_audio_chunk(req, t, 640)
            keyframe = rng.standard_normal((1, 20 + n_expression)).astype(np.float32)
            tl.add_animation(keyframe, req_id=req, arrival=t + 0.08, end=i == per - 1)
            t += 0.04
    return tl


def small_dataset(root: Path, runs: int = 3) -> Path:
    """A dataset of ``runs`` small runs (``run0``, ``run1`` ...), one segment each, at ``root``."""
    for i in range(runs):
        write_result(
            root, {"run": i, "run_id": f"run{i}", "status": "ok"}, synthetic_timeline(20, seed=i)
        )
    return root


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True).copy()
    frame["req_id"] = frame["req_id"].astype(str)
    return frame


@pytest.fixture
def dataset(tmp_path):
    timelines = {f"run{i}": synthetic_timeline(40 + 10 * i, seed=i) for i in range(3)}
    for index, (run_id, tl) in enumerate(timelines.items()):
        write_result(
            tmp_path,
            {"run": index, "run_id": run_id, "status": "ok", "chunk_ms": 20.0 * (index + 1)},
            tl,
        )
    return tmp_path, timelines


def test_keyframes_round_trip_exactly(dataset):
    root, timelines = dataset
    results = load_results(root)
    table = results.keyframes()
    assert list(table.columns[:2]) == ["run_id", "req_id"]
    assert len(table) == sum(tl.n_keyframes for tl in timelines.values())
    for run_id, tl in timelines.items():
        back = table[table["run_id"] == run_id].drop(columns="run_id")
        expected = tl.to_pandas()
        assert list(back.columns) == list(expected.columns)
        pd.testing.assert_frame_equal(_plain(back), _plain(expected), check_exact=True)
        assert back["translation_0"].dtype == np.float32 and back["latency"].dtype == np.float64
        # request ids keep their order of first appearance
        assert list(pd.unique(back["req_id"].astype(str))) == tl.req_ids


def test_runs_table_round_trips_and_keeps_missing_values(tmp_path):
    rows = [
        {
            "run": 1,
            "run_id": "b",
            "status": "failed",
            "error": "ValueError: x",
            "latency_p50": None,
            "note": None,
        },
        {
            "run": 0,
            "run_id": "a",
            "status": "ok",
            "error": "",
            "latency_p50": 0.08,
            "note": "n",
            "grid": [1, 2],
        },
    ]
    for row in rows:
        write_run(tmp_path, row)
    back = load_results(tmp_path).runs
    expected = runs_frame(rows)
    pd.testing.assert_frame_equal(back, expected)
    assert list(back["run_id"]) == ["a", "b"]  # ordered by position in the sweep
    assert back.loc[1, "latency_p50"] != back.loc[1, "latency_p50"]  # NaN for the failed run
    assert back.loc[0, "grid"] == "[1, 2]"  # non-scalar settings are kept as JSON text


def test_pruned_and_filtered_reads(dataset):
    root, timelines = dataset
    results = load_results(root)
    latency = results.keyframes(columns=["latency"])
    assert list(latency.columns) == ["run_id", "latency"]
    only = results.keyframes(
        columns=["latency", "frame"], filters=[("run_id", "=", "run1"), ("frame", "<", 5)]
    )
    assert set(only["run_id"]) == {"run1"}
    assert len(only) == 5 * len(timelines["run1"].req_ids)
    joined = results.keyframes(columns=["latency"], runs=["run2"], with_runs=["chunk_ms"])
    assert set(joined["chunk_ms"]) == {60.0} and len(joined) == timelines["run2"].n_keyframes
    # joined columns have the runs table's values and types, filtered or not
    for filters in (None, [("frame", ">=", 0)]):
        both = results.keyframes(
            columns=["frame"], filters=filters, with_runs=["chunk_ms", "status"]
        )
        for name in ("chunk_ms", "status"):
            assert both[name].dtype == results.runs[name].dtype
            expected = results.runs.set_index("run_id")[name]
            assert (both[name].to_numpy() == expected[both["run_id"].astype(str)].to_numpy()).all()
    with pytest.raises(KeyError, match="nope"):
        results.keyframes(columns=["frame"], with_runs=["nope"])
    streamed = list(results.iter_keyframes(columns=["latency"]))
    assert [len(p) for p in streamed] == [tl.n_keyframes for tl in timelines.values()]
    # a filter on a column not asked for: read for the filter, then left out
    early = list(results.iter_keyframes(columns=["latency"], filters=[("frame", "<", 3)]))
    assert all(list(p.columns) == ["run_id", "latency"] for p in early)
    assert sum(len(p) for p in early) == 3 * sum(len(tl.req_ids) for tl in timelines.values())
    assert len(results.keyframes(columns=["latency"], filters=[("frame", "<", 3)])) == sum(
        map(len, early)
    )


def test_files_are_whole_or_absent(tmp_path, monkeypatch):
    tl = synthetic_timeline(20, seed=1)
    write_result(tmp_path, {"run": 0, "run_id": "good", "status": "ok"}, tl)

    # a commit that fails at its rename (or while encoding) leaves neither the file nor its
    # temporary, and says which runs it lost
    import avatar_nb.dataset.writer as dataset_module

    def broken_rename(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(dataset_module.os, "replace", broken_rename)
    with pytest.raises(DatasetWriteError, match="disk full") as lost:
        write_result(tmp_path, {"run": 1, "run_id": "bad", "status": "ok"}, tl)
    assert lost.value.runs == ["bad"]
    monkeypatch.undo()

    class BrokenWriter(pq.ParquetWriter):
        def write_table(self, table, row_group_size=None):
            raise OSError("encoder failed")

    monkeypatch.setattr(pq, "ParquetWriter", BrokenWriter)
    with pytest.raises(DatasetWriteError, match="encoder failed"):
        write_result(tmp_path, {"run": 2, "run_id": "bad2", "status": "ok"}, tl)
    monkeypatch.undo()
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == [tmp_path / LOCK_FILE]  # the dataset's lock, not a temporary
    assert finished_runs(tmp_path) == {"good"}
    assert len(list((tmp_path / KEYFRAMES_DIR).iterdir())) == 1
    # a stray temporary from a killed process is ignored by readers
    (tmp_path / RUNS_DIR / ".x.json.1234.tmp").write_bytes(b"junk")
    assert list(load_results(tmp_path).runs["run_id"]) == ["good"]


def test_finished_runs_needs_ok_status_and_keyframes(tmp_path):
    tl = synthetic_timeline(20, seed=2)
    write_result(tmp_path, {"run": 0, "run_id": "ok", "status": "ok"}, tl)
    write_result(tmp_path, {"run": 1, "run_id": "failed", "status": "failed", "error": "boom"}, tl)
    write_run(
        tmp_path, {"run": 2, "run_id": "rowonly", "status": "ok"}
    )  # its keyframes never landed
    assert finished_runs(tmp_path) == {"ok"}
    # a later attempt without keyframes replaces the earlier attempt's frames
    write_result(
        tmp_path, {"run": 1, "run_id": "failed", "status": "failed", "error": "again"}, None
    )
    assert set(load_results(tmp_path).keyframes(columns=["frame"])["run_id"]) == {"ok"}
    assert set(load_results(tmp_path).keyframes(filters=[("frame", "<", 2)])["run_id"]) == {"ok"}
    assert load_results(tmp_path).runs.set_index("run_id").loc["failed", "error"] == "again"
    # consolidating rewrites what holds an older attempt: plain Parquet readers see each
    # run once, and the dataset reads the same
    before = load_results(tmp_path).keyframes()
    consolidate(tmp_path)
    plain = pd.read_parquet(tmp_path / KEYFRAMES_DIR)
    assert set(plain["run_id"]) == {"ok"} and len(plain) == tl.n_keyframes
    pd.testing.assert_frame_equal(load_results(tmp_path).keyframes(), before, check_exact=True)
    assert (
        pd.read_parquet(tmp_path / "runs.parquet").set_index("run_id").loc["failed", "error"]
        == "again"
    )


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="run_id"):
        write_run(tmp_path, {"run_id": "../escape"})
    with pytest.raises(ValueError, match="engine"):
        load_results(tmp_path, engine="spark")
    with pytest.raises(FileNotFoundError, match="no avatar_nb dataset"):
        load_results(tmp_path / "nothing")


def test_dask_engine_reads_out_of_core(dataset):
    pytest.importorskip("dask.dataframe")
    root, timelines = dataset
    results = load_results(root, engine="dask")
    frame = results.keyframes(columns=["latency", "frame"])
    assert frame.npartitions == len(timelines)  # one partition per run: nothing read yet
    counts = frame.groupby("run_id")["frame"].count().compute().sort_index()
    assert counts.to_dict() == {k: tl.n_keyframes for k, tl in timelines.items()}
    filtered = results.keyframes(columns=["latency"], filters=[("run_id", "=", "run0")]).compute()
    early = results.keyframes(columns=["latency"], filters=[("frame", "<", 3)]).compute()
    assert list(early.columns) == ["run_id", "latency"] and len(early) == 3 * 2 * len(timelines)
    assert set(filtered["run_id"]) == {"run0"} and len(filtered) == timelines["run0"].n_keyframes
    assert list(results.runs.compute()["run_id"]) == ["run0", "run1", "run2"]


def test_column_names_come_from_the_layout(dataset):
    root, _ = dataset
    columns = load_results(root).keyframes().columns
    for name in column_names(10):
        assert name in columns


def test_keyframe_table_is_to_pandas_without_pandas():
    from avatar_nb.dataset import keyframe_table

    tl = synthetic_timeline(30, seed=4, requests=3)
    table = keyframe_table(tl).to_pandas()
    pd.testing.assert_frame_equal(table, tl.to_pandas(), check_exact=True)
    empty = Timeline(25.0)
    assert list(keyframe_table(empty).column_names) == list(empty.to_pandas().columns)


def test_a_batch_writes_the_same_dataset(tmp_path):
    import asyncio

    from avatar_nb.audio import speech_like
    from avatar_nb.batch import NPZ, RunSettings, render, run_batch
    from avatar_nb.experiments import dataset_output
    from avatar_nb.server import LocalService

    clips = [(speech_like(0.4, 16000, seed=i), 16000) for i in range(2)]
    with LocalService(realtime=False) as service:
        results = asyncio.run(
            run_batch(clips, RunSettings(pacing="fast"), service=service, progress=False)
        )
    render(results, tmp_path, [NPZ, dataset_output()], progress=False)
    back = load_results(tmp_path)
    assert sorted(back.runs["run_id"]) == sorted(r.name for r in results)
    assert set(back.runs["status"]) == {"ok"} and set(back.runs["pacing"]) == {"fast"}
    for result in results:
        table = back.keyframes(runs=[result.name]).drop(columns="run_id")
        pd.testing.assert_frame_equal(
            _plain(table), _plain(result.timeline.to_pandas()), check_exact=True
        )
    assert finished_runs(tmp_path) == {r.name for r in results}


def _one_segment(root, timelines, **options):
    with DatasetWriter(root, **options) as writer:
        for index, (run_id, tl) in enumerate(timelines.items()):
            writer.add({"run": index, "run_id": run_id, "status": "ok"}, tl)


def _assert_reads_back(root, timelines):
    table = load_results(root).keyframes()
    assert list(pd.unique(table["run_id"].astype(str))) == sorted(timelines)  # run-id order
    for run_id, tl in timelines.items():
        back = table[table["run_id"] == run_id].drop(columns="run_id")
        pd.testing.assert_frame_equal(_plain(back), _plain(tl.to_pandas()), check_exact=True)


def test_runs_share_a_file_and_its_row_groups(tmp_path, monkeypatch):
    import avatar_nb.dataset.writer as dataset_module

    timelines = {f"run{i:02d}": synthetic_timeline(20 + 7 * i, seed=20 + i) for i in range(12)}
    one_run = keyframe_table(timelines["run05"]).nbytes
    # row groups of about three runs
    _one_segment(tmp_path, timelines, row_group_bytes=3 * one_run)
    files = list((tmp_path / KEYFRAMES_DIR).iterdir())
    assert len(files) == 1 and len(list((tmp_path / RUNS_DIR).iterdir())) == 1
    meta = pq.ParquetFile(files[0]).metadata
    assert 2 < meta.num_row_groups < len(timelines) / 2
    # a cap on a row group's rows that longer runs (up to 97 rows) span
    monkeypatch.setattr(dataset_module, "_MAX_ROW_GROUP_ROWS", 40)
    _one_segment(tmp_path / "capped", timelines, row_group_bytes=3 * one_run)
    capped = pq.ParquetFile(next((tmp_path / "capped" / KEYFRAMES_DIR).iterdir())).metadata
    assert max(capped.row_group(i).num_rows for i in range(capped.num_row_groups)) == 40
    _assert_reads_back(tmp_path / "capped", timelines)
    assert meta.row_group(0).column(8).compression == "UNCOMPRESSED"
    assert not any(f.nullable for f in pq.ParquetFile(files[0]).schema_arrow)
    _assert_reads_back(tmp_path, timelines)
    # plain Parquet readers see the run_id column
    plain = pd.read_parquet(files[0], columns=["run_id", "frame"])
    assert plain.groupby("run_id").size().to_dict() == {
        k: tl.n_keyframes for k, tl in timelines.items()
    }
    # streamed: the runs of a row group at a time, each run whole, in the order they are stored
    parts = list(load_results(tmp_path).iter_keyframes(columns=["latency"]))
    assert 1 < len(parts) == meta.num_row_groups
    seen = [str(r) for part in parts for r in pd.unique(part["run_id"].astype(str))]
    assert seen == list(timelines)  # no run in two parts
    for part in parts:
        for run_id, rows in part.groupby("run_id", observed=True):
            np.testing.assert_array_equal(rows["latency"].to_numpy(), timelines[run_id].latency)
    # one Dask partition per row group a run starts in
    pytest.importorskip("dask.dataframe")
    frame = load_results(tmp_path, engine="dask").keyframes(columns=["frame"])
    assert 1 < frame.npartitions <= meta.num_row_groups
    counts = frame.groupby("run_id")["frame"].count().compute()
    assert counts.to_dict() == {k: tl.n_keyframes for k, tl in timelines.items()}


def test_another_layout_gets_a_file_of_its_own_in_the_segment(tmp_path):
    timelines = {
        "a": synthetic_timeline(30, seed=1, n_expression=10),
        "b": synthetic_timeline(30, seed=2, n_expression=50),
        "c": synthetic_timeline(30, seed=3, n_expression=10),
    }
    _one_segment(tmp_path, timelines)
    assert len(list((tmp_path / KEYFRAMES_DIR).iterdir())) == 3
    assert len(list((tmp_path / RUNS_DIR).iterdir())) == 1
    for run_id, tl in timelines.items():
        back = load_results(tmp_path).keyframes(runs=[run_id]).drop(columns="run_id")
        back = back.dropna(axis=1, how="all")  # columns of the other layout
        pd.testing.assert_frame_equal(_plain(back), _plain(tl.to_pandas()), check_exact=True)


def test_a_segment_is_committed_when_due(tmp_path):
    now = [0.0]
    tl = synthetic_timeline(20, seed=3)
    size = keyframe_table(tl).nbytes
    writer = DatasetWriter(
        tmp_path, commit_seconds=10.0, segment_bytes=3 * size, clock=lambda: now[0]
    )
    assert writer.due() is None
    writer.add({"run_id": "a", "status": "ok"}, tl)
    assert writer.due() == 10.0 and finished_runs(tmp_path) == set()
    now[0] = 4.0
    writer.add({"run_id": "b", "status": "ok"}, tl)
    assert writer.due() == 6.0 and writer.pending == ["a", "b"]
    now[0] = 10.0
    assert writer.due() == 0.0
    writer.add({"run_id": "c", "status": "ok"}, tl)  # due: committed with it
    assert writer.pending == [] and finished_runs(tmp_path) == {"a", "b", "c"}
    for run_id in "defg":  # by size: the third run's bytes reach segment_bytes
        writer.add({"run_id": run_id, "status": "ok"}, tl)
    assert writer.pending == ["g"] and finished_runs(tmp_path) == set("abcdef")
    # the same run added twice before a commit: the later attempt is the run
    writer.add({"run_id": "g", "status": "failed", "error": "retried"}, None)
    writer.close()
    runs = load_results(tmp_path).runs.set_index("run_id")
    assert runs.loc["g", "status"] == "failed" and finished_runs(tmp_path) == set("abcdef")
    # the first attempt's keyframes left with it: no file holds rows of "g"
    plain = pd.read_parquet(tmp_path / KEYFRAMES_DIR, columns=["run_id"])
    assert set(plain["run_id"]) == set("abcdef") and len(plain) == 6 * tl.n_keyframes
    assert len(list((tmp_path / RUNS_DIR).iterdir())) == 3


KILLED_WRITER = """
import os, sys
sys.path.insert(0, {tests!r})
from test_dataset import synthetic_timeline
from avatar_nb.dataset import DatasetWriter
writer = DatasetWriter({root!r})
for i in range(3):
    writer.add({{"run": i, "run_id": f"kept{{i}}", "status": "ok"}}, synthetic_timeline(30, seed=i))
writer.commit()
for i in range(3):
    writer.add({{"run": 3 + i, "run_id": f"lost{{i}}", "status": "ok"}}, synthetic_timeline(30, seed=i))
writer._write_row_group()  # the lost runs are in the open file, not committed
print("ready", flush=True)
os._exit(9)  # as a kill: no clean-up, no commit
"""


def test_a_killed_writer_leaves_whole_runs_and_its_file_is_cleaned_up(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    code = KILLED_WRITER.format(tests=str(Path(__file__).parent), root=str(tmp_path))
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 9 and "ready" in done.stdout, done.stderr
    assert finished_runs(tmp_path) == {"kept0", "kept1", "kept2"}
    assert sorted(load_results(tmp_path).keyframes(columns=["frame"])["run_id"].unique()) == [
        "kept0",
        "kept1",
        "kept2",
    ]
    hidden = [p for p in (tmp_path / KEYFRAMES_DIR).iterdir() if p.name.startswith(".")]
    assert len(hidden) == 1  # the open segment, abandoned
    consolidate(tmp_path)
    assert not [p for p in (tmp_path / KEYFRAMES_DIR).iterdir() if p.name.startswith(".")]
    assert finished_runs(tmp_path) == {"kept0", "kept1", "kept2"}


def test_a_live_writers_open_segment_is_kept(tmp_path):
    writer = DatasetWriter(tmp_path)
    writer.add({"run_id": "open", "status": "ok"}, synthetic_timeline(20, seed=1))
    writer._write_row_group()
    consolidate(tmp_path)  # another writer is still at work in this folder
    assert [p.name for p in (tmp_path / KEYFRAMES_DIR).iterdir() if p.name.startswith(".")]
    writer.close()
    assert finished_runs(tmp_path) == {"open"}


def test_small_segments_are_merged_and_read_the_same(tmp_path):
    timelines = {f"run{i}": synthetic_timeline(20 + i, seed=40 + i) for i in range(5)}
    for index, (run_id, tl) in enumerate(timelines.items()):
        write_result(tmp_path, {"run": index, "run_id": run_id, "status": "ok"}, tl)
    assert len(list((tmp_path / KEYFRAMES_DIR).iterdir())) == 5
    before = load_results(tmp_path)
    consolidate(tmp_path)
    assert len(list((tmp_path / KEYFRAMES_DIR).iterdir())) == 1
    assert len(list((tmp_path / RUNS_DIR).iterdir())) == 1
    after = load_results(tmp_path)
    pd.testing.assert_frame_equal(after.keyframes(), before.keyframes(), check_exact=True)
    pd.testing.assert_frame_equal(after.runs, before.runs)
    _assert_reads_back(tmp_path, timelines)


def test_a_dataset_of_another_format_is_refused_by_name(tmp_path):
    (tmp_path / RUNS_DIR).mkdir()
    (tmp_path / RUNS_DIR / "run0.json").write_text('{"run_id": "run0", "status": "ok"}')
    with pytest.raises(ValueError, match=r"run0\.json.*format None.*reads format 1"):
        _ = load_results(tmp_path).runs


def test_files_are_read_on_several_threads(tmp_path, monkeypatch):
    import os
    import threading

    import avatar_nb.dataset.catalog as dataset_module

    timelines = {f"run{i:02d}": synthetic_timeline(20 + i, seed=10 + i) for i in range(4)}
    for index, (run_id, tl) in enumerate(timelines.items()):
        write_result(tmp_path, {"run": index, "run_id": run_id, "status": "ok"}, tl)
    threads: set[str] = set()
    opened = dataset_module.File.__init__

    def recording(self, path):
        threads.add(threading.current_thread().name)
        opened(self, path)

    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    monkeypatch.setattr(dataset_module, "_CELLS_PER_THREAD", 0)  # as if the runs were long
    monkeypatch.setattr(dataset_module.File, "__init__", recording)
    _assert_reads_back(tmp_path, timelines)
    assert threads and all(name.startswith("avatar_nb-read") for name in threads)


def test_runs_lost_are_reported_by_run(tmp_path, monkeypatch):
    """What the writer process and the Dask workers turn into failed rows."""
    import avatar_nb.dataset.writer as dataset_module

    tl = synthetic_timeline(20, seed=7)
    writer = DatasetWriter(tmp_path)
    assert writer.add_reporting({"run_id": "a", "status": "ok"}, tl) == {}
    bad = writer.add_reporting({"run_id": "../x", "status": "ok"}, tl)
    assert list(bad) == ["../x"] and isinstance(bad["../x"], ValueError)
    assert writer.add_reporting({"run_id": "b", "status": "ok"}, tl) == {}

    def broken_rename(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(dataset_module.os, "replace", broken_rename)
    committed, lost = writer.commit_reporting()
    assert committed == [] and sorted(lost) == ["a", "b"]
    assert all(isinstance(e, DatasetWriteError) and "disk full" in str(e) for e in lost.values())
    monkeypatch.undo()
    writer.add({"run_id": "c", "status": "ok"}, tl)
    assert writer.commit_reporting() == (["c"], {}) and finished_runs(tmp_path) == {"c"}


def test_results_repr_gives_counts(tmp_path):
    root = tmp_path / "ds"
    for i in range(3):
        write_result(
            root, {"run": i, "run_id": f"run{i}", "status": "ok"}, synthetic_timeline(20, seed=i)
        )
    write_result(root, {"run": 3, "run_id": "run3", "status": "failed", "error": "x"}, None)
    results = load_results(root)
    text = repr(results)
    assert "4 runs" in text and "3 ok" in text and "1 failed" in text
    assert "60 keyframe rows" in text and str(root) in text
    html = results._repr_html_()
    assert "<table" in html and "failed" in html and "60" in html
    # a dataset that cannot be read still has a repr
    (root / RUNS_DIR / "zz.json").write_text("[")
    assert str(root) in repr(load_results(root))
