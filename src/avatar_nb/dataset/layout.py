"""The dataset's layout on disk and its Parquet settings: the names of its files and
folders, the format version of a runs file, when a writer commits, how keyframe files are
encoded, and the few primitives every writer of the dataset uses (a run id's check, a
run row's cells, the runs table, files written whole by a rename).

Nothing here knows of segments or their readers: :mod:`.writer` writes them,
:mod:`.catalog` finds them, :mod:`.consolidation` rewrites them, :mod:`.readers` reads them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import stat
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


RUNS_DIR = "runs"
RUNS_TABLE = "runs.parquet"
KEYFRAMES_DIR = "keyframes"
SWEEP_FILE = "sweep.json"
FORMAT_VERSION = 1
"""The version a runs file records; readers refuse any other by name."""
SEGMENT_TEMPORARY = ".segment-"
"""How the keyframe file of an open segment is named until it is committed (a leading
dot: readers skip it); :func:`~.consolidation.consolidate` removes those of killed writers."""

SEGMENT_FILE = re.compile(r"[0-9a-f]{16}-[0-9a-f]{4}-[0-9a-f]{8}(-[0-9]+)?\.parquet\Z")
"""How a writer names a committed keyframe file (``<segment>.parquet``, or
``<segment>-<i>.parquet`` for a segment of several layouts): the only names
:func:`~.consolidate.consolidate` ever deletes."""
LOCK_FILE = ".lock"
"""The dataset's advisory lock (``fcntl.flock``), in its root: a writer's commit holds
it shared, :func:`~.consolidation.consolidate` exclusive, a reader reading the runs files
shared (see :func:`dataset_lock`)."""

ROW_GROUP_BYTES = 16 << 20
"""Bytes of Arrow data a row group collects before it is encoded (several runs of
minutes, or one longer run): the bound on a writer's memory."""
SEGMENT_BYTES = 256 << 20
"""Bytes of keyframes after which a writer commits its open segment."""
COMMIT_SECONDS = 30.0
"""Seconds after which a writer commits its open segment: what a killed sweep can lose."""

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
KEYFRAME_WRITE = {
    "compression": "none",
    "use_dictionary": ["run_id", "req_id"],
    "store_schema": False,
    "write_batch_size": 1 << 14,
}


# min/max statistics where filters use them (identity and timing); FLAME values go without
STATISTICS_COLUMNS = [
    "run_id",
    "req_id",
    "keyframe",
    "frame",
    "media_time",
    "arrival",
    "latency",
    "lateness",
]


def check_run_id(run_id: Any) -> str:
    """``run_id`` when it can name a run on disk (no slashes, no leading dot), else ValueError."""
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


_held = threading.local()


@contextlib.contextmanager
def dataset_lock(root: Path, *, exclusive: bool, create: bool = True) -> Iterator[None]:
    """Hold the advisory lock of the dataset at ``root``: shared, or ``exclusive``.

    Writers commit under the shared lock, so several commit at once; :func:`consolidate`
    holds it exclusive, so it never sees a commit half done (a keyframe file renamed in,
    its runs file not yet written) and two of them run one after the other. Readers take
    it shared while they read the runs files, and only when the lock file exists
    (``create=False``: reading never writes). A thread already holding the lock of
    ``root`` holds it again at no cost (consolidate's own commits). Where ``fcntl`` is
    missing (Windows) there is no lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    key = os.path.realpath(root)
    held: dict[str, bool] = _held.__dict__.setdefault("locks", {})
    if key in held:
        if exclusive and not held[key]:
            raise RuntimeError(f"{root}: the dataset's lock is held shared by this thread")
        yield
        return
    path = os.path.join(key, LOCK_FILE)
    flags = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        if create:
            os.makedirs(key, exist_ok=True)
            try:  # read-write: an exclusive lock over NFS needs it
                fd = os.open(path, flags | os.O_RDWR | os.O_CREAT, 0o666)
            except PermissionError:
                fd = os.open(path, flags | os.O_RDONLY)
        else:
            fd = os.open(path, flags | os.O_RDONLY)
    except FileNotFoundError:
        if create:
            raise
        yield  # a dataset never written by a locking writer: nothing to wait for
        return
    except OSError as exc:  # a link (ELOOP) or worse
        raise ValueError(f"{path}: cannot be opened as the dataset's lock file ({exc})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path}: the dataset's lock file is not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        held[key] = exclusive
        try:
            yield
        finally:
            del held[key]
    finally:
        os.close(fd)  # releases the lock


def create_file(path: Path, opener: Callable[[str], Any]) -> Any:
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
        with create_file(temporary, lambda name: open(name, "wb")) as fh:
            fh.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_text(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` whole: a temporary beside it, renamed into place."""
    _atomic_bytes(text.encode(), path)


