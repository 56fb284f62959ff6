"""The client end of the protocol without I/O: :class:`ClientConnection` and the events
it returns. The asyncio client (:mod:`avatar_nb.session`) is a thin adapter around it."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Any, Union

import numpy as np

from .. import _wire
from ..errors import AvatarSDKError, AvatarSDKErrorCode, InvalidStateError
from ..events import InterruptReason
from ..logid import generate_log_id
from ..proto import message_pb2 as pb
from .messages import (
    DEFAULT_SAMPLE_RATE,
    MAX_AUDIO_CHUNK_BYTES,
    MessageType,
    RequestStatus,
    WirePlaybackState,
    _check_size,
    _remember,
    build_audio,
    build_configure_session,
    build_interrupt,
    build_playback_control,
    check_ogg_chunk,
    check_pcm_chunk,
    check_sample_rate,
    server_error_to_exception,
)

__all__ = [
    "ClientConnection",
    "ClientState",
    "ClientEvent",
    "SessionConfirmed",
    "AnimationReceived",
    "ServerErrorReceived",
    "PlaybackStateReceived",
    "UnknownMessage",
]

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


_ANIMATION = int(MessageType.SERVER_RESPONSE_ANIMATION)


def _animation_event(**fields: Any) -> AnimationReceived:
    """An :class:`AnimationReceived` with every field given, made without the frozen
    dataclass's ``object.__setattr__`` per field (the ten of them cost more than decoding
    the message). The instance is the same: frozen, equal, same repr."""
    event = object.__new__(AnimationReceived)
    event.__dict__.update(fields)
    return event


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
    state: WirePlaybackState
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
        if self.state is ClientState.OPEN and type(data) is bytes:  # the usual case, checked cheaply
            try:
                msg = _wire.decode_message(data)
            except ValueError as exc:
                raise AvatarSDKError(
                    AvatarSDKErrorCode.protocolError, f"invalid protobuf message: {exc}", phase="websocket_runtime"
                ) from None
            if msg.type == _ANIMATION:
                return self._animation(msg, data)
            return self._runtime_message(msg, data, "websocket_runtime")
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

        return self._runtime_message(msg, data, phase)

    def _runtime_message(self, msg: Any, data: Any, phase: str) -> ClientEvent:
        """The event of one decoded message in OPEN."""
        if msg.type == _ANIMATION:
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
        return _animation_event(
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
            state = WirePlaybackState(msg.playback_state)
        except ValueError:
            state = WirePlaybackState.UNSPECIFIED
        req_id = msg.req_id
        new: RequestStatus | None = None
        if state is WirePlaybackState.INTERRUPTED:
            new = RequestStatus.PREEMPTED if msg.reason == InterruptReason.PREEMPTED else RequestStatus.INTERRUPTED
        status: RequestStatus | None = None
        anomaly: str | None = None
        request = self._requests.get(req_id)
        if request is not None:
            if state is WirePlaybackState.PAUSED:
                request.paused = True
            elif state is WirePlaybackState.PLAYING:
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
        if self.state is not ClientState.OPEN:
            self._require(ClientState.OPEN, action="send audio")
        if type(audio) is bytes and self.audio_format == pb.AUDIO_FORMAT_PCM_S16LE:
            # the seed's per-chunk path: bytes need no view, and an even count encodes as one message
            n = len(audio)
            if n % 2 or n > MAX_AUDIO_CHUNK_BYTES or not n:
                check_pcm_chunk(audio)  # raises the error that names the problem, or passes an empty chunk
            req_id = self.current_req_id or self.open_request()
            message = _wire.encode_audio_messages(audio, req_id, n, end=bool(end))[0] if n else build_audio(
                req_id, audio, bool(end)
            )
            self._requests[req_id].bytes_sent += n
            if end:
                self._ended_by_client(req_id)
            return req_id, message
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
