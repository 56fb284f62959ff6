"""Reading a dataset back into pandas or Dask: :func:`load_results` and :class:`Results`
(the runs table, keyframes pruned to the columns, rows and runs asked for, streamed a row
group at a time), and the conversions from Arrow tables that sweeps share
(:func:`keyframes_frame`, :func:`frame_with_runs`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .catalog import (
    Catalog,
    File,
    Stretch,
    file_batches,
    read_regular,
    read_stretches,
    streamed,
)
from .layout import KEYFRAMES_DIR, RUNS_DIR, SWEEP_FILE, runs_column, runs_frame

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


ENGINES = ("pandas", "dask")


def _filter_expression(filters: Any) -> Any:
    """A pyarrow expression from ``filters``: an expression already, or DNF tuples as pandas takes them."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if filters is None or isinstance(filters, pc.Expression):
        return filters
    return pq.filters_to_expression(filters)


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
        self._catalog: Catalog | None = None
        self._runs: Any = None

    def _counts(self) -> tuple[int, dict[str, int], int] | None:
        """(runs, runs by status, keyframe rows of the current runs) from the runs files,
        or None when they cannot be read."""
        try:
            catalog = self.catalog
        except (OSError, ValueError):
            return None
        statuses: dict[str, int] = {}
        for row in catalog.rows.values():
            status = str(row.get("status"))
            statuses[status] = statuses.get(status, 0) + 1
        rows = sum(s.rows for s in catalog.keyframes.values())
        return len(catalog.rows), statuses, rows

    def __repr__(self) -> str:
        counts = self._counts()
        if counts is None:
            return f"<Results {str(self.path)!r} engine={self.engine!r} (runs files unreadable)>"
        runs, statuses, rows = counts
        by_status = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
        return (
            f"<Results {str(self.path)!r}: {runs} runs ({by_status or 'none'}), "
            f"{rows:,} keyframe rows, engine={self.engine!r}>"
        )

    def _repr_html_(self) -> str:
        from html import escape

        counts = self._counts()
        head = (
            f"<b>Results</b> <code>{escape(str(self.path))}</code> (engine {escape(self.engine)})"
        )
        if counts is None:
            return f"{head}: runs files unreadable"
        runs, statuses, rows = counts
        cells = "".join(
            f"<tr><td>{escape(status)}</td><td>{n}</td></tr>"
            for status, n in sorted(statuses.items())
        )
        return (
            f"{head}<table><tr><th>status</th><th>runs</th></tr>{cells}"
            f"<tr><td><b>all</b></td><td>{runs}</td></tr></table>"
            f"{rows:,} keyframe rows"
        )

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(self.path)
        return self._catalog

    @property
    def info(self) -> dict[str, Any]:
        """What the sweep was asked (``sweep.json``), or ``{}``."""
        path = self.path / SWEEP_FILE
        if not (path.exists() or path.is_symlink()):
            return {}
        try:
            info = json.loads(read_regular(path))
        except ValueError as exc:
            if str(exc).startswith(str(path)):
                raise
            raise ValueError(f"{path}: not a sweep description ({exc})") from None
        if not isinstance(info, dict):
            raise ValueError(f"{path}: not a sweep description (a JSON object)")  # noqa: TRY004
        return info

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

    def _stretches(self, runs: Sequence[str] | None = None) -> list[tuple[str, Stretch]]:
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
            read = dict(read_stretches(stretches, columns))
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
            name: runs_column([row.get(name) for row in rows]).to_numpy(zero_copy_only=False)[
                chosen
            ]
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
        stretches: Sequence[tuple[str, Stretch]],
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
        opened = {path: File(path) for path in files}  # regular files only, as unfiltered reads
        for _, stretch in stretches:  # of the rows their runs files say
            opened[stretch.path].check(stretch)
        table = ds.dataset([str(p) for p in files], format="parquet").to_table(
            columns=wanted, filter=expression
        )
        if table.num_rows:  # run-id order; the sort is stable, so each run keeps its order
            table = table.take(pc.sort_indices(table, [("run_id", "ascending")]))
        return table

    def _dask_keyframes(
        self, stretches: list[tuple[str, Stretch]], columns: Sequence[str] | None, filters: Any
    ) -> Any:
        import dask.dataframe as dd

        if not stretches:
            raise FileNotFoundError(f"{self.path} holds no keyframe tables")
        parts = _partitions(stretches)

        read = _read_columns(columns, filters)

        def one(part: list[tuple[str, Stretch]]) -> pd.DataFrame:
            return keyframes_frame(read_stretches(part, read), columns, filters, text_ids=True)

        meta = one(parts[0]).iloc[:0]
        return dd.from_map(one, parts, meta=meta, enforce_metadata=False)

    def explore(self, run_id: str, **options: Any) -> Any:
        """Run ``run_id`` in the explorer (:func:`avatar_nb.explore`; ``options`` go to it),
        built from its keyframe table: a dataset keeps no audio, so there is no audio track;
        each request spans its keyframes. The keyframe rate is the run's ``fps`` when the
        runs table has one, else read off the media times."""
        from ..timeline_pyramid import RunSeries
        from ..widgets.explorer import explore

        frame = self.keyframes(runs=[run_id])
        if self.engine == "dask":
            frame = frame.compute()
        if not len(frame):
            raise KeyError(f"no keyframes of a run {run_id!r} in {self.path}")
        row = self.catalog.rows.get(str(run_id), {})
        fps = row.get("fps")
        if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
            steps = np.diff(np.sort(frame["media_time"].to_numpy(dtype=np.float64)))
            steps = steps[steps > 0]
            fps = 1.0 / float(np.median(steps)) if steps.size else 25.0
        run = RunSeries.from_keyframes(frame.reset_index(drop=True), fps=float(fps), label=str(run_id))
        return explore(run, **options)

    def iter_keyframes(
        self, columns: Sequence[str] | None = None, filters: Any = None
    ) -> Iterator[pd.DataFrame]:
        """The per-keyframe table a few whole runs at a time (the runs one row group holds;
        ``run_id`` first, categorical), in the order they are stored: memory bounded by one
        row group's columns (16 MiB of keyframes, or one longer run), whatever the study's
        size. ``filters`` as for :meth:`keyframes`."""
        for pieces in streamed(self._stretches(), _read_columns(columns, filters)):
            frame = keyframes_frame(pieces, columns, filters)
            if len(frame):
                yield frame


def _partitions(stretches: Sequence[tuple[str, Stretch]]) -> list[list[tuple[str, Stretch]]]:
    """The runs grouped by the row group they start in: a Dask partition each."""
    return [batch for _, batch in file_batches(stretches)]


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
