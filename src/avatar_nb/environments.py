"""Named deployments of the hosted service, resolved to endpoints without any lookup.

``environment="us-west"`` stands for that deployment's console and ingress URLs, the
same names and URLs as spatialreal 0.2.2's built-in presets. spatialreal first asks a
config service and falls back to its presets; avatar_nb uses the table alone, so
resolving a name needs no network and cannot hang. An explicit
``console_endpoint_url``/``ingress_endpoint_url`` wins over the environment's.
"""

from __future__ import annotations

from dataclasses import dataclass

from .http_api import INGRESS_PATH

__all__ = ["ENVIRONMENTS", "Environment", "resolve_environment"]


@dataclass(frozen=True)
class Environment:
    """One deployment: its console (API root) and its ingress endpoint."""

    name: str
    console_endpoint_url: str
    ingress_endpoint_url: str


def _deployment(name: str, api: str, ingress_origin: str) -> Environment:
    return Environment(name, api, ingress_origin.rstrip("/") + INGRESS_PATH)


ENVIRONMENTS: dict[str, Environment] = {
    env.name: env
    for env in (
        _deployment("us-west", "https://api.spatialreal.cloud", "https://driven.us-west.spatialreal.cloud"),
    )
}
"""The known deployments by name."""


def resolve_environment(name: str) -> Environment:
    """The deployment called ``name``; ``ValueError`` listing the known names otherwise."""
    env = ENVIRONMENTS.get(name) if isinstance(name, str) else None
    if env is None:
        known = ", ".join(repr(n) for n in sorted(ENVIRONMENTS))
        raise ValueError(f"unknown environment {name!r}; known environments: {known}")
    return env
