"""The driven-ingress v2 protocol without I/O: messages and both ends' state machines.

Nothing here touches a socket. :class:`ClientConnection` and :class:`ServerConnection`
take the bytes of received WebSocket messages and return events; they build the bytes
to send. The asyncio client (:mod:`avatar_nb.session`) and the embedded service
(:mod:`avatar_nb.server`) are thin adapters around them, so the two ends agree by
construction and the protocol is tested without sockets (the model is the
``websockets`` and ``h11`` libraries' protocol objects). The HTTP requests around a
session (the token, the WebSocket upgrade) are :mod:`avatar_nb.http_api`'s.

State machines raise :class:`~avatar_nb.errors.InvalidStateError` on an illegal
transition (a caller bug) and :class:`~avatar_nb.errors.AvatarSDKError` for what the
peer did wrong.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any, Union

import numpy as np
from google.protobuf.message import DecodeError

from . import _wire
from .errors import (
    AvatarSDKError,
    AvatarSDKErrorCode,
    InvalidStateError,
    ServerErrorCode,
    classify_error,
)
from .events import InterruptReason
from .flame import DEFAULT_FPS
from .logid import generate_log_id
from .proto import message_pb2 as pb

__all__ = [
    "DEFAULT_SAMPLE_RATE",
    "SUPPORTED_SAMPLE_RATES",
    "DEFAULT_FPS",
    "MAX_AUDIO_CHUNK_BYTES",
    "OGG_PAGE_MAGIC",
    "MessageType",
    "OneofField",
    "PlaybackState",
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


class PlaybackState(IntEnum):
    """``ServerPlaybackState.state`` wire values. The public, spatialreal-compatible
    enum is :class:`avatar_nb.PlaybackState` (string values); this one is for building
    and reading messages."""

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
    state: PlaybackState, *, connection_id: str = "", req_id: str = "", played_ms: int = 0, reason: str = ""
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


# --------------------------------------------------------------------------- client side


@dataclass(frozen=True)
class SessionConfirmed:
    connection_id: str
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class AnimationReceived:
    """One ``ServerResponseAnimation``. ``keyframes`` is (n, 20 + E) float32.

    ``anomaly`` is ``"unknown_request"`` (a request this client did not make, or one it
    finished too long ago to remember) or ``"after_end"`` (keyframes for a request
    whose end frame already arrived), else None. ``duplicate_end`` marks a repeated,
    empty end frame for a finished request (egress playout may send end more than
    once; not an anomaly). ``status`` is the request's final status when this message
    finished it.
    """

    req_id: str
    end: bool
    keyframes: np.ndarray
    raw: bytes
    connection_id: str = ""
    avatar_id: str = ""
    animation_error: str | None = None
    anomaly: str | None = None
    duplicate_end: bool = False
    status: RequestStatus | None = None


@dataclass(frozen=True)
class ServerErrorReceived:
    """A ``ServerError``; ``status`` is FAILED when it named a request still open."""

    error: AvatarSDKError
    status: RequestStatus | None = None


@dataclass(frozen=True)
class PlaybackStateReceived:
    """One ``ServerPlaybackState``. ``status``: the request's new status when this state
    changed it (INTERRUPTED or PREEMPTED); ``anomaly``: ``"unknown_request"`` for a
    request this client does not know."""

    req_id: str
    state: PlaybackState
    played_ms: int
    reason: str
    connection_id: str = ""
    status: RequestStatus | None = None
    anomaly: str | None = None


@dataclass(frozen=True)
class UnknownMessage:
    """A message type this client does not handle; ignored for forward compatibility."""

    type: int
    raw: bytes


ClientEvent = Union[SessionConfirmed, AnimationReceived, ServerErrorReceived, PlaybackStateReceived, UnknownMessage]


class ClientState(Enum):
    IDLE = "idle"
    AWAITING_CONFIRM = "awaiting_confirm"
    OPEN = "open"
    CLOSED = "closed"


class _Request:
    """The client's state of one request that has not finished yet."""

    __slots__ = ("sending", "end_received", "paused", "outcome", "bytes_sent")

    def __init__(self) -> None:
        self.sending = True  # audio may still be sent (no end=True, no interrupt yet)
        self.end_received = False  # the server's end frame arrived
        self.paused = False
        self.outcome: RequestStatus | None = None  # INTERRUPTED, PREEMPTED or FAILED once decided
        self.bytes_sent = 0


