"""Captured sessions as runs: one row per capture, with its own condition columns.

``sweep(captures=...)`` (and :func:`captures_to_dataset`) read every capture with
:func:`~avatar_nb.tap.load_capture` and write each as a run through the dataset's
writer, so recorded production sessions and local experiments land in one table.
The conditions come from the capture (:func:`~avatar_nb.tap.capture_conditions`:
``app``, ``avatar``, ``sample_rate``, ``audio_format``, ``egress``, ``client``,
``capture``, ``close_code``, ``complete``), the figures from the Timeline's summary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .fileformat import CAPTURE_SUFFIX, read_capture
from .timeline import capture_conditions, load_capture

__all__ = ["capture_files", "captures_to_dataset"]


def capture_files(captures: Any) -> list[Path]:
    """The capture files named by ``captures``: a file, a folder (its ``*.anbcap``, by
    name, with subfolders), or an iterable of those."""
    if isinstance(captures, (str, Path)):
        captures = [captures]
    files: list[Path] = []
    for item in captures if isinstance(captures, Iterable) else [captures]:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(path.rglob(f"*{CAPTURE_SUFFIX}")))
        elif path.exists():
            files.append(path)
        else:
            raise ValueError(f"no capture file or folder at {path}")
    return files


def _row(index: int, path: Path) -> tuple[dict[str, Any], Any]:
    row: dict[str, Any] = {"run": index, "run_id": path.stem, "clip": path.name, "repeat": 0}
    try:
        capture = read_capture(path)
        row.update(capture_conditions(capture))
        timeline = load_capture(capture)
    except ValueError as exc:
        row.update(status="failed", error=str(exc))
        return row, None
    failed = bool(timeline.errors) or not timeline.complete
    row.update(status="failed" if failed else "ok", error="; ".join(timeline.errors[:3]))
    row["connection_id"] = timeline.meta.get("connection_id")
    for key, value in timeline.summary().items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        row.setdefault(key, value)
    return row, timeline


def captures_to_dataset(captures: Any, out: str | Path | None = None) -> Any:
    """Every capture as a run; written to the dataset at ``out`` when given (read it with
    :func:`avatar_nb.load_results`), else kept in memory. Returns a
    :class:`~avatar_nb.experiments.results.SweepResult`. A capture that does not read
    is a failed run whose ``error`` names the file and the message index."""
    import pandas as pd

    from ..experiments.results import SweepResult

    rows: list[dict[str, Any]] = []
    timelines: dict[str, Any] = {}
    started = time.time()
    if out is not None:
        from ..dataset import DatasetWriter

        with DatasetWriter(out) as writer:
            for i, path in enumerate(capture_files(captures)):
                row, timeline = _row(i, path)
                row["started_at"] = started
                writer.add(row, timeline)
                rows.append(row)
    else:
        for i, path in enumerate(capture_files(captures)):
            row, timeline = _row(i, path)
            rows.append(row)
            if timeline is not None:
                timelines[row["run_id"]] = timeline
    return SweepResult(pd.DataFrame(rows), Path(out) if out is not None else None, timelines)
