"""Executors of a sweep's plan: one interface, two implementations, everything else shared.

:func:`execute` does what every sweep does whatever runs its runs: the finished runs
already in ``out`` (resume), the sweep's ``sweep.json``, the runs still to do, the
progress bar, the failed rows the executor reports, consolidation, reading the runs
table back and the :class:`~avatar_nb.experiments.results.SweepResult`. An
:class:`Executor` only streams the runs to do and has their results written:

- :class:`InProcess`: sessions on this process's event loop, ``concurrency`` at once,
  local services from one :class:`~avatar_nb.endpoints.LocalServices` cache closed when
  the sweep ends, files written by a separate writer process
  (:class:`~avatar_nb.experiments.writer_process.WriterProcess`);
- :class:`~avatar_nb.experiments.cluster.OnDask`: batches of runs on a Dask cluster's
  workers, which write into the shared ``out`` themselves.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clips import Clip
from .planning import RunSpec
from .results import SweepResult
from .runs import prepare_all, progress_bar, stream_run

if TYPE_CHECKING:
    from ..endpoints import ServiceSpec
    from ..server import LocalService
    from ..timeline import Timeline

__all__ = ["Executor", "InProcess", "Job", "Outcome", "execute", "sweeps_info"]


@dataclass
class Outcome:
    """What an executor reports: every run's ``rows``; the ``timelines`` it kept (runs
    without ``out``); ``unwritten`` rows whose files could not be written (failed, kept
    in the table the caller gets, absent from disk); ``lost`` rows of runs that never ran
    (failed, to be written to the dataset as such)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    timelines: dict[str, Timeline] = field(default_factory=dict)
    unwritten: list[dict[str, Any]] = field(default_factory=list)
    lost: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    """What :func:`execute` hands an executor: the runs still ``todo``, their ``clips`` by
    name, the ``service`` (or the ``given`` LocalService), the dataset ``root`` (None: keep
    the Timelines in memory), ``concurrency``, the jitter ``seed``, the per-run end-frame
    ``timeout``, and ``done(rows)`` to call as runs finish (the progress bar)."""

    todo: Sequence[RunSpec]
    clips: Mapping[str, Clip]
    service: ServiceSpec
    root: Path | None
    given: LocalService | None
    concurrency: int
    seed: int
    timeout: float | None
    done: Callable[[Sequence[dict[str, Any]]], None]


class Executor:
    """Runs the runs of a sweep's plan that are still to do. Subclasses set ``label`` and
    implement :meth:`run`; :meth:`check` may refuse or normalise ``out`` first."""

    label = "sweep"
    info: Mapping[str, Any] = {}  # read only: what sweep.json adds for this executor
    cancelled = 0  # runs an interruption cancelled before they finished (a cluster's queued tasks)

    def check(self, root: Path | None) -> Path | None:
        """``out`` as this executor needs it (before anything is written)."""
        return root

    async def run(self, job: Job) -> Outcome:
        """Stream ``job.todo``; call ``job.done(rows)`` as runs finish."""
        raise NotImplementedError


class InProcess(Executor):
    """Sessions on this process's event loop; files from a separate writer process."""

    label = "sweep"

    async def run(self, job: Job) -> Outcome:
        from ..endpoints import LocalServices
        from .writer_process import WriterProcess

        # heavy work first: the audio of every run is read and resampled before any session
        prepared = await asyncio.to_thread(prepare_all, job.todo, job.clips)
        writer = WriterProcess(job.root) if job.root is not None and job.todo else None
        outcome = Outcome()
        gate = asyncio.Semaphore(job.concurrency)

        async def one(run: RunSpec, services: LocalServices) -> None:
            async with gate:
                row, timeline = await stream_run(
                    run,
                    job.clips[run.clip],
                    job.service,
                    given=job.given,
                    services=services,
                    timeout=job.timeout,
                    seed=job.seed,
                    prepared=prepared.get((run.clip, run.sample_rate)),
                )
            outcome.rows.append(row)
            if writer is not None:
                writer.submit(row, timeline)
            elif timeline is not None:
                outcome.timelines[run.run_id] = timeline
            job.done([row])

        try:
            async with LocalServices() as services:
                await asyncio.gather(*(one(run, services) for run in job.todo))
        finally:
            if writer is not None:
                outcome.unwritten = await asyncio.to_thread(writer.close)
        return outcome


