"""A sweep's results on disk: a runs table and per-keyframe tables, as a Parquet dataset.

Layout under the dataset's root (a directory)::

    keyframes/<segment>.parquet   the per-keyframe tables of the runs committed together
                                  (the columns of ``Timeline.to_pandas()`` after ``run_id``),
                                  each run a contiguous stretch of rows, several runs to a
                                  row group
    runs/<segment>.json           those runs' rows (settings, summary figures, status, error
                                  text, where it ran) and where each run's keyframes are
    runs.parquet                  every current row, as one table (rewritten at the end of
                                  each sweep, for tools that read Parquet)
    sweep.json                    what the sweep was asked (clips, grid, seed)

A writer (:class:`DatasetWriter`) adds finished runs to an open segment and commits the
segment as a whole: its keyframe file is written under a temporary name starting with
``.`` (which readers skip) and renamed into place, then its runs file is written the same
way. A run counts as finished once a runs file names it, so a process killed at any
moment leaves whole runs only, and a re-run with the same ``out=`` skips exactly those. A
writer commits every ``commit_seconds`` (30 s) and every ``segment_bytes`` (256 MiB), so a
killed sweep loses at most the runs of its last half minute.

Why segments and not a file per run: the fixed costs of a Parquet file (creating it, its
footer, a directory per run) and of a row group (a column chunk per column, 83 of them
at E = 50) are paid per run otherwise, and for runs of a few seconds they are most of the
work, writing and reading alike. Memory while writing is bounded by one row group
(``row_group_bytes``, 16 MiB, or one run if it is larger), not by the sweep.

When a run is written again (a failed run retried by a resume), the latest runs file
naming it wins; :func:`consolidate` (at the end of every sweep) rewrites the segments
that still hold an older attempt or are small, so plain Parquet readers of
``keyframes/`` see each run once. Workers of a cluster write into the same root (a
shared path): every segment has a name of its own, so no writer touches another's files.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ..timeline import Timeline

__all__ = [
    "COMMIT_SECONDS",
    "KEYFRAMES_DIR",
    "ROW_GROUP_BYTES",
    "RUNS_DIR",
    "SEGMENT_BYTES",
    "DatasetWriteError",
    "DatasetWriter",
    "Results",
    "consolidate",
    "finished_runs",
    "keyframe_table",
    "load_results",
    "read_runs",
    "runs_frame",
    "serve_writes",
    "write_result",
    "write_run",
]

RUNS_DIR = "runs"
RUNS_TABLE = "runs.parquet"
KEYFRAMES_DIR = "keyframes"
SWEEP_FILE = "sweep.json"
FORMAT_VERSION = 1
ENGINES = ("pandas", "dask")

ROW_GROUP_BYTES = 16 << 20
"""Bytes of Arrow data a row group collects before it is encoded (several runs of
minutes, or one longer run): the bound on a writer's memory."""
SEGMENT_BYTES = 256 << 20
"""Bytes of keyframes after which a writer commits its open segment."""
COMMIT_SECONDS = 30.0
"""Seconds after which a writer commits its open segment: what a killed sweep can lose."""
# a Parquet writer puts at most this many rows in a row group (pyarrow's own cap)
_MAX_ROW_GROUP_ROWS = 1 << 20

# FLAME floats barely compress and never repeat: no compression (measured on 2,500-keyframe
# runs, E = 50: LZ4 saved 3% of the bytes, 0.863 against 0.890 MB a run, and cost a quarter
# of the encoding time, 1.25 against 1.0 ms; byte-stream-split with LZ4 saved 9% for twice
# the time, zstd 12% for 2.7x) and no dictionary pages for them (a dictionary attempt on
# float columns doubles the write time for nothing); the run and request ids, few and
# repeated, are dictionary-encoded.
# No Arrow schema in the footer: it doubles the footer, which every read parses first; the
# only types it would restore, the ids' dictionaries, readers rebuild as categoricals.
# A column is encoded in batches of 16,384 values: the default, 1,024 a batch, cost 6%
# more encoding time (pages are still cut at 1 MiB).
_KEYFRAME_WRITE = {
    "compression": "none",
    "use_dictionary": ["run_id", "req_id"],
    "store_schema": False,
    "write_batch_size": 1 << 14,
}
# columns read at once from which Arrow's threads decode them
_COLUMNS_PER_THREAD = 8
# values (rows x columns) read at once from which files are read on threads of their own
_CELLS_PER_THREAD = 1 << 23
# min/max statistics where filters use them (identity and timing); FLAME values go without
_STATISTICS = [
    "run_id",
    "req_id",
    "keyframe",
    "frame",
    "media_time",
    "arrival",
    "latency",
    "lateness",
]


class DatasetWriteError(OSError):
    """A segment could not be committed: ``runs`` (the run ids it held) are not on disk."""

    def __init__(self, message: str, runs: Sequence[str]) -> None:
        super().__init__(message)
        self.runs = list(runs)


# ----------------------------------------------------------------------------- writing


def _check_run_id(run_id: Any) -> str:
    if (
        not isinstance(run_id, str)
        or not run_id
        or "/" in run_id
        or "\\" in run_id
        or run_id.startswith(".")
    ):
        raise ValueError(
            f"run_id must be a non-empty name without slashes or a leading dot, got {run_id!r}"
        )
    return run_id


def _create(path: Path, opener: Callable[[str], Any]) -> Any:
    """``opener(path)``, making ``path``'s folder when it is missing (not checked at every write)."""
    try:
        return opener(str(path))
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return opener(str(path))


def _atomic_bytes(data: Any, path: Path) -> None:
    """Write ``data`` to a temporary beside ``path`` and rename it into place."""
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with _create(temporary, lambda name: open(name, "wb")) as fh:
            fh.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _atomic_text(text: str, path: Path) -> None:
    _atomic_bytes(text.encode(), path)


