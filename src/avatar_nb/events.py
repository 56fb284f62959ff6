"""Structured playback events, with the names and fields of spatialreal 0.2.2.

:class:`PlaybackSignal` is made for every animation message (``on_playback``),
:class:`PlaybackStateEvent` for every ServerPlaybackState (``on_playback_state``); see
docs/protocol.md ("A session, step by step") for what the server sends and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["InterruptReason", "PlaybackSignal", "PlaybackState", "PlaybackStateEvent"]


@dataclass(frozen=True)
class PlaybackSignal:
    """One animation message, as a playback signal.

    Returned over the WebSocket, a message carries keyframes and ``end=True`` means
    generation for the request is complete. In egress mode (LiveKit, Agora) messages
    are empty control signals: a non-end one marks progress, ``end=True`` that playout
    has drained, and ``end=True`` may come more than once for one ``req_id``: count a
    request's end once (``has_animation`` tells data from control).
    """

    req_id: str
    end: bool
    connection_id: str = ""
    avatar_id: str = ""
    has_animation: bool = False


class PlaybackState(str, Enum):
    """State of a request's playout, as a ServerPlaybackState reports it.

    The values that travel in the message are :class:`avatar_nb.protocol.WirePlaybackState`'s
    (integers); members of the two enums share their names."""

    UNSPECIFIED = "unspecified"
    PLAYING = "playing"
    PAUSED = "paused"
    ENDED = "ended"
    INTERRUPTED = "interrupted"


class InterruptReason(str, Enum):
    """``reason`` of an INTERRUPTED playback state."""

    EXPLICIT = "explicit"  # the client interrupted it
    PREEMPTED = "preempted"  # a newer request superseded it
    PAUSE_TIMEOUT = "pause_timeout"  # a pause was held past the server's limit: drop it, do not resume


@dataclass(frozen=True)
class PlaybackStateEvent:
    """One ServerPlaybackState.

    Sent by a server that declared the ``playback_state`` capability: after every
    ``pause()``/``resume()`` (the state after the operation) and on its own when a
    request starts playing, has played out, or is cut short. ``played_ms`` is how much
    of the request's content has played (it holds still while paused); ``reason``
    matters for INTERRUPTED only (:class:`InterruptReason`).
    """

    req_id: str
    state: PlaybackState
    played_ms: int = 0
    reason: str = ""
    connection_id: str = ""
