"""Session configuration: the seed SDK's ``SessionConfig`` and its fluent builder.

Values are checked when a config is made (``SessionConfig(...)``, ``build()``,
``new_avatar_session``), before anything touches the network: a bad sample rate or a
missing endpoint fails here with a message naming the value and what is accepted.
Secrets (the API key, egress tokens) are excluded from ``repr``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from .protocol import SUPPORTED_SAMPLE_RATES, check_endpoint_url

__all__ = [
    "AgoraEgressConfig",
    "AudioFormat",
    "LiveKitEgressConfig",
    "SessionConfig",
    "SessionConfigBuilder",
    "REQUIRED_FIELDS",
]


class AudioFormat(str, Enum):
    """Audio encoding negotiated for a session."""

    PCM_S16LE = "pcm_s16le"
    OGG_OPUS = "ogg_opus"


@dataclass
class LiveKitEgressConfig:
    """Send the animation to a LiveKit room instead of back over the WebSocket."""

    url: str = ""
    api_token: str = field(default="", repr=False)
    room_name: str = ""
    publisher_id: str = ""
    extra_attributes: dict[str, str] = field(default_factory=dict)
    idle_timeout: int = 0
    api_key: str = field(default="", repr=False)
    api_secret: str = field(default="", repr=False)


@dataclass
class AgoraEgressConfig:
    """Send the animation to an Agora channel instead of back over the WebSocket."""

    channel_name: str = ""
    token: str = field(default="", repr=False)
    uid: int = 0
    publisher_id: str = ""


REQUIRED_FIELDS = (
    "avatar_id",
    "api_key",
    "app_id",
    "console_endpoint_url",
    "ingress_endpoint_url",
)
"""Fields without which a session cannot start (checked by ``build()``)."""


def _check_callback(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {type(value).__name__}")


@dataclass
class SessionConfig:
    """Configuration of an :class:`~avatar_nb.AvatarSession`.

    The seed SDK's fields, with its defaults: ``avatar_id``, ``api_key``, ``app_id``,
    ``use_query_auth`` (send the app id and session token as URL query parameters,
    web style, instead of headers), ``expire_at`` (session token expiry; ``None`` means
    five minutes after ``init()``), ``sample_rate`` (16000; one of
    ``SUPPORTED_SAMPLE_RATES``), ``bitrate`` (0 for PCM), ``transport_frames(frame,
    is_last)`` (the raw ``Message`` envelope of each animation message), ``on_error(exc)``,
    ``on_close()`` (exactly once), ``console_endpoint_url``, ``ingress_endpoint_url``.

    avatar_nb adds ``fps`` (keyframe rate used for media time; ``None`` means the
    server's ``fps:<n>`` capability, else 25), ``token_timeout`` (seconds for the token
    request), ``audio_format`` and the egress options of the newer clients.
    """

    avatar_id: str = ""
    api_key: str = field(default="", repr=False)
    app_id: str = ""
    use_query_auth: bool = False
    expire_at: datetime | None = None
    sample_rate: int = 16000
    bitrate: int = 0
    transport_frames: Callable[[bytes, bool], None] | None = None
    on_error: Callable[[Exception], None] | None = None
    on_close: Callable[[], None] | None = None
    console_endpoint_url: str = ""
    ingress_endpoint_url: str = ""
    fps: float | None = None
    token_timeout: float = 30.0
    audio_format: AudioFormat = AudioFormat.PCM_S16LE
    livekit_egress: LiveKitEgressConfig | None = None
    agora_egress: AgoraEgressConfig | None = None

    def __post_init__(self) -> None:
        for name in ("avatar_id", "api_key", "app_id", "console_endpoint_url", "ingress_endpoint_url"):
            value = getattr(self, name)
            if not isinstance(value, str):
                shown = "<hidden>" if name == "api_key" else repr(value)
                raise TypeError(f"{name} must be a str, got {type(value).__name__} {shown}")
        # a URL is checked as soon as it is given (an empty one is reported by validate())
        if self.console_endpoint_url:
            check_endpoint_url(self.console_endpoint_url, "console_endpoint_url", ("http", "https"))
        if self.ingress_endpoint_url:
            check_endpoint_url(self.ingress_endpoint_url, "ingress_endpoint_url", ("http", "https", "ws", "wss"))
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int):
            raise TypeError(
                f"sample_rate must be an int, got {self.sample_rate!r}; "
                f"accepted: {', '.join(map(str, SUPPORTED_SAMPLE_RATES))}"
            )
        if self.sample_rate not in SUPPORTED_SAMPLE_RATES:
            raise ValueError(
                f"unsupported sample_rate {self.sample_rate}; "
                f"accepted: {', '.join(map(str, SUPPORTED_SAMPLE_RATES))} Hz"
            )
        if isinstance(self.bitrate, bool) or not isinstance(self.bitrate, int) or self.bitrate < 0:
            raise ValueError(f"bitrate must be an int >= 0, got {self.bitrate!r}")
        if not isinstance(self.use_query_auth, bool):
            raise TypeError(f"use_query_auth must be a bool, got {self.use_query_auth!r}")
        if self.expire_at is not None and not isinstance(self.expire_at, datetime):
            raise TypeError(f"expire_at must be a datetime or None, got {self.expire_at!r}")
        if self.fps is not None and not (
            isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps > 0
        ):
            raise ValueError(f"fps must be a positive number or None, got {self.fps!r}")
        if not (isinstance(self.token_timeout, (int, float)) and self.token_timeout > 0):
            raise ValueError(f"token_timeout must be a positive number of seconds, got {self.token_timeout!r}")
        try:
            self.audio_format = AudioFormat(self.audio_format)
        except ValueError:
            accepted = ", ".join(repr(f.value) for f in AudioFormat)
            raise ValueError(f"unsupported audio_format {self.audio_format!r}; accepted: {accepted}") from None
        for name in ("transport_frames", "on_error", "on_close"):
            _check_callback(name, getattr(self, name))
        if self.livekit_egress is not None and self.agora_egress is not None:
            raise ValueError("livekit_egress and agora_egress cannot both be set")

    def missing_fields(self) -> list[str]:
        """Names of the required fields that are empty."""
        return [name for name in REQUIRED_FIELDS if not getattr(self, name)]

    def validate(self) -> SessionConfig:
        """Raise ``ValueError`` naming every required field that is empty; return self."""
        missing = self.missing_fields()
        if missing:
            raise ValueError(
                f"session config is missing {', '.join(missing)} "
                f"(required: {', '.join(REQUIRED_FIELDS)})"
            )
        return self


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(SessionConfig))


class SessionConfigBuilder:
    """Fluent builder for :class:`SessionConfig`; every ``with_*`` returns the builder."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def _set(self, name: str, value: Any) -> SessionConfigBuilder:
        self._values[name] = value
        return self

    def with_avatar_id(self, avatar_id: str) -> SessionConfigBuilder:
        return self._set("avatar_id", avatar_id)

    def with_api_key(self, api_key: str) -> SessionConfigBuilder:
        return self._set("api_key", api_key)

    def with_app_id(self, app_id: str) -> SessionConfigBuilder:
        return self._set("app_id", app_id)

    def with_use_query_auth(self, use_query_auth: bool) -> SessionConfigBuilder:
        return self._set("use_query_auth", use_query_auth)

    def with_expire_at(self, expire_at: datetime) -> SessionConfigBuilder:
        return self._set("expire_at", expire_at)

    def with_sample_rate(self, sample_rate: int) -> SessionConfigBuilder:
        return self._set("sample_rate", sample_rate)

    def with_bitrate(self, bitrate: int) -> SessionConfigBuilder:
        return self._set("bitrate", bitrate)

    def with_transport_frames(self, handler: Callable[[bytes, bool], None]) -> SessionConfigBuilder:
        return self._set("transport_frames", handler)

    def with_on_error(self, handler: Callable[[Exception], None]) -> SessionConfigBuilder:
        return self._set("on_error", handler)

    def with_on_close(self, handler: Callable[[], None]) -> SessionConfigBuilder:
        return self._set("on_close", handler)

    def with_console_endpoint_url(self, url: str) -> SessionConfigBuilder:
        return self._set("console_endpoint_url", url)

    def with_ingress_endpoint_url(self, url: str) -> SessionConfigBuilder:
        return self._set("ingress_endpoint_url", url)

    def with_fps(self, fps: float | None) -> SessionConfigBuilder:
        return self._set("fps", fps)

    def with_token_timeout(self, seconds: float) -> SessionConfigBuilder:
        return self._set("token_timeout", seconds)

    def with_audio_format(self, audio_format: AudioFormat | str) -> SessionConfigBuilder:
        return self._set("audio_format", audio_format)

    def with_livekit_egress(self, config: LiveKitEgressConfig) -> SessionConfigBuilder:
        return self._set("livekit_egress", config)

    def with_agora_egress(self, config: AgoraEgressConfig) -> SessionConfigBuilder:
        return self._set("agora_egress", config)

    def build(self) -> SessionConfig:
        """A new :class:`SessionConfig`; ``ValueError`` naming any missing required field."""
        return SessionConfig(**self._values).validate()


def config_from_kwargs(kwargs: dict[str, Any]) -> SessionConfig:
    """``SessionConfig(**kwargs)`` validated, with a ``TypeError`` naming unknown keywords."""
    unknown = sorted(set(kwargs) - set(_FIELD_NAMES))
    if unknown:
        raise TypeError(
            f"unknown session option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(_FIELD_NAMES)}"
        )
    return SessionConfig(**kwargs).validate()
