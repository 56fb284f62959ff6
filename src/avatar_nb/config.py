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
from dataclasses import InitVar, dataclass, field
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from .environments import resolve_environment
from .http_api import check_console_url, check_ingress_url
from .protocol import DEFAULT_SAMPLE_RATE, SUPPORTED_SAMPLE_RATES, check_sample_rate

if TYPE_CHECKING:
    from .events import PlaybackSignal, PlaybackStateEvent

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
"""Fields without which a session cannot start (checked by ``build()``); an
``environment`` stands in for the two endpoint URLs."""

DEFAULT_TOKEN_TIMEOUT = 30.0
"""Seconds the token request, and opening the WebSocket with its handshake, may take."""

DEFAULT_IO_TIMEOUT = 10.0
"""Seconds a send (or the closing handshake) may wait on a peer that takes no data."""


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

    The newer clients' options (spatialreal 0.2.2's names): ``audio_format``, the
    egress options, ``environment`` (a named deployment, see
    :mod:`avatar_nb.environments`; an explicit endpoint URL wins over it),
    ``token_request_timeout`` (the same setting as ``token_timeout``),
    ``on_playback(PlaybackSignal)`` (every animation message) and
    ``on_playback_state(PlaybackStateEvent)`` (every playback state the server sends).
    Unlike spatialreal, there is no default environment: without endpoints or an
    environment a session is a configuration error (``open_service`` and ``animate``
    then pick the local service), so nothing goes to a hosted deployment unasked.

    avatar_nb adds ``fps`` (keyframe rate used for media time; ``None`` means the
    server's ``fps:<n>`` capability, else 25), ``token_timeout`` (seconds: the bound on
    the token request, and on opening the WebSocket with its handshake) and
    ``io_timeout`` (seconds a send or the closing handshake may wait on a peer that
    takes no data; after it the connection is aborted and the session ends with a
    connectionFailed error).
    """

    avatar_id: str = ""
    api_key: str = field(default="", repr=False)
    app_id: str = ""
    use_query_auth: bool = False
    expire_at: datetime | None = None
    sample_rate: int = DEFAULT_SAMPLE_RATE
    bitrate: int = 0
    transport_frames: Callable[[bytes, bool], None] | None = None
    on_error: Callable[[Exception], None] | None = None
    on_close: Callable[[], None] | None = None
    console_endpoint_url: str = ""
    ingress_endpoint_url: str = ""
    fps: float | None = None
    token_timeout: float = DEFAULT_TOKEN_TIMEOUT
    audio_format: AudioFormat = AudioFormat.PCM_S16LE
    livekit_egress: LiveKitEgressConfig | None = None
    agora_egress: AgoraEgressConfig | None = None
    environment: str | None = None
    io_timeout: float = DEFAULT_IO_TIMEOUT
    on_playback: Callable[[PlaybackSignal], None] | None = None
    on_playback_state: Callable[[PlaybackStateEvent], None] | None = None
    # spatialreal's name for token_timeout: taken by __init__, read and set as a property
    token_request_timeout: InitVar[float | None] = None

    def __post_init__(self, token_request_timeout: float | None = None) -> None:
        if isinstance(token_request_timeout, property):  # not given: the class attribute
            token_request_timeout = None
        if token_request_timeout is not None:
            if self.token_timeout not in (DEFAULT_TOKEN_TIMEOUT, token_request_timeout):
                raise ValueError(
                    f"token_timeout ({self.token_timeout!r}) and token_request_timeout "
                    f"({token_request_timeout!r}) are one setting; give one of them"
                )
            self.token_timeout = token_request_timeout
        for name in ("avatar_id", "api_key", "app_id", "console_endpoint_url", "ingress_endpoint_url"):
            value = getattr(self, name)
            if not isinstance(value, str):
                shown = "<hidden>" if name == "api_key" else repr(value)
                raise TypeError(f"{name} must be a str, got {type(value).__name__} {shown}")
        # a URL is checked as soon as it is given (an empty one is reported by validate())
        if self.console_endpoint_url:
            check_console_url(self.console_endpoint_url)
        if self.ingress_endpoint_url:
            check_ingress_url(self.ingress_endpoint_url)
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int):
            raise TypeError(
                f"sample_rate must be an int, got {self.sample_rate!r}; "
                f"accepted: {', '.join(map(str, SUPPORTED_SAMPLE_RATES))}"
            )
        check_sample_rate(self.sample_rate)
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
        for name in ("token_timeout", "io_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (
                isinstance(value, (int, float)) and math.isfinite(value) and value > 0
            ):
                raise ValueError(f"{name} must be a positive number of seconds (finite), got {value!r}")
        if self.environment is not None:
            resolve_environment(self.environment)  # ValueError listing the known names
        try:
            self.audio_format = AudioFormat(self.audio_format)
        except ValueError:
            accepted = ", ".join(repr(f.value) for f in AudioFormat)
            raise ValueError(f"unsupported audio_format {self.audio_format!r}; accepted: {accepted}") from None
        for name in ("transport_frames", "on_error", "on_close", "on_playback", "on_playback_state"):
            _check_callback(name, getattr(self, name))
        if self.livekit_egress is not None and self.agora_egress is not None:
            raise ValueError("livekit_egress and agora_egress cannot both be set")

    def endpoints(self) -> tuple[str, str]:
        """The console and ingress URLs: the explicit ones, else the ``environment``'s
        (empty when neither is given)."""
        console, ingress = self.console_endpoint_url, self.ingress_endpoint_url
        if self.environment is not None and not (console and ingress):
            env = resolve_environment(self.environment)
            console = console or env.console_endpoint_url
            ingress = ingress or env.ingress_endpoint_url
        return console, ingress

    def missing_fields(self) -> list[str]:
        """Names of the required fields that are empty (an environment fills the URLs)."""
        console, ingress = self.endpoints()
        given = {"console_endpoint_url": console, "ingress_endpoint_url": ingress}
        return [name for name in REQUIRED_FIELDS if not given.get(name, getattr(self, name))]

    def validate(self) -> SessionConfig:
        """Raise ``ValueError`` naming every required field that is empty; return self."""
        missing = self.missing_fields()
        if missing:
            raise ValueError(
                f"session config is missing {', '.join(missing)} "
                f"(required: {', '.join(REQUIRED_FIELDS)})"
            )
        return self


def _get_token_request_timeout(self: SessionConfig) -> float:
    return self.token_timeout


def _set_token_request_timeout(self: SessionConfig, value: float) -> None:
    self.token_timeout = value


# after the dataclass is made, so that its __init__ still takes token_request_timeout
SessionConfig.token_request_timeout = property(  # type: ignore[assignment]
    _get_token_request_timeout,
    _set_token_request_timeout,
    doc="spatialreal's name for :attr:`token_timeout` (the same setting).",
)

_FIELD_NAMES = (*(f.name for f in dataclasses.fields(SessionConfig)), "token_request_timeout")


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

    def with_token_request_timeout(self, seconds: float) -> SessionConfigBuilder:
        """spatialreal's name for :meth:`with_token_timeout`."""
        return self._set("token_timeout", seconds)

    def with_io_timeout(self, seconds: float) -> SessionConfigBuilder:
        return self._set("io_timeout", seconds)

    def with_environment(self, environment: str | None) -> SessionConfigBuilder:
        return self._set("environment", environment)

    def with_on_playback(self, handler: Callable[[PlaybackSignal], None]) -> SessionConfigBuilder:
        return self._set("on_playback", handler)

    def with_on_playback_state(self, handler: Callable[[PlaybackStateEvent], None]) -> SessionConfigBuilder:
        return self._set("on_playback_state", handler)

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
