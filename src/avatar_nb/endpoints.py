"""Which service a run talks to, decided in one place: :func:`open_service`.

The order of preference is the same everywhere (``animate``, the live panels, batches,
sweeps, the command line):

1. the ``service`` given (a running or not yet started :class:`~avatar_nb.LocalService`);
2. endpoints and credentials given as session options (``console_endpoint_url`` ...),
   or a :class:`ServiceSpec` (what sweeps and their Dask workers carry);
3. the ``AVATAR_NB_*`` environment variables (:data:`ENV_VARS`);
4. otherwise an embedded :class:`~avatar_nb.LocalService`, started for the block and
   stopped after it.

:func:`open_service` owns the lifetime of what it starts; nothing else calls a
service's ``__aenter__``/``__aexit__`` by hand. Local services that outlive one block (a
sweep's, one per configuration; a Dask worker's, kept between tasks) live in a
:class:`LocalServices` cache, closed by its owner (the sweep, or the worker's plugin).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import config_from_kwargs

if TYPE_CHECKING:  # the local service (and aiohttp) load only when a run needs them
    from .server import LocalService

__all__ = [
    "ENV_VARS",
    "IncompleteEndpoints",
    "LocalServices",
    "ServiceHandle",
    "ServiceSpec",
    "endpoints_from_env",
    "open_service",
    "remote_options",
]

ENV_VARS: dict[str, str] = {
    "console_endpoint_url": "AVATAR_NB_CONSOLE_URL",
    "ingress_endpoint_url": "AVATAR_NB_INGRESS_URL",
    "api_key": "AVATAR_NB_API_KEY",
    "app_id": "AVATAR_NB_APP_ID",
    "avatar_id": "AVATAR_NB_AVATAR_ID",
}
"""Session options that can come from the environment, and their variables."""

_ENDPOINT_KEYS = ("console_endpoint_url", "ingress_endpoint_url")


def endpoints_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Session options found in ``AVATAR_NB_*`` environment variables (empty ones skipped)."""
    environ = os.environ if environ is None else environ
    return {key: environ[var] for key, var in ENV_VARS.items() if environ.get(var)}


class IncompleteEndpoints(ValueError):
    """A remote service was asked for without all of its endpoints and credentials;
    ``missing`` lists the session options (keys of :data:`ENV_VARS`) still needed."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        names = ", ".join(f"{k} ({ENV_VARS[k]})" for k in missing)
        super().__init__(f"a remote service needs all of its endpoints and credentials; missing {names}")


def remote_options(
    options: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Remote service options given explicitly, over the ``AVATAR_NB_*`` variables; all or none.

    For a command line whose flags complete the environment (``avatar-nb run``): empty
    when neither names any, else every key of :data:`ENV_VARS` filled, or
    :class:`IncompleteEndpoints` naming what is missing.
    """
    merged: dict[str, Any] = endpoints_from_env(environ)
    merged.update({k: v for k, v in options.items() if v})
    if merged:
        missing = [key for key in ENV_VARS if not merged.get(key)]
        if missing:
            raise IncompleteEndpoints(missing)
    return merged


class ServiceSpec:
    """Which service runs reach, in a form that can travel to cluster workers.

    ``kind`` is ``"local"`` (a local service per configuration, started where the runs
    run) or ``"remote"`` (endpoints and credentials as session options). The options are
    kept out of ``repr`` and ``str``: task arguments show up in logs and dashboards.
    Made from a caller's ``service`` argument by :meth:`of`.
    """

    def __init__(self, kind: str, options: Mapping[str, Any] | None = None) -> None:
        if kind not in ("local", "remote"):
            raise ValueError(f"unknown service kind {kind!r}; accepted: 'local', 'remote'")
        self.kind = kind
        self._options = dict(options or {})

    def __repr__(self) -> str:
        return f"<ServiceSpec {self.kind} (endpoints and credentials redacted)>"

    __str__ = __repr__

    @property
    def options(self) -> dict[str, Any]:
        return dict(self._options)

    @classmethod
    def of(cls, service: Any, environ: Mapping[str, str] | None = None) -> ServiceSpec:
        """The spec of a sweep's ``service`` argument, in :func:`open_service`'s order.

        ``None``: the ``AVATAR_NB_*`` environment variables if they name endpoints, else
        local services; a mapping: session options with endpoints and credentials; a
        running :class:`~avatar_nb.LocalService`: its endpoints and credentials (reachable
        from wherever its port is, e.g. the workers of a cluster on this machine).
        """
        if service is None:
            env = endpoints_from_env(environ)
            if any(env.get(k) for k in _ENDPOINT_KEYS):
                return cls("remote", env)
            return cls("local")
        if isinstance(service, Mapping):
            options = dict(service)
            if not any(options.get(k) for k in _ENDPOINT_KEYS):
                raise ValueError(
                    "service options must name the endpoints (console_endpoint_url, ingress_endpoint_url); "
                    f"got options {sorted(options)}"
                )
            return cls("remote", options)
        if hasattr(service, "session_kwargs") and hasattr(service, "running"):
            if not service.running:
                raise ValueError(
                    "the given LocalService is not running: start it (service.start()) before the sweep"
                )
            return cls("remote", service.session_kwargs())
        raise TypeError(
            f"service must be None, a LocalService or a mapping of session options, got {type(service).__name__}"
        )


