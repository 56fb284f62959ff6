"""The local services of a Dask worker process: one :class:`~avatar_nb.endpoints.LocalServices`
cache, filled by the sweep's tasks (:func:`worker_service`) and closed by the worker's plugin
at teardown (:func:`close_worker_services`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..endpoints import LocalServices

if TYPE_CHECKING:
    from ..server import LocalService

__all__ = ["close_worker_services", "services", "worker_service"]

services = LocalServices(threads=True)
"""This process's local services, by configuration."""


def worker_service(options: Mapping[str, Any]) -> LocalService:
    """The local service of this worker process for ``options``: started once, then reused."""
    return services.get_started(options)


def close_worker_services() -> None:
    """Stop this worker process's local services (the worker plugin's teardown)."""
    services.close()
