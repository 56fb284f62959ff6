"""Replay: answer a client with a capture's server messages, timed as they were.

Every recorded server message is anchored to what the client sent and an offset: an
animation message to the audio that completes the frame of its last keyframe (so many
samples of its request, as the local service times its own keyframes), anything else
(the confirm, errors, playback states, end frames without keyframes) to the latest
client message before it; the offset is the time between the two as they crossed the
proxy. Replaying, the service sends each message that long after the client's chunk
that completes the same audio (the 130 ms a keyframe came after the chunk completing
its frame, it comes again after that chunk, whatever the client's chunk size; after
the end of the request if the client sends less), or after the client's message in the
recorded one's position, in the recorded order; the recorded close, if the service
closed, follows likewise. Request ids are mapped: the recording's n-th request is
answered with the client's n-th request id. A client that sends other messages than
the recorded one (an interrupt elsewhere, more requests) gets what is anchored to them
at other times, or not at all.
"""

from __future__ import annotations

import asyncio
import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _wire
from ..proto import message_pb2 as pb
from ..protocol import AudioReceived, MessageType, ProtocolViolation, SessionConfigured
from .fileformat import Capture, read_capture

__all__ = ["Replay", "ReplayMixin"]

_REQ_FIELDS = ("server_response_animation", "server_error", "server_playback_state")


@dataclass(frozen=True)
class _Item:
    anchor: int  # position of the client message it follows (0: the ClientConfigureSession)
    offset: float  # seconds after that message
    data: bytes | str  # as recorded
    request: int | None  # ordinal of the recorded request it names (for the req_id mapping)
    message: Any = None  # the parsed Message, for rewriting its req_id
    close: tuple[int | None, str] | None = None  # a close (code, reason) instead of a message
    need: int | None = None  # keyframes: the samples of its request that complete its last frame


class Replay:
    """A capture prepared for replay (``LocalService(replay=...)`` takes a path, a
    :class:`~avatar_nb.tap.Capture` or one of these)."""

    def __init__(self, capture: Capture | str | Path) -> None:
        if not isinstance(capture, Capture):
            capture = read_capture(capture)
        self.capture = capture
        self.sample_rate, self.ogg = 16000, False
        configure = next((m for m in capture.messages if m.direction == "client" and not m.text), None)
        if configure is not None:
            try:
                msg = _wire.decode_message(configure.data)
                self.sample_rate = int(msg.sample_rate) or 16000
                self.ogg = msg.audio_format == pb.AUDIO_FORMAT_OGG_OPUS
            except ValueError:
                pass
        self.items = self._plan(capture)

    @classmethod
    def of(cls, value: Any) -> Replay:
        return value if isinstance(value, Replay) else cls(value)

    def session_class(self, base: type) -> type:
        """The ingress session class that answers from this capture: ``base`` (the
        service's :class:`~avatar_nb.server.ingress.IngressSession`) with the replay's
        receiving and sending (passed in, so this module does not import the server)."""
        cls = _CLASSES.get(base)
        if cls is None:
            cls = _CLASSES[base] = type("ReplaySession", (ReplayMixin, base), {})
        return cls

    @property
    def app_id(self) -> str:
        return self.capture.app_id

    @property
    def avatar_id(self) -> str:
        return self.capture.avatar_id

    def __repr__(self) -> str:
        return f"<Replay {self.capture.path.name}: {len(self.items)} server messages>"

    # ------------------------------------------------------------------ planning

    @staticmethod
    def _plan(capture: Capture) -> list[_Item]:
        messages = sorted(capture.messages, key=lambda m: m.t)
        client = [m for m in messages if m.direction == "client"]
        client_t = [m.t for m in client]
        requests: dict[str, int] = {}  # recorded req_id -> ordinal
        chunks: dict[str, list[tuple[int, int]]] = {}  # req_id -> (client position, cumulative samples)
        fps, rate, ogg = 25.0, 16000, False
        decoders: dict[str, Any] = {}
        for pos, m in enumerate(client):
            if m.text:
                continue
            try:
                msg = _wire.decode_message(m.data)
            except ValueError:
                continue
            if msg.type == MessageType.CLIENT_CONFIGURE_SESSION:
                rate = int(msg.sample_rate) or rate
                ogg = msg.audio_format == pb.AUDIO_FORMAT_OGG_OPUS
            elif msg.type == MessageType.CLIENT_AUDIO_INPUT:
                requests.setdefault(msg.req_id, len(requests))
                n = _samples(decoders, msg.req_id, msg.audio, bool(msg.end), rate) if ogg else len(msg.audio) // 2
                lst = chunks.setdefault(msg.req_id, [])
                lst.append((pos, (lst[-1][1] if lst else 0) + n))
        keyframes_seen: dict[str, int] = {}
        items: list[_Item] = []
        for m in messages:
            if m.direction != "server":
                continue
            latest = max(0, bisect.bisect_right(client_t, m.t) - 1)
            anchor, parsed, request, need = latest, None, None, None
            if not m.text:
                try:
                    parsed = pb.Message.FromString(bytes(m.data))
                except Exception:  # noqa: BLE001 - replayed as recorded, unmapped
                    parsed = None
            if parsed is not None:
                which = parsed.WhichOneof("data")
                if which == "server_confirm_session":
                    fps = _fps(parsed.server_confirm_session.capabilities, fps)
                if which in _REQ_FIELDS:
                    req_id = getattr(parsed, which).req_id
                    request = requests.get(req_id)
                if which == "server_response_animation":
                    anim = parsed.server_response_animation
                    decoded = _wire.decode_message(m.data)
                    n = int(decoded.keyframes.shape[0])
                    if n:
                        done = keyframes_seen.get(anim.req_id, 0) + n
                        keyframes_seen[anim.req_id] = done
                        samples = int(np.ceil(done * rate / fps - 1e-9))
                        sent = chunks.get(anim.req_id, [])
                        # the chunk completing the frame, or the request's last (its tail frames)
                        pos = next((p for p, cumulative in sent if cumulative >= samples), sent[-1][0] if sent else None)
                        if pos is not None and pos <= latest:  # sent after its audio: timed from it
                            anchor, need = pos, samples
            offset = max(0.0, m.t - client_t[anchor]) if client_t else 0.0
            items.append(_Item(anchor, offset, m.data, request, parsed, need=need))
        server_closes = [c for c in capture.closes if c.get("by") in ("server", "proxy")]
        client_closed_first = bool(capture.closes) and capture.closes[0].get("by") == "client"
        if server_closes and not client_closed_first:
            close = server_closes[0]
            t = float(close.get("t") or 0.0)
            latest = max(0, bisect.bisect_right(client_t, t) - 1)
            offset = max(0.0, t - client_t[latest]) if client_t else 0.0
            items.append(_Item(latest, offset, b"", None, None, close=(close.get("code"), str(close.get("reason") or ""))))
        return items


