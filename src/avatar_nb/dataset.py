"""A sweep's results on disk: a runs table and per-keyframe tables, as a Parquet dataset.

Layout under the dataset's root (a directory)::

    runs/<run_id>.json                         one row: the run's settings, summary figures,
                                               status, error text, where it ran
    runs.parquet                               every row, as one table (rewritten at the end
                                               of each sweep, for tools that read Parquet)
    keyframes/run_id=<run_id>/part.parquet     that run's per-keyframe table
                                               (the columns of ``Timeline.to_pandas()``)
    sweep.json                                 what the sweep was asked (clips, grid, seed)

Every file is written under a temporary name starting with ``.`` (which readers skip) and
renamed into place, keyframes first and the run row last (a small JSON file: a run row
costs a tenth of a millisecond to write and to read, where a one-row Parquet file costs
milliseconds of footer and schema work each way): a run counts as finished once
its row is there, so a sweep killed at any moment leaves whole runs only, and a re-run
with the same ``out=`` skips exactly those. One run is in memory at a time while
writing; readers prune columns and push filters down to the files
(:class:`Results.keyframes`), so one figure across a large study reads only its column.

Workers of a cluster write into the same root (a shared path): each run's files are its
own, so no writer ever touches another's file.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .timeline import Timeline

__all__ = [
    "KEYFRAMES_DIR",
    "RUNS_DIR",
    "Results",
    "batch_writer",
    "consolidate_runs",
    "finished_runs",
    "keyframe_table",
    "load_results",
    "runs_frame",
    "serve_writes",
    "write_keyframes",
    "write_result",
    "write_run",
]

RUNS_DIR = "runs"
RUNS_TABLE = "runs.parquet"
KEYFRAMES_DIR = "keyframes"
SWEEP_FILE = "sweep.json"
PART_FILE = "part.parquet"
ENGINES = ("pandas", "dask")
# FLAME floats barely compress and never repeat: no compression (measured on 2,500-keyframe
# runs, E = 50: LZ4 saved 3% of the bytes, 0.863 against 0.890 MB a run, and cost a quarter
# of the encoding time, 1.25 against 1.0 ms; byte-stream-split with LZ4 saved 9% for twice
# the time, zstd 12% for 2.7x) and no dictionary pages for them (a dictionary attempt on
# float columns doubles the write time for nothing); the request ids, few and repeated,
# are dictionary-encoded
# No Arrow schema in the footer: it doubles the footer, which every read of every run parses
# first (a one-column read of a run is mostly footer); the only type it would restore, the
# request ids' dictionary, readers rebuild as a categorical.
# A run's column (up to 16,384 keyframes: 11 minutes at 25 fps) is encoded in one batch:
# the default, 1,024 values a batch, cost 6% more encoding time a run (pages are cut
# between batches, so a batch this size still makes pages of at most 128 kB of doubles).
_KEYFRAME_WRITE = {
    "compression": "none",
    "use_dictionary": ["req_id"],
    "store_schema": False,
    "write_batch_size": 1 << 14,
}
# a thread of its own for reading only when it has at least this many files to read
_FILES_PER_THREAD = 32
# min/max statistics where filters use them (identity and timing); FLAME values go without
_STATISTICS = ["req_id", "keyframe", "frame", "media_time", "arrival", "latency", "lateness"]


# ----------------------------------------------------------------------------- writing


def _check_run_id(run_id: str) -> str:
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


def _atomic_write(table: pa.Table, path: Path, **options: Any) -> None:
    """Write ``table`` to ``path`` so that ``path`` is either absent or whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # encoded in memory (one run: about a megabyte), then one write: Arrow's file stream
    # issues a write per page and per footer piece, which doubles the time of a small file
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    _atomic_bytes(sink.getvalue(), path)


def _atomic_bytes(data: Any, path: Path) -> None:
    """Write ``data`` to a temporary beside ``path`` and rename it into place."""
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        try:
            fh = open(temporary, "wb")
        except FileNotFoundError:  # a new folder: made when missing, not checked every write
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(temporary, "wb")
        with fh:
            fh.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def keyframe_table(timeline: Timeline) -> pa.Table:
    """The per-keyframe table of ``timeline`` as an Arrow table, straight from its arrays.

    The same columns, order, types and values as ``Timeline.to_pandas()`` (a test holds
    the two together), built without pandas: a sweep writes hundreds of these, and the
    detour through a DataFrame costs more than writing the file.
    """
    import pyarrow as pa

    from .tidy import flame_columns, keyframe_time_columns

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


