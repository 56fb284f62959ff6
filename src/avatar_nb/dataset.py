"""A sweep's results on disk: a runs table and per-keyframe tables, as a Parquet dataset.

Layout under the dataset's root (a directory)::

    runs/<run_id>.parquet                      one row: the run's settings, summary figures,
                                               status, error text, where it ran
    keyframes/run_id=<run_id>/part.parquet     that run's per-keyframe table
                                               (the columns of ``Timeline.to_pandas()``)
    sweep.json                                 what the sweep was asked (clips, grid, seed)

Every file is written under a temporary name starting with ``.`` (which readers skip) and
renamed into place, keyframes first and the run row last: a run counts as finished once
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
    "RUNS_DIR",
    "KEYFRAMES_DIR",
    "Results",
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
KEYFRAMES_DIR = "keyframes"
SWEEP_FILE = "sweep.json"
PART_FILE = "part.parquet"
ENGINES = ("pandas", "dask")
_COMPRESSION = "snappy"  # fast to write and read; FLAME floats barely compress anyway


# ----------------------------------------------------------------------------- writing


def _check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise ValueError(f"run_id must be a non-empty name without slashes or a leading dot, got {run_id!r}")
    return run_id


def _atomic_write(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` so that ``path`` is either absent or whole."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        pq.write_table(table, temporary, compression=_COMPRESSION)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def keyframe_table(timeline: Timeline) -> pa.Table:
    """The per-keyframe table of ``timeline`` (``Timeline.to_pandas()``) as an Arrow table."""
    import pyarrow as pa

    from .tidy import keyframe_frame

    return pa.Table.from_pandas(keyframe_frame(timeline), preserve_index=False)


def write_keyframes(root: str | Path, run_id: str, keyframes: Timeline | pd.DataFrame | pa.Table) -> Path:
    """Write one run's per-keyframe table (a Timeline, DataFrame or Arrow table) into the dataset."""
    import pyarrow as pa

    _check_run_id(run_id)
    if isinstance(keyframes, pa.Table):
        table = keyframes
    elif hasattr(keyframes, "keyframes") and hasattr(keyframes, "req_ids"):  # a Timeline
        table = keyframe_table(keyframes)  # type: ignore[arg-type]
    else:
        table = pa.Table.from_pandas(keyframes, preserve_index=False)
    if "run_id" in table.column_names:  # the partition directory carries it
        table = table.drop_columns(["run_id"])
    path = Path(root) / KEYFRAMES_DIR / f"run_id={run_id}" / PART_FILE
    _atomic_write(table, path)
    return path


def _cell(value: Any) -> Any:
    """A run-table cell Parquet can store: scalars as they are, anything else as JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def _row_table(row: Mapping[str, Any]) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pylist([{str(k): _cell(v) for k, v in row.items()}])


def write_run(root: str | Path, row: Mapping[str, Any]) -> Path:
    """Write one run's row (must hold ``run_id``); written last, it marks the run as finished."""
    run_id = _check_run_id(row.get("run_id"))  # type: ignore[arg-type]
    path = Path(root) / RUNS_DIR / f"{run_id}.parquet"
    _atomic_write(_row_table(row), path)
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


def serve_writes() -> None:
    """The writer process of an in-process sweep: write runs sent over stdin, reply on stdout.

    Each message is an 8-byte little-endian length and a pickle of ``(root, row,
    timeline)``, or of ``None`` to stop; each reply ``(run_id, error text or None)``. A
    sweep streams in one process and writes in this one, so writing never competes
    with a session whose timing is recorded. Started as ``python -c`` (not through
    multiprocessing), so a script without a ``__main__`` guard is not run again.
    """
    import pickle
    import sys

    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = source.read(8)
        if len(header) < 8:
            return
        job = pickle.loads(source.read(int.from_bytes(header, "little")))
        if job is None:
            return
        root, row, timeline = job
        try:
            write_result(root, row, timeline)
            error = None
        except Exception as exc:  # reported to the sweep, which marks the run failed
            error = f"{type(exc).__name__}: {exc}"
        reply = pickle.dumps((row.get("run_id"), error))
        sink.write(len(reply).to_bytes(8, "little") + reply)
        sink.flush()


def write_sweep_info(root: str | Path, info: Mapping[str, Any]) -> Path:
    """Record what a sweep was asked (``sweep.json``), for people reading the dataset later."""
    path = Path(root) / SWEEP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    temporary.write_text(json.dumps(dict(info), indent=2, sort_keys=True, default=str))
    os.replace(temporary, path)
    return path


# ----------------------------------------------------------------------------- runs table


def _concat_rows(tables: Sequence[pa.Table]) -> pa.Table:
    import pyarrow as pa

    if not tables:
        return pa.table({})
    # columns missing from some rows become nulls, null-only columns take the others' type
    return pa.concat_tables(tables, promote_options="permissive")


