"""The catalog of a dataset: every segment's runs file read once, giving each run's current
row (the latest segment naming it wins) and where its keyframes are (a :class:`Stretch` of
a keyframe file); reading those stretches, a file's row groups at a time; and what a
resume needs from it (:func:`finished_runs`, :func:`read_runs`).
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .layout import FORMAT_VERSION, KEYFRAMES_DIR, RUNS_DIR, runs_frame

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


# columns read at once from which Arrow's threads decode them
_COLUMNS_PER_THREAD = 8
# values (rows x columns) read at once from which files are read on threads of their own
_CELLS_PER_THREAD = 1 << 23


@dataclass(frozen=True)
class Stretch:
    """Where one run's keyframes are: ``rows`` rows of ``path`` from row ``start``."""

    path: Path
    start: int
    rows: int


@dataclass
class Segment:
    name: str
    files: list[Path]
    file_rows: list[int]
    rows: list[dict[str, Any]]
    keyframes: dict[str, Stretch]


class Catalog:
    """Every segment's runs file, read once: the current row of each run (the latest
    segment naming it wins) and where its keyframes are."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.segments: list[Segment] = []
        folder = root / RUNS_DIR
        names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        for name in names:
            if name.startswith(".") or not name.endswith(".json"):
                continue
            self.segments.append(self._segment(folder / name))
        self.rows: dict[str, dict[str, Any]] = {}
        self.owner: dict[str, str] = {}  # run id -> the segment holding its current row
        self.keyframes: dict[str, Stretch] = {}
        for segment in self.segments:
            for row in segment.rows:
                run_id = row["run_id"]
                self.rows.pop(run_id, None)
                self.rows[run_id] = row
                self.owner[run_id] = segment.name
                self.keyframes.pop(run_id, None)
                if run_id in segment.keyframes:
                    self.keyframes[run_id] = segment.keyframes[run_id]

    @staticmethod
    def _segment(path: Path) -> Segment:
        try:
            document = json.loads(path.read_text())
            version = document.get("version") if isinstance(document, dict) else None
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a runs file of an avatar_nb dataset ({exc})") from None
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{path}: runs file of dataset format {version!r}; this avatar_nb reads format "
                f"{FORMAT_VERSION} (written by avatar_nb since the dataset's segments)"
            )
        files = [path.parent.parent / KEYFRAMES_DIR / name for name in document["files"]]
        return Segment(
            name=path.stem,
            files=files,
            file_rows=list(document["file_rows"]),
            rows=list(document["rows"]),
            keyframes={
                run_id: Stretch(files[index], start, rows)
                for run_id, (index, start, rows) in document["keyframes"].items()
            },
        )

    def stale(self, segment: Segment) -> bool:
        """Whether ``segment`` holds rows or keyframes that a later segment replaced."""
        if any(self.owner[row["run_id"]] != segment.name for row in segment.rows):
            return True
        kept = sum(s.rows for s in segment.keyframes.values())
        return kept != sum(segment.file_rows)

    def finished(self) -> set[str]:
        existing: dict[Path, bool] = {}
        done = set()
        for run_id, row in self.rows.items():
            stretch = self.keyframes.get(run_id)
            if row.get("status") == "ok" and stretch is not None:
                if stretch.path not in existing:
                    existing[stretch.path] = stretch.path.exists()
                if existing[stretch.path]:
                    done.add(run_id)
        return done


def finished_runs(root: str | Path) -> set[str]:
    """Run ids whose current row says ``status == "ok"`` and whose keyframes are on disk: what a resume skips."""
    return Catalog(Path(root)).finished()


def read_runs(root: str | Path) -> pd.DataFrame:
    """The runs table of the dataset at ``root`` (empty when there is none yet)."""
    return runs_frame(Catalog(Path(root)).rows.values())


class _File:
    """A keyframe file opened for reading: its footer and the first row of each row group."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        # no pre-buffering: a column of a row group is one read anyway
        self.file = pq.ParquetFile(path, pre_buffer=False)
        meta = self.file.metadata
        self.bounds = list(
            itertools.accumulate(
                (meta.row_group(i).num_rows for i in range(meta.num_row_groups)), initial=0
            )
        )

    def groups(self, stretch: Stretch) -> range:
        """The row groups ``stretch`` spans."""
        first = bisect.bisect_right(self.bounds, stretch.start) - 1
        last = bisect.bisect_right(self.bounds, stretch.start + stretch.rows - 1) - 1
        return range(first, last + 1)

    def columns(self, columns: Sequence[str] | None) -> list[str]:
        if columns is None:
            return [c for c in self.file.schema_arrow.names if c != "run_id"]
        return [c for c in columns if c != "run_id"]

    def read(
        self, stretches: Sequence[tuple[str, Stretch]], columns: Sequence[str] | None
    ) -> list[tuple[str, pa.Table]]:
        """Each run's rows (``columns`` only), reading the row groups they span once."""
        needed = sorted({g for _, s in stretches for g in self.groups(s)})
        names = self.columns(columns)
        # Arrow decodes columns on its thread pool; for a few columns, starting and
        # waking the pool costs more than it saves (1.3 ms against 3.1 ms for one column
        # of 16 row groups)
        table = self.file.read_row_groups(
            needed, columns=names, use_threads=len(names) >= _COLUMNS_PER_THREAD
        )
        position = {}
        at = 0
        for g in needed:  # where each row group starts in what was read
            position[g] = at
            at += self.bounds[g + 1] - self.bounds[g]
        out = []
        for run_id, stretch in stretches:
            first = self.groups(stretch)[0]
            offset = position[first] + stretch.start - self.bounds[first]
            out.append((run_id, table.slice(offset, stretch.rows)))
        return out


