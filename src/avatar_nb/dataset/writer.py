"""Writing runs into a dataset: :class:`DatasetWriter` adds finished runs to an open
segment and commits it whole (keyframe files renamed into place, then the runs file), and
:func:`write_result`, :func:`write_run` and :func:`write_sweep_info` for a few files at a time.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .layout import (
    COMMIT_SECONDS,
    FORMAT_VERSION,
    KEYFRAME_WRITE,
    KEYFRAMES_DIR,
    ROW_GROUP_BYTES,
    RUNS_DIR,
    SEGMENT_BYTES,
    SEGMENT_TEMPORARY,
    STATISTICS_COLUMNS,
    SWEEP_FILE,
    atomic_text,
    cell,
    check_run_id,
    create_file,
    dataset_lock,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from ..timeline import Timeline


# a Parquet writer puts at most this many rows in a row group (pyarrow's own cap)
_MAX_ROW_GROUP_ROWS = 1 << 20


class DatasetWriteError(OSError):
    """A segment could not be committed: ``runs`` (the run ids it held) are not on disk."""

    def __init__(self, message: str, runs: Sequence[str]) -> None:
        super().__init__(message)
        self.runs = list(runs)


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


_names = itertools.count()


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
            folder
            / f"{SEGMENT_TEMPORARY}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        )
        self.schema = schema
        self.rows = 0
        raw = create_file(self.temporary, lambda name: pa.OSFile(name, "wb"))
        # Arrow writes a page at a time; buffered, the file sees megabyte writes
        self._sink = pa.BufferedOutputStream(raw, 1 << 20)
        try:
            names = set(schema.names)
            self.writer = pq.ParquetWriter(
                self._sink,
                schema,
                write_statistics=[c for c in STATISTICS_COLUMNS if c in names],
                **{
                    **KEYFRAME_WRITE,
                    "use_dictionary": [c for c in KEYFRAME_WRITE["use_dictionary"] if c in names],
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
        run_id = check_run_id(row.get("run_id"))
        table = _as_table(keyframes)
        cells = {str(k): cell(v) for k, v in row.items()}
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
            # under the dataset's lock (shared: other writers commit at once), so that
            # consolidate never sees a keyframe file renamed in before its runs file; the
            # name is taken under it, so a segment sorts after any consolidate before it
            with dataset_lock(self.root, exclusive=False):
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
                        run_id: where
                        for run_id, where in self._where.items()
                        if run_id in self._rows
                    },
                    "rows": list(self._rows.values()),
                }
                # floats keep every bit through JSON (repr round-trips); NaN is written as NaN
                atomic_text(json.dumps(document), self.root / RUNS_DIR / f"{name}.json")
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


def write_sweep_info(root: str | Path, info: Mapping[str, Any]) -> Path:
    """Record what a sweep was asked (``sweep.json``), for people reading the dataset later."""
    path = Path(root) / SWEEP_FILE
    atomic_text(json.dumps(dict(info), indent=2, sort_keys=True, default=str), path)
    return path
