"""What the local service knows: credentials, animation, timing and limit settings, counters."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from ..flame import DEFAULT_FPS
from .egress import SimulatedEgress
from .tokens import TokenSigner

__all__ = ["DEFAULT_IDLE_TIMEOUT", "ServiceState", "Stats"]

DEFAULT_IDLE_TIMEOUT = 120.0
"""Seconds without audio after which a session is closed (``no audio input for 120s``):
well above the 30 s that the official SDK's connection-pool example leaves a pooled
session idle before reusing it."""


@dataclass
class Stats:
    """Counters of the service's work since it started (read by tests and benchmarks).

    ``peak_backlog_keyframes``: the most keyframes any one session had queued at once;
    ``stalled_peers``: connections dropped because a send to them timed out.
    """

    sessions_total: int = 0
    sessions_active: int = 0
    tokens_issued: int = 0
    refusals: int = 0
    messages_in: int = 0
    messages_out: int = 0
    keyframes_out: int = 0
    protocol_errors: int = 0
    peak_backlog_keyframes: int = 0
    stalled_peers: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ServiceState:
    api_key: str
    app_id: str
    avatar_ids: tuple[str, ...]
    other_app_ids: tuple[str, ...] = ()
    fps: float = DEFAULT_FPS
    realtime: bool = True
    latency_ms: float = 80.0
    jitter_ms: float = 0.0
    n_expression: int = 50
    session_time_limit: float | None = None
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    compression: bool = True
    seed: int = 0
    max_sessions: int | None = None
    credits_seconds: float | None = None
    av_offset_ms: float = 0.0
    net_delay_ms: float = 0.0
    bandwidth_bps: float | None = None
    send_timeout: float = 10.0
    handshake_timeout: float = 5.0
    max_backlog: float = 10.0
    playout: bool = False
    pause_limit: float = 30.0
    egress: SimulatedEgress | None = None
    max_token_lifetime: float = 24 * 3600.0
    signer: TokenSigner = field(default_factory=TokenSigner)
    stats: Stats = field(default_factory=Stats)
    sessions: set[Any] = field(default_factory=set)
    audio_seconds_used: float = 0.0

    def __repr__(self) -> str:  # the API key stays out of logs
        return (
            f"ServiceState(app_id={self.app_id!r}, avatar_ids={self.avatar_ids!r}, fps={self.fps})"
        )

    @property
    def app_ids(self) -> tuple[str, ...]:
        return (self.app_id, *self.other_app_ids)

    def capabilities(self, *, egress: bool = False) -> list[str]:
        """What a session declares at its confirm: the keyframe rate and width, and the
        playback capabilities when it simulates playout (``playout=True`` or egress)."""
        caps = [f"fps:{self.fps:g}", f"expression_dims:{self.n_expression}"]
        if self.playout or egress:
            caps += ["playback_control", "playback_state"]
        return caps

    def new_connection_id(self) -> str:
        return "conn-" + secrets.token_hex(8)
