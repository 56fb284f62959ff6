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
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .layout import (
    FORMAT_VERSION,
    KEYFRAMES_DIR,
    RUNS_DIR,
    check_run_id,
    dataset_lock,
    runs_frame,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


# columns read at once from which Arrow's threads decode them
_COLUMNS_PER_THREAD = 8
# values (rows x columns) read at once from which files are read on threads of their own
_CELLS_PER_THREAD = 1 << 23


@dataclass(frozen=True)
class Stretch:
    """Where one run's keyframes are: ``rows`` rows of ``path`` from row ``start``
    (a file its runs file says holds ``file_rows`` rows)."""

    path: Path
    start: int
    rows: int
    file_rows: int | None = None


@dataclass
class Segment:
    name: str
    files: list[Path]
    file_rows: list[int]
    rows: list[dict[str, Any]]
    keyframes: dict[str, Stretch]


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "of an unknown kind"


def check_regular(path: Path) -> Path:
    """``path`` when it is a regular file (not followed if a link), else ValueError naming it.

    Keyframe files are checked so before Arrow opens them: a FIFO would hang the read, a
    link could lead out of the dataset."""
    mode = path.lstat().st_mode
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path}: not a regular file ({_kind(mode)}); not part of a dataset")
    return path


def is_regular(path: Path) -> bool:
    """Whether ``path`` is a regular file (a link to one is not)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def read_regular(path: Path) -> bytes:
    """The bytes of the regular file ``path`` (not through a link; a FIFO or a device is
    refused without blocking), else ValueError naming it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise ValueError(f"{path}: not a regular file (a symbolic link)") from None
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot be read ({exc})") from None
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"{path}: not a regular file ({_kind(mode)}); not part of a dataset")
        return fh.read()


def _inside(root: Path, folder: Path) -> None:
    """Refuse ``folder`` (of the dataset at ``root``) when it leads out of ``root``."""
    if folder.is_symlink() or folder.exists():
        real, home = os.path.realpath(folder), os.path.realpath(root)
        if os.path.commonpath([real, home]) != home:
            raise ValueError(
                f"{folder} leads out of the dataset (to {real}): a dataset's files are in its "
                "own folder"
            )


# a file name a runs file may give: no folder, no leading dot
_FILE_NAME = re.compile(r"[^./\\\x00][^/\\\x00]*\.parquet\Z")


def _count(value: Any, least: int) -> bool:
    return type(value) is int and value >= least


