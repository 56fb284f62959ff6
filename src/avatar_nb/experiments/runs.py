"""The steps of one planned run that every executor shares: its audio prepared, its
session streamed (:func:`run_one`), its runs-table row (:func:`run_row`), progress."""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .clips import BadInput, Clip, prepare_clip
from .engine import RunSettings, run_clip
from .planning import RunSpec

if TYPE_CHECKING:
    from ..endpoints import LocalServices, ServiceHandle, ServiceSpec
    from ..server import LocalService
    from ..timeline import Timeline

__all__ = [
    "PREPARE_BUDGET",
    "error_text",
    "prepare_all",
    "progress_bar",
    "run_one",
    "run_row",
    "stream_run",
    "where",
]


def where() -> str:
    """Where this process runs, for the runs table: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def run_row(spec: RunSpec, result: Any = None, **extra: Any) -> dict[str, Any]:
    """The runs-table row of one run: identity, every setting, every summary figure, status.

    ``result`` is the engine's :class:`~avatar_nb.experiments.engine.ClipResult` (its flat
    record, then any further summary figure of its Timeline), or ``None`` for a run
    that never reached the engine (``extra`` then carries ``status`` and ``error``).
    """
    row: dict[str, Any] = {  # the run id names the run (its position is the plan's order)
        "run_id": spec.run_id,
        "clip": spec.clip,
        "repeat": spec.repeat,
    }
    row.update(spec.settings)
    row.update({k: v for k, v in spec.service_options.items() if k not in row and k != "seed"})
    row.update({"status": "failed", "error": ""})
    if result is not None:
        record = result.row()
        record.pop("clip", None)
        row.update(record)
        if result.timeline is not None:
            for key, value in result.timeline.summary().items():
                row.setdefault(key, _finite_or_none(value))
    row.update(extra)
    return row


async def run_one(
    spec: RunSpec,
    clip: Clip,
    handle: ServiceHandle,
    *,
    timeout: float | None = None,
    seed: int = 0,
    worker: str | None = None,
    prepared: Any = None,
) -> tuple[dict[str, Any], Timeline | None]:
    """Stream one run's clip through one session; its row and Timeline (``None`` if nothing arrived).

    The run itself is the engine's (:func:`avatar_nb.experiments.engine.run_clip`); ``prepared``
    is the clip's audio at the run's rate when it was prepared before streaming began.
    Never raises for a failed run: the row says ``status="failed"`` with the error text,
    and a partial Timeline (what arrived before the failure) is returned with it.
    """
    settings = RunSettings(
        pacing=spec.pacing,  # type: ignore[arg-type]
        chunk_ms=spec.chunk_ms,
        sample_rate=spec.sample_rate,
        timeout=timeout,
        session=spec.session_options,
    )
    result = await run_clip(handle, clip, settings, prepared=prepared)
    row = run_row(
        spec,
        result,
        seed=seed,
        worker=worker or result.worker or where(),
    )
    return row, result.timeline


PREPARE_BUDGET = 1 << 30
"""Bytes of prepared audio a sweep holds at most; clips beyond it are prepared when their run starts."""


def prepare_all(
    runs: Sequence[RunSpec], clips: Mapping[str, Clip], budget: int = PREPARE_BUDGET
) -> dict[tuple[str, int], Any]:
    """Each distinct (clip, rate) of ``runs`` prepared for sending, up to ``budget`` bytes.

    Runs whose audio is not here (over the budget, or unreadable: the engine then
    reports why in the run's row) are prepared by the engine when they start.
    """
    out: dict[tuple[str, int], Any] = {}
    held = 0
    for run in runs:
        key = (run.clip, run.sample_rate)
        if key in out or held >= budget:
            continue
        try:
            ready = prepare_clip(clips[run.clip], run.sample_rate)
        except BadInput:
            continue
        out[key] = ready
        held += len(ready.pcm)
    return out


def progress_bar(total: int, initial: int, enabled: bool, desc: str) -> Any:
    """A tqdm bar counting runs, or ``None`` when progress is off."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="run", dynamic_ncols=True)


async def stream_run(
    spec: RunSpec,
    clip: Clip,
    service: ServiceSpec,
    *,
    given: LocalService | None = None,
    services: LocalServices | None = None,
    timeout: float | None = None,
    seed: int = 0,
    worker: str | None = None,
    prepared: Any = None,
) -> tuple[dict[str, Any], Timeline | None]:
    """:func:`run_one` against the service :func:`~avatar_nb.endpoints.open_service` picks for
    ``service`` (``given``: a running service of this process; ``services``: the cache the
    run's local service comes from). A service that cannot be reached is a failed row."""
    from ..endpoints import open_service

    try:
        async with open_service(
            given, spec=service, services=services, local_options=spec.service_options
        ) as handle:
            return await run_one(
                spec, clip, handle, timeout=timeout, seed=seed, worker=worker, prepared=prepared
            )
    except Exception as exc:  # noqa: BLE001 - the service could not be reached: a failed row
        row = run_row(
            spec, None, status="failed", error=error_text(exc), seed=seed, worker=worker or where()
        )
        return row, None
