"""The embedded local avatar service: console + ingress on loopback, procedural animator."""

from .animator import Animator
from .service import LocalService, describe, serve_forever

__all__ = ["Animator", "LocalService", "describe", "serve_forever"]