async def execute(
    executor: Executor,
    specs: Sequence[RunSpec],
    clips: Sequence[Clip],
    service: ServiceSpec,
    root: Path | None,
    *,
    info: Mapping[str, Any],
    given: LocalService | None = None,
    concurrency: int = 4,
    seed: int = 0,
    progress: bool = True,
    timeout: float | None = None,
) -> SweepResult:
    """Run ``specs`` with ``executor``: resume, record, stream, write, read back (see the module).

    Interrupted (Ctrl-C: the loop's task cancelled, or ``KeyboardInterrupt``), the runs
    that finished are committed by the executor, one line on stderr says how many are
    saved and that the same call resumes, and the interruption goes on to the caller.
    """
    root = executor.check(root)
    done: set[str] = set()
    if root is not None:
        from ..dataset import finished_runs, write_sweep_info
        from .outputs import make_out_dir

        make_out_dir(root)  # a folder this process can write, before anything streams
        done = finished_runs(root)
        write_sweep_info(root, sweeps_info(root, {**info, **executor.info}))
    todo = [s for s in specs if s.run_id not in done]
    reused = len(specs) - len(todo)
    if reused:  # said even without progress: a result that is partly old is news
        print(
            f"{reused} of {len(specs)} runs already in {root}; running {len(todo)}",
            file=sys.stderr,
            flush=True,
        )
    bar = progress_bar(len(specs), reused, progress, executor.label)
    failed = 0

    def finished(rows: Sequence[dict[str, Any]]) -> None:
        nonlocal failed
        if bar is None:
            return
        bar.update(len(rows))
        bad = sum(r["status"] != "ok" for r in rows)
        if bad:
            failed += bad
            bar.set_postfix_str(f"{failed} failed")

    try:
        outcome = await executor.run(
            Job(
                todo=todo,
                clips={c.name: c for c in clips},
                service=service,
                root=root,
                given=given,
                concurrency=concurrency,
                seed=seed,
                timeout=timeout,
                done=finished,
            )
        )
    except (asyncio.CancelledError, KeyboardInterrupt):
        if bar is not None:
            bar.close()
            bar = None
        print(_interrupted_line(specs, root, executor.cancelled), file=sys.stderr, flush=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    if root is None:
        return _finish(outcome, root, specs, reused)
    return await asyncio.to_thread(_finish, outcome, root, specs, reused)


def _interrupted_line(specs: Sequence[RunSpec], root: Path | None, cancelled: int = 0) -> str:
    """The one line a sweep says when interrupted (with the runs it ``cancelled`` on a cluster)."""
    if root is None:
        return "sweep interrupted: nothing is kept without out=; give out= to keep finished runs"
    from ..dataset import finished_runs

    wanted = {s.run_id for s in specs}
    try:
        saved = len(finished_runs(root) & wanted)
    except (OSError, ValueError):
        saved = 0
    on_cluster = f", {cancelled} cancelled on the cluster" if cancelled else ""
    return (
        f"sweep interrupted: {saved} of {len(specs)} runs saved in {root}{on_cluster}; "
        f"the same sweep call resumes the other {len(specs) - saved}"
    )


def sweeps_info(root: Path, info: Mapping[str, Any]) -> dict[str, Any]:
    """``sweep.json`` for ``root`` after this sweep: the keys of the latest sweep at the top
    (as the file held one sweep before), and ``"sweeps"``: every distinct sweep written into
    the folder, oldest first (a sweep asked again moves to the end with its new date)."""
    import json

    from ..dataset import SWEEP_FILE

    try:
        old = json.loads((root / SWEEP_FILE).read_text())
    except (OSError, ValueError):
        old = None
    if isinstance(old, dict) and isinstance(old.get("sweeps"), list):
        earlier = [s for s in old["sweeps"] if isinstance(s, dict)]
    elif isinstance(old, dict) and old:
        earlier = [old]  # a folder of one sweep, from before sweep.json kept them all
    else:
        earlier = []

    def asked(d: Mapping[str, Any]) -> Any:
        return json.dumps({k: v for k, v in d.items() if k != "written"}, sort_keys=True, default=str)

    current = dict(info)
    sweeps = [s for s in earlier if asked(s) != asked(current)] + [current]
    return {**current, "sweeps": sweeps}


def _finish(
    outcome: Outcome, root: Path | None, specs: Sequence[RunSpec], reused: int
) -> SweepResult:
    """The result: the runs asked for (whatever else the folder holds), in the plan's order."""
    from ..dataset import runs_frame

    order = {s.run_id: i for i, s in enumerate(specs)}

    def asked(runs: Any) -> Any:
        if not len(runs):
            return runs_frame([])
        runs = runs[runs["run_id"].isin(order)].drop_duplicates("run_id", keep="last")
        return runs.iloc[runs["run_id"].map(order).argsort(kind="stable")].reset_index(drop=True)

    if root is None:
        return SweepResult(asked(runs_frame(outcome.rows)), None, outcome.timelines)
    from ..dataset import DatasetWriter, consolidate, read_runs

    if outcome.lost:  # nothing streams in this process now: no session to disturb
        with DatasetWriter(root) as writer:
            for row in outcome.lost:
                writer.add(row)
    consolidate(root)  # every session has ended: nothing to disturb
    runs = read_runs(root)
    if outcome.unwritten:  # keep the error in the table the caller gets; the disk has no such run
        runs = runs_frame([*runs.to_dict("records"), *outcome.unwritten])
    return SweepResult(asked(runs), root, reused=reused)
