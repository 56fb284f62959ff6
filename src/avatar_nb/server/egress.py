"""Simulated egress: LiveKit rooms and Agora channels the local service "publishes" to.

No media leaves the machine. A session configured with ``livekit_egress`` or
``agora_egress`` is checked against the rooms, channels and credentials the service
was given; valid ones are served as an egress session would be (animation goes to
the room, so the WebSocket carries empty control frames, plus playback states; the
end control frame comes when generation ends and once more when playout has drained,
the duplicate that the official clients document for egress),
invalid ones are refused at the handshake with ServerError code 16 and a message
containing ``unauthorized``, as the hosted service refuses credentials it cannot
use. Secrets are compared in constant time and never echoed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from ..proto import message_pb2 as pb
from .tokens import same_secret

__all__ = ["SimulatedEgress"]


@dataclass(frozen=True)
class SimulatedEgress:
    """What the simulated egress accepts.

    LiveKit: a config whose ``url`` is ``livekit_url`` and whose ``room_name`` is one of
    ``livekit_rooms``, authenticated by ``api_token == livekit_api_token`` or by the
    (deprecated) pair ``api_key``/``api_secret`` equal to ``livekit_api_key``/
    ``livekit_api_secret``. Agora: a ``channel_name`` among ``agora_channels`` with
    ``token == agora_token``. An empty rooms or channels tuple refuses that egress.
    """

    livekit_url: str = "wss://livekit.local.invalid"
    livekit_api_token: str = field(default="", repr=False)
    livekit_api_key: str = field(default="", repr=False)
    livekit_api_secret: str = field(default="", repr=False)
    livekit_rooms: tuple[str, ...] = ()
    agora_token: str = field(default="", repr=False)
    agora_channels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("livekit_rooms", "agora_channels"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be a tuple of names, got {value!r}")
            object.__setattr__(self, name, tuple(value))

    @classmethod
    def generated(cls) -> SimulatedEgress:
        """The egress a :class:`~avatar_nb.server.LocalService` has by default: one
        LiveKit room (``api_token``, or the ``api_key``/``api_secret`` pair) and one Agora
        channel, with secrets generated per service, so that credentials nobody was
        given are refused with code 16 as the hosted service refuses them."""
        return cls(
            livekit_url="wss://livekit.local.invalid",
            livekit_api_token=f"lk-token-{secrets.token_hex(16)}",
            livekit_api_key=f"lk-key-{secrets.token_hex(4)}",
            livekit_api_secret=f"lk-secret-{secrets.token_hex(16)}",
            livekit_rooms=("avatar-nb-room",),
            agora_token=f"ag-token-{secrets.token_hex(16)}",
            agora_channels=("avatar-nb-channel",),
        )

    def describe(self) -> list[str]:
        """Lines naming what this egress accepts, credentials included (for the one
        printout of ``avatar-nb serve``; ``repr`` leaves the secrets out)."""
        lines = []
        if self.livekit_rooms:
            auth = []
            if self.livekit_api_token:
                auth.append(f"api_token={self.livekit_api_token}")
            if self.livekit_api_key or self.livekit_api_secret:
                auth.append(f"api_key={self.livekit_api_key} api_secret={self.livekit_api_secret}")
            lines.append(
                f"livekit_egress: url={self.livekit_url} room_name={','.join(self.livekit_rooms)} "
                + (" or ".join(auth) or "(no credentials: refused)")
            )
        if self.agora_channels:
            lines.append(
                f"agora_egress:   channel_name={','.join(self.agora_channels)} token={self.agora_token}"
            )
        return lines or ["no rooms or channels: every egress is refused"]

    def refusal(self, egress_type: int, config: Any) -> str | None:
        """None when ``config`` (a parsed LiveKitEgressConfig or AgoraEgressConfig) is
        accepted, else the refusal's message (it never contains a secret)."""
        if egress_type == pb.EGRESS_TYPE_LIVEKIT:
            if config.room_name not in self.livekit_rooms or config.url != self.livekit_url:
                return f"livekit egress unauthorized: no access to room {config.room_name!r} at {config.url!r}"
            token_ok = same_secret(config.api_token, self.livekit_api_token)
            pair_ok = same_secret(config.api_key, self.livekit_api_key) and same_secret(
                config.api_secret, self.livekit_api_secret
            )
            if not (token_ok or pair_ok):
                return "livekit egress unauthorized: invalid credentials (api_token or api_key/api_secret)"
            return None
        if egress_type == pb.EGRESS_TYPE_AGORA:
            if config.channel_name not in self.agora_channels:
                return f"agora egress unauthorized: no access to channel {config.channel_name!r}"
            if not same_secret(config.token, self.agora_token):
                return "agora egress unauthorized: invalid token"
            return None
        return f"unauthorized: unknown egress type {egress_type}"