def _atomic_table(table: pa.Table, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    _atomic_bytes(sink.getvalue(), path)


def keyframe_table(timeline: Timeline) -> pa.Table:
    """The per-keyframe table of ``timeline`` as an Arrow table, straight from its arrays.

    The same columns, order, types and values as ``Timeline.to_pandas()`` (a test holds
    the two together), built without pandas: a sweep writes hundreds of these, and the
    detour through a DataFrame costs more than writing them.
    """
    import pyarrow as pa

    from ..tidy import flame_columns, keyframe_time_columns

    # one transposed copy makes every FLAME column a contiguous stretch of one Arrow
    # buffer: a slice each (a third of the cost of converting each column on its own)
    flame = np.ascontiguousarray(np.asarray(timeline.keyframes, dtype=np.float32).T)
    n = flame.shape[1]
    flat = pa.array(flame.reshape(-1))
    req_ids = pa.array(list(timeline.req_ids), pa.string())
    columns: dict[str, Any] = {
        "req_id": pa.DictionaryArray.from_arrays(
            pa.array(np.asarray(timeline.keyframe_req, dtype=np.int32)), req_ids
        ),
    }
    columns.update(keyframe_time_columns(timeline))
    for name, position in flame_columns(timeline.n_expression):
        columns[name] = flat.slice(position * n, n)
    arrays = [
        column if isinstance(column, pa.Array) else pa.array(column) for column in columns.values()
    ]
    # no column holds a null (NaN is a value): declared so, the Parquet writer skips the
    # definition levels of every column (a fifth of the encoding time of a run)
    schema = pa.schema(
        [pa.field(name, array.type, nullable=False) for name, array in zip(columns, arrays)]
    )
    return pa.Table.from_arrays(arrays, schema=schema)


def _as_table(keyframes: Any) -> pa.Table | None:
    """A run's keyframes (Timeline, DataFrame or Arrow table) as an Arrow table without
    ``run_id``, or None when there are none."""
    import pyarrow as pa

    if keyframes is None:
        return None
    if isinstance(keyframes, pa.Table):
        table = keyframes
    elif hasattr(keyframes, "keyframes") and hasattr(keyframes, "req_ids"):  # a Timeline
        if not keyframes.n_keyframes:
            return None
        table = keyframe_table(keyframes)
    else:
        table = pa.Table.from_pandas(keyframes, preserve_index=False)
    if "run_id" in table.schema.names:  # the writer adds its own
        table = table.drop_columns(["run_id"])
    return table if table.num_rows else None


def _cell(value: Any) -> Any:
    """A run-table cell: scalars as they are, anything else as JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


_names = itertools.count()
_TEMPORARY = ".segment-"
# a temporary from another host is taken for abandoned when it has not changed for this long
_ABANDONED_SECONDS = 24 * 3600.0


def _segment_name() -> str:
    """A new segment's name: names sort in the order their segments were committed."""
    return f"{time.time_ns():016x}-{next(_names) & 0xFFFF:04x}-{uuid.uuid4().hex[:8]}"


def _row_bytes(schema: pa.Schema) -> int:
    """Bytes of Arrow data a row of ``schema`` holds (text counted at 16 bytes a value):
    a run's size without ``Table.nbytes``, which takes a tenth of a millisecond a run to
    find the stretches of the shared buffer its columns slice."""
    import pyarrow as pa

    total = 0
    for field in schema:
        kind = field.type.index_type if pa.types.is_dictionary(field.type) else field.type
        try:
            total += max(1, kind.bit_width // 8)
        except ValueError:  # not of fixed width
            total += 16
    return total


class _OpenFile:
    """One keyframe file of the open segment, written under a temporary name."""

    def __init__(self, folder: Path, schema: pa.Schema) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.row_bytes = _row_bytes(schema)
        # named after its writer, so that one left by a killed writer can be told from one
        # being written (:func:`consolidate` removes the former)
        self.temporary = (
            folder / f"{_TEMPORARY}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        )
        self.schema = schema
        self.rows = 0
        raw = _create(self.temporary, lambda name: pa.OSFile(name, "wb"))
        # Arrow writes a page at a time; buffered, the file sees megabyte writes
        self._sink = pa.BufferedOutputStream(raw, 1 << 20)
        try:
            names = set(schema.names)
            self.writer = pq.ParquetWriter(
                self._sink,
                schema,
                write_statistics=[c for c in _STATISTICS if c in names],
                **{
                    **_KEYFRAME_WRITE,
                    "use_dictionary": [c for c in _KEYFRAME_WRITE["use_dictionary"] if c in names],
                },
            )
        except BaseException:
            self._sink.close()
            self.temporary.unlink(missing_ok=True)
            raise

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            self._sink.close()

    def discard(self) -> None:
        with contextlib.suppress(Exception):  # the file is dropped whatever state it is in
            self.close()
        self.temporary.unlink(missing_ok=True)


class DatasetWriter:
    """Adds finished runs to the dataset at ``root``; commits them a segment at a time.

    ``add(row, keyframes)`` takes a run's row (must hold ``run_id``) and its keyframes (a
    Timeline, DataFrame, Arrow table, or None for a run without any). Keyframes are
    collected into row groups of ``row_group_bytes`` and written to the open segment's
    file as each fills; the segment is committed (its keyframe file renamed into place,
    then its runs file written) when it reaches ``segment_bytes``, when its first run is
    ``commit_seconds`` old (checked at each ``add`` and by :meth:`due`), and on
    :meth:`close`. Until then its runs are not in the dataset: a killed writer loses
    them, never half of one.

    A commit that fails raises :class:`DatasetWriteError` naming the runs it lost; they
    are not on disk, and the writer goes on with the next run. A run whose keyframes
    cannot be turned into a table raises from ``add`` and is not added.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        row_group_bytes: int = ROW_GROUP_BYTES,
        segment_bytes: int = SEGMENT_BYTES,
        commit_seconds: float = COMMIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = Path(root)
        self.row_group_bytes = int(row_group_bytes)
        self.segment_bytes = int(segment_bytes)
        self.commit_seconds = float(commit_seconds)
        self._clock = clock
        self._reset()

    def _reset(self) -> None:
        self._rows: dict[str, dict[str, Any]] = {}
        self._where: dict[str, list[int]] = {}  # run id -> [file, first row, rows]
        self._files: list[_OpenFile] = []
        self._buffer: list[tuple[str, pa.Table]] = []
        self._buffered = 0
        self._bytes = 0
        self._opened_at: float | None = None
        self._broken: BaseException | None = None

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pending(self) -> list[str]:
        """Run ids added and not yet committed."""
        return list(self._rows)

    def due(self) -> float | None:
        """Seconds until the open segment is to be committed (0: now), or None when nothing is pending."""
        if self._opened_at is None:
            return None
        if self._bytes >= self.segment_bytes:
            return 0.0
        return max(0.0, self._opened_at + self.commit_seconds - self._clock())

    def add(self, row: Mapping[str, Any], keyframes: Any = None) -> None:
        """Add one finished run; commits the open segment when it is due (see the class)."""
        run_id = _check_run_id(row.get("run_id"))
        table = _as_table(keyframes)
        cells = {str(k): _cell(v) for k, v in row.items()}
        json.dumps(cells)  # a row that cannot be written fails here, alone
        if self._opened_at is None:
            self._opened_at = self._clock()
        if self._rows.pop(run_id, None) is not None:  # added again: the later attempt is the run
            self._where.pop(run_id, None)
            dropped = sum(t.num_rows for r, t in self._buffer if r == run_id)
            if dropped:
                size = dropped * self._files[-1].row_bytes
                self._buffered -= size
                self._bytes -= size
                self._buffer = [(r, t) for r, t in self._buffer if r != run_id]
        self._rows[run_id] = cells
        if table is not None and self._broken is None:
            try:
                self._collect(run_id, table)
            except Exception as exc:  # noqa: BLE001 - the open file is lost: so is every run in it
                self._broken = exc
        if self.due() == 0.0:
            self.commit()

    def _collect(self, run_id: str, table: pa.Table) -> None:
        import pyarrow as pa

        run_ids = pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(table.num_rows, dtype=np.int32)), pa.array([run_id], pa.string())
        )
        table = table.add_column(0, pa.field("run_id", run_ids.type, nullable=False), run_ids)
        if not self._files or not self._files[-1].schema.equals(table.schema):
            # another layout (another expression count ...): a file of its own in the segment
            self._write_row_group()
            self._files.append(_OpenFile(self.root / KEYFRAMES_DIR, table.schema))
        size = table.num_rows * self._files[-1].row_bytes
        self._buffer.append((run_id, table))
        self._buffered += size
        self._bytes += size
        if self._buffered >= self.row_group_bytes:
            self._write_row_group()

    def _write_row_group(self) -> None:
        import pyarrow as pa

        if not self._buffer:
            return
        file = self._files[-1]
        index = len(self._files) - 1
        for run_id, table in self._buffer:
            self._where[run_id] = [index, file.rows, table.num_rows]
            file.rows += table.num_rows
        group = pa.concat_tables([table for _, table in self._buffer])
        self._buffer, self._buffered = [], 0
        file.writer.write_table(group, row_group_size=min(group.num_rows, _MAX_ROW_GROUP_ROWS))

    def commit(self) -> list[str]:
        """Commit the open segment; returns the run ids now in the dataset."""
        if not self._rows:
            self._discard_files()
            self._reset()
            return []
        runs = list(self._rows)
        renamed: list[Path] = []
        try:
            if self._broken is not None:
                raise self._broken
            self._write_row_group()
            for file in self._files:
                file.close()
            name = _segment_name()
            files = [
                f"{name}.parquet" if len(self._files) == 1 else f"{name}-{i}.parquet"
                for i in range(len(self._files))
            ]
            for file, final in zip(self._files, files):
                target = self.root / KEYFRAMES_DIR / final
                os.replace(file.temporary, target)
                renamed.append(target)
            document = {
                "version": FORMAT_VERSION,
                "files": files,
                "file_rows": [file.rows for file in self._files],
                "keyframes": {
                    run_id: where for run_id, where in self._where.items() if run_id in self._rows
                },
                "rows": list(self._rows.values()),
            }
            # floats keep every bit through JSON (repr round-trips); NaN is written as NaN
            _atomic_text(json.dumps(document), self.root / RUNS_DIR / f"{name}.json")
        except BaseException as exc:
            self._discard_files()
            for path in renamed:
                path.unlink(missing_ok=True)
            self._reset()
            if isinstance(exc, Exception):
                raise DatasetWriteError(
                    f"writing {len(runs)} run(s) to {self.root}: {type(exc).__name__}: {exc}", runs
                ) from None
            raise
        self._reset()
        return runs

    def add_reporting(self, row: Mapping[str, Any], keyframes: Any = None) -> dict[str, Exception]:
        """:meth:`add`, returning the runs it lost and why instead of raising: this run when
        its row or keyframes could not be taken, a segment's runs when a due commit failed."""
        try:
            self.add(row, keyframes)
        except DatasetWriteError as exc:
            return dict.fromkeys(exc.runs, exc)
        except Exception as exc:  # noqa: BLE001 - reported for this run alone
            return {str(row.get("run_id")): exc}
        return {}

    def commit_reporting(self) -> tuple[list[str], dict[str, Exception]]:
        """:meth:`commit`, returning (the runs committed, the runs lost and why) instead of raising."""
        try:
            return self.commit(), {}
        except DatasetWriteError as exc:
            return [], dict.fromkeys(exc.runs, exc)

    def _discard_files(self) -> None:
        for file in self._files:
            file.discard()

    def close(self) -> list[str]:
        """Commit what is pending; returns the run ids committed."""
        return self.commit()


def write_result(root: str | Path, row: Mapping[str, Any], keyframes: Any = None) -> None:
    """Write one finished run, its row and its keyframes (a Timeline, DataFrame, Arrow
    table, or None), as a segment of its own.

    For a handful of runs; a sweep writes many through one :class:`DatasetWriter`. A run
    written again replaces the earlier attempt, keyframes included (written without
    keyframes, it has none).
    """
    with DatasetWriter(root) as writer:
        writer.add(row, keyframes)


def write_run(root: str | Path, row: Mapping[str, Any]) -> None:
    """Write one run's row without keyframes (a run that failed before any arrived)."""
    write_result(root, row, None)


END_OF_STREAM = object()


def send_frame(pipe: Any, obj: Any) -> None:
    """Write ``obj`` to ``pipe`` as one message of the writer process's framing: an 8-byte
    little-endian length, then the pickle."""
    import pickle

    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    pipe.write(len(data).to_bytes(8, "little") + data)
    pipe.flush()


def _read_exactly(pipe: Any, size: int) -> bytes:
    parts, left = [], size
    while left:
        part = pipe.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read_frame(pipe: Any) -> Any:
    """The next message :func:`send_frame` wrote to ``pipe``, or ``END_OF_STREAM`` when the
    pipe ended (a buffered or a raw pipe)."""
    import pickle

    header = _read_exactly(pipe, 8)
    if len(header) < 8:
        return END_OF_STREAM
    size = int.from_bytes(header, "little")
    data = _read_exactly(pipe, size)
    if len(data) < size:
        return END_OF_STREAM
    return pickle.loads(data)


def serve_writes(commit_seconds: float = COMMIT_SECONDS) -> None:
    """The writer process of an in-process sweep: write runs sent over stdin, reply on stdout.

    Each message is an 8-byte little-endian length and a pickle of ``(root, row,
    timeline)``, or of ``None`` to stop. Runs go through one :class:`DatasetWriter` per
    root (committing every ``commit_seconds``); when a segment is committed (when due,
    even while no run arrives, and at the end) the reply for each of its runs is
    ``(run_id, None)``, and ``(run_id, error text)`` for a run that could not be written. A sweep streams in one process and
    writes in this one, so writing never competes with a session whose timing is
    recorded. Started as ``python -c`` (not through multiprocessing), so a script without
    a ``__main__`` guard is not run again.
    """
    import select
    import sys

    source, sink = sys.stdin.buffer.raw, sys.stdout.buffer
    writers: dict[str, DatasetWriter] = {}

    def reply(lost: Mapping[str, Exception], committed: Iterable[str] = ()) -> None:
        for run_id in committed:
            send_frame(sink, (run_id, None))
        for run_id, exc in lost.items():
            text = (
                str(exc) if isinstance(exc, DatasetWriteError) else f"{type(exc).__name__}: {exc}"
            )
            send_frame(sink, (run_id, text))

    def commit(writer: DatasetWriter) -> None:
        committed, lost = writer.commit_reporting()
        reply(lost, committed)

    try:
        while True:
            waits = [w.due() for w in writers.values()]
            wait = min((d for d in waits if d is not None), default=None)
            if wait is not None and not select.select([source], [], [], wait)[0]:
                for writer in writers.values():
                    if writer.due() == 0.0:
                        commit(writer)
                continue
            job = read_frame(source)
            if job is None or job is END_OF_STREAM:
                break
            root, row, timeline = job
            writer = writers.get(root)
            if writer is None:
                writer = writers[root] = DatasetWriter(root, commit_seconds=commit_seconds)
            reply(writer.add_reporting(row, timeline))  # the sweep marks lost runs failed
    finally:
        for writer in writers.values():
            commit(writer)


def write_sweep_info(root: str | Path, info: Mapping[str, Any]) -> Path:
    """Record what a sweep was asked (``sweep.json``), for people reading the dataset later."""
    path = Path(root) / SWEEP_FILE
    _atomic_text(json.dumps(dict(info), indent=2, sort_keys=True, default=str), path)
    return path


# ----------------------------------------------------------------------------- the catalog


@dataclass(frozen=True)
class _Stretch:
    """Where one run's keyframes are: ``rows`` rows of ``path`` from row ``start``."""

    path: Path
    start: int
    rows: int


@dataclass
class _Segment:
    name: str
    files: list[Path]
    file_rows: list[int]
    rows: list[dict[str, Any]]
    keyframes: dict[str, _Stretch]


class _Catalog:
    """Every segment's runs file, read once: the current row of each run (the latest
    segment naming it wins) and where its keyframes are."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.segments: list[_Segment] = []
        folder = root / RUNS_DIR
        names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        for name in names:
            if name.startswith(".") or not name.endswith(".json"):
                continue
            self.segments.append(self._segment(folder / name))
        self.rows: dict[str, dict[str, Any]] = {}
        self.owner: dict[str, str] = {}  # run id -> the segment holding its current row
        self.keyframes: dict[str, _Stretch] = {}
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
    def _segment(path: Path) -> _Segment:
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
        return _Segment(
            name=path.stem,
            files=files,
            file_rows=list(document["file_rows"]),
            rows=list(document["rows"]),
            keyframes={
                run_id: _Stretch(files[index], start, rows)
                for run_id, (index, start, rows) in document["keyframes"].items()
            },
        )

    def stale(self, segment: _Segment) -> bool:
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
    return _Catalog(Path(root)).finished()


def read_runs(root: str | Path) -> pd.DataFrame:
    """The runs table of the dataset at ``root`` (empty when there is none yet)."""
    return runs_frame(_Catalog(Path(root)).rows.values())


def consolidate(root: str | Path, *, small_bytes: int = SEGMENT_BYTES // 8) -> Path:
    """Tidy the dataset at ``root`` once nothing writes to it (the end of every sweep and batch).

    Segments holding an earlier attempt of a run written again, and segments smaller
    than ``small_bytes`` when there are several, are rewritten into new segments with
    the current runs only (one row group at a time in memory); keyframe files no runs file
    names (left by a writer killed between its two renames) are removed; ``runs.parquet``
    is rewritten. Each step leaves a readable dataset if it is interrupted: the new
    segments are committed before the old ones are removed, and the latest wins.
    """
    import pyarrow as pa

    root = Path(root)
    catalog = _Catalog(root)
    small = {
        s.name
        for s in catalog.segments
        if sum(p.stat().st_size for p in s.files if p.exists()) < small_bytes
    }
    redo = [s for s in catalog.segments if catalog.stale(s) or (len(small) > 1 and s.name in small)]
    if redo:
        with DatasetWriter(root, commit_seconds=float("inf")) as writer:
            for segment in redo:
                current = [r for r in segment.rows if catalog.owner[r["run_id"]] == segment.name]
                for row, table in _segment_runs(catalog, current):
                    writer.add(row, table)
        for segment in redo:
            (root / RUNS_DIR / f"{segment.name}.json").unlink(missing_ok=True)
        catalog = _Catalog(root)
    named = {path.name for segment in catalog.segments for path in segment.files}
    folder = root / KEYFRAMES_DIR
    if folder.is_dir():
        for path in folder.iterdir():
            left = path.name.startswith(_TEMPORARY) and _abandoned(path)
            unnamed = path.suffix == ".parquet" and path.name[0] != "." and path.name not in named
            if left or unnamed:
                path.unlink(missing_ok=True)
    path = root / RUNS_TABLE
    _atomic_table(
        pa.Table.from_pandas(runs_frame(catalog.rows.values()), preserve_index=False), path
    )
    return path


def _abandoned(path: Path) -> bool:
    """Whether the open segment ``path`` belongs to a writer that is gone."""
    try:
        host, pid, _ = path.name[len(_TEMPORARY) :].rsplit("-", 2)
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
    catalog: _Catalog, rows: Sequence[dict[str, Any]]
) -> Iterator[tuple[dict[str, Any], pa.Table | None]]:
    """Each of ``rows`` with its keyframes (an Arrow table, without ``run_id``), a file's row group at a time."""
    with_frames = [r for r in rows if r["run_id"] in catalog.keyframes]
    for row in rows:
        if row["run_id"] not in catalog.keyframes:
            yield row, None
    by_id = {r["run_id"]: r for r in with_frames}
    stretches = [(r["run_id"], catalog.keyframes[r["run_id"]]) for r in with_frames]
    for pieces in _streamed(stretches, None):
        for run_id, table in pieces:
            yield by_id[run_id], table


# ----------------------------------------------------------------------------- runs table


def _column(values: list[Any]) -> pa.Array:
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed kinds in one column: kept as text
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def runs_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The runs table from row dicts, exactly as :func:`load_results` reads it.

    Columns in order of first appearance, a missing cell is null; sorted by ``run``
    (the run's position in its sweep) when there is such a column, so the in-memory
    table and the one read back from disk are equal.
    """
    import pyarrow as pa

    items = [{str(k): _cell(v) for k, v in row.items()} for row in rows]
    names = list(dict.fromkeys(k for row in items for k in row))
    table = (
        pa.table({name: _column([row.get(name) for row in items]) for name in names})
        if names
        else pa.table({})
    )
    frame = table.to_pandas()
    if "run" in frame.columns and len(frame):
        frame = frame.sort_values("run", kind="stable").reset_index(drop=True)
    return frame


# ----------------------------------------------------------------------------- reading


def _filter_expression(filters: Any) -> Any:
    """A pyarrow expression from ``filters``: an expression already, or DNF tuples as pandas takes them."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if filters is None or isinstance(filters, pc.Expression):
        return filters
    return pq.filters_to_expression(filters)


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

    def groups(self, stretch: _Stretch) -> range:
        """The row groups ``stretch`` spans."""
        first = bisect.bisect_right(self.bounds, stretch.start) - 1
        last = bisect.bisect_right(self.bounds, stretch.start + stretch.rows - 1) - 1
        return range(first, last + 1)

    def columns(self, columns: Sequence[str] | None) -> list[str]:
        if columns is None:
            return [c for c in self.file.schema_arrow.names if c != "run_id"]
        return [c for c in columns if c != "run_id"]

    def read(
        self, stretches: Sequence[tuple[str, _Stretch]], columns: Sequence[str] | None
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


def _by_file(stretches: Sequence[tuple[str, _Stretch]]) -> dict[Path, list[tuple[str, _Stretch]]]:
    files: dict[Path, list[tuple[str, _Stretch]]] = {}
    for run_id, stretch in stretches:
        files.setdefault(stretch.path, []).append((run_id, stretch))
    for items in files.values():
        items.sort(key=lambda item: item[1].start)
    return files


def _read_stretches(
    stretches: Sequence[tuple[str, _Stretch]], columns: Sequence[str] | None
) -> list[tuple[str, pa.Table]]:
    """(run id, its keyframes) of each of ``stretches``: every file's row groups in one
    read each, in no set order; the files on a thread each when there is much to read."""
    files = _by_file(stretches)

    def one(item: tuple[Path, list[tuple[str, _Stretch]]]) -> list[tuple[str, pa.Table]]:
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


def _file_batches(
    stretches: Sequence[tuple[str, _Stretch]],
) -> Iterator[tuple[_File, list[tuple[str, _Stretch]]]]:
    """The runs of each file grouped by the row group they start in, in the order they
    are stored: what one read of a row group (or of the few a long run spans) returns."""
    for path, items in _by_file(stretches).items():
        file = _File(path)
        by_group: dict[int, list[tuple[str, _Stretch]]] = {}
        for run_id, stretch in items:
            by_group.setdefault(file.groups(stretch)[0], []).append((run_id, stretch))
        for group in sorted(by_group):
            yield file, by_group[group]


def _streamed(
    stretches: Sequence[tuple[str, _Stretch]], columns: Sequence[str] | None
) -> Iterator[list[tuple[str, pa.Table]]]:
    """The runs a row group holds at a time, each run whole, in the order they are stored."""
    for file, batch in _file_batches(stretches):
        yield file.read(batch, columns)


def _with_run_ids(
    pieces: Sequence[tuple[str, pa.Table]], columns: Sequence[str] | None
) -> pa.Table:
    """The pieces as one table with ``run_id`` first (a dictionary column, one entry per run)."""
    import pyarrow as pa

    if not pieces:
        names = ["run_id", *[c for c in (columns or []) if c != "run_id"]]
        return pa.table(
            {
                name: pa.array([], pa.string()) if name == "run_id" else pa.array([], pa.float64())
                for name in names
            }
        )
    table = pa.concat_tables([t for _, t in pieces], promote_options="permissive")
    sizes = np.array([t.num_rows for _, t in pieces])
    codes = np.repeat(np.arange(len(pieces), dtype=np.int32), sizes)
    run_id = pa.DictionaryArray.from_arrays(
        pa.array(codes), pa.array([r for r, _ in pieces], pa.string())
    )
    return table.add_column(0, "run_id", run_id)


class Results:
    """A dataset read back: ``.runs`` (one row per run) and ``.keyframes(...)`` (read on demand).

    With ``engine="pandas"`` (default) both are pandas DataFrames; with ``engine="dask"``
    they are ``dask.dataframe`` frames, for studies larger than memory
    (``res.keyframes(columns=["latency"]).groupby("run_id").latency.quantile(0.99)`` ...).
    The dataset is read as it was when first asked: a later sweep into the same folder
    needs a new ``load_results``.
    """

    def __init__(self, path: str | Path, engine: str = "pandas") -> None:
        if engine not in ENGINES:
            raise ValueError(
                f"unknown engine {engine!r}; accepted: {', '.join(map(repr, ENGINES))}"
            )
        self.path = Path(path)
        if not (self.path / RUNS_DIR).is_dir() and not (self.path / KEYFRAMES_DIR).is_dir():
            raise FileNotFoundError(
                f"{self.path} holds no avatar_nb dataset (no {RUNS_DIR}/ or {KEYFRAMES_DIR}/ folder)"
            )
        self.engine = engine
        self._catalog: _Catalog | None = None
        self._runs: Any = None

    def __repr__(self) -> str:
        return f"<Results {str(self.path)!r} engine={self.engine!r}>"

    @property
    def catalog(self) -> _Catalog:
        if self._catalog is None:
            self._catalog = _Catalog(self.path)
        return self._catalog

    @property
    def info(self) -> dict[str, Any]:
        """What the sweep was asked (``sweep.json``), or ``{}``."""
        path = self.path / SWEEP_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    @property
    def runs(self) -> Any:
        """The runs table: one row per run, sorted by its position in the sweep."""
        if self._runs is None:
            frame = runs_frame(self.catalog.rows.values())
            if self.engine == "dask":
                import dask.dataframe as dd

                frame = dd.from_pandas(frame, npartitions=1)
            self._runs = frame
        return self._runs

    def _stretches(self, runs: Sequence[str] | None = None) -> list[tuple[str, _Stretch]]:
        """(run id, where its keyframes are) of every run with keyframes, or of ``runs``, in run-id order."""
        where = self.catalog.keyframes
        chosen = where if runs is None else [str(r) for r in dict.fromkeys(runs) if str(r) in where]
        return sorted((run_id, where[run_id]) for run_id in chosen)

    def keyframes(
        self,
        columns: Sequence[str] | None = None,
        filters: Any = None,
        *,
        runs: Sequence[str] | None = None,
        with_runs: Sequence[str] = (),
    ) -> Any:
        """The per-keyframe table of every run (``run_id`` first), reading only what is asked.

        ``columns``: the columns to read (``run_id`` is always there); ``filters``: a
        pyarrow expression or pandas-style DNF tuples (``[("latency", ">", 0.2)]``), pushed
        down to the files; ``runs``: only these run ids; ``with_runs``: columns of the
        runs table (``"chunk_ms"`` ...) joined onto each keyframe by ``run_id``. Runs come
        in run-id order, each run's keyframes in their order.
        """
        expression = _filter_expression(filters)
        stretches = self._stretches(runs)
        if self.engine == "dask":
            frame = self._dask_keyframes(stretches, columns, filters)
            if with_runs:
                extra = ["run_id", *[c for c in with_runs if c != "run_id"]]
                # the runs table is small: joined as pandas, broadcast to every partition
                frame = frame.merge(self._runs_columns(extra), on="run_id", how="left")
            return frame
        if expression is None:
            read = dict(_read_stretches(stretches, columns))
            pieces = [(run_id, read[run_id]) for run_id, _ in stretches]
            joined = self._run_values(with_runs, [r for r, _ in stretches])
            return _pieces_frame(pieces, columns, joined)  # read with those columns only
        table = self._filtered(stretches, columns, expression, runs is not None)
        return frame_with_runs(
            table, self._runs_columns(with_runs) if with_runs else None, with_runs
        )

    def _run_values(self, names: Sequence[str], run_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Each of ``names`` (columns of the runs table) for each of ``run_ids``, of the
        types the runs table has (a column's type is inferred from every row)."""
        wanted = [n for n in names if n != "run_id"]
        if not wanted:
            return {}
        rows = self._rows_having(wanted)
        position = {row["run_id"]: i for i, row in enumerate(rows)}
        chosen = np.fromiter((position[r] for r in run_ids), np.intp, len(run_ids))
        return {
            name: _column([row.get(name) for row in rows]).to_numpy(zero_copy_only=False)[chosen]
            for name in wanted
        }

    def _rows_having(self, names: Sequence[str]) -> list[dict[str, Any]]:
        """The current run rows, once ``names`` are known to be columns of the runs table."""
        rows = list(self.catalog.rows.values())
        _check_run_columns(names, list(dict.fromkeys(k for row in rows for k in row)))
        return rows

    def _runs_columns(self, names: Sequence[str]) -> pd.DataFrame:
        """``run_id`` and ``names`` of the runs table (a join needs no other column)."""
        rows = self._rows_having(names)
        wanted = ["run_id", *[c for c in names if c != "run_id"]]
        return runs_frame([{k: row.get(k) for k in wanted} for row in rows])

    def _filtered(
        self,
        stretches: Sequence[tuple[str, _Stretch]],
        columns: Sequence[str] | None,
        expression: Any,
        chosen: bool,
    ) -> pa.Table:
        """Filters on any column, run_id included: the dataset scanner pushes them down to
        the row groups (their statistics); rows of runs that are not current are left out."""
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        files = sorted({s.path for _, s in stretches})
        current = {p: 0 for p in files}
        for _, s in stretches:
            current[s.path] += s.rows
        totals = {p: n for seg in self.catalog.segments for p, n in zip(seg.files, seg.file_rows)}
        if chosen or any(current[p] != totals.get(p) for p in files):
            expression = expression & pc.field("run_id").isin([r for r, _ in stretches])
        wanted = None if columns is None else ["run_id", *[c for c in columns if c != "run_id"]]
        if not files:
            return _with_run_ids([], columns)
        table = ds.dataset([str(p) for p in files], format="parquet").to_table(
            columns=wanted, filter=expression
        )
        if table.num_rows:  # run-id order; the sort is stable, so each run keeps its order
            table = table.take(pc.sort_indices(table, [("run_id", "ascending")]))
        return table

    def _dask_keyframes(
        self, stretches: list[tuple[str, _Stretch]], columns: Sequence[str] | None, filters: Any
    ) -> Any:
        import dask.dataframe as dd

        if not stretches:
            raise FileNotFoundError(f"{self.path} holds no keyframe tables")
        parts = _partitions(stretches)

        read = _read_columns(columns, filters)

        def one(part: list[tuple[str, _Stretch]]) -> pd.DataFrame:
            return keyframes_frame(_read_stretches(part, read), columns, filters, text_ids=True)

        meta = one(parts[0]).iloc[:0]
        return dd.from_map(one, parts, meta=meta, enforce_metadata=False)

    def iter_keyframes(
        self, columns: Sequence[str] | None = None, filters: Any = None
    ) -> Iterator[pd.DataFrame]:
        """The per-keyframe table a few whole runs at a time (the runs one row group holds;
        ``run_id`` first, categorical), in the order they are stored: memory bounded by one
        row group's columns (16 MiB of keyframes, or one longer run), whatever the study's
        size. ``filters`` as for :meth:`keyframes`."""
        for pieces in _streamed(self._stretches(), _read_columns(columns, filters)):
            frame = keyframes_frame(pieces, columns, filters)
            if len(frame):
                yield frame


def _partitions(stretches: Sequence[tuple[str, _Stretch]]) -> list[list[tuple[str, _Stretch]]]:
    """The runs grouped by the row group they start in: a Dask partition each."""
    return [batch for _, batch in _file_batches(stretches)]


def keyframes_frame(
    pieces: Sequence[tuple[str, pa.Table]],
    columns: Sequence[str] | None = None,
    filters: Any = None,
    *,
    runs: pd.DataFrame | None = None,
    with_runs: Sequence[str] = (),
    text_ids: bool = False,
) -> pd.DataFrame:
    """Runs' keyframe tables, ``(run id, Arrow table)`` in order, as one DataFrame:
    ``run_id`` first (categorical; text with ``text_ids``), then ``columns`` (default:
    all), the rows ``filters`` keeps (which may use any column the pieces hold), and
    ``with_runs`` columns of ``runs`` (the runs table) joined by run id."""
    expression = _filter_expression(filters)
    if expression is None:
        pieces = _selected(pieces, columns)
        joined = _values_for(runs, with_runs, [r for r, _ in pieces]) if with_runs else None
        frame = _pieces_frame(pieces, columns, joined)
    else:
        table = _with_run_ids(pieces, None).filter(expression)
        if columns is not None:
            table = table.select(["run_id", *[c for c in columns if c != "run_id"]])
        frame = frame_with_runs(table, runs, with_runs)
    if text_ids:  # a Dask partition's categories would differ from every other's
        frame["run_id"] = frame["run_id"].astype(str)
    return frame


def _selected(
    pieces: Sequence[tuple[str, pa.Table]], columns: Sequence[str] | None
) -> list[tuple[str, pa.Table]]:
    if columns is None:
        return list(pieces)
    wanted = [c for c in columns if c != "run_id"]
    return [(run_id, table.select(wanted)) for run_id, table in pieces]


def _values_for(
    runs: pd.DataFrame | None, names: Sequence[str], run_ids: Sequence[str]
) -> dict[str, np.ndarray]:
    """Each of ``names`` (columns of the runs table ``runs``) for each of ``run_ids``."""
    wanted = [n for n in names if n != "run_id"]
    _check_run_columns(wanted, [] if runs is None else list(runs.columns))
    assert runs is not None
    position: dict[str, int] = {}
    for index, run_id in enumerate(runs["run_id"]):
        position.setdefault(run_id, index)  # the first row of a run id, as a join keeps it
    chosen = np.fromiter((position[r] for r in run_ids), np.intp, len(run_ids))
    return {name: runs[name].to_numpy()[chosen] for name in wanted}


def _check_run_columns(names: Sequence[str], known: Sequence[str]) -> None:
    """Refuse, by name, columns asked of the runs table that it does not have."""
    missing = [c for c in names if c not in known]
    if missing:
        raise KeyError(f"columns {missing} are not in the runs table; it has {list(known)}")


def _read_columns(columns: Sequence[str] | None, filters: Any) -> list[str] | None:
    """The columns to read for ``columns`` filtered by ``filters``: those the filters name
    too (all of them when the filters are an expression, whose fields are not listed)."""
    if columns is None or filters is None:
        return None if columns is None else list(columns)
    import pyarrow.compute as pc

    if isinstance(filters, pc.Expression):
        return None
    clauses = filters if filters and isinstance(filters[0], list) else [filters]
    named = [clause[0] for group in clauses for clause in group]
    return list(dict.fromkeys([*columns, *named]))


def frame_with_runs(
    table: pa.Table, runs: pd.DataFrame | None, with_runs: Sequence[str] = ()
) -> pd.DataFrame:
    """A per-keyframe Arrow table as a DataFrame (``run_id`` first, categorical), with columns
    of the runs table joined by run id.

    The join maps the few run ids once and spreads the values with the categorical's
    codes (no hash join over every keyframe), and the joined columns are part of the frame
    from the start (adding columns to a built frame copies its blocks).
    """
    import pandas as pd

    columns = _arrow_columns(table.unify_dictionaries().combine_chunks())
    if with_runs and runs is not None:
        _check_run_columns(with_runs, list(runs.columns))
        by_id = runs.drop_duplicates("run_id").set_index("run_id")
        run_ids = (
            pd.Categorical(columns["run_id"])
            if not isinstance(columns["run_id"], pd.Categorical)
            else columns["run_id"]
        )
        for name in with_runs:
            if name != "run_id":
                values = by_id[name].reindex(run_ids.categories).to_numpy()
                columns[name] = values[run_ids.codes] if len(run_ids) else values[:0]
    return _with_run_id_first(pd.DataFrame(columns, copy=False))


def _pieces_frame(
    pieces: Sequence[tuple[str, pa.Table]],
    columns: Sequence[str] | None,
    joined: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Runs' keyframe tables as one DataFrame, ``run_id`` first, every column copied once.

    A run is one stretch of rows, so the run ids are a categorical's codes repeated per
    run, and ``joined`` (a value per piece, for each column of the runs table asked for)
    is repeated the same way: no lookup per keyframe.
    """
    import pandas as pd
    import pyarrow as pa

    if not pieces:
        frame = frame_with_runs(_with_run_ids([], columns), None)
        for name, values in (joined or {}).items():
            frame[name] = values[:0]
        return frame
    table = pa.concat_tables([t for _, t in pieces], promote_options="permissive")
    if any(pa.types.is_dictionary(field.type) for field in table.schema):
        table = table.unify_dictionaries()
    count = len(pieces)
    sizes = [t.num_rows for _, t in pieces]
    # the width pandas keeps a categorical's codes in: made so, they are not converted
    kind = np.int8 if count < 1 << 7 else np.int16 if count < 1 << 15 else np.int32
    codes = np.repeat(np.arange(count, dtype=kind), sizes)
    data: dict[str, Any] = {
        "run_id": pd.Categorical.from_codes(
            codes, categories=[r for r, _ in pieces], validate=False
        )
    }
    data.update(_arrow_columns(table))
    for name, values in (joined or {}).items():
        data[name] = np.repeat(values, sizes)
    return pd.DataFrame(data, copy=False)


def _arrow_columns(batch: Any) -> dict[str, Any]:
    """A record batch's columns for a DataFrame, without pandas' general conversion machinery.

    Streamed reads convert many small batches, where ``to_pandas()``'s fixed cost per call
    (metadata, index, block layout) outweighs the data: numbers are taken as numpy views,
    text as categoricals (the run id is one value per file).
    """
    import pandas as pd
    import pyarrow as pa

    data: dict[str, Any] = {}
    for name, column in zip(batch.schema.names, batch.columns):
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        kind = column.type
        if pa.types.is_dictionary(kind):
            indices = column.indices if column.null_count == 0 else column.indices.fill_null(-1)
            data[name] = pd.Categorical.from_codes(
                indices.to_numpy(zero_copy_only=False), categories=column.dictionary.to_pylist()
            )
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            encoded = column.dictionary_encode()
            data[name] = pd.Categorical.from_codes(
                encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False),
                categories=encoded.dictionary.to_pylist(),
            )
        elif column.null_count == 0 and (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
        ):
            data[name] = column.to_numpy(zero_copy_only=False)
        else:
            data[name] = column.to_pandas()
    return data


def _with_run_id_first(frame: pd.DataFrame) -> pd.DataFrame:
    if "run_id" in frame.columns and frame.columns[0] != "run_id":
        frame = frame[["run_id", *[c for c in frame.columns if c != "run_id"]]]
    return frame


def load_results(path: str | Path, engine: str = "pandas") -> Results:
    """Open a dataset written by ``sweep(..., out=path)`` (or ``avatar-nb run``).

    ``engine="pandas"`` reads into pandas; ``engine="dask"`` gives ``dask.dataframe``
    frames (needs ``pip install avatar_nb[dask]``). ``.runs`` is the runs table;
    ``.keyframes(columns=None, filters=None)`` reads per-keyframe rows, only the columns
    and rows asked for.
    """
    if engine == "dask":
        _require_dask()
    return Results(path, engine)


def _require_dask() -> None:
    try:
        import dask.dataframe  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "engine='dask' needs Dask, which is not installed; install it with `pip install avatar_nb[dask]`"
        ) from exc
