"""Tidying a dataset (:func:`consolidate`, at the end of every sweep and batch, under the
dataset's exclusive lock): stale and small segments rewritten, keyframe files of killed
writers removed, ``runs.parquet`` rewritten.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog import Catalog, streamed
from .layout import (
    KEYFRAMES_DIR,
    RUNS_DIR,
    RUNS_TABLE,
    SEGMENT_BYTES,
    SEGMENT_FILE,
    SEGMENT_TEMPORARY,
    atomic_table,
    dataset_lock,
    runs_frame,
)
from .writer import DatasetWriter

if TYPE_CHECKING:
    import pyarrow as pa


# a temporary from another host is taken for abandoned when it has not changed for this long
_ABANDONED_SECONDS = 24 * 3600.0


def consolidate(root: str | Path, *, small_bytes: int = SEGMENT_BYTES // 8) -> Path:
    """Tidy the dataset at ``root`` (at the end of every sweep and batch).

    Segments holding an earlier attempt of a run written again, and segments smaller
    than ``small_bytes`` when there are several, are rewritten into new segments with
    the current runs only (one row group at a time in memory); keyframe files no runs file
    names (left by a writer killed between its two renames) are removed; ``runs.parquet``
    is rewritten. Each step leaves a readable dataset if it is interrupted: the new
    segments are committed before the old ones are removed, and the latest wins.

    It runs under the dataset's exclusive lock (:func:`~.layout.dataset_lock`): writers
    of other processes or hosts may go on committing into ``root`` meanwhile (their
    commits wait for it), and two calls at once run one after the other. It deletes only
    regular files inside ``root`` named as a writer names them (``<segment>.parquet``,
    its open segments' temporaries, the runs files it replaced), and refuses, with
    ``ValueError``, a dataset whose ``keyframes/`` or ``runs/`` is a symbolic link: their
    files would be elsewhere. ``root`` itself may be a link.
    """
    import pyarrow as pa

    root = Path(root)
    with dataset_lock(root, exclusive=True):
        for name in (KEYFRAMES_DIR, RUNS_DIR):
            folder = root / name
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                raise ValueError(
                    f"{folder} is a symbolic link or not a folder: consolidate tidies only a "
                    f"dataset whose {name}/ is a folder of its own (it deletes files in it); "
                    f"move the files into a real {name}/ folder"
                )
        catalog = Catalog(root)
        small = {
            s.name
            for s in catalog.segments
            if sum(p.stat().st_size for p in s.files if p.exists()) < small_bytes
        }
        redo = [
            s for s in catalog.segments if catalog.stale(s) or (len(small) > 1 and s.name in small)
        ]
        if redo:
            with DatasetWriter(root, commit_seconds=float("inf")) as writer:
                for segment in redo:
                    current = [
                        r for r in segment.rows if catalog.owner[r["run_id"]] == segment.name
                    ]
                    for row, table in _segment_runs(catalog, current):
                        writer.add(row, table)
            for segment in redo:
                _remove(root / RUNS_DIR / f"{segment.name}.json")
            catalog = Catalog(root)
        named = {path.name for segment in catalog.segments for path in segment.files}
        folder = root / KEYFRAMES_DIR
        if folder.is_dir():
            for path in folder.iterdir():
                name = path.name
                left = (
                    name.startswith(SEGMENT_TEMPORARY)
                    and name.endswith(".tmp")
                    and _abandoned(path)
                )
                unnamed = SEGMENT_FILE.match(name) is not None and name not in named
                if left or unnamed:
                    _remove(path)
        path = root / RUNS_TABLE
        atomic_table(
            pa.Table.from_pandas(runs_frame(catalog.rows.values()), preserve_index=False), path
        )
    return path


def _remove(path: Path) -> None:
    """Delete ``path`` if it is a regular file (a link or anything else is left alone)."""
    try:
        if stat.S_ISREG(path.lstat().st_mode):
            path.unlink(missing_ok=True)
    except FileNotFoundError:
        pass


def _abandoned(path: Path) -> bool:
    """Whether the open segment ``path`` belongs to a writer that is gone."""
    try:
        host, pid, _ = path.name[len(SEGMENT_TEMPORARY) :].rsplit("-", 2)
    except ValueError:  # not a name a writer gave
        return False
    if host != socket.gethostname():
        try:
            return time.time() - path.stat().st_mtime > _ABANDONED_SECONDS
        except FileNotFoundError:
            return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def _segment_runs(
    catalog: Catalog, rows: Sequence[dict[str, Any]]
) -> Iterator[tuple[dict[str, Any], pa.Table | None]]:
    """Each of ``rows`` with its keyframes (an Arrow table, without ``run_id``), a file's row group at a time."""
    with_frames = [r for r in rows if r["run_id"] in catalog.keyframes]
    for row in rows:
        if row["run_id"] not in catalog.keyframes:
            yield row, None
    by_id = {r["run_id"]: r for r in with_frames}
    stretches = [(r["run_id"], catalog.keyframes[r["run_id"]]) for r in with_frames]
    for pieces in streamed(stretches, None):
        for run_id, table in pieces:
            yield by_id[run_id], table
