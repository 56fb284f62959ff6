"""The driven-ingress v2 protocol without I/O: messages and both ends' state machines.

Nothing here touches a socket. :class:`ClientConnection` and :class:`ServerConnection`
take the bytes of received WebSocket messages and return events; they build the bytes
to send. The asyncio client (:mod:`avatar_nb.session`) and the embedded service
(:mod:`avatar_nb.server`) are thin adapters around them, so the two ends agree by
construction and the protocol is tested without sockets (the model is the
``websockets`` and ``h11`` libraries' protocol objects). The HTTP requests around a
session (the token, the WebSocket upgrade) are :mod:`avatar_nb.http_api`'s.

The package is split as ``websockets`` splits its protocol: :mod:`.messages` is the
shared part (constants, message types, building and checking messages, ServerError
classification), :mod:`.client` the client's state machine, :mod:`.server` the
service's. Every name is importable from here.

State machines raise :class:`~avatar_nb.errors.InvalidStateError` on an illegal
transition (a caller bug) and :class:`~avatar_nb.errors.AvatarSDKError` for what the
peer did wrong.
"""

from __future__ import annotations

import warnings
from typing import Any

from .client import (
    AnimationReceived,
    ClientConnection,
    ClientEvent,  # noqa: F401  (importable here, as before the split)
    ClientState,
    PlaybackStateReceived,
    ServerErrorReceived,
    SessionConfirmed,
    UnknownMessage,
)
from .messages import (
    DEFAULT_SAMPLE_RATE,
    MAX_AUDIO_CHUNK_BYTES,
    OGG_PAGE_MAGIC,
    SUPPORTED_SAMPLE_RATES,
    MessageType,
    OneofField,
    RequestStatus,
    WirePlaybackState,
    build_audio,
    build_configure_session,
    build_confirm_session,
    build_interrupt,
    build_playback_control,  # noqa: F401  (importable here, as before the split)
    build_playback_state,
    build_server_error,
    check_ogg_chunk,
    check_pcm_chunk,
    check_sample_rate,
    fps_from_capabilities,
    server_error_to_exception,
)
from .server import (
    AudioReceived,
    InterruptRequested,
    PlaybackControlRequested,
    ProtocolViolation,
    RequestPhase,
    ServerConnection,
    ServerEvent,  # noqa: F401  (importable here, as before the split)
    ServerState,
    SessionConfigured,
)

__all__ = [
    "DEFAULT_SAMPLE_RATE",
    "SUPPORTED_SAMPLE_RATES",
    "MAX_AUDIO_CHUNK_BYTES",
    "OGG_PAGE_MAGIC",
    "MessageType",
    "OneofField",
    "WirePlaybackState",
    "RequestStatus",
    "ClientConnection",
    "ClientState",
    "ServerConnection",
    "ServerState",
    "RequestPhase",
    "SessionConfirmed",
    "AnimationReceived",
    "ServerErrorReceived",
    "PlaybackStateReceived",
    "UnknownMessage",
    "SessionConfigured",
    "AudioReceived",
    "InterruptRequested",
    "PlaybackControlRequested",
    "ProtocolViolation",
    "build_configure_session",
    "build_confirm_session",
    "build_server_error",
    "build_interrupt",
    "build_audio",
    "build_playback_state",
    "server_error_to_exception",
    "check_sample_rate",
    "check_pcm_chunk",
    "check_ogg_chunk",
    "fps_from_capabilities",
]

_DEPRECATED = {
    "PlaybackState": (
        "WirePlaybackState",
        (
            "avatar_nb.protocol.PlaybackState is deprecated and will be removed in the next release: "
            "use avatar_nb.protocol.WirePlaybackState (wire values) or avatar_nb.PlaybackState "
            "(the public string enum)"
        ),
    ),
    "DEFAULT_FPS": (
        "DEFAULT_FPS",
        (
            "avatar_nb.protocol.DEFAULT_FPS is deprecated and will be removed in the next release: "
            "import DEFAULT_FPS from avatar_nb.flame (or avatar_nb)"
        ),
    ),
}


def __getattr__(name: str) -> Any:
    """Deprecated names, kept for one release with a ``DeprecationWarning``."""
    if name in _DEPRECATED:
        target, message = _DEPRECATED[name]
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        if name == "DEFAULT_FPS":
            from ..flame import DEFAULT_FPS

            return DEFAULT_FPS
        return globals()[target]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
