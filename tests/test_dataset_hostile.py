"""Hostile dataset folders: nothing outside the dataset is read or deleted, nothing hangs,
and anything malformed is a ValueError naming its file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from avatar_nb.dataset import (
    KEYFRAMES_DIR,
    RUNS_DIR,
    consolidate,
    finished_runs,
    load_results,
)

from .test_dataset import small_dataset, synthetic_timeline


def _one_segment(root: Path) -> Path:
    """A dataset of one segment holding two runs in one file; its runs file."""
    from avatar_nb.dataset import DatasetWriter

    with DatasetWriter(root) as writer:
        for i in range(2):
            writer.add(
                {"run": i, "run_id": f"run{i}", "status": "ok"}, synthetic_timeline(20, seed=i)
            )
    (path,) = (root / RUNS_DIR).iterdir()
    return path


def _edit(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


# ---------------------------------------------------------------- paths that leave the folder


@pytest.mark.parametrize("kind", ["absolute", "parent", "separator"])
def test_a_runs_file_cannot_name_a_file_outside_the_dataset(tmp_path, kind):
    root = tmp_path / "a" / "b" / "ds"
    runs_file = _one_segment(root)
    secret = tmp_path / "secret.parquet"
    real = next((root / KEYFRAMES_DIR).iterdir())
    pq.write_table(pq.read_table(real), secret)  # the same columns: it would read
    name = {
        "absolute": str(secret),
        "parent": "../../../../secret.parquet",
        "separator": "sub/x.parquet",
    }[kind]
    _edit(runs_file, lambda d: d.__setitem__("files", [name]))
    results = load_results(root)
    with pytest.raises(ValueError, match=runs_file.name):
        results.keyframes()
    with pytest.raises(ValueError, match=runs_file.name):
        finished_runs(root)


def test_a_keyframe_file_linked_outside_the_dataset_is_refused(tmp_path):
    root = tmp_path / "ds"
    _one_segment(root)
    real = next((root / KEYFRAMES_DIR).iterdir())
    secret = tmp_path / "secret.parquet"
    real.rename(secret)
    real.symlink_to(secret)
    with pytest.raises(ValueError, match=real.name):
        load_results(root).keyframes()


# ---------------------------------------------------------------- special files never hang

HANG = """
import sys
from avatar_nb.dataset import load_results
try:
    results = load_results(sys.argv[1])
    _ = results.runs
    results.keyframes()
except ValueError as exc:
    print("ValueError:", exc)
