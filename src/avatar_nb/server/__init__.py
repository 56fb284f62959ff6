"""The embedded local avatar service: console + ingress on loopback, procedural animator."""

from .animator import Animator
from .egress import SimulatedEgress
from .service import DEFAULT_IDLE_TIMEOUT, LocalService, describe, serve_forever

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "Animator",
    "LocalService",
    "SimulatedEgress",
    "describe",
    "serve_forever",
]