class ClientConnection:
    """The client end of a session, without I/O.

    ``configure()`` → bytes to send; ``receive(data)`` → an event for each received
    message; ``audio()``/``interrupt()`` → request id and bytes to send. The request id
    of an utterance is made at its first chunk and kept until a chunk with ``end=True``.

    The connection owns each request's lifecycle (:class:`RequestStatus`): a request
    is tracked from its first chunk until it has finished (the client has stopped
    sending it and its end frame has arrived), then only its final status is kept in a
    window of the latest :attr:`FINISHED_WINDOW` requests, so a session that runs a
    million short requests holds a constant-size state (:attr:`tracked_requests`).
    """

    FINISHED_WINDOW = 256
    """How many finished requests are remembered (to tell a late frame from a stranger's)."""

    def __init__(
        self,
        *,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        bitrate: int = 0,
        audio_format: int = pb.AUDIO_FORMAT_PCM_S16LE,
        livekit_egress: Any | None = None,
        agora_egress: Any | None = None,
    ) -> None:
        self.sample_rate = check_sample_rate(sample_rate)
        self.bitrate = bitrate
        self.audio_format = audio_format
        self._livekit = livekit_egress
        self._agora = agora_egress
        self.state = ClientState.IDLE
        self.connection_id: str | None = None
        self.capabilities: tuple[str, ...] = ()
        self.current_req_id: str | None = None
        self.last_req_id: str | None = None
        self._requests: dict[str, _Request] = {}
        self._finished: OrderedDict[str, RequestStatus] = OrderedDict()

    # ------------------------------------------------------------------ requests

    @property
    def tracked_requests(self) -> int:
        """How many request ids this connection holds (unfinished plus the finished window)."""
        return len(self._requests) + len(self._finished)

    @property
    def open_requests(self) -> tuple[str, ...]:
        """Ids of the requests that have not finished, oldest first."""
        return tuple(self._requests)

    def is_pending(self, req_id: str) -> bool:
        """Whether ``req_id`` has not finished yet (its end frame is still to come)."""
        return req_id in self._requests

    def status(self, req_id: str) -> RequestStatus | None:
        """The status of ``req_id``; None when unknown (never made here, or finished long ago)."""
        request = self._requests.get(req_id)
        if request is not None:
            return request.outcome or RequestStatus.OPEN
        return self._finished.get(req_id)

    def is_paused(self, req_id: str) -> bool:
        request = self._requests.get(req_id)
        return request is not None and request.paused

    def _finish(self, req_id: str, request: _Request) -> RequestStatus:
        del self._requests[req_id]
        status = request.outcome or RequestStatus.COMPLETE
        _remember(self._finished, req_id, status, self.FINISHED_WINDOW)
        return status

    def open_request(self) -> str:
        """The id of the request being sent, made now (and tracked) if none is open."""
        if self.current_req_id is None:
            self.current_req_id = generate_log_id()
            self.last_req_id = self.current_req_id
            self._requests[self.current_req_id] = _Request()
        return self.current_req_id

    def _ended_by_client(self, req_id: str) -> None:
        """The client will send no more audio for ``req_id`` (``end=True`` or an interrupt)."""
        if self.current_req_id == req_id:
            self.current_req_id = None
        request = self._requests.get(req_id)
        if request is not None:
            request.sending = False
            if request.end_received:
                self._finish(req_id, request)

    # ------------------------------------------------------------------ handshake

    def _require(self, *states: ClientState, action: str) -> None:
        if self.state not in states:
            allowed = " or ".join(s.value for s in states)
            raise InvalidStateError(f"cannot {action} in state {self.state.value} (needs {allowed})")

    def configure(self) -> bytes:
        """The ClientConfigureSession message; moves to AWAITING_CONFIRM."""
        self._require(ClientState.IDLE, action="configure the session")
        data = build_configure_session(
            self.sample_rate,
            self.bitrate,
            audio_format=self.audio_format,
            livekit_egress=self._livekit,
            agora_egress=self._agora,
        )
        self.state = ClientState.AWAITING_CONFIRM
        return data

    # ------------------------------------------------------------------ receiving

    def receive(self, data: Any) -> ClientEvent:
        """Interpret one received WebSocket message.

        In AWAITING_CONFIRM, a confirm moves to OPEN and a ServerError raises the
        classified :class:`AvatarSDKError` (the handshake failed); anything else raises a
        protocolError. In OPEN, every message becomes an event; bytes that are not a
        valid Message raise a protocolError (the connection stays usable).
        """
        self._require(ClientState.AWAITING_CONFIRM, ClientState.OPEN, action="receive messages")
        phase = "websocket_handshake" if self.state is ClientState.AWAITING_CONFIRM else "websocket_runtime"
        if isinstance(data, str):
            raise AvatarSDKError(
                AvatarSDKErrorCode.protocolError,
                "received a text frame; the protocol sends one binary protobuf Message per frame",
                phase=phase,
            )
        try:
            msg = _wire.decode_message(data)
        except ValueError as exc:
            raise AvatarSDKError(
                AvatarSDKErrorCode.protocolError, f"invalid protobuf message: {exc}", phase=phase
            ) from None

        if self.state is ClientState.AWAITING_CONFIRM:
            if msg.type == MessageType.SERVER_CONFIRM_SESSION:
                if not msg.connection_id:
                    raise AvatarSDKError(
                        AvatarSDKErrorCode.protocolError,
                        "server confirmed the session with an empty connection_id",
                        phase=phase,
                    )
                self.connection_id = msg.connection_id
                self.capabilities = msg.capabilities
                self.state = ClientState.OPEN
                return SessionConfirmed(msg.connection_id, msg.capabilities)
            if msg.type == MessageType.SERVER_ERROR:
                raise server_error_to_exception(msg, phase)
            raise AvatarSDKError(
                AvatarSDKErrorCode.protocolError,
                f"unexpected message type {msg.type} during the handshake "
                f"(expected {MessageType.SERVER_CONFIRM_SESSION.value} or {MessageType.SERVER_ERROR.value})",
                phase=phase,
            )

        if msg.type == MessageType.SERVER_RESPONSE_ANIMATION:
            return self._animation(msg, data)
        if msg.type == MessageType.SERVER_ERROR:
            error = server_error_to_exception(msg, phase)
            request = self._requests.get(msg.req_id) if msg.req_id else None
            if request is not None and request.outcome is None:
                request.outcome = RequestStatus.FAILED
                return ServerErrorReceived(error, RequestStatus.FAILED)
            return ServerErrorReceived(error)
        if msg.type == MessageType.SERVER_PLAYBACK_STATE:
            return self._playback_state(msg)
        return UnknownMessage(msg.type, bytes(data))

    def _animation(self, msg: Any, data: Any) -> AnimationReceived:
        req_id = msg.req_id
        has_frames = msg.keyframes.shape[0] > 0 or msg.animation_error is not None
        anomaly: str | None = None
        duplicate = False
        status: RequestStatus | None = None
        request = self._requests.get(req_id)
        if request is None:
            if req_id in self._finished:
                duplicate = msg.end and not has_frames
                anomaly = None if duplicate else "after_end"
            else:
                anomaly = "unknown_request"
        else:
            if request.end_received and (has_frames or not msg.end):
                anomaly = "after_end"
            if msg.end and not request.end_received:
                request.end_received = True
                if not request.sending:
                    status = self._finish(req_id, request)
        return AnimationReceived(
            req_id=req_id,
            end=msg.end,
            keyframes=msg.keyframes,
            raw=bytes(data),
            connection_id=msg.connection_id,
            avatar_id=msg.avatar_id,
            animation_error=msg.animation_error,
            anomaly=anomaly,
            duplicate_end=duplicate,
            status=status,
        )

    def _playback_state(self, msg: Any) -> PlaybackStateReceived:
        try:
            state = PlaybackState(msg.playback_state)
        except ValueError:
            state = PlaybackState.UNSPECIFIED
        req_id = msg.req_id
        new: RequestStatus | None = None
        if state is PlaybackState.INTERRUPTED:
            new = RequestStatus.PREEMPTED if msg.reason == InterruptReason.PREEMPTED else RequestStatus.INTERRUPTED
        status: RequestStatus | None = None
        anomaly: str | None = None
        request = self._requests.get(req_id)
        if request is not None:
            if state is PlaybackState.PAUSED:
                request.paused = True
            elif state is PlaybackState.PLAYING:
                request.paused = False
            if new is not None and request.outcome in (None, RequestStatus.INTERRUPTED):
                if request.outcome is not new:
                    request.outcome = status = new
        elif req_id in self._finished:
            # playout may end after generation: a finished request can still be cut short
            if new is not None and self._finished[req_id] in (RequestStatus.COMPLETE, RequestStatus.INTERRUPTED):
                if self._finished[req_id] is not new:
                    self._finished[req_id] = status = new
        else:
            anomaly = "unknown_request"
        return PlaybackStateReceived(
            req_id, state, msg.played_ms, msg.reason, msg.connection_id, status=status, anomaly=anomaly
        )

    # ------------------------------------------------------------------ sending

    def audio(self, audio: Any, end: bool = False) -> tuple[str, bytes]:
        """Request id and bytes of one audio chunk, validated once and not copied.

        PCM sessions take mono s16le bytes (see :func:`check_pcm_chunk`); Ogg Opus
        sessions take slices of an Ogg Opus stream (:func:`check_ogg_chunk`). Nothing
        changes when the chunk is refused.
        """
        self._require(ClientState.OPEN, action="send audio")
        if self.audio_format == pb.AUDIO_FORMAT_OGG_OPUS:
            current = self._requests.get(self.current_req_id or "")
            n = check_ogg_chunk(audio, first=current is None or current.bytes_sent == 0)
        else:
            n = check_pcm_chunk(audio)
        req_id = self.open_request()
        message = build_audio(req_id, audio, bool(end))
        self._requests[req_id].bytes_sent += n
        if end:
            self._ended_by_client(req_id)
        return req_id, message

    def audio_messages(self, pcm: Any, chunk_bytes: int, *, end: bool = True) -> tuple[str, list[bytes]]:
        """Request id and the messages of a whole stretch of PCM, cut into ``chunk_bytes``.

        The request counts as ended by the client (with ``end``) once the messages are
        made: send them all, or :meth:`interrupt` it.
        """
        self._require(ClientState.OPEN, action="send audio")
        if self.audio_format != pb.AUDIO_FORMAT_PCM_S16LE:
            raise InvalidStateError("audio_messages() cuts PCM; this session sends Ogg Opus")
        n = check_pcm_chunk(pcm, "pcm", one_message=False)
        if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes <= 0 or chunk_bytes % 2:
            raise ValueError(f"chunk_bytes must be a positive even number, got {chunk_bytes!r}")
        _check_size(chunk_bytes, "a chunk")
        req_id = self.open_request()
        messages = _wire.encode_audio_messages(pcm, req_id, chunk_bytes, end=bool(end))
        self._requests[req_id].bytes_sent += n
        if end:
            self._ended_by_client(req_id)
        return req_id, messages

    def interrupt(self) -> tuple[str, bytes]:
        """Request id and bytes of a ClientInterrupt for the latest request.

        A request that has not finished becomes INTERRUPTED (it finishes when its end
        frame arrives); one that already finished keeps its status.
        """
        self._require(ClientState.OPEN, action="interrupt")
        if not self.last_req_id:
            raise InvalidStateError("cannot interrupt: no audio has been sent yet")
        req_id = self.last_req_id
        request = self._requests.get(req_id)
        if request is not None and request.outcome is None:
            request.outcome = RequestStatus.INTERRUPTED
        self._ended_by_client(req_id)
        return req_id, build_interrupt(req_id)

    def playback_control(self, kind: MessageType) -> tuple[str, bytes]:
        """Request id and bytes of a ClientPause or ClientResume for the latest request."""
        self._require(ClientState.OPEN, action="pause or resume")
        if not self.last_req_id:
            raise InvalidStateError("cannot pause or resume: no audio has been sent yet")
        return self.last_req_id, build_playback_control(kind, self.last_req_id)

    def close(self) -> list[tuple[str, RequestStatus]]:
        """Move to CLOSED (idempotent); the requests that had not finished, with their
        final status (their outcome if one was decided, else FAILED), oldest first."""
        self.state = ClientState.CLOSED
        pending = []
        for req_id, request in list(self._requests.items()):
            if request.outcome is None:
                request.outcome = RequestStatus.FAILED
            pending.append((req_id, self._finish(req_id, request)))
        self.current_req_id = None
        return pending


