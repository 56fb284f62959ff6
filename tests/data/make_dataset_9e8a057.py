"""Writes ``dataset_9e8a057/``: a small dataset in the on-disk format of avatar_nb 9e8a057.

Run once with that commit's ``avatar_nb.dataset`` (a single module then) to make the
fixture that ``tests/test_dataset_package.py`` reads and resumes with today's code::

    PYTHONPATH=<checkout of 9e8a057>/src python tests/data/make_dataset_9e8a057.py

What it holds, so that the reader meets every kind of segment: a segment of three runs
written by one ``DatasetWriter`` (two layouts: E = 10 and E = 12, so two keyframe files),
a failed run (row only), a run written again (its later attempt in a later segment, the
earlier one left stale), ``sweep.json``, and ``runs.parquet`` from a ``consolidate`` made
before the last two segments (so the dataset is not consolidated).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the tests folder: synthetic_timeline

from avatar_nb.dataset import (  # noqa: E402 - after the tests folder is on the path
    DatasetWriter,
    consolidate,
    write_result,
    write_run,
    write_sweep_info,
)
from test_dataset import synthetic_timeline  # noqa: E402

ROOT = HERE / "dataset_9e8a057"

# run id -> (keyframes, seed, expression count) of the runs whose keyframes are kept
RUNS = {
    "run0": (24, 100, 10),
    "run1": (30, 101, 12),
    "run2": (36, 102, 10),
    "run4": (28, 104, 10),
}


def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    write_sweep_info(ROOT, {"clips": ["a", "b"], "grid": {"chunk_ms": [20, 40]}, "seed": 7})
    with DatasetWriter(ROOT) as writer:
        for index, run_id in enumerate(["run0", "run1", "run2"]):
            n, seed, expression = RUNS[run_id]
            row = {
                "run": index,
                "run_id": run_id,
                "status": "ok",
                "chunk_ms": 20.0 * (index + 1),
                "latency_p50": 0.08 + index / 100,
                "grid": {"chunk_ms": 20 * (index + 1)},
            }
            writer.add(row, synthetic_timeline(n, seed=seed, n_expression=expression))
    write_run(
        ROOT,
        {
            "run": 3,
            "run_id": "run3",
            "status": "failed",
            "error": "ValueError: boom",
            "chunk_ms": 80.0,
            "latency_p50": None,
        },
    )
    # run4: a failed first attempt with keyframes, then the attempt that counts
    write_result(
        ROOT,
        {
            "run": 4,
            "run_id": "run4",
            "status": "failed",
            "error": "TimeoutError: late",
            "chunk_ms": 100.0,
            "latency_p50": None,
        },
        synthetic_timeline(20, seed=999, n_expression=10),
    )
    consolidate(ROOT)
    n, seed, expression = RUNS["run4"]
    write_result(
        ROOT,
        {
            "run": 4,
            "run_id": "run4",
            "status": "ok",
            "error": "",
            "chunk_ms": 100.0,
            "latency_p50": 0.12,
        },
        synthetic_timeline(n, seed=seed, n_expression=expression),
    )
    # a run retried after the consolidation: the earlier attempt's segment is now stale
    write_result(
        ROOT,
        {
            "run": 1,
            "run_id": "run1",
            "status": "ok",
            "chunk_ms": 40.0,
            "latency_p50": 0.09,
            "grid": {"chunk_ms": 40},
        },
        synthetic_timeline(*RUNS["run1"][:1], seed=RUNS["run1"][1], n_expression=RUNS["run1"][2]),
    )


if __name__ == "__main__":
    main()
