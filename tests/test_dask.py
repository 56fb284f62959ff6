"""Sweeps on a Dask LocalCluster of two worker processes: same results as in process, spread
over both workers, a killed worker survived, credentials kept out of keys and logs."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import threading
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from avatar_nb import LocalService, load_results, sweep
from avatar_nb.analysis import keyframe_quantiles
from avatar_nb.audio import speech_like
from avatar_nb.endpoints import ServiceSpec

distributed = pytest.importorskip("distributed")

RATE = 16000
# figures that depend on when things happened, not on what was computed
TIMING_RUN_COLUMNS = [
    "first_frame_latency",
    "jitter",
    "real_time_factor",
    "started_at",
    "wall_seconds",
    "worker",
    *(f"{name}_p{q}" for name in ("latency", "lateness") for q in (50, 90, 99)),
]
TIMING_KEYFRAME_COLUMNS = [
    "arrival",
    "latency",
    "lateness",
    "req_id",
]  # req_id: a fresh id per session


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None, host="127.0.0.1"
    )
    with cluster, distributed.Client(cluster) as c:
        yield c


def clips(seconds: float = 0.6) -> dict[str, tuple[np.ndarray, int]]:
    return {f"speech{i}": (speech_like(seconds, RATE, seed=i), RATE) for i in range(2)}


def test_cluster_sweep_equals_the_in_process_sweep(client, tmp_path):
    grid = {"chunk_ms": [20, 40]}
    local = sweep(
        clips(), grid=grid, repeats=2, pacing="fast", out=tmp_path / "local", seed=3, progress=False
    )
    remote = sweep(
        clips(),
        grid=grid,
        repeats=2,
        pacing="fast",
        out=tmp_path / "cluster",
        seed=3,
        progress=False,
        client=client,
        concurrency=2,
    )
    assert len(remote.runs) == 2 * 2 * 2 and set(remote.runs["status"]) == {"ok"}
    pd.testing.assert_frame_equal(
        local.runs.drop(columns=TIMING_RUN_COLUMNS), remote.runs.drop(columns=TIMING_RUN_COLUMNS)
    )
    # runs went to both workers, and the table says where each ran
    workers = set(client.scheduler_info()["workers"])
    assert set(remote.runs["worker"]) == workers
    # the per-keyframe datasets are the same apart from timing
    a = load_results(tmp_path / "local").keyframes().drop(columns=TIMING_KEYFRAME_COLUMNS)
    b = load_results(tmp_path / "cluster").keyframes().drop(columns=TIMING_KEYFRAME_COLUMNS)
    key = ["run_id", "keyframe"]
    pd.testing.assert_frame_equal(
        a.sort_values(key).reset_index(drop=True),
        b.sort_values(key).reset_index(drop=True),
        check_exact=True,
    )
    # out of core: dask frames, the same figures as pandas
    frame = load_results(tmp_path / "cluster", engine="dask").keyframes(
        columns=["latency"], with_runs=["chunk_ms"]
    )
    # a partition per row group (the end of the sweep merged the workers' small segments)
    groups = sum(
        pq.ParquetFile(f).num_row_groups
        for f in (tmp_path / "cluster" / "keyframes").glob("*.parquet")
    )
    assert frame.npartitions == groups
    pandas_frame = load_results(tmp_path / "cluster").keyframes(
        columns=["latency"], with_runs=["chunk_ms"]
    )
    pd.testing.assert_frame_equal(
        keyframe_quantiles(frame, by="chunk_ms"), keyframe_quantiles(pandas_frame, by="chunk_ms")
    )


def test_a_worker_killed_during_a_sweep_loses_no_run(client, tmp_path):
    out = tmp_path / "study"
    before = client.run(os.getpid)
    _, victim_pid = min(before.items())
    killed = threading.Event()

    def kill_when_a_run_lands() -> None:
        # wait (bounded) for the first finished run on disk, then kill a worker mid-sweep
        runs = out / "runs"
        for _ in range(600):
            if runs.is_dir() and any(
                p.suffix == ".json" and not p.name.startswith(".") for p in runs.iterdir()
            ):
                os.kill(victim_pid, signal.SIGKILL)
                killed.set()
                return
            killed.wait(0.02)

    def run() -> Any:
        return sweep(
            clips(seconds=1.0),
            grid={"chunk_ms": [20, 40]},
            repeats=2,
            pacing="capture",
            out=out,
            client=client,
            concurrency=1,
            progress=False,
        )

    watcher = threading.Thread(target=kill_when_a_run_lands, daemon=True)
    watcher.start()
    res = run()
    watcher.join(30)
    assert killed.is_set()
    client.wait_for_workers(2, timeout=60)
    after = client.run(os.getpid)
    assert (
        victim_pid not in after.values()
    )  # the worker was really lost (and replaced by its nanny)
    runs = res.runs
    assert len(runs) == 8 and set(runs["status"]) == {"ok"}, runs[["status", "error"]]
    table = load_results(out).keyframes(columns=["frame"])
    assert table.groupby("run_id").size().to_dict() == dict(zip(runs["run_id"], runs["keyframes"]))
    # a re-run finds everything finished: nothing is streamed again
    again = run()
    assert list(again.runs["started_at"]) == list(runs["started_at"])


async def test_an_interrupted_cluster_sweep_cancels_its_batches_and_keeps_what_was_committed(
    client, tmp_path, monkeypatch, capsys
):
    """Ctrl-C on a cluster sweep (its task cancelled, as asyncio.run and a kernel interrupt
    do) once its first batch has come back: the batches not finished are cancelled, so the
    scheduler has nothing of the sweep left to start, the runs committed stay in the
    dataset, the interrupted line says how many runs were cancelled, and the same call
    resumes the rest without running a committed one again."""
    from avatar_nb.sweeps import sweep_async
    from avatar_nb.experiments import executors

    loop = asyncio.get_running_loop()
    submitted: list[Any] = []
    real_submit = client.submit

    def recording_submit(fn, *args, **kwargs):
        future = real_submit(fn, *args, **kwargs)
        if str(kwargs.get("key")).startswith("avatar_nb-sweep-"):
            submitted.append(future)
        return future

    monkeypatch.setattr(client, "submit", recording_submit)
    sweep_task: asyncio.Task[Any] | None = None
    reported: list[int] = []

    class InterruptOnFirstRun:
        """The sweep's progress hook: told of the first finished runs, it interrupts."""

        def update(self, n: int) -> None:
            assert sweep_task is not None
            reported.append(n)
            loop.call_soon_threadsafe(sweep_task.cancel)

        def set_postfix_str(self, text: str) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(executors, "progress_bar", lambda *args: InterruptOnFirstRun())
    out = tmp_path / "study"
    kwargs: dict[str, Any] = dict(
        grid={"chunk_ms": [20, 40]}, repeats=3, pacing="capture", out=out, client=client, concurrency=1
    )
    planned = 2 * 2 * 3  # one batch (one Dask task) per run
    sweep_task = asyncio.ensure_future(sweep_async(clips(0.6), **kwargs))
    with pytest.raises(asyncio.CancelledError):
        await sweep_task
    # the sweep's tasks leave the scheduler (a cancel is a message to it: polled, bounded),
    # so no worker gets one of them to start
    def left() -> list[str]:
        return client.run_on_scheduler(
            lambda dask_scheduler: [k for k in dask_scheduler.tasks if str(k).startswith("avatar_nb-sweep-")]
        )

    for _ in range(600):
        if not left():
            break
        await asyncio.sleep(0.1)
    assert left() == []
    # every batch came back or was cancelled (a released one reads "cancelled" too)
    statuses = [f.status for f in submitted]
    assert len(statuses) == planned and set(statuses) <= {"finished", "cancelled"}, statuses
    line = next(line for line in capsys.readouterr().err.splitlines() if "interrupted" in line)
    cancelled = int(re.search(r", (\d+) cancelled on the cluster; ", line).group(1))
    assert 1 <= cancelled <= planned - sum(reported), line

    # a batch a worker was already running when it was cancelled still finishes (Dask cannot
    # stop it) and writes its run: wait until no worker runs anything (a bounded poll)
    def busy() -> int:
        return sum(client.run(lambda dask_worker: len(dask_worker.state.executing)).values())

    for _ in range(600):
        if not busy():
            break
        await asyncio.sleep(0.1)
    assert not busy()
    saved = load_results(out).runs
    assert 1 <= len(saved) < planned and set(saved["status"]) == {"ok"}
    # the same call resumes: the committed runs are kept as they were, the others run now
    monkeypatch.setattr(executors, "progress_bar", lambda *args: None)
    whole = await sweep_async(clips(0.6), **kwargs)
    assert len(whole.runs) == planned and set(whole.runs["status"]) == {"ok"}
    assert whole.reused == len(saved)
    kept = whole.runs.set_index("run_id").loc[saved["run_id"], "started_at"]
    assert list(kept) == list(saved["started_at"])