# --------------------------------------------------------------------------- server side


@dataclass(frozen=True)
class SessionConfigured:
    """The handshake's ClientConfigureSession. ``egress`` is the parsed ``livekit_egress``
    or ``agora_egress`` sub-message when ``egress_type`` asks for one, else None."""

    sample_rate: int
    bitrate: int
    audio_format: int
    egress_type: int
    egress: Any = None


@dataclass(frozen=True)
class AudioReceived:
    """An audio chunk. ``new_utterance`` on the first chunk of a req_id;
    ``preempted`` names an open request that this new one implicitly ended."""

    req_id: str
    audio: bytes
    end: bool
    new_utterance: bool
    preempted: str | None = None


@dataclass(frozen=True)
class InterruptRequested:
    """A ClientInterrupt. ``streaming``: the request's audio was still arriving (drop
    what the animator holds of it); ``pending``: its end message has not gone out yet
    (drop what is queued for it and send the end now). Neither: nothing to stop (no
    such request, or it already ended; clients such as avatarkit interrupt their latest
    request even after it ended)."""

    req_id: str
    streaming: bool = False
    pending: bool = False


@dataclass(frozen=True)
class PlaybackControlRequested:
    kind: MessageType
    req_id: str


@dataclass(frozen=True)
class ProtocolViolation:
    """The client did something wrong; send ``reply`` and close when ``close`` is set."""

    reply: bytes
    message: str
    close: bool


