"""The Dask worker plugin that closes a worker's local services when the worker shuts down.

Its own module, imported only where Dask is (on the workers, and by a sweep given a
``client=``), so that importing the experiment layer never imports Dask.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["LocalServicesPlugin"]


class LocalServicesPlugin(WorkerPlugin):
    """Stops the worker process's local services (:func:`~avatar_nb.experiments.worker_services.worker_service`)
    at teardown: the cache's owner on a worker, as the sweep is in process."""

    def teardown(self, worker: Any) -> None:
        from .worker_services import close_worker_services

        close_worker_services()
