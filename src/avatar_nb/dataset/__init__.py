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
A commit holds the dataset's advisory lock (``.lock``, ``fcntl.flock``) shared and
:func:`consolidate` holds it exclusive, so sweeps may write into one root while another
consolidates, and nothing committed is lost; :func:`consolidate` deletes only regular
files named as a writer names them, and refuses a root whose ``keyframes/`` or ``runs/``
is a symbolic link. Readers check every runs file (plain names inside the root, regular
files only, row ranges within their file and apart): a ValueError names anything malformed.

The package, by concern (each importing only those above it, and below it nothing of
the layers that run sweeps and batches)::

    layout        file and folder names, format version, Parquet settings, runs rows
    writer        DatasetWriter: segments; write_result, write_run, write_sweep_info
    pipe          the writer process of an in-process sweep (serve_writes, its framing)
    catalog       the runs files read once: current rows, where keyframes are; reading them
    consolidation consolidate(): stale and small segments rewritten, runs.parquet
    readers       load_results, Results (pandas and Dask), keyframes_frame, frame_with_runs

Everything public is importable from ``avatar_nb.dataset`` itself.
"""

from __future__ import annotations

from .catalog import finished_runs, read_runs
from .consolidation import consolidate
from .layout import (
    COMMIT_SECONDS,
    FORMAT_VERSION,
    KEYFRAMES_DIR,
    LOCK_FILE,
    ROW_GROUP_BYTES,
    RUNS_DIR,
    RUNS_TABLE,
    SEGMENT_BYTES,
    SWEEP_FILE,
    runs_frame,
)
from .pipe import END_OF_STREAM, read_frame, send_frame, serve_writes
from .readers import ENGINES, Results, frame_with_runs, keyframes_frame, load_results
from .writer import (
    DatasetWriteError,
    DatasetWriter,
    keyframe_table,
    write_result,
    write_run,
    write_sweep_info,
)

__all__ = [
    "COMMIT_SECONDS",
    "END_OF_STREAM",
    "ENGINES",
    "FORMAT_VERSION",
    "KEYFRAMES_DIR",
    "LOCK_FILE",
    "ROW_GROUP_BYTES",
    "RUNS_DIR",
    "RUNS_TABLE",
    "SEGMENT_BYTES",
    "SWEEP_FILE",
    "DatasetWriteError",
    "DatasetWriter",
    "Results",
    "consolidate",
    "finished_runs",
    "frame_with_runs",
    "keyframe_table",
    "keyframes_frame",
    "load_results",
    "read_frame",
    "read_runs",
    "runs_frame",
    "send_frame",
    "serve_writes",
    "write_result",
    "write_run",
    "write_sweep_info",
]