def write_keyframes(
    root: str | Path, run_id: str, keyframes: Timeline | pd.DataFrame | pa.Table
) -> Path:
    """Write one run's per-keyframe table (a Timeline, DataFrame or Arrow table) into the dataset."""
    import pyarrow as pa

    _check_run_id(run_id)
    if isinstance(keyframes, pa.Table):
        table = keyframes
    elif hasattr(keyframes, "keyframes") and hasattr(keyframes, "req_ids"):  # a Timeline
        table = keyframe_table(keyframes)  # type: ignore[arg-type]
    else:
        table = pa.Table.from_pandas(keyframes, preserve_index=False)
    names = set(table.column_names)  # a new list at every access of the property
    if "run_id" in names:  # the partition directory carries it
        table = table.drop_columns(["run_id"])
    path = Path(root) / KEYFRAMES_DIR / f"run_id={run_id}" / PART_FILE
    statistics = [c for c in _STATISTICS if c in names]
    _atomic_write(table, path, write_statistics=statistics, **_KEYFRAME_WRITE)
    return path


def _cell(value: Any) -> Any:
    """A run-table cell: scalars as they are, anything else as JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def _atomic_text(text: str, path: Path) -> None:
    _atomic_bytes(text.encode(), path)


def write_run(root: str | Path, row: Mapping[str, Any]) -> Path:
    """Write one run's row (must hold ``run_id``); written last, it marks the run as finished."""
    run_id = _check_run_id(row.get("run_id"))  # type: ignore[arg-type]
    path = Path(root) / RUNS_DIR / f"{run_id}.json"
    # floats keep every bit through JSON (repr round-trips); NaN is written as NaN
    _atomic_text(json.dumps({str(k): _cell(v) for k, v in row.items()}), path)
    return path


def write_result(root: str | Path, row: Mapping[str, Any], timeline: Timeline | None) -> None:
    """Write one finished run: its keyframes (when any arrived), then its row.

    A run written without keyframes drops any left by an earlier attempt, so the
    dataset never pairs a row with another attempt's frames.
    """
    run_id = _check_run_id(row.get("run_id"))  # type: ignore[arg-type]
    if timeline is not None and timeline.n_keyframes:
        write_keyframes(root, run_id, timeline)
    else:
        stale = Path(root) / KEYFRAMES_DIR / f"run_id={run_id}" / PART_FILE
        if stale.exists():
            stale.unlink()
    write_run(root, row)


END_OF_STREAM = object()


def send_frame(pipe: Any, obj: Any) -> None:
    """Write ``obj`` to ``pipe`` as one message of the writer process's framing: an 8-byte
    little-endian length, then the pickle."""
    import pickle

    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    pipe.write(len(data).to_bytes(8, "little") + data)
    pipe.flush()


def read_frame(pipe: Any) -> Any:
    """The next message :func:`send_frame` wrote to ``pipe``, or ``END_OF_STREAM`` when the
    pipe ended."""
    import pickle

    header = pipe.read(8)
    if len(header) < 8:
        return END_OF_STREAM
    return pickle.loads(pipe.read(int.from_bytes(header, "little")))


def serve_writes() -> None:
    """The writer process of an in-process sweep: write runs sent over stdin, reply on stdout.

    Each message is an 8-byte little-endian length and a pickle of ``(root, row,
    timeline)``, or of ``None`` to stop; each reply ``(run_id, error text or None)``. A
    sweep streams in one process and writes in this one, so writing never competes
    with a session whose timing is recorded. Started as ``python -c`` (not through
    multiprocessing), so a script without a ``__main__`` guard is not run again.
    """
    import sys

    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while True:
        job = read_frame(source)
        if job is None or job is END_OF_STREAM:
            return
        root, row, timeline = job
        try:
            write_result(root, row, timeline)
            error = None
        except Exception as exc:  # noqa: BLE001 - reported to the sweep, which marks the run failed
            error = f"{type(exc).__name__}: {exc}"
        send_frame(sink, (row.get("run_id"), error))


def batch_writer(root: str | Path | None = None) -> Any:
    """A :class:`avatar_nb.batch.Writer` that adds each batch result to a dataset.

    For ``avatar-nb run`` and :func:`avatar_nb.batch.render`: each result's per-keyframe
    table and row (:meth:`~avatar_nb.batch.ClipResult.row`) go into the dataset at
    ``root`` (default: the batch's output folder itself, so ``load_results(out)`` reads a
    batch's results as it reads a sweep's), under the run id of the result's file stem.
    Used in the render phase, after every session has ended.
    """
    from .batch import Writer

    def write(result: Any, stem: Path) -> Path:
        target = Path(root) if root is not None else stem.parent
        row = {"run_id": stem.name, **result.row()}
        write_result(target, row, result.timeline)
        return target / KEYFRAMES_DIR / f"run_id={stem.name}" / PART_FILE

    return Writer("dataset", write)


