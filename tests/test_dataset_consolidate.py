"""``consolidate`` deletes only files a writer wrote, inside the dataset's own folder; and
several processes in one dataset folder: writers committing while ``consolidate`` runs,
and ``consolidate`` run by two processes at once. Nothing committed is ever lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from avatar_nb.dataset import (
    KEYFRAMES_DIR,
    RUNS_DIR,
    consolidate,
    finished_runs,
    load_results,
    write_result,
)

from .test_dataset import small_dataset


def test_consolidate_refuses_a_symlinked_keyframes_folder_and_deletes_nothing_there(tmp_path):
    root = small_dataset(tmp_path / "ds")
    elsewhere = tmp_path / "elsewhere"
    (root / KEYFRAMES_DIR).rename(elsewhere)
    (root / KEYFRAMES_DIR).symlink_to(elsewhere, target_is_directory=True)
    pq.write_table(pa.table({"x": [1, 2, 3]}), elsewhere / "theirs.parquet")
    before = sorted(p.name for p in elsewhere.iterdir())
    with pytest.raises(ValueError, match=r"keyframes.*symbolic link"):
        consolidate(root)
    assert sorted(p.name for p in elsewhere.iterdir()) == before


def test_consolidate_refuses_a_symlinked_runs_folder(tmp_path):
    root = small_dataset(tmp_path / "ds")
    elsewhere = tmp_path / "elsewhere"
    (root / RUNS_DIR).rename(elsewhere)
    (root / RUNS_DIR).symlink_to(elsewhere, target_is_directory=True)
    before = sorted(p.name for p in elsewhere.iterdir())
    with pytest.raises(ValueError, match=r"runs.*symbolic link"):
        consolidate(root)
    assert sorted(p.name for p in elsewhere.iterdir()) == before


def test_consolidate_deletes_only_files_a_writer_named(tmp_path):
    root = small_dataset(tmp_path / "ds")
    folder = root / KEYFRAMES_DIR
    pq.write_table(pa.table({"x": [1]}), folder / "notes.parquet")  # the user's own file
    outside = tmp_path / "outside.parquet"
    pq.write_table(pa.table({"x": [1]}), outside)
    (folder / "18eec4a89d3f2414-0005-027b183c.parquet").symlink_to(outside)  # a link, not a file
    consolidate(root)
    assert (folder / "notes.parquet").is_file() and outside.is_file()
    assert (folder / "18eec4a89d3f2414-0005-027b183c.parquet").is_symlink()
    assert finished_runs(root) == {"run0", "run1", "run2"}


def test_a_dataset_reached_through_a_symlink_consolidates(tmp_path):
    root = small_dataset(tmp_path / "ds")
    link = tmp_path / "link"
    link.symlink_to(root, target_is_directory=True)
    consolidate(link)
    assert len(list((root / KEYFRAMES_DIR).iterdir())) == 1
    assert finished_runs(link) == {"run0", "run1", "run2"}


# ---------------------------------------------------------------- several processes

# a writer committing ``count`` small runs one segment each (as a sweep's end, or
# ``avatar-nb run``, commits), saying which ones were committed
WRITER = """
import json, sys
import numpy as np
import pyarrow as pa
from avatar_nb.dataset import write_result
root, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
committed, errors = [], []
for i in range(count):
    rows = 3 + i % 5
    table = pa.table({"seq": pa.array(np.full(rows, i, np.int64)),
                      "frame": pa.array(np.arange(rows, dtype=np.int64))})
    run_id = f"{name}-{i}"
    try:
        write_result(root, {"run_id": run_id, "status": "ok", "seq": i}, table)
        committed.append(run_id)
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
print(json.dumps({"committed": committed, "errors": errors}))
"""

# consolidate in a loop until ``stop`` exists (at most ``limit`` times), counting what it raised
CONSOLIDATOR = """
import json, os, sys, time
from avatar_nb.dataset import consolidate
root, stop, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
go = sys.argv[4] if len(sys.argv) > 4 else None
while go and not os.path.exists(go):
    time.sleep(0.001)
