"""Sweeps on a Dask cluster: the old home of :mod:`avatar_nb.experiments.cluster`.

``sweep(..., client=dask_client)`` runs on the Dask executor of the experiment layer; this
module keeps its names importable (``sweep_on_cluster`` is deprecated: call
:func:`avatar_nb.sweep` with ``client=``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .experiments.cluster import INSTALL_HINT, OnDask, run_batch_on_worker, worker_service

__all__ = ["run_batch_on_worker", "sweep_on_cluster", "worker_service"]

_KEPT = (INSTALL_HINT, OnDask)


def sweep_on_cluster(
    client: Any,
    specs: Sequence[Any],
    clips: Sequence[Any],
    service: Any,
    root: Path | None,
    *,
    concurrency: int,
    seed: int,
    progress: bool,
    timeout: float | None,
    info: Mapping[str, Any],
    retries: int = 1,
) -> Any:
    """Deprecated: ``execute(OnDask(client), ...)`` of :mod:`avatar_nb.experiments`."""
    warnings.warn(
        "avatar_nb.scaleout.sweep_on_cluster is deprecated and goes in the next release; "
        "use avatar_nb.sweep(..., client=client)",
        DeprecationWarning,
        stacklevel=2,
    )
    from .experiments.executors import execute
    from .sync import run_sync

    return run_sync(
        lambda: execute(
            OnDask(client, retries),
            specs,
            clips,
            service,
            root,
            info=info,
            concurrency=concurrency,
            seed=seed,
            progress=progress,
            timeout=timeout,
        ),
        service=None,
        name="sweep_on_cluster",
        async_name="execute",
        thread_name="avatar_nb-sweep",
    )