def write_sweep_info(root: str | Path, info: Mapping[str, Any]) -> Path:
    """Record what a sweep was asked (``sweep.json``), for people reading the dataset later."""
    path = Path(root) / SWEEP_FILE
    _atomic_text(json.dumps(dict(info), indent=2, sort_keys=True, default=str), path)
    return path


def consolidate_runs(root: str | Path) -> Path:
    """Write every run row as one Parquet table, ``runs.parquet`` (at the end of a sweep)."""
    import pyarrow as pa

    path = Path(root) / RUNS_TABLE
    _atomic_write(pa.Table.from_pandas(read_runs(root), preserve_index=False), path)
    return path


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


def _run_rows(root: Path) -> list[dict[str, Any]]:
    folder = root / RUNS_DIR
    if not folder.is_dir():
        return []
    rows = []
    for path in sorted(folder.glob("*.json")):
        if not path.name.startswith("."):
            rows.append(json.loads(path.read_text()))
    return rows


def read_runs(root: str | Path) -> pd.DataFrame:
    """The runs table of the dataset at ``root`` (empty when there is none yet)."""
    return runs_frame(_run_rows(Path(root)))


def finished_runs(root: str | Path) -> set[str]:
    """Run ids whose row says ``status == "ok"`` and whose keyframes are on disk: what a resume skips."""
    root = Path(root)
    done: set[str] = set()
    for row in _run_rows(root):
        if row.get("status") == "ok":
            run_id = row.get("run_id")
            if (root / KEYFRAMES_DIR / f"run_id={run_id}" / PART_FILE).exists():
                done.add(run_id)
    return done


# ----------------------------------------------------------------------------- reading


def _filter_expression(filters: Any) -> Any:
    """A pyarrow expression from ``filters``: an expression already, or DNF tuples as pandas takes them."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if filters is None or isinstance(filters, pc.Expression):
        return filters
    return pq.filters_to_expression(filters)


class Results:
    """A dataset read back: ``.runs`` (one row per run) and ``.keyframes(...)`` (read on demand).

    With ``engine="pandas"`` (default) both are pandas DataFrames; with ``engine="dask"``
    they are ``dask.dataframe`` frames, for studies larger than memory
    (``res.keyframes(columns=["latency"]).groupby("run_id").latency.quantile(0.99)`` ...).
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
        self._runs: Any = None

    def __repr__(self) -> str:
        return f"<Results {str(self.path)!r} engine={self.engine!r}>"

    @property
    def info(self) -> dict[str, Any]:
        """What the sweep was asked (``sweep.json``), or ``{}``."""
        path = self.path / SWEEP_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    @property
    def runs(self) -> Any:
        """The runs table: one row per run, sorted by its position in the sweep."""
        if self._runs is None:
            if self.engine == "dask":
                import dask.dataframe as dd

                self._runs = dd.from_pandas(read_runs(self.path), npartitions=1)
            else:
                self._runs = read_runs(self.path)
        return self._runs

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
        runs table (``"chunk_ms"`` ...) joined onto each keyframe by ``run_id``.
        """
        expression = _filter_expression(filters)
        parts = self._parts(runs)
        if self.engine == "dask":
            frame = self._dask_keyframes(parts, columns, expression)
            if with_runs:
                extra = ["run_id", *[c for c in with_runs if c != "run_id"]]
                # the runs table is small: joined as pandas, broadcast to every partition
                frame = frame.merge(read_runs(self.path)[extra], on="run_id", how="left")
            return frame
        if expression is None:
            table = _read_parts(parts, columns)
        else:  # filters on any column, run_id included: the dataset scanner pushes them down
            wanted = None if columns is None else ["run_id", *[c for c in columns if c != "run_id"]]
            chosen = [str(path) for _, path in parts]
            dataset = self._dataset(chosen)
            table = dataset.to_table(columns=wanted, filter=expression)
        return frame_with_runs(table, read_runs(self.path) if with_runs else None, with_runs)

    def _parts(self, runs: Sequence[str] | None = None) -> list[tuple[str, Path]]:
        """(run id, keyframe file) of every run on disk, or of ``runs`` (those on disk), in run-id order."""
        base = self.path / KEYFRAMES_DIR
        if runs is not None:
            found = [(str(r), base / f"run_id={r}" / PART_FILE) for r in dict.fromkeys(runs)]
            return sorted((r, p) for r, p in found if p.exists())
        return sorted(
            (p.parent.name.split("=", 1)[1], p) for p in base.glob(f"run_id=*/{PART_FILE}")
        )

    def _dask_keyframes(
        self, parts: list[tuple[str, Path]], columns: Sequence[str] | None, expression: Any
    ) -> Any:
        import dask.dataframe as dd

        if not parts:
            raise FileNotFoundError(f"{self.path} holds no keyframe tables")

        def one(part: tuple[str, str]) -> pd.DataFrame:
            frame = _read_part(part, columns, expression)
            # one run per partition: a categorical would have other categories in every one
            frame["run_id"] = frame["run_id"].astype(str)
            return frame

        items = [(run_id, str(path)) for run_id, path in parts]
        meta = one(items[0]).iloc[:0]
        return dd.from_map(one, items, meta=meta, enforce_metadata=False)

    def iter_keyframes(
        self, columns: Sequence[str] | None = None, filters: Any = None
    ) -> Iterator[pd.DataFrame]:
        """The per-keyframe table one run at a time (``run_id`` first): memory bounded by one run's
        columns, whatever the study's size. ``filters`` as for :meth:`keyframes`."""
        expression = _filter_expression(filters)
        for part in self._parts():
            frame = _read_part(part, columns, expression)
            if len(frame):
                yield frame

    def _dataset(self, files: Sequence[str] | None = None) -> Any:
        import pyarrow.dataset as ds

        source: Any = list(files) if files is not None else self.path / KEYFRAMES_DIR
        return ds.dataset(
            source,
            format="parquet",
            partitioning=_partitioning(),
            partition_base_dir=str(self.path / KEYFRAMES_DIR),
        )


