"""The shared part of the driven-ingress v2 protocol: constants, message types,
building and checking messages, and the classification of a received ServerError.

Both ends' state machines (:mod:`.client`, :mod:`.server`) build on this module; it
knows nothing of either end's state.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from enum import Enum, IntEnum
from typing import Any

import numpy as np

from .. import _wire
from ..errors import AvatarSDKError, classify_error
from ..flame import DEFAULT_FPS
from ..proto import message_pb2 as pb

__all__ = [
    "DEFAULT_SAMPLE_RATE",
    "SUPPORTED_SAMPLE_RATES",
    "MAX_AUDIO_CHUNK_BYTES",
    "OGG_PAGE_MAGIC",
    "MessageType",
    "OneofField",
    "WirePlaybackState",
    "RequestStatus",
    "build_configure_session",
    "build_confirm_session",
    "build_server_error",
    "build_interrupt",
    "build_playback_control",
    "build_audio",
    "build_playback_state",
    "server_error_to_exception",
    "check_sample_rate",
    "check_pcm_chunk",
    "check_ogg_chunk",
    "fps_from_capabilities",
]

SUPPORTED_SAMPLE_RATES: tuple[int, ...] = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
"""Sample rates (Hz) that the service accepts for mono s16le audio."""

DEFAULT_SAMPLE_RATE = 16000
"""Session sample rate (Hz) unless one is given: the seed SDK's default."""


MAX_AUDIO_CHUNK_BYTES = 16 * 1024 * 1024 - 4096
"""The largest audio chunk ``send_audio()`` takes, in bytes.

The local service accepts WebSocket messages up to 16 MiB (a larger one closes the
connection with 1009); a chunk 4 KiB under that leaves room for the rest of its
``Message`` (type, request id, end flag and length prefixes: well under 100 bytes), so
a full message always fits. The service's ingress limit is read from here. Split
longer audio with ``stream()`` or into several ``send_audio()`` calls.
"""

OGG_PAGE_MAGIC = b"OggS"
"""Every Ogg page starts with these bytes: the first chunk of an Ogg Opus request must."""


class MessageType(IntEnum):
    """``Message.type`` values (docs/protocol.md, "Messages").

    :attr:`data_field` is the number of the ``Message.data`` oneof member that each type
    carries (:class:`OneofField`).
    """

    UNSPECIFIED = 0
    CLIENT_CONFIGURE_SESSION = 1
    SERVER_CONFIRM_SESSION = 2
    CLIENT_AUDIO_INPUT = 3
    SERVER_ERROR = 4
    SERVER_RESPONSE_ANIMATION = 5
    CLIENT_INTERRUPT = 7
    CLIENT_PAUSE = 8
    CLIENT_RESUME = 9
    SERVER_PLAYBACK_STATE = 10

    @property
    def data_field(self) -> OneofField:
        """The oneof field number this message type carries (0 for UNSPECIFIED)."""
        return OneofField[self.name]


class OneofField(IntEnum):
    """Field numbers of the ``Message.data`` oneof, named after the message type that
    carries each (docs/protocol.md, "Messages"); 0 means no member."""

    UNSPECIFIED = 0
    CLIENT_CONFIGURE_SESSION = 2
    SERVER_CONFIRM_SESSION = 3
    CLIENT_AUDIO_INPUT = 4
    SERVER_ERROR = 5
    SERVER_RESPONSE_ANIMATION = 6
    CLIENT_INTERRUPT = 8
    CLIENT_PAUSE = 9
    CLIENT_RESUME = 10
    SERVER_PLAYBACK_STATE = 11


class WirePlaybackState(IntEnum):
    """``ServerPlaybackState.state`` wire values. The public, spatialreal-compatible
    enum is :class:`avatar_nb.PlaybackState` (string values); this one is for building
    and reading messages (it was ``avatar_nb.protocol.PlaybackState``, a name the
    public enum also has)."""

    UNSPECIFIED = 0
    PLAYING = 1
    PAUSED = 2
    ENDED = 3
    INTERRUPTED = 4


class RequestStatus(str, Enum):
    """What became of one request, seen from the client (the Timeline's status names).

    OPEN: its end frame has not arrived yet. COMPLETE: it ended normally. INTERRUPTED:
    the client interrupted it, or the server reported it interrupted (``explicit``,
    ``pause_timeout``). PREEMPTED: the server reported that a newer request superseded
    it. FAILED: the server reported an error for it, or the connection closed before
    its end frame.
    """

    OPEN = "open"
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"
    PREEMPTED = "preempted"
    FAILED = "failed"


# --------------------------------------------------------------------------- builders