def _fps(capabilities: Any, default: float) -> float:
    for cap in capabilities:
        if cap.startswith("fps:"):
            try:
                return float(cap[4:]) or default
            except ValueError:
                pass
    return default


def _samples(decoders: dict[str, Any], req_id: str, audio: bytes, end: bool, rate: int) -> int:
    from ..opus import OggOpusDecoder, OggOpusError

    decoder = decoders.get(req_id)
    if decoder is False:
        return 0
    try:
        if decoder is None:
            decoder = decoders[req_id] = OggOpusDecoder(rate)
        n = len(decoder.feed(audio))
        if end:
            n += len(decoder.finish())
            decoders.pop(req_id, None)
    except OggOpusError:
        decoders[req_id] = False
        return 0
    return n // 2


_CLASSES: dict[type, type] = {}


class ReplayMixin:
    """What makes an ingress session answer from a capture instead of the animator
    (mixed into the service's session class by :meth:`Replay.session_class`)."""

    # the ingress session's attributes and methods this relies on
    state: Any
    ws: Any
    loop: asyncio.AbstractEventLoop
    protocol: Any
    closing: bool
    animator: Any
    sample_rate: int
    last_audio: float
    _spawn: Any
    _send: Any
    close: Any
    abort: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self.replay: Replay = self.state.replay
        self.arrivals: list[float] = []  # loop time each client message arrived
        self.requests: list[str] = []  # the client's request ids, in order
        self.progress: list[list[tuple[int, float]]] = []  # per request: (samples so far, arrival)
        self.finished: set[int] = set()  # requests whose end chunk arrived
        self._decoders: dict[str, Any] = {}
        self._arrived = asyncio.Event()
        self._spawn(self._play())

    async def _on_message(self, data: bytes | str) -> None:
        now = self.loop.time()
        event = self.protocol.receive(data)
        self.arrivals.append(now)
        self._arrived.set()
        if isinstance(event, SessionConfigured):
            self.animator = True  # type: ignore[assignment]  # configured: the handshake timer is satisfied
            self.sample_rate = event.sample_rate
            self.last_audio = now
        elif isinstance(event, AudioReceived):
            self.last_audio = now
            if event.req_id and event.req_id not in self.requests:
                self.requests.append(event.req_id)
                self.progress.append([])
            if event.req_id:
                r = self.requests.index(event.req_id)
                if self.replay.ogg:
                    n = _samples(self._decoders, event.req_id, event.audio, event.end, self.replay.sample_rate)
                else:
                    n = len(event.audio) // 2
                done = self.progress[r][-1][0] if self.progress[r] else 0
                self.progress[r].append((done + n, now))
                if event.end:
                    self.finished.add(r)
        elif isinstance(event, ProtocolViolation):
            self.state.stats.protocol_errors += 1
            if event.close:
                await self.close(1008, "protocol error", reply=event.reply)
            else:
                await self._send(event.reply)

    async def _play(self) -> None:
        for item in self.replay.items:
            while (anchor := self._anchor_time(item)) is None:
                self._arrived.clear()
                await self._arrived.wait()
                if self.closing:
                    return
            delay = anchor + item.offset - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.closing:
                return
            if item.close is not None:
                code, reason = item.close
                if code is None or code in (1005, 1006, 1015):
                    self.abort()
                else:
                    await self.close(int(code), reason)
                return
            data = self._mapped(item)
            if isinstance(data, str):
                await self.ws.send_str(data)
            else:
                await self._send(data)

    def _anchor_time(self, item: _Item) -> float | None:
        """When the client message ``item`` is timed from arrived; None while it has not.
        Keyframes: the client's chunk that completed their frame's audio (or the end of
        its request, if it sent less); anything else: the client's message in the
        recorded one's position."""
        if item.need is not None and item.request is not None:
            if item.request < len(self.progress):
                for samples, arrived in self.progress[item.request]:
                    if samples >= item.need:
                        return arrived
                if item.request in self.finished and self.progress[item.request]:
                    return self.progress[item.request][-1][1]
            return None
        return self.arrivals[item.anchor] if item.anchor < len(self.arrivals) else None

    def _mapped(self, item: _Item) -> bytes | str:
        if item.request is None or item.message is None or item.request >= len(self.requests):
            return item.data
        which = item.message.WhichOneof("data")
        target = self.requests[item.request]
        if getattr(item.message, which).req_id == target:
            return item.data
        msg = pb.Message()
        msg.CopyFrom(item.message)
        getattr(msg, which).req_id = target
        return msg.SerializeToString()