def _read_parts(parts: Sequence[tuple[str, Path]], columns: Sequence[str] | None) -> pa.Table:
    """The keyframe files of ``parts``, only ``columns``, as one table with a categorical ``run_id``.

    Read file by file with the Parquet reader itself: a dataset scan costs a quarter of a
    millisecond and several hundred kilobytes of bookkeeping per file, which for one
    column of a few thousand keyframes is most of the work.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    file_columns = None if columns is None else [c for c in columns if c != "run_id"]

    def read(path: Path) -> pa.Table:
        # no pre-buffering: one column of one row group is one read anyway
        return pq.ParquetFile(path, pre_buffer=False).read(columns=file_columns, use_threads=False)

    def read_slice(paths: Sequence[Path]) -> list[pa.Table]:
        return [read(path) for path in paths]

    # Opening a file and decoding its footer is most of the work (0.2 ms of the 0.25 ms
    # a one-column read of a run takes) and runs without the GIL: the files are read in
    # one contiguous slice per core, each slice file by file (a task per file costs more
    # than the file; measured on two cores: 35 ms for 360 runs against 61 ms on one).
    paths = [path for _, path in parts]
    workers = max(1, min(os.cpu_count() or 1, len(paths) // _FILES_PER_THREAD))
    if workers == 1:
        tables = read_slice(paths)
    else:
        from concurrent.futures import ThreadPoolExecutor

        step = -(-len(paths) // workers)
        slices = [paths[i : i + step] for i in range(0, len(paths), step)]
        with ThreadPoolExecutor(len(slices), thread_name_prefix="avatar_nb-read") as pool:
            tables = [t for piece in pool.map(read_slice, slices) for t in piece]
    if not tables:
        names = ["run_id", *(file_columns or [])]
        return pa.table(
            {
                name: pa.array([], pa.string()) if name == "run_id" else pa.array([], pa.float64())
                for name in names
            }
        )
    sizes = np.array([t.num_rows for t in tables])
    table = pa.concat_tables(tables, promote_options="permissive")
    codes = np.repeat(np.arange(len(tables), dtype=np.int32), sizes)
    run_id = pa.DictionaryArray.from_arrays(
        pa.array(codes), pa.array([r for r, _ in parts], pa.string())
    )
    return table.add_column(0, "run_id", run_id)


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
        missing = [c for c in with_runs if c not in runs.columns]
        if missing:
            raise KeyError(
                f"columns {missing} are not in the runs table; it has {list(runs.columns)}"
            )
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


def _batch_frame(batch: Any) -> pd.DataFrame:
    """A record batch as a DataFrame (see :func:`_arrow_columns`)."""
    import pandas as pd

    return pd.DataFrame(_arrow_columns(batch), copy=False)


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
            data[name] = pd.Categorical.from_codes(
                column.indices.fill_null(-1).to_numpy(zero_copy_only=False),
                categories=column.dictionary.to_pylist(),
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


def _partitioning() -> Any:
    import pyarrow as pa
    import pyarrow.dataset as ds

    return ds.partitioning(pa.schema([("run_id", pa.string())]), flavor="hive")


def _read_part(
    part: tuple[str, Any], columns: Sequence[str] | None, expression: Any
) -> pd.DataFrame:
    """One run's keyframe file as a DataFrame with ``run_id`` first (categorical)."""
    run_id, path = part
    table = _read_parts([(run_id, Path(path))], columns)
    if expression is not None:
        table = table.filter(expression)
    return _with_run_id_first(_batch_frame(table.unify_dictionaries().combine_chunks()))


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