ServerEvent = Union[SessionConfigured, AudioReceived, InterruptRequested, PlaybackControlRequested, ProtocolViolation]

_AUDIO_MEMBERS = (OneofField.UNSPECIFIED, OneofField.CLIENT_AUDIO_INPUT)
"""The ``Message.data`` members an audio message may carry: its own, or none (an empty
ClientAudioInput leaves the member off the wire)."""


class ServerState(Enum):
    AWAITING_CONFIGURE = "awaiting_configure"
    STREAMING = "streaming"
    CLOSED = "closed"


class RequestPhase(Enum):
    """Where one request is, seen from the service.

    STREAMING: its audio is arriving (at most one request at a time). ENDED: no more
    audio will come (``end=True``, preempted by a newer request, or interrupted) but its
    end message has not gone out. FINISHED: its end message went out; only the latest
    :attr:`ServerConnection.FINISHED_WINDOW` finished ids are remembered.
    """

    STREAMING = "streaming"
    ENDED = "ended"
    FINISHED = "finished"


class ServerConnection:
    """The service end of a session, without I/O.

    ``receive(data)`` returns one event. Handshake violations (a first message that is
    not ClientConfigureSession, an unsupported sample rate or audio format, an egress
    the service cannot serve) give a :class:`ProtocolViolation` with ``close=True``;
    later mistakes (odd-length audio, text frames, unparseable bytes, audio for a
    finished request) give one with ``close=False`` and leave the session usable.
    Error wording follows docs/protocol.md, section 6, so that clients classify it.

    The connection owns each request's lifecycle (:class:`RequestPhase`): audio moves
    a request to STREAMING and, with ``end=True``, a preemption or an interrupt, to
    ENDED; building its end message (:meth:`animation` with ``end=True``) moves it to
    FINISHED. Requests not yet finished are tracked until they are (at most the one
    streaming plus those whose end message is still queued); finished ones only in a
    window of the latest :attr:`FINISHED_WINDOW`, so a session that runs a million
    short requests holds a constant-size state (:attr:`tracked_requests`).
    """

    FINISHED_WINDOW = 256
    """How many finished request ids are remembered (for "already ended" errors)."""

    def __init__(
        self,
        connection_id: str,
        *,
        capabilities: Sequence[str] = (),
        supported_sample_rates: Sequence[int] = SUPPORTED_SAMPLE_RATES,
        supported_audio_formats: Sequence[int] = (pb.AUDIO_FORMAT_PCM_S16LE, pb.AUDIO_FORMAT_OGG_OPUS),
        supports_egress: bool = False,
    ) -> None:
        self.connection_id = connection_id
        self.capabilities = tuple(capabilities)
        self.supported_sample_rates = tuple(supported_sample_rates)
        self.supported_audio_formats = tuple(supported_audio_formats)
        self.supports_egress = supports_egress
        self.state = ServerState.AWAITING_CONFIGURE
        self.sample_rate: int | None = None
        self.audio_format: int | None = None
        self.current_req_id: str | None = None  # the request whose audio is arriving
        self.last_req_id: str | None = None
        self._unfinished: dict[str, RequestPhase] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()

    # ------------------------------------------------------------------ requests

    @property
    def tracked_requests(self) -> int:
        """How many request ids this connection holds (unfinished plus the finished window)."""
        return len(self._unfinished) + len(self._finished)

    def phase(self, req_id: str) -> RequestPhase | None:
        """The phase of ``req_id``; None when unknown (never seen, or finished long ago)."""
        if req_id in self._unfinished:
            return self._unfinished[req_id]
        return RequestPhase.FINISHED if req_id in self._finished else None

    def _finish(self, req_id: str) -> None:
        self._unfinished.pop(req_id, None)
        if req_id == self.current_req_id:
            self.current_req_id = None
        _remember(self._finished, req_id, None, self.FINISHED_WINDOW)

    # ------------------------------------------------------------------ building

    def error(self, code: int, message: str, *, req_id: str = "") -> bytes:
        return build_server_error(code, message, connection_id=self.connection_id, req_id=req_id)

    def _violation(self, code: int, message: str, *, close: bool, req_id: str = "") -> ProtocolViolation:
        if close:
            self.state = ServerState.CLOSED
        return ProtocolViolation(self.error(code, message, req_id=req_id), message, close)

    def confirm(self) -> bytes:
        """The ServerConfirmSession message (after a :class:`SessionConfigured` event)."""
        if self.state is not ServerState.STREAMING:
            raise InvalidStateError(f"cannot confirm a session in state {self.state.value}")
        return build_confirm_session(self.connection_id, self.capabilities)

    def refuse(self, code: int, message: str) -> bytes:
        """A ServerError refusing the configured session (e.g. egress credentials the
        service cannot use); the connection is CLOSED, the caller sends it and closes."""
        self.state = ServerState.CLOSED
        return self.error(code, message)

    def animation(self, req_id: str, keyframes: np.ndarray, *, end: bool = False, avatar_id: str = "") -> bytes:
        """A ServerResponseAnimation with ``keyframes`` (none: an empty control frame,
        without an animation payload); with ``end`` the request becomes FINISHED."""
        if end:
            self._finish(req_id)
        return _wire.encode_animation_message(
            keyframes, connection_id=self.connection_id, req_id=req_id, end=end, avatar_id=avatar_id
        )

    def playback_state(self, req_id: str, state: PlaybackState, *, played_ms: int = 0, reason: str = "") -> bytes:
        """A ServerPlaybackState for ``req_id``."""
        return build_playback_state(
            state, connection_id=self.connection_id, req_id=req_id, played_ms=played_ms, reason=reason
        )

    # ------------------------------------------------------------------ receiving

    def receive(self, data: Any) -> ServerEvent:
        if self.state is ServerState.CLOSED:
            raise InvalidStateError("cannot receive on a closed session")
        handshake = self.state is ServerState.AWAITING_CONFIGURE
        # before the handshake completes, errors carry code 0 so clients read the phrase
        bad_input = ServerErrorCode.OK if handshake else ServerErrorCode.INVALID_ARGUMENT
        if isinstance(data, str):
            return self._violation(
                bad_input,
                "unexpected message type: text frame; send one binary protobuf Message per frame",
                close=handshake,
            )
        try:
            msg = _wire.decode_message(data)
        except ValueError as exc:
            return self._violation(
                bad_input,
                f"failed to unmarshal {'initial ' if handshake else ''}message: {exc}",
                close=handshake,
            )
        if handshake:
            return self._configure(msg, data)
        if msg.type == MessageType.CLIENT_AUDIO_INPUT and msg.data_field in _AUDIO_MEMBERS:
            return self._audio(msg)
        if msg.type == MessageType.CLIENT_INTERRUPT:
            return self._interrupt(msg.req_id or self.last_req_id or "")
        if msg.type in (MessageType.CLIENT_PAUSE, MessageType.CLIENT_RESUME):
            return PlaybackControlRequested(MessageType(msg.type), msg.req_id)
        return self._violation(ServerErrorCode.OK, f"unexpected message type {msg.type}", close=False)

    def _configure(self, msg: Any, data: Any) -> ServerEvent:
        if msg.type != MessageType.CLIENT_CONFIGURE_SESSION or msg.data_field != OneofField.CLIENT_CONFIGURE_SESSION:
            return self._violation(
                ServerErrorCode.OK, f"expected ClientConfigureSession message, got message type {msg.type}", close=True
            )
        if msg.sample_rate not in self.supported_sample_rates:
            return self._violation(ServerErrorCode.OK, f"unsupported sample rate: {msg.sample_rate}", close=True)
        if msg.audio_format not in self.supported_audio_formats:
            known = msg.audio_format in pb.AudioFormat.values()
            name = pb.AudioFormat.Name(msg.audio_format) if known else str(msg.audio_format)
            return self._violation(ServerErrorCode.OK, f"unsupported audio format: {name}", close=True)
        egress = None
        if msg.egress_type != pb.EGRESS_TYPE_UNSPECIFIED:
            if not self.supports_egress:
                return self._violation(
                    ServerErrorCode.UNAVAILABLE, "egress client is not configured on server", close=True
                )
            # the egress sub-messages are read once per session, by the protobuf library
            # (which also checks their strings are UTF-8)
            try:
                cfg = pb.Message.FromString(bytes(data)).client_configure_session
            except DecodeError as exc:
                return self._violation(
                    ServerErrorCode.INVALID_ARGUMENT,
                    f"failed to unmarshal initial message: invalid egress configuration ({exc})",
                    close=True,
                )
            if msg.egress_type == pb.EGRESS_TYPE_LIVEKIT and cfg.HasField("livekit_egress"):
                egress = cfg.livekit_egress
            elif msg.egress_type == pb.EGRESS_TYPE_AGORA and cfg.HasField("agora_egress"):
                egress = cfg.agora_egress
            else:
                field = "livekit_egress" if msg.egress_type == pb.EGRESS_TYPE_LIVEKIT else "agora_egress"
                return self._violation(
                    ServerErrorCode.INVALID_ARGUMENT, f"{field} is required for egress_type {msg.egress_type}", close=True
                )
        self.sample_rate = msg.sample_rate
        self.audio_format = msg.audio_format
        self.state = ServerState.STREAMING
        return SessionConfigured(msg.sample_rate, msg.bitrate, msg.audio_format, msg.egress_type, egress)

    def _audio(self, msg: Any) -> ServerEvent:
        req_id = msg.req_id
        if not req_id:
            return self._violation(ServerErrorCode.INVALID_ARGUMENT, "audio input without req_id", close=False)
        if self.audio_format == pb.AUDIO_FORMAT_PCM_S16LE and len(msg.audio) % 2:
            return self._violation(
                ServerErrorCode.INVALID_ARGUMENT,
                f"audio chunk has {len(msg.audio)} bytes, an odd number; s16le needs 2 bytes per sample",
                close=False,
                req_id=req_id,
            )
        phase = self.phase(req_id)
        if phase is RequestPhase.ENDED or phase is RequestPhase.FINISHED:
            return self._violation(
                ServerErrorCode.INVALID_ARGUMENT,
                f"req_id {req_id} already ended; start a new request id",
                close=False,
                req_id=req_id,
            )
        new = req_id != self.current_req_id
        preempted = self.current_req_id if new else None
        if preempted is not None:
            self._unfinished[preempted] = RequestPhase.ENDED
        self.current_req_id = req_id
        self.last_req_id = req_id
        if msg.end:
            self._unfinished[req_id] = RequestPhase.ENDED
            self.current_req_id = None
        else:
            self._unfinished[req_id] = RequestPhase.STREAMING
        return AudioReceived(req_id, msg.audio, msg.end, new, preempted)

    def _interrupt(self, req_id: str) -> InterruptRequested:
        phase = self.phase(req_id) if req_id else None
        if phase is None or phase is RequestPhase.FINISHED:
            return InterruptRequested(req_id)
        streaming = phase is RequestPhase.STREAMING
        if streaming:
            self.current_req_id = None
            self._unfinished[req_id] = RequestPhase.ENDED
        return InterruptRequested(req_id, streaming=streaming, pending=True)

    def close(self) -> None:
        self.state = ServerState.CLOSED