"""


@pytest.mark.parametrize("which", ["keyframes", "runs"])
def test_a_fifo_in_place_of_a_file_does_not_hang(tmp_path, which):
    root = tmp_path / "ds"
    runs_file = _one_segment(root)
    target = runs_file if which == "runs" else next((root / KEYFRAMES_DIR).iterdir())
    target.unlink()
    os.mkfifo(target)
    command = [sys.executable, "-c", HANG, str(root)]
    try:  # the bound is for a hang (before the fix), not a measure of speed
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading a dataset with a FIFO as its {which} file hung")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ValueError:") and target.name in done.stdout
    assert "not a regular file" in done.stdout


def test_a_folder_in_place_of_a_keyframe_file_is_named(tmp_path):
    root = tmp_path / "ds"
    _one_segment(root)
    target = next((root / KEYFRAMES_DIR).iterdir())
    target.unlink()
    target.mkdir()
    with pytest.raises(ValueError, match=rf"{target.name}.*not a regular file"):
        load_results(root).keyframes()


# ---------------------------------------------------------------- row ranges


def test_overlapping_row_ranges_are_refused(tmp_path):
    root = tmp_path / "ds"
    runs_file = _one_segment(root)
    _edit(runs_file, lambda d: d["keyframes"].__setitem__("run1", [0, 5, 20]))
    with pytest.raises(ValueError, match=rf"{runs_file.name}.*overlap"):
        load_results(root).keyframes()


def test_a_file_named_by_two_runs_files_is_refused(tmp_path):
    root = tmp_path / "ds"
    small_dataset(root, runs=2)
    first, second = sorted((root / RUNS_DIR).iterdir())
    taken = json.loads(first.read_text())["files"]
    _edit(second, lambda d: d.__setitem__("files", taken))
    with pytest.raises(ValueError, match=rf"{taken[0]}.*named by"):
        load_results(root).keyframes()


def test_a_row_range_past_the_files_rows_is_refused(tmp_path):
    root = tmp_path / "ds"
    runs_file = _one_segment(root)
    _edit(runs_file, lambda d: d["keyframes"].__setitem__("run1", [0, 20, 30]))
    with pytest.raises(ValueError, match=rf"{runs_file.name}.*rows"):
        load_results(root).keyframes()


def test_a_file_of_other_rows_than_its_runs_file_says_is_refused(tmp_path):
    root = tmp_path / "ds"
    runs_file = _one_segment(root)
    _edit(
        runs_file,
        lambda d: (
            d.__setitem__("file_rows", [80]),
            d["keyframes"].__setitem__("run1", [0, 20, 60]),
        ),
    )
    real = next((root / KEYFRAMES_DIR).iterdir())
    with pytest.raises(ValueError, match=rf"{real.name}.*40 rows.*80"):
        load_results(root).keyframes()


# ---------------------------------------------------------------- malformed fields

MALFORMED = {
    "not an object": lambda d: [1, 2],
    "no files": lambda d: d.pop("files") and d,
    "files not a list": lambda d: {**d, "files": 7},
    "a file name not text": lambda d: {**d, "files": [3]},
    "a dot file": lambda d: {**d, "files": [".hidden.parquet"]},
    "file_rows of another length": lambda d: {**d, "file_rows": [40, 40]},
    "file_rows negative": lambda d: {**d, "file_rows": [-1]},
    "file_rows not ints": lambda d: {**d, "file_rows": ["40"]},
    "keyframes not an object": lambda d: {**d, "keyframes": []},
    "a stretch too short": lambda d: {**d, "keyframes": {"run0": [0, 0]}},
    "a stretch of floats": lambda d: {**d, "keyframes": {"run0": [0, 0.5, 20]}},
    "a stretch of a bool": lambda d: {**d, "keyframes": {"run0": [True, 0, 20]}},
    "a stretch's file index out of range": lambda d: {**d, "keyframes": {"run0": [5, 0, 20]}},
    "a stretch's start negative": lambda d: {**d, "keyframes": {"run0": [0, -20, 20]}},
    "a stretch of no rows": lambda d: {**d, "keyframes": {"run0": [0, 0, 0]}},
    "keyframes of a run with no row": lambda d: {**d, "keyframes": {"ghost": [0, 0, 20]}},
    "rows not a list": lambda d: {**d, "rows": {"run_id": "run0"}},
    "a row not an object": lambda d: {**d, "rows": ["run0"]},
    "a row without run_id": lambda d: {**d, "rows": [{"status": "ok"}]},
    "a run_id not text": lambda d: {**d, "rows": [{"run_id": 5}]},
    "a run_id with a slash": lambda d: {**d, "rows": [{"run_id": "../x"}]},
    "not JSON": None,
    "not UTF-8": None,
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_runs_file_is_a_value_error_naming_it(tmp_path, case):
    root = tmp_path / "ds"
    runs_file = _one_segment(root)
    if case == "not JSON":
        runs_file.write_text('{"version": 1, "files": [')
    elif case == "not UTF-8":
        runs_file.write_bytes(b'{"version": 1, "files": ["\xff"]}')
    else:
        document = json.loads(runs_file.read_text())
        runs_file.write_text(json.dumps(MALFORMED[case](document)))
    with pytest.raises(ValueError, match=runs_file.name):
        results = load_results(root)
        _ = results.runs
        results.keyframes()
    with pytest.raises(ValueError, match=runs_file.name):
        finished_runs(root)


def test_a_malformed_sweep_file_is_a_value_error_naming_it(tmp_path):
    root = small_dataset(tmp_path / "ds", runs=1)
    (root / "sweep.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="sweep.json"):
        _ = load_results(root).info


def test_a_good_dataset_still_reads_after_the_checks(tmp_path):
    root = small_dataset(tmp_path / "ds")
    frame = load_results(root).keyframes()
    assert sorted(frame["run_id"].astype(str).unique()) == ["run0", "run1", "run2"]
    assert isinstance(load_results(root).runs, pd.DataFrame)


def test_a_keyframe_file_gone_since_the_runs_files_were_read_says_so(tmp_path):
    root = small_dataset(tmp_path / "ds")
    results = load_results(root)
    assert len(results.runs) == 3
    consolidate(root)  # merges the three segments: their files are gone
    with pytest.raises(FileNotFoundError, match="changed since.*load_results"):
        results.keyframes()
    assert len(load_results(root).keyframes()) == 60
