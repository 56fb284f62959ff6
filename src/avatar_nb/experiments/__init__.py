"""The experiment layer: clips, conditions, a plan of runs, the run engine and its executors.

Below the entry points (:func:`avatar_nb.sweep`, :func:`avatar_nb.batch.run_batch`,
``avatar-nb run``, the Dask path) and above the session, the service choice
(:mod:`avatar_nb.endpoints`) and the dataset (:mod:`avatar_nb.dataset`):

- :mod:`.clips`: the one clip type :class:`Clip` and collector :func:`collect_clips`;
- :mod:`.conditions`: the declared sweepable conditions (:data:`CONDITIONS`);
- :mod:`.planning`: :class:`RunSpec` (clip x condition x repeat) and stable run ids;
- :mod:`.engine`: one run of one clip (:class:`RunSettings`, :class:`ClipResult`, :func:`run_clip`);
- :mod:`.runs`: the steps every executor shares (prepare, stream, row, progress);
- :mod:`.outputs`: a batch's per-result files (:class:`Output`, :func:`dataset_output`);
- :mod:`.writer_process`: the in-process sweep's writer process client;
- :mod:`.executors`: the executor interface, :class:`InProcess` and :func:`execute`;
- :mod:`.cluster`: the Dask executor (:class:`~.cluster.OnDask`; Dask loads only there);
- :mod:`.results`: :class:`SweepResult`.

Names load on first access, so ``import avatar_nb.experiments`` stays light.
"""

from __future__ import annotations

import importlib as _importlib
from typing import Any as _Any

_EXPORTS: dict[str, str] = {
    "RAW_SUFFIXES": ".clips",
    "BadInput": ".clips",
    "Clip": ".clips",
    "PreparedClip": ".clips",
    "collect_clips": ".clips",
    "find_audio_files": ".clips",
    "prepare_clip": ".clips",
    "CONDITIONS": ".conditions",
    "Condition": ".conditions",
    "PACING_OPTIONS": ".conditions",
    "classify": ".conditions",
    "RunSpec": ".planning",
    "plan": ".planning",
    "ClipResult": ".engine",
    "RunSettings": ".engine",
    "run_clip": ".engine",
    "FIGURE": ".outputs",
    "NPZ": ".outputs",
    "VIDEO": ".outputs",
    "Output": ".outputs",
    "dataset_output": ".outputs",
    "default_outputs": ".outputs",
    "render": ".outputs",
    "WriterProcess": ".writer_process",
    "Executor": ".executors",
    "InProcess": ".executors",
    "execute": ".executors",
    "OnDask": ".cluster",
    "SweepResult": ".results",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - the names above, loaded on first access


def __getattr__(name: str) -> _Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *globals()})