def build_configure_session(
    sample_rate: int,
    bitrate: int = 0,
    *,
    audio_format: int = pb.AUDIO_FORMAT_PCM_S16LE,
    livekit_egress: Any | None = None,
    agora_egress: Any | None = None,
) -> bytes:
    """``Message{type=1, client_configure_session{...}}`` with transport_compression NONE."""
    msg = pb.Message(type=pb.MESSAGE_CLIENT_CONFIGURE_SESSION)
    cfg = msg.client_configure_session
    cfg.sample_rate = int(sample_rate)
    cfg.bitrate = int(bitrate)
    cfg.audio_format = int(audio_format)
    cfg.transport_compression = pb.TRANSPORT_COMPRESSION_NONE
    if livekit_egress is not None:
        cfg.egress_type = pb.EGRESS_TYPE_LIVEKIT
        lk = cfg.livekit_egress
        lk.url = livekit_egress.url
        lk.api_key = livekit_egress.api_key
        lk.api_secret = livekit_egress.api_secret
        lk.api_token = livekit_egress.api_token
        lk.room_name = livekit_egress.room_name
        lk.publisher_id = livekit_egress.publisher_id
        lk.extra_attributes.update(livekit_egress.extra_attributes)
        lk.idle_timeout = int(livekit_egress.idle_timeout)
    elif agora_egress is not None:
        cfg.egress_type = pb.EGRESS_TYPE_AGORA
        ag = cfg.agora_egress
        ag.channel_name = agora_egress.channel_name
        ag.token = agora_egress.token
        ag.uid = int(agora_egress.uid)
        ag.publisher_id = agora_egress.publisher_id
    return msg.SerializeToString()


def build_confirm_session(connection_id: str, capabilities: Iterable[str] = ()) -> bytes:
    """``Message{type=2, server_confirm_session{connection_id, capabilities}}``."""
    if not connection_id:
        raise ValueError("connection_id must not be empty")
    msg = pb.Message(type=pb.MESSAGE_SERVER_CONFIRM_SESSION)
    msg.server_confirm_session.connection_id = connection_id
    msg.server_confirm_session.capabilities.extend(capabilities)
    return msg.SerializeToString()


def build_server_error(code: int, message: str, *, connection_id: str = "", req_id: str = "") -> bytes:
    """``Message{type=4, server_error{connection_id, req_id, code, message}}``."""
    msg = pb.Message(type=pb.MESSAGE_SERVER_ERROR)
    err = msg.server_error
    err.connection_id = connection_id
    err.req_id = req_id
    err.code = int(code)
    err.message = message
    return msg.SerializeToString()


def build_interrupt(req_id: str) -> bytes:
    """``Message{type=7, client_interrupt{req_id}}``."""
    msg = pb.Message(type=pb.MESSAGE_CLIENT_INTERRUPT)
    msg.client_interrupt.req_id = req_id
    return msg.SerializeToString()


def build_playback_control(kind: MessageType, req_id: str) -> bytes:
    """``Message{type=8 or 9, client_pause|client_resume{req_id}}``."""
    msg = pb.Message(type=int(kind))
    if kind == MessageType.CLIENT_PAUSE:
        msg.client_pause.req_id = req_id
    elif kind == MessageType.CLIENT_RESUME:
        msg.client_resume.req_id = req_id
    else:
        raise ValueError(f"not a playback control message type: {kind!r}")
    return msg.SerializeToString()


def build_playback_state(
    state: WirePlaybackState, *, connection_id: str = "", req_id: str = "", played_ms: int = 0, reason: str = ""
) -> bytes:
    """``Message{type=10, server_playback_state{...}}``."""
    msg = pb.Message(type=pb.MESSAGE_SERVER_PLAYBACK_STATE)
    ps = msg.server_playback_state
    ps.connection_id = connection_id
    ps.req_id = req_id
    ps.state = int(state)
    ps.played_ms = int(played_ms)
    ps.reason = reason
    return msg.SerializeToString()


def build_audio(req_id: str, audio: Any, end: bool) -> bytes:
    """One ``Message{type=3, client_audio_input{req_id, end, audio}}``.

    ``audio`` is any contiguous bytes-like object, passed through without a copy of
    its own; its length is not checked here (Ogg Opus chunks may be odd). The bytes
    are those the protobuf library makes (fields in number order).
    """
    view = memoryview(audio)
    if view.format != "B":
        view = view.cast("B")
    n = view.nbytes
    if n and not n % 2:
        return _wire.encode_audio_messages(view, req_id, n, end=bool(end))[0]
    rid = req_id.encode("utf-8")
    parts: list[Any] = []
    if rid:
        parts += [b"\x0a", _varint(len(rid)), rid]
    if end:
        parts.append(b"\x10\x01")
    if n:
        parts += [b"\x1a", _varint(n), view]
    inner = b"".join(parts)
    return b"".join((b"\x08\x03\x22", _varint(len(inner)), inner))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# --------------------------------------------------------------------------- validation