def test_credentials_stay_out_of_keys_and_logs(client, tmp_path, monkeypatch):
    submitted: list[tuple[str, str]] = []
    real_submit = client.submit

    def recording_submit(fn, *args, **kwargs):
        submitted.append((str(kwargs.get("key")), repr(args)))
        return real_submit(fn, *args, **kwargs)

    monkeypatch.setattr(client, "submit", recording_submit)
    with LocalService(realtime=False) as service:
        res = sweep(
            clips(0.3),
            pacing="fast",
            service=service,
            out=tmp_path / "s",
            client=client,
            progress=False,
        )
        secret = service.api_key
    assert set(res.runs["status"]) == {"ok"} and set(res.runs["service"]) != {"local"}
    assert submitted and all(
        key.startswith(("avatar_nb-sweep-", "avatar_nb-clip-")) for key, _ in submitted
    )
    assert not any(secret in key or secret in args for key, args in submitted)
    logs = [
        *client.get_scheduler_logs(),
        *(line for lines in client.get_worker_logs().values() for line in lines),
    ]
    assert not any(secret in str(line) for line in logs)
    assert secret not in res.runs.to_csv()
    assert "redacted" in repr(ServiceSpec("remote", {"api_key": secret})) and secret not in repr(
        ServiceSpec("remote", {"api_key": secret})
    )


def test_the_workers_services_are_closed_by_a_plugin(client, tmp_path):
    res = sweep(clips(0.3), pacing="fast", out=tmp_path / "s", client=client, progress=False)
    assert set(res.runs["status"]) == {"ok"}
    # each worker has the plugin whose teardown stops its local services (no atexit)
    plugged = client.run(lambda dask_worker: "avatar_nb-local-services" in dask_worker.plugins)
    assert plugged and all(plugged.values())


def test_a_cluster_sweep_needs_a_shared_out(client):
    with pytest.raises(ValueError, match="out="):
        sweep(clips(0.3), pacing="fast", client=client, progress=False)


def test_without_dask_a_client_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install avatar_nb\[dask\]"):
        sweep(clips(0.3), pacing="fast", client=object(), out="unused", progress=False)
