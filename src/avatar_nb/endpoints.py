"""Which service a run talks to, decided in one place: :func:`open_service`.

The order of preference is the same everywhere (``animate``, the live panels, batches,
sweeps, the command line):

1. the ``service`` given (a running or not yet started :class:`~avatar_nb.LocalService`);
2. endpoints and credentials given as session options (``console_endpoint_url`` ...);
3. the ``AVATAR_NB_*`` environment variables (:data:`ENV_VARS`);
4. otherwise an embedded :class:`~avatar_nb.LocalService`, started for the block and
   stopped after it.

:func:`open_service` owns the lifetime of what it starts; nothing else calls a
service's ``__aenter__``/``__aexit__`` by hand.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import config_from_kwargs

if TYPE_CHECKING:  # the local service (and aiohttp) load only when a run needs them
    from .server import LocalService

__all__ = ["ENV_VARS", "ServiceHandle", "endpoints_from_env", "open_service"]

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
    """
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