def _bytes_view(audio: Any, name: str) -> memoryview:
    """A byte view of ``audio`` (no copy), or a ``TypeError`` naming ``name``."""
    if isinstance(audio, np.ndarray):
        raise TypeError(
            f"{name} must be s16le PCM bytes, got a numpy array of dtype {audio.dtype}; "
            "convert it with avatar_nb.to_s16le(samples) first"
        )
    if isinstance(audio, str) or not isinstance(audio, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes-like (bytes, bytearray or memoryview), got {type(audio).__name__}")
    view = memoryview(audio)
    if not view.c_contiguous:
        raise TypeError(
            f"{name} is a non-contiguous memoryview (a strided slice); pass bytes({name}) "
            "or a contiguous view"
        )
    return view


def check_sample_rate(sample_rate: int) -> int:
    """``sample_rate`` if the service accepts it (:data:`SUPPORTED_SAMPLE_RATES`), else a
    ``ValueError`` naming it and the accepted rates."""
    if sample_rate not in SUPPORTED_SAMPLE_RATES:
        raise ValueError(
            f"unsupported sample_rate {sample_rate}; accepted: {', '.join(map(str, SUPPORTED_SAMPLE_RATES))} Hz"
        )
    return sample_rate


def check_pcm_chunk(audio: Any, name: str = "audio", *, one_message: bool = True) -> int:
    """Check mono s16le PCM without copying it; return its size in bytes.

    ``TypeError`` (naming the argument ``name``) for anything that is not a contiguous
    bytes-like object (a numpy array must go through :func:`avatar_nb.to_s16le` first,
    so that its dtype is interpreted on purpose); ``ValueError`` for an odd number of
    bytes or, when it must fit ``one_message``, above :data:`MAX_AUDIO_CHUNK_BYTES`.
    """
    n = _bytes_view(audio, name).nbytes
    if n % 2:
        raise ValueError(f"{name} has {n} bytes, an odd number; mono s16le PCM has 2 bytes per sample")
    if one_message:
        _check_size(n, name)
    return n


def _check_size(n: int, name: str) -> None:
    if n > MAX_AUDIO_CHUNK_BYTES:
        raise ValueError(
            f"{name} has {n} bytes, above the {MAX_AUDIO_CHUNK_BYTES} bytes one message can carry "
            "(the service takes messages up to 16 MiB); split it with stream() or several send_audio() calls"
        )


def check_ogg_chunk(audio: Any, *, first: bool, name: str = "audio") -> int:
    """Check one slice of an Ogg Opus byte stream; return its size in bytes.

    Slices may be cut anywhere (the official clients send fixed-size slices of a
    file). What can be checked is: bytes-like, at most :data:`MAX_AUDIO_CHUNK_BYTES`,
    and, for the ``first`` non-empty slice of a request, that the stream starts with
    an Ogg page (``OggS``).
    """
    view = _bytes_view(audio, name)
    n = view.nbytes
    _check_size(n, name)
    if first and n and view[:4].tobytes() != OGG_PAGE_MAGIC:
        raise ValueError(
            f"{name} does not start with an Ogg page (b'OggS', got {view[:4].tobytes()!r}); "
            "with audio_format='ogg_opus' the first chunk of a request starts the Ogg Opus stream"
        )
    return n


def fps_from_capabilities(capabilities: Iterable[str], default: float = DEFAULT_FPS) -> float:
    """The keyframe rate a server declared with an ``fps:<n>`` capability, else ``default``."""
    for cap in capabilities:
        if cap.startswith("fps:"):
            try:
                value = float(cap[4:])
            except ValueError:
                continue
            if value > 0 and np.isfinite(value):
                return value
    return default


# --------------------------------------------------------------------------- both ends


def _remember(window: OrderedDict[str, Any], req_id: str, value: Any, size: int) -> None:
    """Put ``req_id`` last in ``window``, dropping the oldest ids beyond ``size``: how both
    ends remember finished requests in constant memory."""
    window[req_id] = value
    window.move_to_end(req_id)
    while len(window) > size:
        window.popitem(last=False)


# --------------------------------------------------------------------------- errors


def server_error_to_exception(msg: _wire.DecodedMessage, phase: str) -> AvatarSDKError:
    """An :class:`AvatarSDKError` for a received ``ServerError`` message."""
    code = classify_error(phase=phase, server_code=str(msg.error_code), detail=msg.error_message)
    text = msg.error_message or "(no message)"
    where = "handshake refused by server" if phase == "websocket_handshake" else "server error"
    return AvatarSDKError(
        code,
        f"{where}: {text} (server code {msg.error_code})",
        phase=phase,
        server_code=str(msg.error_code),
        server_detail=msg.error_message or None,
        connection_id=msg.connection_id or None,
        req_id=msg.req_id or None,
    )
