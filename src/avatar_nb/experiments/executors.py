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

__all__ = ["Executor", "InProcess", "Outcome", "execute"]


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


class Executor:
    """Runs the runs of a sweep's plan that are still to do. Subclasses set ``label`` and
    implement :meth:`run`; :meth:`check` may refuse or normalise ``out`` first."""

    label = "sweep"
    info: Mapping[str, Any] = {}  # read only: what sweep.json adds for this executor

    def check(self, root: Path | None) -> Path | None:
        """``out`` as this executor needs it (before anything is written)."""
        return root

    async def run(
        self,
        todo: Sequence[RunSpec],
        clips: Mapping[str, Clip],
        service: ServiceSpec,
        root: Path | None,
        *,
        given: LocalService | None,
        concurrency: int,
        seed: int,
        timeout: float | None,
        done: Callable[[Sequence[dict[str, Any]]], None],
    ) -> Outcome:
        """Stream ``todo``; call ``done(rows)`` as runs finish (for the progress bar)."""
        raise NotImplementedError


class InProcess(Executor):
    """Sessions on this process's event loop; files from a separate writer process."""

    label = "sweep"

    async def run(
        self,
        todo: Sequence[RunSpec],
        clips: Mapping[str, Clip],
        service: ServiceSpec,
        root: Path | None,
        *,
        given: LocalService | None,
        concurrency: int,
        seed: int,
        timeout: float | None,
        done: Callable[[Sequence[dict[str, Any]]], None],
    ) -> Outcome:
        from ..endpoints import LocalServices
        from .writer_process import WriterProcess

        # heavy work first: the audio of every run is read and resampled before any session
        prepared = await asyncio.to_thread(prepare_all, todo, clips)
        writer = WriterProcess(root) if root is not None and todo else None
        outcome = Outcome()
        gate = asyncio.Semaphore(concurrency)

        async def one(run: RunSpec, services: LocalServices) -> None:
            async with gate:
                row, timeline = await stream_run(
                    run,
                    clips[run.clip],
                    service,
                    given=given,
                    services=services,
                    timeout=timeout,
                    seed=seed,
                    prepared=prepared.get((run.clip, run.sample_rate)),
                )
            outcome.rows.append(row)
            if writer is not None:
                writer.submit(row, timeline)
            elif timeline is not None:
                outcome.timelines[run.run_id] = timeline
            done([row])

        try:
            async with LocalServices() as services:
                await asyncio.gather(*(one(run, services) for run in todo))
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
    """Run ``specs`` with ``executor``: resume, record, stream, write, read back (see the module)."""
    root = executor.check(root)
    done: set[str] = set()
    if root is not None:
        from ..dataset import finished_runs, write_sweep_info

        root.mkdir(parents=True, exist_ok=True)
        done = finished_runs(root)
        write_sweep_info(root, {**info, **executor.info})
    todo = [s for s in specs if s.run_id not in done]
    bar = progress_bar(len(specs), len(specs) - len(todo), progress, executor.label)
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
            todo,
            {c.name: c for c in clips},
            service,
            root,
            given=given,
            concurrency=concurrency,
            seed=seed,
            timeout=timeout,
            done=finished,
        )
    finally:
        if bar is not None:
            bar.close()
    return (
        await asyncio.to_thread(_finish, outcome, root)
        if root is not None
        else _finish(outcome, root)
    )


def _finish(outcome: Outcome, root: Path | None) -> SweepResult:
    from ..dataset import runs_frame

    if root is None:
        return SweepResult(runs_frame(outcome.rows), None, outcome.timelines)
    from ..dataset import DatasetWriter, consolidate, read_runs

    if outcome.lost:  # nothing streams in this process now: no session to disturb
        with DatasetWriter(root) as writer:
            for row in outcome.lost:
                writer.add(row)
    consolidate(root)  # every session has ended: nothing to disturb
    runs = read_runs(root)
    if outcome.unwritten:  # keep the error in the table the caller gets; the disk has no such run
        runs = runs_frame([*runs.to_dict("records"), *outcome.unwritten])
    return SweepResult(runs if len(runs) else runs_frame([]), root)
