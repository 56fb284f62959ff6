"""The conditions a sweep can vary, declared: each names the part of a run it sets.

``"pacing"``: how the client paces audio onto the wire; ``"rate"``: the session's sample
rate; ``"session"``: a :class:`~avatar_nb.SessionConfig` option, sent by the client, so it
works against any service; ``"service"``: a setting of the simulated
:class:`~avatar_nb.LocalService`, so only sweeps that start their own local services can
vary it. A session option that the local service must share to be measured (``fps``: the
client reads keyframe times at the rate the service produces them) is marked
``local_service=True``: a local sweep starts its services with the same value.

The table is declared here, not read off ``LocalService.__init__`` (a test holds it to
the service's and the session's signatures, so a new setting is added here on purpose).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CONDITIONS", "PACING_OPTIONS", "Condition", "check_grid", "classify"]


@dataclass(frozen=True)
class Condition:
    """One sweepable option: its ``name`` and ``kind`` (``"pacing"``, ``"rate"``, ``"session"``
    or ``"service"``); ``local_service``: a session option a local service is also started with."""

    name: str
    kind: str
    local_service: bool = False


_PACING = ("pacing", "chunk_ms")
_SESSION = (
    "avatar_id",
    "app_id",
    "use_query_auth",
    "expire_at",
    "bitrate",
    "token_timeout",
    "audio_format",
    "livekit_egress",
    "agora_egress",
    "environment",
    "io_timeout",
    "on_playback",
    "on_playback_state",
)
_SERVICE = (
    "realtime",
    "latency_ms",
    "jitter_ms",
    "n_expression",
    "session_time_limit",
    "idle_timeout",
    "compression",
    "seed",
    "max_sessions",
    "credits_seconds",
    "av_offset_ms",
    "net_delay_ms",
    "bandwidth_bps",
    "playout",
    "pause_limit",
    "egress",
    "send_timeout",
    "handshake_timeout",
    "max_backlog",
)

CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in (
        *(Condition(name, "pacing") for name in _PACING),
        Condition("sample_rate", "rate"),
        Condition("fps", "session", local_service=True),
        *(Condition(name, "session") for name in _SESSION),
        *(Condition(name, "service") for name in _SERVICE),
    )
}
"""Every option a sweep's grid accepts, by name."""

PACING_OPTIONS = _PACING
"""Grid keys that choose how audio is paced onto the wire."""


def classify(keys: Iterable[str]) -> dict[str, str]:
    """Which part of a run each option sets: ``"service"``, ``"pacing"``, ``"rate"`` or ``"session"``.

    ``ValueError`` names an unknown option and lists the accepted ones.
    """
    kinds: dict[str, str] = {}
    for key in keys:
        condition = CONDITIONS.get(key)
        if condition is None:
            raise ValueError(
                f"unknown sweep option {key!r}; accepted: {', '.join(sorted(CONDITIONS))}"
            )
        kinds[key] = condition.kind
    return kinds


def check_grid(grid: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """A grid as lists of values; a value that is not a list, or an empty list, is refused."""
    out: dict[str, list[Any]] = {}
    for key, values in (grid or {}).items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise TypeError(f"grid[{key!r}] must be a list of values, got {values!r}")
        values = list(values)
        if not values:
            raise ValueError(f"grid[{key!r}] is empty; give at least one value")
        out[str(key)] = values
    return out


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value (for ids, rows and JSON)."""
    return value.item() if isinstance(value, np.generic) else value