calls, errors = 0, []
while calls < limit and not os.path.exists(stop):
    calls += 1
    try:
        consolidate(root)
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
print(json.dumps({"calls": calls, "errors": errors}))
"""


def _python(code: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _report(process: subprocess.Popen, timeout: float = 600) -> dict:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _assert_readable(root: Path, committed: list[str]) -> None:
    """Every committed run is finished and reads back its own rows."""
    results = load_results(root)
    frame = results.keyframes(columns=["seq", "frame"])
    assert set(frame["run_id"].astype(str)) == set(committed)
    for run_id, rows in frame.groupby("run_id", observed=True):
        seq = int(str(run_id).rsplit("-", 1)[1])
        assert set(rows["seq"]) == {seq}, run_id
        assert list(rows["frame"]) == list(range(3 + seq % 5)), run_id
    assert set(results.runs["run_id"]) == set(committed)


def test_consolidate_racing_two_writers_loses_no_committed_run(tmp_path):
    root, stop = tmp_path / "out", tmp_path / "stop"
    consolidator = _python(CONSOLIDATOR, root, stop, 2000)
    writers = [_python(WRITER, root, name, 150) for name in ("a", "b")]
    reports = [_report(w) for w in writers]
    stop.touch()
    tidy = _report(consolidator)
    committed = [run_id for r in reports for run_id in r["committed"]]
    assert [e for r in reports for e in r["errors"]] == []
    lost = set(committed) - finished_runs(root)
    assert not lost, f"{len(lost)} of {len(committed)} committed runs lost"
    assert tidy["calls"] > 1
    assert tidy["errors"] == [], (
        f"{len(tidy['errors'])} of {tidy['calls']} consolidate calls raised"
    )
    _assert_readable(root, committed)
    # and a consolidate afterwards leaves them so
    consolidate(root)
    _assert_readable(root, committed)


def test_two_consolidates_at_once_never_raise(tmp_path):
    failures, trials = [], 4
    for trial in range(trials):
        root = tmp_path / f"t{trial}"
        committed = []
        for i in range(40):  # small segments: both calls find work to do
            run_id = f"c-{i}"
            rows = 3 + i % 5
            table = pa.table({"seq": [i] * rows, "frame": list(range(rows))})
            write_result(root, {"run_id": run_id, "status": "ok", "seq": i}, table)
            committed.append(run_id)
        go = tmp_path / f"go{trial}"
        calls = [_python(CONSOLIDATOR, root, tmp_path / "never", 1, go) for _ in range(2)]
        go.touch()
        reports = [_report(c) for c in calls]
        failures += [e for r in reports for e in r["errors"]]
        _assert_readable(root, committed)
    assert failures == [], f"{len(failures)} raised in {trials} trials: {failures[:2]}"


def test_threads_of_one_process_share_the_lock_as_processes_do(tmp_path):
    import threading

    root = tmp_path / "out"
    stop = threading.Event()
    committed: list[str] = []
    errors: list[BaseException] = []

    def write(name: str) -> None:
        for i in range(60):
            rows = 3 + i % 5
            table = pa.table({"seq": [i] * rows, "frame": list(range(rows))})
            write_result(root, {"run_id": f"{name}-{i}", "status": "ok", "seq": i}, table)
            committed.append(f"{name}-{i}")

    def tidy() -> None:
        while not stop.is_set():
            try:
                consolidate(root)
            except BaseException as exc:  # noqa: BLE001 - counted
                errors.append(exc)

    tidier = threading.Thread(target=tidy)
    tidier.start()
    writers = [threading.Thread(target=write, args=(name,)) for name in "ab"]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    tidier.join()
    assert errors == []
    assert set(committed) <= finished_runs(root)
    _assert_readable(root, committed)


def test_reading_never_creates_the_lock_file(tmp_path):
    from avatar_nb.dataset import LOCK_FILE

    root = small_dataset(tmp_path / "ds", runs=1)
    (root / LOCK_FILE).unlink()
    results = load_results(root)
    assert len(results.runs) == 1 and len(results.keyframes()) == 20
    assert finished_runs(root) == {"run0"}
    assert not (root / LOCK_FILE).exists()