def _by_file(stretches: Sequence[tuple[str, Stretch]]) -> dict[Path, list[tuple[str, Stretch]]]:
    files: dict[Path, list[tuple[str, Stretch]]] = {}
    for run_id, stretch in stretches:
        files.setdefault(stretch.path, []).append((run_id, stretch))
    for items in files.values():
        items.sort(key=lambda item: item[1].start)
    return files


def read_stretches(
    stretches: Sequence[tuple[str, Stretch]], columns: Sequence[str] | None
) -> list[tuple[str, pa.Table]]:
    """(run id, its keyframes) of each of ``stretches``: every file's row groups in one
    read each, in no set order; the files on a thread each when there is much to read."""
    files = _by_file(stretches)

    def one(item: tuple[Path, list[tuple[str, Stretch]]]) -> list[tuple[str, pa.Table]]:
        return _File(item[0]).read(item[1], columns)

    # starting threads costs a millisecond or two: more than reading a column or two
    cells = sum(s.rows for _, s in stretches) * (len(columns) if columns is not None else 64)
    if len(files) < 2 or cells < _CELLS_PER_THREAD:
        pieces = [one(item) for item in files.items()]
    else:
        from concurrent.futures import ThreadPoolExecutor

        workers = min(os.cpu_count() or 1, len(files))
        with ThreadPoolExecutor(workers, thread_name_prefix="avatar_nb-read") as pool:
            pieces = list(pool.map(one, files.items()))
    return [item for piece in pieces for item in piece]


def file_batches(
    stretches: Sequence[tuple[str, Stretch]],
) -> Iterator[tuple[_File, list[tuple[str, Stretch]]]]:
    """The runs of each file grouped by the row group they start in, in the order they
    are stored: what one read of a row group (or of the few a long run spans) returns."""
    for path, items in _by_file(stretches).items():
        file = _File(path)
        by_group: dict[int, list[tuple[str, Stretch]]] = {}
        for run_id, stretch in items:
            by_group.setdefault(file.groups(stretch)[0], []).append((run_id, stretch))
        for group in sorted(by_group):
            yield file, by_group[group]


def streamed(
    stretches: Sequence[tuple[str, Stretch]], columns: Sequence[str] | None
) -> Iterator[list[tuple[str, pa.Table]]]:
    """The runs a row group holds at a time, each run whole, in the order they are stored."""
    for file, batch in file_batches(stretches):
        yield file.read(batch, columns)
