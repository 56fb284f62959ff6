"""What the local service knows: credentials, animation, timing and limit settings, counters."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from .egress import SimulatedEgress
from .tokens import TokenSigner

__all__ = ["ServiceState", "Stats"]


@dataclass
class Stats:
    """Counters of the service's work since it started (read by tests and benchmarks).

    ``peak_backlog_keyframes``: the most keyframes any one session had queued at once;
    ``stalled_peers``: connections dropped because a send to them timed out;
    ``playback_controls_ignored``: pauses and resumes ignored by sessions without playout.
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
    playback_controls_ignored: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ServiceState:
    """The settings of a LocalService (validated there, where their defaults live) and
    what its sessions share: the token signer, counters, live sessions, credits used."""

    api_key: str
    app_id: str
    avatar_ids: tuple[str, ...]
    other_app_ids: tuple[str, ...]
    fps: float
    realtime: bool
    latency_ms: float
    jitter_ms: float
    n_expression: int
    session_time_limit: float | None
    idle_timeout: float | None
    compression: bool
    seed: int
    max_sessions: int | None
    credits_seconds: float | None
    av_offset_ms: float
    net_delay_ms: float
    bandwidth_bps: float | None
    send_timeout: float
    handshake_timeout: float
    max_backlog: float
    playout: bool
    pause_limit: float
    egress: SimulatedEgress | None
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