def runs_frame(rows: Iterable[Mapping[str, Any]] | Sequence[pa.Table]) -> pd.DataFrame:
    """The runs table from row dicts or one-row Arrow tables, exactly as :func:`load_results` reads it.

    Sorted by ``run`` (the run's position in its sweep) when that column is there, so the
    in-memory table and the one read back from disk are equal.
    """
    import pyarrow as pa

    items = list(rows)
    tables = [item if isinstance(item, pa.Table) else _row_table(item) for item in items]
    table = _concat_rows(tables)
    frame = table.to_pandas()
    if "run" in frame.columns and len(frame):
        frame = frame.sort_values("run", kind="stable").reset_index(drop=True)
    return frame


def _run_files(root: Path) -> list[Path]:
    folder = root / RUNS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


def read_runs(root: str | Path) -> pd.DataFrame:
    """The runs table of the dataset at ``root`` (empty when there is none yet)."""
    import pyarrow.parquet as pq

    return runs_frame([pq.read_table(p) for p in _run_files(Path(root))])


def finished_runs(root: str | Path) -> set[str]:
    """Run ids whose row says ``status == "ok"`` and whose keyframes are on disk: what a resume skips."""
    import pyarrow.parquet as pq

    root = Path(root)
    done: set[str] = set()
    for path in _run_files(root):
        table = pq.read_table(path, columns=["run_id", "status"])
        if table.num_rows and table.column("status")[0].as_py() == "ok":
            run_id = table.column("run_id")[0].as_py()
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
            raise ValueError(f"unknown engine {engine!r}; accepted: {', '.join(map(repr, ENGINES))}")
        self.path = Path(path)
        if not (self.path / RUNS_DIR).is_dir() and not (self.path / KEYFRAMES_DIR).is_dir():
            raise FileNotFoundError(f"{self.path} holds no avatar_nb dataset (no {RUNS_DIR}/ or {KEYFRAMES_DIR}/ folder)")
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

    def _dataset(self) -> Any:
        import pyarrow.dataset as ds

        return ds.dataset(self.path / KEYFRAMES_DIR, format="parquet", partitioning=_partitioning())

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
        import pyarrow.compute as pc

        expression = _filter_expression(filters)
        if runs is not None:
            selected = pc.field("run_id").isin(list(runs))
            expression = selected if expression is None else expression & selected
        wanted = None if columns is None else ["run_id", *[c for c in columns if c != "run_id"]]
        if self.engine == "dask":
            frame = self._dask_keyframes(wanted, expression)
        else:
            table = self._dataset().to_table(columns=wanted, filter=expression)
            frame = _with_run_id_first(table.to_pandas())
        if with_runs:
            extra = ["run_id", *[c for c in with_runs if c != "run_id"]]
            # the runs table is small: joined as pandas (broadcast to every partition under dask)
            runs_table = read_runs(self.path)[extra]
            frame = frame.merge(runs_table, on="run_id", how="left")
        return frame

    def _dask_keyframes(self, columns: list[str] | None, expression: Any) -> Any:
        import dask.dataframe as dd

        def one(path: str) -> pd.DataFrame:
            return _read_part(path, columns, expression)

        parts = sorted(str(p) for p in (self.path / KEYFRAMES_DIR).glob(f"run_id=*/{PART_FILE}"))
        if not parts:
            raise FileNotFoundError(f"{self.path} holds no keyframe tables")
        meta = _read_part(parts[0], columns, expression).iloc[:0]
        return dd.from_map(one, parts, meta=meta, enforce_metadata=False)

    def iter_keyframes(self, columns: Sequence[str] | None = None, filters: Any = None) -> Iterator[pd.DataFrame]:
        """The per-keyframe table one run at a time: memory bounded by one run's columns."""
        expression = _filter_expression(filters)
        wanted = None if columns is None else ["run_id", *[c for c in columns if c != "run_id"]]
        for part in sorted((self.path / KEYFRAMES_DIR).glob(f"run_id=*/{PART_FILE}")):
            yield _read_part(str(part), wanted, expression)


def _partitioning() -> Any:
    import pyarrow as pa
    import pyarrow.dataset as ds

    return ds.partitioning(pa.schema([("run_id", pa.string())]), flavor="hive")


def _read_part(path: str, columns: list[str] | None, expression: Any) -> pd.DataFrame:
    """One run's keyframe file as a DataFrame with ``run_id`` first (from its directory name)."""
    import pyarrow.dataset as ds

    base = str(Path(path).parent.parent)
    dataset = ds.dataset([path], format="parquet", partitioning=_partitioning(), partition_base_dir=base)
    return _with_run_id_first(dataset.to_table(columns=columns, filter=expression).to_pandas())


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