class LocalServices:
    """A cache of local services by configuration, each started once and kept until :meth:`close`.

    Both executors of a sweep use it: in process (``threads=False``) the services run on
    the sweep's event loop and the sweep closes the cache when it ends (``async with``);
    on a Dask worker (``threads=True``) each runs in a thread of its own, shared by every
    task on that worker, and the worker's plugin closes the cache at teardown.
    """

    def __init__(self, *, threads: bool = False) -> None:
        self.threads = threads
        self._services: dict[str, LocalService] = {}
        self._stack = contextlib.AsyncExitStack()
        self._lock = threading.Lock()
        self._starting: Any = None  # an asyncio.Lock, made on the loop that first uses it

    @staticmethod
    def key(options: Mapping[str, Any]) -> str:
        """A configuration as a key: equal options, equal keys."""
        return json.dumps(dict(options), sort_keys=True, default=str)

    def __len__(self) -> int:
        return len(self._services)

    async def get(self, options: Mapping[str, Any]) -> LocalService:
        """The running service for ``options``, started on first use."""
        if self.threads:
            return self.get_started(options)
        import asyncio

        from .server import LocalService

        if self._starting is None:
            self._starting = asyncio.Lock()
        key = self.key(options)
        async with self._starting:
            service = self._services.get(key)
            if service is None:
                service = LocalService(**dict(options))
                self._services[key] = await self._stack.enter_async_context(service)
        return service

    def get_started(self, options: Mapping[str, Any]) -> LocalService:
        """The running service for ``options``, started in a thread of its own on first use."""
        from .server import LocalService

        key = self.key(options)
        with self._lock:
            service = self._services.get(key)
            if service is None or not service.running:
                service = self._services[key] = LocalService(**dict(options)).start()
            return service

    async def aclose(self) -> None:
        """Stop every service of the cache."""
        await self._stack.aclose()
        self.close()

    def close(self) -> None:
        """Stop every service started in a thread (for a cache used with ``threads=True``)."""
        with self._lock:
            services, self._services = list(self._services.values()), {}
        for service in services:
            if getattr(service, "_thread", None) is not None:
                with contextlib.suppress(Exception):
                    service.stop(timeout=2.0)

    async def __aenter__(self) -> LocalServices:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@dataclass
class ServiceHandle:
    """The service a block of work talks to, as :func:`open_service` chose it.

    ``source`` says how it was chosen: ``"given"``, ``"arguments"``, ``"environment"`` or
    ``"embedded"``; ``local`` is the :class:`~avatar_nb.LocalService` when the service is
    a local one (given or embedded), else ``None``. Credentials stay out of ``repr``.
    """

    source: str
    local: LocalService | None = None
    _options: dict[str, Any] = field(default_factory=dict, repr=False)
    _from_env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        """``"local"`` or the remote ingress URL: what a run's metadata records (no secrets)."""
        if self.local is not None:
            return "local"
        return str(self._options.get("ingress_endpoint_url", ""))

    def session_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for :func:`avatar_nb.new_avatar_session` against this service."""
        if self.local is not None:
            return self.local.session_kwargs(**{**self._options, **overrides})
        return {**self._options, **overrides}

    def config(self, **overrides: Any) -> Any:
        """A validated :class:`~avatar_nb.SessionConfig` for this service.

        When the endpoints came from the environment and something is missing, the
        error says which ``AVATAR_NB_*`` variables were found and which to set.
        """
        options = self.session_kwargs(**overrides)
        try:
            return config_from_kwargs(options)
        except ValueError as exc:
            if self.source != "environment":
                raise
            missing = [f"{ENV_VARS[k]} ({k})" for k in ENV_VARS if not options.get(k)]
            hint = f"; set {', '.join(missing)}" if missing else ""
            found = ", ".join(ENV_VARS[k] for k in self._from_env)
            raise ValueError(f"{exc} (endpoints taken from the environment: {found}{hint})") from None


@contextlib.asynccontextmanager
async def open_service(
    service: LocalService | None = None,
    *,
    spec: ServiceSpec | None = None,
    services: LocalServices | None = None,
    local_options: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    **session_kwargs: Any,
) -> AsyncIterator[ServiceHandle]:
    """Pick the service in the documented order and own its lifetime for the block.

    ``session_kwargs`` are session options (endpoints, credentials, ``sample_rate`` ...)
    carried by the handle's :meth:`ServiceHandle.session_kwargs`. ``local_options`` are
    :class:`~avatar_nb.LocalService` settings (``realtime``, ``latency_ms`` ...) for an
    embedded service; they are ignored when another service is chosen. A given service
    that is not running is started for the block and stopped after it; a running one
    is left running.

    ``spec`` (a :class:`ServiceSpec`) stands for the choice already made from a sweep's
    argument: a remote one gives its endpoints, a local one an embedded service (the
    environment is not read again). ``services``: a :class:`LocalServices` cache that
    gives, and keeps after the block, the embedded service for ``local_options``.
    """
    if spec is not None and service is None:
        if spec.kind == "remote":
            yield ServiceHandle("arguments", None, {**spec.options, **session_kwargs})
            return
        if services is not None:
            local = await services.get(dict(local_options or {}))
            yield ServiceHandle("embedded", local, dict(session_kwargs))
            return
        environ = {}  # the spec chose a local service: the environment was read already
    if service is not None:
        if service.running:
            yield ServiceHandle("given", service, dict(session_kwargs))
            return
        async with service:
            yield ServiceHandle("given", service, dict(session_kwargs))
        return
    if any(session_kwargs.get(k) for k in _ENDPOINT_KEYS):
        yield ServiceHandle("arguments", None, dict(session_kwargs))
        return
    from_env = endpoints_from_env(environ)
    if any(from_env.get(k) for k in _ENDPOINT_KEYS):
        yield ServiceHandle("environment", None, {**from_env, **session_kwargs}, from_env)
        return
    from .server import LocalService

    async with LocalService(**dict(local_options or {})) as local:
        yield ServiceHandle("embedded", local, dict(session_kwargs))
