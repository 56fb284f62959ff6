"""The service end of the protocol without I/O: :class:`ServerConnection` and the events
it returns. The embedded service (:mod:`avatar_nb.server`) is a thin adapter around it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Union

import numpy as np
from google.protobuf.message import DecodeError

from .. import _wire
from ..errors import InvalidStateError, ServerErrorCode
from ..proto import message_pb2 as pb
from .messages import (
    SUPPORTED_SAMPLE_RATES,
    MessageType,
    OneofField,
    WirePlaybackState,
    _remember,
    build_confirm_session,
    build_playback_state,
    build_server_error,
)

__all__ = [
    "ServerConnection",
    "ServerState",
    "ServerEvent",
    "RequestPhase",
    "SessionConfigured",
    "AudioReceived",
    "InterruptRequested",
    "PlaybackControlRequested",
    "ProtocolViolation",
]

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

    def playback_state(self, req_id: str, state: WirePlaybackState, *, played_ms: int = 0, reason: str = "") -> bytes:
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
