"""The plan of a sweep: one :class:`RunSpec` per clip x condition x repeat, with stable run ids.

A run's id is a hash of its clip's ``key``, every setting that defines it (local service
settings prefixed ``service.``) and its repeat: the same sweep asked again finds the runs
it already finished (the hashing is that of the first datasets; keep it so they resume).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..pacing import DEFAULT_PACING, check_pacing
from .clips import Clip
from .conditions import CONDITIONS, classify, plain
from .engine import RunSettings

__all__ = ["RunSpec", "plan", "run_id", "service_key", "sweep_info"]


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep, fully resolved: what to stream, how, against what."""

    run: int  # position in the sweep (the runs table's order)
    run_id: str
    clip: str
    repeat: int
    settings: dict[str, Any]  # every setting that defines the run, grid values included
    pacing: str
    chunk_ms: float
    sample_rate: int
    service_options: dict[str, Any]
    session_options: dict[str, Any]

    @property
    def service_key(self) -> str:
        """The distinct service configuration this run needs (runs sharing it share a service)."""
        return service_key(self.service_options)


def service_key(options: Mapping[str, Any]) -> str:
    """A local service configuration as a key: equal options, equal keys."""
    return json.dumps(dict(options), sort_keys=True, default=str)


def run_id(clip: Clip, settings: Mapping[str, Any], repeat: int) -> str:
    """The id of one run: a hash of the clip's key, its settings and its repeat."""
    text = json.dumps([clip.key, sorted(settings.items()), repeat], sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def plan(
    clips: Sequence[Clip],
    grid: Mapping[str, list[Any]],
    repeats: int,
    *,
    pacing: str | None,
    seed: int,
    local: bool,
) -> list[RunSpec]:
    """The runs of a sweep, in order: clips outermost, then the grid's product, then repeats.

    ``local``: the sweep starts its own local services (so their settings can vary).
    """
    if not (isinstance(repeats, int) and not isinstance(repeats, bool) and repeats >= 1):
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    kinds = classify(grid)
    service_keys = [k for k, kind in kinds.items() if kind == "service"]
    if service_keys and not local:
        raise ValueError(
            f"grid options {service_keys} are conditions of the local service, but this sweep runs "
            "against a given or remote service; pass service=None to let the sweep start local services"
        )
    if local:  # session options the local service is started with as well (fps)
        service_keys += [k for k in kinds if CONDITIONS[k].local_service]
    defaults = RunSettings(pacing=check_pacing(pacing if pacing is not None else DEFAULT_PACING))
    keys = list(grid)
    # every combination checked as its runs will be (pacing, a chunk that fits the
    # rate, a supported rate) before any run starts
    conditions = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = {k: plain(v) for k, v in zip(keys, combo)}
        conditions.append(
            (
                values,
                RunSettings(
                    pacing=values.get("pacing", defaults.pacing),
                    chunk_ms=values.get("chunk_ms", defaults.chunk_ms),
                    sample_rate=values.get("sample_rate", defaults.sample_rate),
                ),
            )
        )
    specs: list[RunSpec] = []
    for clip in clips:
        for values, checked in conditions:
            run_pacing = str(checked.pacing)
            chunk_ms = float(checked.chunk_ms)
            rate = int(checked.sample_rate)
            service_options = {k: values[k] for k in service_keys}
            if local:
                # a fast sweep needs a service that answers as fast; paced ones a paced one
                service_options.setdefault("realtime", run_pacing != "fast")
                service_options.setdefault("seed", seed)
            session_options = {k: values[k] for k, kind in kinds.items() if kind == "session"}
            settings = {**values, "pacing": run_pacing, "chunk_ms": chunk_ms, "sample_rate": rate}
            for repeat in range(repeats):
                key_settings = {
                    **settings,
                    **{f"service.{k}": v for k, v in service_options.items()},
                }
                specs.append(
                    RunSpec(
                        run=len(specs),
                        run_id=run_id(clip, key_settings, repeat),
                        clip=clip.name,
                        repeat=repeat,
                        settings=settings,
                        pacing=run_pacing,
                        chunk_ms=chunk_ms,
                        sample_rate=rate,
                        service_options=service_options,
                        session_options=session_options,
                    )
                )
    return specs


def sweep_info(
    clips: Sequence[Clip], grid: Mapping[str, list[Any]], repeats: int, seed: int
) -> dict[str, Any]:
    """What a sweep was asked, for its dataset's ``sweep.json``."""
    return {
        "clips": [{"name": c.name, "path": None if c.path is None else str(c.path)} for c in clips],
        "grid": {k: [plain(v) for v in vs] for k, vs in grid.items()},
        "repeats": repeats,
        "seed": seed,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
