"""The Parquet dataset: exact round trip, whole files only, pruned and filtered reads, resume bookkeeping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from avatar_nb import Timeline
from avatar_nb.dataset import (
    KEYFRAMES_DIR,
    RUNS_DIR,
    finished_runs,
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
    streamed = list(results.iter_keyframes(columns=["latency"]))
    assert [len(p) for p in streamed] == [tl.n_keyframes for tl in timelines.values()]


def test_files_are_whole_or_absent(tmp_path, monkeypatch):
    tl = synthetic_timeline(20, seed=1)
    write_result(tmp_path, {"run": 0, "run_id": "good", "status": "ok"}, tl)

    # a write that fails after its temporary was written (or while encoding) leaves
    # neither the file nor its temporary
    import avatar_nb.dataset as dataset_module

    def broken_rename(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(dataset_module.os, "replace", broken_rename)
    with pytest.raises(OSError, match="disk full"):
        write_result(tmp_path, {"run": 1, "run_id": "bad", "status": "ok"}, tl)
    monkeypatch.undo()

    def broken_encoder(table, where, **kwargs):
        raise OSError("encoder failed")

    monkeypatch.setattr(pq, "write_table", broken_encoder)
    with pytest.raises(OSError, match="encoder failed"):
        write_result(tmp_path, {"run": 2, "run_id": "bad2", "status": "ok"}, tl)
    monkeypatch.undo()
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == []
    assert finished_runs(tmp_path) == {"good"}
    assert not (tmp_path / KEYFRAMES_DIR / "run_id=bad").exists() or not any(
        (tmp_path / KEYFRAMES_DIR / "run_id=bad").iterdir()
    )
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
    # a later attempt without keyframes removes the earlier attempt's frames
    write_result(
        tmp_path, {"run": 1, "run_id": "failed", "status": "failed", "error": "again"}, None
    )
    assert set(load_results(tmp_path).keyframes(columns=["frame"])["run_id"]) == {"ok"}


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
    from avatar_nb.dataset import batch_writer
    from avatar_nb.server import LocalService

    clips = [(speech_like(0.4, 16000, seed=i), 16000) for i in range(2)]
    with LocalService(realtime=False) as service:
        results = asyncio.run(
            run_batch(clips, RunSettings(pacing="fast"), service=service, progress=False)
        )
    render(results, tmp_path, [NPZ, batch_writer()], progress=False)
    back = load_results(tmp_path)
    assert sorted(back.runs["run_id"]) == sorted(r.name for r in results)
    assert set(back.runs["status"]) == {"ok"} and set(back.runs["pacing"]) == {"fast"}
    for result in results:
        table = back.keyframes(runs=[result.name]).drop(columns="run_id")
        pd.testing.assert_frame_equal(
            _plain(table), _plain(result.timeline.to_pandas()), check_exact=True
        )
    assert finished_runs(tmp_path) == {r.name for r in results}


def test_keyframe_files_declare_no_nulls_and_older_files_still_read(tmp_path):
    """Files are written with non-null columns (no definition levels); a dataset holding
    files of the earlier layout (nullable columns, LZ4) reads as one table, filters included."""
    import pyarrow as pa

    from avatar_nb.dataset import keyframe_table, write_keyframes

    new, old = synthetic_timeline(40, seed=5), synthetic_timeline(30, seed=6)
    write_result(tmp_path, {"run": 0, "run_id": "new", "status": "ok"}, new)
    table = keyframe_table(old)
    nullable = pa.table({name: table[name] for name in table.column_names})
    path = write_keyframes(tmp_path, "old", nullable)
    # as the earlier writer did: nullable columns, LZ4
    pq.write_table(nullable, path, compression="lz4", use_dictionary=["req_id"], store_schema=False)
    write_run(tmp_path, {"run": 1, "run_id": "old", "status": "ok"})

    written = pq.ParquetFile(tmp_path / KEYFRAMES_DIR / "run_id=new" / "part.parquet")
    assert not any(field.nullable for field in written.schema_arrow)
    assert written.metadata.row_group(0).column(7).compression == "UNCOMPRESSED"
    results = load_results(tmp_path)
    both = results.keyframes()
    for run_id, tl in (("new", new), ("old", old)):
        back = both[both["run_id"] == run_id].drop(columns="run_id")
        pd.testing.assert_frame_equal(_plain(back), _plain(tl.to_pandas()), check_exact=True)
    early = results.keyframes(columns=["latency"], filters=[("frame", "<", 3)])
    assert len(early) == 3 * (len(new.req_ids) + len(old.req_ids))
    assert finished_runs(tmp_path) == {"new", "old"}


def test_many_runs_are_read_on_several_threads_in_run_order(tmp_path, monkeypatch):
    import os
    import threading

    import avatar_nb.dataset as dataset_module

    timelines = {f"run{i:02d}": synthetic_timeline(20 + i, seed=10 + i) for i in range(7)}
    for index, (run_id, tl) in enumerate(timelines.items()):
        write_result(tmp_path, {"run": index, "run_id": run_id, "status": "ok"}, tl)
    one_by_one = load_results(tmp_path).keyframes(columns=["latency", "frame"])

    threads: set[str] = set()
    opened = pq.ParquetFile

    def recording(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return opened(*args, **kwargs)

    monkeypatch.setattr(dataset_module, "_FILES_PER_THREAD", 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    monkeypatch.setattr(pq, "ParquetFile", recording)
    threaded = load_results(tmp_path).keyframes(columns=["latency", "frame"])
    # every file was read on the reading pool (which may reuse a thread that finished
    # its slice for the next one), none on the caller's thread
    assert threads and all(name.startswith("avatar_nb-read") for name in threads)
    pd.testing.assert_frame_equal(threaded, one_by_one, check_exact=True)
    assert list(pd.unique(threaded["run_id"].astype(str))) == list(timelines)
    for run_id, tl in timelines.items():
        part = threaded[threaded["run_id"] == run_id]
        np.testing.assert_array_equal(part["latency"].to_numpy(), tl.latency)