def atomic_table(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` as one Parquet file, whole (encoded in memory, then renamed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    _atomic_bytes(sink.getvalue(), path)


def cell(value: Any) -> Any:
    """A run-table cell: scalars as they are, anything else as JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, _dt.datetime):  # pandas Timestamps too: ISO 8601 text in a runs file
        return value.isoformat()
    return json.dumps(value, sort_keys=True, default=str)


def runs_column(values: list[Any]) -> pa.Array:
    """A column of the runs table: an Arrow array of the type its values share, else text."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed kinds in one column: kept as text
        return pa.array([None if v is None else str(v) for v in values], pa.string())


TIMESTAMP_COLUMNS = ("started_at",)
"""Runs-table columns that are points in time: Arrow ``timestamp[us, UTC]`` (pandas
``Timestamp``); written as ISO 8601 text, read from seconds since the epoch as well
(datasets written before they were timestamps)."""

LEGACY_COLUMNS = {"service_latency_ms": "latency_ms", "service_jitter_ms": "jitter_ms"}
"""Columns of older runs tables folded into the one column that now holds the same value."""


def timestamp_column(values: list[Any]) -> pa.Array:
    """Points in time (ISO text, datetimes, or epoch seconds) as ``timestamp[us, UTC]``."""
    import pandas as pd
    import pyarrow as pa

    micros: list[int | None] = []
    for value in values:
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            micros.append(None)
            continue
        try:
            stamp = (
                pd.Timestamp(float(value), unit="s", tz="UTC")
                if isinstance(value, (int, float)) and not isinstance(value, bool)
                else pd.Timestamp(value)
            )
        except (TypeError, ValueError):
            micros.append(None)
            continue
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        micros.append(stamp.value // 1000)
    return pa.array(micros, pa.timestamp("us", tz="UTC"))


def _fold_legacy(row: dict[str, Any]) -> dict[str, Any]:
    for old, new in LEGACY_COLUMNS.items():
        if old in row:
            value = row.pop(old)
            if row.get(new) is None:
                row[new] = value
    return row


def runs_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The runs table from row dicts, exactly as :func:`load_results` reads it.

    Columns in order of first appearance, a missing cell is null; ``started_at`` a UTC
    timestamp (:data:`TIMESTAMP_COLUMNS`); the columns of :data:`LEGACY_COLUMNS` folded
    into their successors; sorted by ``started_at`` (by ``run``, a run's position in its
    sweep, in datasets written before the run id alone named a run), so the same rows
    give the same table in memory and read back from disk.
    """
    import pyarrow as pa

    items = [_fold_legacy({str(k): cell(v) for k, v in row.items()}) for row in rows]
    names = list(dict.fromkeys(k for row in items for k in row))
    table = (
        pa.table(
            {
                name: (timestamp_column if name in TIMESTAMP_COLUMNS else runs_column)(
                    [row.get(name) for row in items]
                )
                for name in names
            }
        )
        if names
        else pa.table({})
    )
    frame = table.to_pandas()
    order = "run" if "run" in frame.columns else "started_at"
    if order in frame.columns and len(frame):
        frame = frame.sort_values(order, kind="stable").reset_index(drop=True)
    return frame