class Catalog:
    """Every segment's runs file, read once: the current row of each run (the latest
    segment naming it wins) and where its keyframes are.

    Every field is checked (``ValueError`` naming the runs file for anything malformed):
    files are plain names inside ``keyframes/``, no file is named by two runs files, row
    ranges are non-negative, within the file's rows and do not overlap. The runs files
    are read under the dataset's shared lock (:func:`~.layout.dataset_lock`), so no
    consolidate is half done meanwhile."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.segments: list[Segment] = []
        folder = root / RUNS_DIR
        _inside(root, folder)
        _inside(root, root / KEYFRAMES_DIR)
        with dataset_lock(root, exclusive=False, create=False):
            names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
            for name in names:
                if name.startswith(".") or not name.endswith(".json"):
                    continue
                self.segments.append(self._segment(folder / name))
        self.rows: dict[str, dict[str, Any]] = {}
        self.owner: dict[str, str] = {}  # run id -> the segment holding its current row
        self.keyframes: dict[str, Stretch] = {}
        named: dict[Path, str] = {}
        for segment in self.segments:
            for path in segment.files:
                if path in named:
                    raise ValueError(
                        f"{path.name} is named by runs files {named[path]}.json and "
                        f"{segment.name}.json: a keyframe file belongs to one segment"
                    )
                named[path] = segment.name
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
            document = json.loads(read_regular(path))
            version = document.get("version") if isinstance(document, dict) else None
        except FileNotFoundError:
            raise
        except ValueError as exc:
            if str(exc).startswith(str(path)):
                raise
            raise ValueError(f"{path}: not a runs file of an avatar_nb dataset ({exc})") from None
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{path}: runs file of dataset format {version!r}; this avatar_nb reads format "
                f"{FORMAT_VERSION} (written by avatar_nb since the dataset's segments)"
            )

        def malformed(what: str) -> ValueError:
            return ValueError(f"{path}: malformed runs file: {what}")

        names, file_rows = document.get("files"), document.get("file_rows")
        rows, stretches = document.get("rows"), document.get("keyframes")
        if not isinstance(names, list) or not all(
            isinstance(n, str) and _FILE_NAME.match(n) for n in names
        ):
            raise malformed(
                f"'files' must be a list of file names in {KEYFRAMES_DIR}/, got {names!r:.200}"
            )
        if (
            not isinstance(file_rows, list)
            or len(file_rows) != len(names)
            or not all(_count(n, 0) for n in file_rows)
        ):
            raise malformed(
                f"'file_rows' must be a row count (an int >= 0) per file, got {file_rows!r:.200}"
            )
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise malformed("'rows' must be a list of objects")
        for row in rows:
            try:
                check_run_id(row.get("run_id"))
            except ValueError as exc:
                raise malformed(f"a row's {exc}") from None
        if not isinstance(stretches, dict):
            raise malformed("'keyframes' must be an object of run id -> [file, start, rows]")
        ids = {row["run_id"] for row in rows}
        files = [path.parent.parent / KEYFRAMES_DIR / name for name in names]
        keyframes: dict[str, Stretch] = {}
        taken: dict[int, list[tuple[int, int, str]]] = {}
        for run_id, where in stretches.items():
            if run_id not in ids:
                raise malformed(f"keyframes of run {run_id!r:.80}, which has no row")
            if not (
                isinstance(where, list)
                and len(where) == 3
                and _count(where[0], 0)
                and _count(where[1], 0)
                and _count(where[2], 1)
            ):
                raise malformed(
                    f"run {run_id!r}'s keyframes must be [file, first row, rows] "
                    f"(ints >= 0, rows >= 1), got {where!r:.200}"
                )
            index, start, count = where
            if index >= len(files) or start + count > file_rows[index]:
                raise malformed(
                    f"run {run_id!r}'s keyframes, rows {start}-{start + count - 1} of file "
                    f"{index}, are outside the {len(files)} file(s) and their rows {file_rows}"
                )
            taken.setdefault(index, []).append((start, count, run_id))
            keyframes[run_id] = Stretch(files[index], start, count, file_rows[index])
        for index, spans in taken.items():
            spans.sort()
            for (start, count, first), (after, _, second) in itertools.pairwise(spans):
                if after < start + count:
                    raise malformed(
                        f"the row ranges of runs {first!r} and {second!r} in {names[index]} overlap"
                    )
        return Segment(
            name=path.stem, files=files, file_rows=list(file_rows), rows=rows, keyframes=keyframes
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
                    existing[stretch.path] = is_regular(stretch.path)
                if existing[stretch.path]:
                    done.add(run_id)
        return done


def finished_runs(root: str | Path) -> set[str]:
    """Run ids whose current row says ``status == "ok"`` and whose keyframes are on disk: what a resume skips."""
    return Catalog(Path(root)).finished()


def read_runs(root: str | Path) -> pd.DataFrame:
    """The runs table of the dataset at ``root`` (empty when there is none yet)."""
    return runs_frame(Catalog(Path(root)).rows.values())


class File:
    """A keyframe file opened for reading: its footer and the first row of each row group."""

    def __init__(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            self.path = check_regular(path)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: no such keyframe file; the dataset changed since its runs files were "
                "read (a consolidate since?): read it again with load_results"
            ) from None
        try:
            # no pre-buffering: a column of a row group is one read anyway
            self.file = pq.ParquetFile(path, pre_buffer=False)
            meta = self.file.metadata
        except pa.ArrowException as exc:
            raise ValueError(f"{path}: not a keyframe file of a dataset ({exc})") from None
        self.bounds = list(
            itertools.accumulate(
                (meta.row_group(i).num_rows for i in range(meta.num_row_groups)), initial=0
            )
        )

    def check(self, stretch: Stretch) -> None:
        """Refuse a file of other rows than its runs file says."""
        if stretch.file_rows is not None and stretch.file_rows != self.bounds[-1]:
            raise ValueError(
                f"{self.path}: holds {self.bounds[-1]} rows; its runs file says {stretch.file_rows}"
            )
        if stretch.start + stretch.rows > self.bounds[-1]:
            raise ValueError(
                f"{self.path}: holds {self.bounds[-1]} rows, fewer than its runs file names"
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
        for _, stretch in stretches:
            self.check(stretch)
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
        return File(item[0]).read(item[1], columns)

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
) -> Iterator[tuple[File, list[tuple[str, Stretch]]]]:
    """The runs of each file grouped by the row group they start in, in the order they
    are stored: what one read of a row group (or of the few a long run spans) returns."""
    for path, items in _by_file(stretches).items():
        file = File(path)
        by_group: dict[int, list[tuple[str, Stretch]]] = {}
        for run_id, stretch in items:
            file.check(stretch)
            by_group.setdefault(file.groups(stretch)[0], []).append((run_id, stretch))
        for group in sorted(by_group):
            yield file, by_group[group]


def streamed(
    stretches: Sequence[tuple[str, Stretch]], columns: Sequence[str] | None
) -> Iterator[list[tuple[str, pa.Table]]]:
    """The runs a row group holds at a time, each run whole, in the order they are stored."""
    for file, batch in file_batches(stretches):
        yield file.read(batch, columns)
