"""sweep(): many runs (clips x conditions x repeats) into one runs table and a Parquet dataset.

``avatar_nb.sweep`` is this module's :func:`sweep` (the module is named ``sweeps`` so that
importing it never replaces the function on the package). A sweep is the product of its
clips, the values of its ``grid`` and its repeats. Every run is one clip streamed as one
utterance through one session, with bounded concurrency, against one service per
distinct service configuration (a grid over ``latency_ms`` gets one
:class:`~avatar_nb.LocalService` per value, kept for the sweep).

This module is the entry point only; the work is the experiment layer's
(:mod:`avatar_nb.experiments`): the clips (:func:`~avatar_nb.experiments.collect_clips`,
the same rules as ``avatar-nb run``), the declared conditions, the plan (one
:class:`~avatar_nb.experiments.RunSpec` per run) and the executor, in process or on a
Dask cluster (``client=``), sharing resume, writing, failed rows and the result.

Timing rules (nothing of the tool's own runs beside a session whose timing is recorded):
the per-keyframe tables are written by a separate writer process, never in the
process that streams; a run's audio is prepared before its session opens, and its
summary is taken after its session closed. On a Dask cluster each run's files are
written by the worker after its batch of sessions finished streaming.

Resume: a run's id is a hash of its clip, settings and repeat, so the same sweep
asked again with the same ``out=`` finds the runs already finished there and runs only
the others (failed ones included). A run that fails is a row with ``status="failed"``
and its error text; the sweep goes on.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .endpoints import ServiceSpec
from .experiments.clips import Clip, collect_clips
from .experiments.conditions import PACING_OPTIONS, check_grid, classify
from .experiments.executors import InProcess, execute
from .experiments.planning import RunSpec, plan, service_key, sweep_info
from .experiments.results import SweepResult
from .experiments.runs import PREPARE_BUDGET, prepare_all, run_one, run_row, where

__all__ = ["RunSpec", "ServiceSpec", "SweepResult", "plan", "sweep", "sweep_async"]

# names that stay importable from here (they live in avatar_nb.experiments)
_KEPT = (
    Clip,
    PACING_OPTIONS,
    PREPARE_BUDGET,
    classify,
    collect_clips,
    prepare_all,
    run_one,
    run_row,
    service_key,
    where,
)


async def sweep_async(
    clips: Any,
    grid: Mapping[str, Any] | None = None,
    *,
    repeats: int = 1,
    concurrency: int = 4,
    pacing: str | None = None,
    service: Any = None,
    out: str | Path | None = None,
    client: Any = None,
    seed: int = 0,
    progress: bool = True,
    timeout: float | None = None,
    recursive: bool = True,
    raw_rate: int | None = None,
) -> SweepResult:
    """:func:`sweep` as a coroutine (for code already running an event loop)."""
    if not (
        isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency >= 1
    ):
        raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
    sources = collect_clips(clips, recursive=recursive, raw_rate=raw_rate)
    if not sources:
        raise ValueError("a sweep needs at least one clip")
    grid_values = check_grid(grid)
    spec = ServiceSpec.of(service)
    given = service if service is not None and not isinstance(service, Mapping) else None
    specs = plan(
        sources,
        grid_values,
        repeats,
        pacing=pacing,
        seed=seed,
        local=spec.kind == "local" and given is None,
    )
    if client is not None:
        from .experiments.cluster import OnDask

        executor: Any = OnDask(client)
        given = None  # the workers reach a given service through its endpoints
    else:
        executor = InProcess()
    return await execute(
        executor,
        specs,
        sources,
        spec,
        Path(out) if out is not None else None,
        info=sweep_info(sources, grid_values, repeats, seed),
        given=given,
        concurrency=concurrency,
        seed=seed,
        progress=progress,
        timeout=timeout,
    )


def sweep(
    clips: Any = None,
    grid: Mapping[str, Any] | None = None,
    *,
    repeats: int = 1,
    concurrency: int = 4,
    pacing: str | None = None,
    service: Any = None,
    out: str | Path | None = None,
    client: Any = None,
    seed: int = 0,
    progress: bool = True,
    timeout: float | None = None,
    recursive: bool = True,
    raw_rate: int | None = None,
    captures: Any = None,
) -> SweepResult:
    """Run every clip under every combination of ``grid`` values, ``repeats`` times.

    ``clips``: audio file paths, folders (scanned recursively unless ``recursive=False``),
    glob patterns, ``(array, sample_rate)`` pairs, or a mapping of names to those: the
    rules of :func:`avatar_nb.experiments.collect_clips`, the same as ``avatar-nb run``
    (``raw_rate``: the rate of raw s16le files). ``grid``: option -> list of values, for
    any condition of :data:`avatar_nb.experiments.CONDITIONS`: pacing options
    (``pacing``, ``chunk_ms``), ``sample_rate``, session options (``fps`` ...) or local
    service conditions (``latency_ms``, ``jitter_ms``, ``av_offset_ms`` ...; one service
    per distinct configuration). ``concurrency``: sessions streaming at once. ``pacing``:
    the default pacing (:data:`avatar_nb.pacing.DEFAULT_PACING`). ``service``: ``None``
    (the ``AVATAR_NB_*`` environment, else local services), a running ``LocalService``,
    or a mapping of session options naming a remote service's endpoints and credentials.
    ``out``: a directory to write the dataset to (see :mod:`avatar_nb.dataset`); runs
    already finished there are skipped (said in one line, and counted in the result's
    repr); the result holds the runs this call asked for, whatever else the folder holds,
    and ``sweep.json`` lists every sweep written into it. ``client``: a ``dask.distributed.Client`` to run
    the runs on its workers (needs ``out=`` on a path they share; see
    :mod:`avatar_nb.experiments.cluster`). ``seed`` seeds the local services (jitter,
    animation). ``timeout``: per run, the wait for its end frame (default 30 s plus the clip).

    ``captures``: capture files of ``avatar-nb tap`` (files or folders) instead of clips:
    each captured session becomes a run, its conditions read from the capture (see
    :mod:`avatar_nb.tap.dataset`).

    Returns a :class:`SweepResult`. Ctrl-C stops streaming, commits the runs that
    finished, says in one line how many are saved, and raises ``KeyboardInterrupt``; the
    same call resumes. Works in scripts and in notebooks (inside a running
    event loop the sweep runs on its own loop in a worker thread; ``await
    sweep_async(...)`` is the same as a coroutine).
    """
    if captures is not None:  # recorded sessions (avatar-nb tap): one run each, nothing streamed
        if clips is not None or grid:
            raise ValueError("give captures= or clips (and a grid), not both")
        from .tap.dataset import captures_to_dataset

        return captures_to_dataset(captures, out)
    if clips is None:
        raise TypeError("sweep() needs clips (or captures=)")
    from .sync import run_sync

    return run_sync(
        lambda: sweep_async(
            clips,
            grid,
            repeats=repeats,
            concurrency=concurrency,
            pacing=pacing,
            service=service,
            out=out,
            client=client,
            seed=seed,
            progress=progress,
            timeout=timeout,
            recursive=recursive,
            raw_rate=raw_rate,
        ),
        service=service,
        name="sweep",
        async_name="sweep_async",
        thread_name="avatar_nb-sweep",
    )


# ----------------------------------------------------------------------------- deprecated names


def _clip_source(
    name: str,
    path: str | None = None,
    samples: Any = None,
    sample_rate: int | None = None,
    key: str = "",
) -> Clip:
    """``ClipSource(name, path, samples, sample_rate, key)`` as the one :class:`Clip`."""
    if path is not None:
        return Clip(name, str(path), Path(path), None, None, key or str(Path(path).resolve()))
    return Clip(name, f"<array {name}>", None, samples, sample_rate, key)


def _service_spec(service: Any) -> ServiceSpec:
    return ServiceSpec.of(service)


_DEPRECATED = {
    "ClipSource": (_clip_source, "avatar_nb.experiments.Clip"),
    "service_spec": (_service_spec, "avatar_nb.endpoints.ServiceSpec.of"),
}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        value, new = _DEPRECATED[name]
        warnings.warn(
            f"avatar_nb.sweeps.{name} is deprecated and goes in the next release; use {new}",
            DeprecationWarning,
            stacklevel=2,
        )
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
