"""A capture as the Timeline the client's session would have built.

:func:`load_capture` drives the session's own Timeline-filling code
(:class:`~avatar_nb.session.AvatarSession`'s receive path and its
:class:`~avatar_nb.protocol.ClientConnection`) with the recorded messages, in the
order and at the times they crossed the proxy: server messages go through the same
``_take`` as the session's read loop, with the proxy's clock as their arrival; the
client's audio is recorded as ``send_audio()`` records it (PCM as sent; Ogg Opus
decoded with :class:`avatar_nb.opus.OggOpusDecoder`, each chunk with the samples its
pages completed), with the proxy's clock as its send time. Times count from the first
audio message (the session's origin), so latencies are those the client saw, less the
two loopback hops through the proxy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import _wire
from ..config import AudioFormat, SessionConfig
from ..errors import AvatarSDKError
from ..proto import message_pb2 as pb
from ..protocol import ClientConnection, ClientState, MessageType
from ..session import AvatarSession
from ..timeline import Timeline
from .fileformat import CAPTURE_SUFFIX, Capture, read_capture

__all__ = ["capture_conditions", "load_capture"]

_FORMAT_NAMES = {pb.AUDIO_FORMAT_PCM_S16LE: "pcm_s16le", pb.AUDIO_FORMAT_OGG_OPUS: "ogg_opus"}
_EGRESS_NAMES = {pb.EGRESS_TYPE_UNSPECIFIED: "none", pb.EGRESS_TYPE_LIVEKIT: "livekit", pb.EGRESS_TYPE_AGORA: "agora"}


def load_capture(path: str | Path | Capture, *, partial: bool = False) -> Any:
    """The :class:`~avatar_nb.Timeline` of a captured session; for a folder, a list of
    them (its ``*.anbcap`` files, by name).

    ``ValueError`` naming the file and the message index for a capture that is corrupt,
    cut inside a record (``partial=True`` reads up to the last whole one), of another
    format version, or whose messages are not a session (no ClientConfigureSession
    first). A capture of a killed proxy reads up to its last message; the requests left
    open get the status a session gives them when its connection drops.
    """
    if not isinstance(path, Capture) and Path(path).is_dir():
        return [load_capture(p, partial=partial) for p in sorted(Path(path).glob(f"*{CAPTURE_SUFFIX}"))]
    capture = path if isinstance(path, Capture) else read_capture(path, partial=partial)
    return _Replayer(capture).run()


def capture_conditions(capture: Capture | str | Path) -> dict[str, Any]:
    """What a capture says about its session, as condition columns: ``app``,
    ``avatar``, ``sample_rate``, ``audio_format``, ``egress``, ``client`` (its
    User-Agent), ``capture`` (the file's name), ``close_code``, ``complete``."""
    if not isinstance(capture, Capture):
        capture = read_capture(capture)
    configure = _configure(capture)
    return {
        "app": capture.app_id,
        "avatar": capture.avatar_id,
        "sample_rate": int(configure.sample_rate) if configure is not None else None,
        "audio_format": _FORMAT_NAMES.get(configure.audio_format, str(configure.audio_format))
        if configure is not None else None,
        "egress": _EGRESS_NAMES.get(configure.egress_type, str(configure.egress_type)) if configure is not None else None,
        "client": str(capture.header.get("client") or ""),
        "capture": capture.path.name,
        "close_code": capture.close_code,
        "complete": capture.complete,
    }


def _configure(capture: Capture) -> Any:
    for message in capture.messages:
        if message.direction == "client":
            if message.text:
                return None
            try:
                msg = _wire.decode_message(message.data)
            except ValueError:
                return None
            return msg if msg.type == MessageType.CLIENT_CONFIGURE_SESSION else None
    return None


class _RecordedClient(ClientConnection):
    """The client's state machine, told what the recorded client sent (with its own
    request ids) instead of making the messages itself."""

    def sent_configure(self) -> None:
        self.state = ClientState.AWAITING_CONFIRM

    def sent_audio(self, req_id: str, n_bytes: int, end: bool) -> None:
        from .. import protocol as _protocol_pkg  # noqa: F401  (keeps the import graph explicit)
        from ..protocol.client import _Request

        if self.current_req_id is not None and self.current_req_id != req_id:
            self._ended_by_client(self.current_req_id)  # a new request ends the open one
        if req_id not in self._requests and self.current_req_id != req_id:
            self._requests[req_id] = _Request()
        self.current_req_id = self.last_req_id = req_id
        request = self._requests.get(req_id)
        if request is not None:
            request.bytes_sent += n_bytes
        if end:
            self._ended_by_client(req_id)

    def sent_interrupt(self, req_id: str) -> None:
        self.last_req_id = req_id or self.last_req_id
        if self.last_req_id:
            self.interrupt()


class _CaptureSession(AvatarSession):
    """A session whose clock is the capture's: ``_elapsed()`` without a time is the
    time of the record being replayed, not the wall clock."""

    _now: float = 0.0

    def _elapsed(self, now: float | None = None) -> float:
        return super()._elapsed(self._now if now is None else now)


class _Replayer:
    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.path = capture.path

    def _fail(self, index: int, problem: str) -> ValueError:
        return ValueError(f"{self.path}: message index {index}: {problem}")

    def run(self) -> Timeline:
        capture = self.capture
        messages = sorted(capture.messages, key=lambda m: m.t)  # stable: file order for ties
        configure = _configure(capture)
        if configure is None:
            first = next((m.index for m in capture.messages if m.direction == "client"), 0)
            if capture.status not in (None, 101):
                return self._refused()
            if not capture.messages:  # opened, then nothing (or the proxy stopped at once)
                return Timeline(meta={"source": "capture", "capture": capture.path.name,
                                      "app_id": capture.app_id, "avatar_id": capture.avatar_id})
            raise self._fail(first, "the first client message is not a ClientConfigureSession")
        audio_format = AudioFormat.OGG_OPUS if configure.audio_format == pb.AUDIO_FORMAT_OGG_OPUS else AudioFormat.PCM_S16LE
        errors: list[Exception] = []
        config = SessionConfig(
            avatar_id=capture.avatar_id,
            app_id=capture.app_id,
            sample_rate=int(configure.sample_rate),
            audio_format=audio_format,
            on_error=errors.append,
        )
        session = _CaptureSession(config)
        protocol = _RecordedClient(sample_rate=int(configure.sample_rate), audio_format=int(configure.audio_format))
        session._protocol = protocol
        # the session's start(): the WebSocket is open and the configure is about to leave
        session._started_at = next(m.t for m in messages if m.direction == "client")
        tl = session.timeline
        tl.meta.update(self._meta(configure))
        decoders: dict[str, Any] = {}
        configured = False
        for message in messages:
            session._now = message.t
            if message.direction == "client":
                if not configured:
                    configured = True
                    protocol.sent_configure()
                    continue
                self._client(session, protocol, message, decoders, audio_format)
            elif protocol.state is ClientState.AWAITING_CONFIRM:
                try:
                    protocol.receive(message.data)
                except AvatarSDKError as exc:  # the handshake was refused (or malformed)
                    tl.add_error(str(exc))
                    protocol.close()
                    continue
                tl.meta["connection_id"] = protocol.connection_id
                tl.meta["capabilities"] = list(protocol.capabilities)
                tl.fps = session.fps
            elif protocol.state is ClientState.OPEN:
                session._take(message.data, message.t)
        self._close(session, messages)
        return tl

    def _refused(self) -> Timeline:
        capture = self.capture
        tl = Timeline(meta={"source": "capture", "capture": capture.path.name, "status": capture.status})
        body = capture.upgrade.get("body") or ""
        tl.add_error(f"upgrade refused with HTTP {capture.status}: {body}".strip())
        return tl

    def _meta(self, configure: Any) -> dict[str, Any]:
        capture = self.capture
        return {
            "source": "capture",
            "capture": capture.path.name,
            "app_id": capture.app_id,
            "avatar_id": capture.avatar_id,
            "client": str(capture.header.get("client") or ""),
            "audio_format": _FORMAT_NAMES.get(configure.audio_format, str(configure.audio_format)),
            "egress": _EGRESS_NAMES.get(configure.egress_type, str(configure.egress_type)),
            "capture_complete": capture.complete,
            "close_code": capture.close_code,
        }

    def _client(self, session: _CaptureSession, protocol: _RecordedClient, message: Any,
                decoders: dict[str, Any], audio_format: AudioFormat) -> None:
        tl = session.timeline
        if message.text:
            tl.add_error(f"the client sent a text frame (message index {message.index})")
            return
        try:
            msg = _wire.decode_message(message.data)
        except ValueError as exc:
            tl.add_error(f"the client sent an invalid message (message index {message.index}): {exc}")
            return
        if msg.type == MessageType.CLIENT_AUDIO_INPUT:
            req_id, audio, end = msg.req_id, msg.audio, bool(msg.end)
            if session._t0 is None:
                session._t0 = message.t  # streaming starts with the first chunk sent
            sent_at = message.t - session._t0
            protocol.sent_audio(req_id, len(audio), end)
            if audio_format is AudioFormat.OGG_OPUS:
                pcm = self._decode_ogg(tl, decoders, req_id, audio, end, message.index)
            else:
                pcm = audio[: len(audio) - len(audio) % 2]
            tl.add_audio_chunk(req_id, sent_at, len(pcm) // 2, pcm=pcm)
        elif msg.type == MessageType.CLIENT_INTERRUPT:
            req_id = msg.req_id or protocol.last_req_id or ""
            protocol.sent_interrupt(req_id)
            if protocol.is_pending(req_id):
                tl.set_request_status(req_id, "interrupted", at=session._elapsed(message.t))

    def _decode_ogg(self, tl: Timeline, decoders: dict[str, Any], req_id: str, audio: bytes, end: bool,
                    index: int) -> bytes:
        from ..opus import OggOpusDecoder, OggOpusError

        decoder = decoders.get(req_id)
        if decoder is False:
            return b""
        if decoder is None:
            decoder = decoders[req_id] = OggOpusDecoder(tl.sample_rate or 16000)
        try:
            pcm = decoder.feed(audio)
            if end:
                pcm += decoder.finish()
                del decoders[req_id]
        except OggOpusError as exc:
            tl.add_error(f"request {req_id}: the Ogg Opus audio does not decode (message index {index}): {exc}")
            decoders[req_id] = False
            return b""
        return pcm

    def _close(self, session: _CaptureSession, messages: list[Any]) -> None:
        from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
        from websockets.frames import Close

        capture = self.capture
        closes = sorted(capture.closes, key=lambda c: c.get("t") or 0.0)
        session._now = closes[0]["t"] if closes else (messages[-1].t if messages else session._now)
        if closes and closes[0].get("by") == "client":
            session._closing = True  # the client closed: nothing to report, as in close()
        elif closes and session._protocol.state is ClientState.OPEN:
            code = closes[0].get("code")
            if code is None:
                exc: Exception = ConnectionClosedError(None, None)
            else:
                frame = Close(int(code), str(closes[0].get("reason") or ""))
                cls = ConnectionClosedOK if code in (1000, 1001) else ConnectionClosedError
                exc = cls(frame, None)
            session._on_connection_closed(exc)  # type: ignore[arg-type]
        # the session's own end of a connection (statuses of open requests, anomalies)
        coroutine = session._finish()
        try:
            coroutine.send(None)  # _finish never waits: one step runs it to the end
        except StopIteration:
            pass
        else:  # pragma: no cover - only if _finish ever starts awaiting
            coroutine.close()
            raise RuntimeError("AvatarSession._finish awaited; load_capture cannot drive it")
