"""The send path of :class:`~avatar_nb.session.AvatarSession`: the time origin, one
bounded send, ``send_audio()``, the paced ``stream()`` (PCM or Ogg Opus), ``interrupt()``,
``pause()`` and ``resume()``. The connection's state lives in the session (a mixin)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from . import pacing as _pacing
from ._session_transport import _closed_error
from .errors import AvatarSDKError, AvatarSDKErrorCode, InvalidStateError
from .pacing import DEFAULT_CHUNK_MS, Pacing, pacing_from_realtime
from .protocol import ClientState, MessageType, RequestStatus, check_pcm_chunk

if TYPE_CHECKING:
    from .config import SessionConfig
    from .protocol import ClientConnection
    from .timeline import Timeline

_FAST_YIELD_S = 0.001  # a "fast" stream() yields to the event loop at least this often


class _SendPath:
    """What :class:`~avatar_nb.session.AvatarSession` sends, and when."""

    _config: SessionConfig
    _protocol: ClientConnection
    _timeline: Timeline
    _ws: Any
    _ogg: bool
    _encoder: tuple[str, Any] | None
    _closing: bool
    _close_error: AvatarSDKError | None
    _t0: float | None
    _started_at: float | None
    _sends_waiting: int  # sends not returned yet (a send waits only while the socket's buffer is full)
    _send_since: float  # when the waiting began, or when the last of several got through
    _send_action: str
    _send_req_id: str | None
    _watchdog: asyncio.TimerHandle | None

    # ------------------------------------------------------------------ sending

    def _require_open(self, action: str) -> Any:
        if self._ws is None or self._protocol.state is not ClientState.OPEN or self._closing:
            if self._close_error is not None:
                raise AvatarSDKError(
                    self._close_error.code,
                    f"cannot {action}: the connection is closed ({self._close_error.message})",
                    phase="websocket_send",
                    close_code=self._close_error.close_code,
                )
            raise InvalidStateError(f"cannot {action}: the session is not started or already closed")
        return self._ws

    @property
    def time_origin(self) -> float | None:
        """The monotonic time (s) that the Timeline's send and arrival times count from:
        the start of streaming (the first ``stream()`` or ``send_audio()``), or the moment
        given to :meth:`set_time_origin`; ``None`` before either."""
        return self._t0

    def set_time_origin(self, at: float) -> None:
        """Count the Timeline's times from ``at`` (a ``time.monotonic()`` value) instead of
        the first chunk sent: a live capture starts its clock when capture starts, before
        its first chunk can be sent. Only before any audio was sent."""
        if self._timeline.chunk_sent_at.size:
            raise InvalidStateError("the time origin can only be set before any audio is sent")
        self._t0 = float(at)

    def _elapsed(self, now: float | None = None) -> float:
        """Seconds since the origin (since ``start()`` when nothing was streamed yet)."""
        origin = self._t0 if self._t0 is not None else self._started_at
        now = time.monotonic() if now is None else now
        return now - origin if origin is not None else 0.0

    async def _send(
        self, ws: Any, data: bytes, *, action: str, req_id: str | None, now: float | None = None
    ) -> None:
        """Send one message, bounded by ``io_timeout`` without a timer of its own: a send
        only waits when the socket's buffer is full, and the connection's one watchdog
        (:meth:`_watch`) aborts the connection when sends have waited ``io_timeout`` with
        none getting through. ``now`` is the caller's ``time.monotonic()``, if it has one."""
        if not self._sends_waiting:
            self._send_since = time.monotonic() if now is None else now
        self._sends_waiting += 1
        self._send_action = action
        self._send_req_id = req_id
        if self._watchdog is None:
            self._arm_watchdog(self._send_since)
        failure: AvatarSDKError | None = None
        try:
            await ws.send(data)
        except ConnectionClosed as exc:
            failure = self._close_error or _closed_error(exc, phase="websocket_send", req_id=req_id)
        except OSError as exc:
            failure = AvatarSDKError(
                AvatarSDKErrorCode.connectionFailed, f"failed to {action}: {exc}", phase="websocket_send", req_id=req_id
            )
        finally:
            self._sends_waiting -= 1
            if self._sends_waiting:  # one got through: the others wait from now
                self._send_since = time.monotonic()
        if failure is None and self._close_error is not None:
            failure = self._close_error  # aborted while it waited: websockets returns without an error then
        if failure is not None:
            raise failure

    def _arm_watchdog(self, since: float) -> None:
        delay = since + self._config.io_timeout - time.monotonic()
        self._watchdog = asyncio.get_running_loop().call_later(max(0.0, delay), self._watch)

    def _watch(self) -> None:
        """The watchdog's turn: a send waiting for ``io_timeout`` with none getting through
        is a stalled peer (end the session); one waiting less is looked at again when its
        time is up; with none waiting the watchdog rests until the next send."""
        self._watchdog = None
        ws = self._ws
        if not self._sends_waiting or ws is None or self._close_error is not None:
            return
        if time.monotonic() - self._send_since >= self._config.io_timeout:
            self._stalled(ws, self._send_action, self._send_req_id)
        else:
            self._arm_watchdog(self._send_since)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _stalled(self, ws: Any, action: str, req_id: str | None) -> AvatarSDKError:
        """The peer took no data for ``io_timeout``: end the session (frames kept)."""
        error = AvatarSDKError(
            AvatarSDKErrorCode.connectionFailed,
            f"the server took no data for {self._config.io_timeout:g} s (io_timeout) while trying to {action}; "
            "the connection was aborted",
            phase="websocket_send",
            req_id=req_id,
        )
        if self._close_error is None:
            self._close_error = error
            self._timeline.add_error(str(error))
        ws.transport.abort()  # the read loop sees the connection gone and finishes the session
        return error

    async def send_audio(self, audio: bytes, end: bool = False) -> str:
        """Send one chunk of audio; return its request id.

        A PCM session takes mono s16le bytes (at most ``MAX_AUDIO_CHUNK_BYTES``); an
        ``ogg_opus`` session takes a slice of an Ogg Opus stream, cut anywhere, whose
        first slice in a request starts with an Ogg page, and an empty chunk with
        ``end=True`` ends the request. The request id of an utterance is made at its
        first chunk and kept until a chunk with ``end=True``. Raises ``TypeError`` or
        ``ValueError`` for audio that cannot be sent; nothing is sent then.

        The chunk is added to the Timeline with its send time and, for PCM, its
        samples. ``send_audio()`` records no pacing: when each chunk left was the
        caller's choice. A caller that sent as a microphone would (each chunk once it
        was captured) can say so with ``session.timeline.meta["pacing"] = "capture"``,
        which makes the pacing-dependent figures (lateness) apply.
        """
        ws = self._require_open("send audio")
        req_id, message = self._protocol.audio(audio, bool(end))  # validates, no copy
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now  # streaming starts with the first chunk sent
        sent_at = now - self._t0
        await self._send(ws, message, action="send audio", req_id=req_id, now=now)
        if self._ogg:
            self._timeline.add_audio_chunk(req_id, sent_at, 0)  # Ogg is not decoded here
        elif type(audio) is bytes:  # immutable: the Timeline may keep it without a copy
            self._timeline.add_audio_chunk(req_id, sent_at, len(audio) // 2, pcm=audio)
        else:
            view = memoryview(audio).cast("B")
            self._timeline.add_audio_chunk(req_id, sent_at, view.nbytes // 2, pcm=view)
        return req_id

    async def stream(
        self,
        pcm: bytes,
        *,
        chunk_ms: float = DEFAULT_CHUNK_MS,
        pacing: Pacing | None = None,
        realtime: bool | None = None,
        end: bool = True,
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> str:
        """Send a stretch of mono s16le PCM as one utterance in ``chunk_ms`` chunks; return its request id.

        ``pacing`` (see :mod:`avatar_nb.pacing`): ``"capture"`` sends chunk ``i`` of
        ``d`` seconds when its last sample would have been captured, ``(i + 1) * d``
        after this call started; ``"playback"`` when its audio starts, ``i * d``;
        ``"fast"`` as fast as the connection takes them, yielding to the event loop
        about once a millisecond (so arrivals meanwhile are stamped at most about that
        late, and other tasks run). The schedule runs on the
        monotonic clock from the start, so no drift builds up. ``realtime`` is the older
        flag: ``False`` means ``"fast"``, ``True`` the default pacing; ``pacing`` wins.
        The mode and ``chunk_ms`` are recorded in ``timeline.meta``.

        On an ``ogg_opus`` session the PCM is encoded to Ogg Opus (bitrate from
        ``config.bitrate``, 0 for the encoder's default) before the first chunk leaves,
        chunk by chunk, and each chunk's bytes leave at that chunk's time; a request
        continued over several calls (``end=False``) is one Ogg stream.

        ``on_chunk(index, total)`` is called after each chunk. An ``interrupt()`` while
        this runs stops it: the remaining chunks are not sent. Every chunk is added to
        the Timeline with its send time and samples.
        """
        mode = pacing_from_realtime(realtime, pacing)
        chunk_bytes = _pacing.chunk_bytes(chunk_ms, self._config.sample_rate)
        ws = self._require_open("send audio")
        payloads: list[bytes | None]
        if self._ogg:
            n_bytes = check_pcm_chunk(pcm, "pcm", one_message=False)
            req_id, payloads = self._encode_ogg(pcm, n_bytes, chunk_bytes, end)
        else:
            req_id, messages = self._protocol.audio_messages(pcm, chunk_bytes, end=end)  # validates pcm
            payloads, n_bytes = list(messages), memoryview(pcm).nbytes
        start = time.monotonic()
        if self._t0 is None:
            self._t0 = start
        t0 = self._t0
        self._record_pacing(mode, float(chunk_ms))
        view = memoryview(pcm).cast("B") if n_bytes else memoryview(b"")
        rate = self._config.sample_rate
        samples_per_chunk = chunk_bytes // 2
        total_samples = n_bytes // 2
        total = len(payloads)
        yielded = start
        monotonic = time.monotonic
        for index, payload in enumerate(payloads):
            first = index * samples_per_chunk
            n = max(0, min(samples_per_chunk, total_samples - first))
            offset = _pacing.send_offset(mode, first, n, rate)
            if offset is not None:
                delay = start + offset - monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif monotonic() - yielded >= _FAST_YIELD_S or not index:
                # let the read loop take arrivals (stamped at most this late) and other tasks run
                await asyncio.sleep(0)
                yielded = monotonic()
            if self._protocol.status(req_id) is RequestStatus.INTERRUPTED:
                break  # interrupted while streaming: the rest of the utterance is dropped
            ws = self._require_open("send audio")
            now = monotonic()
            sent_at = now - t0
            if payload is not None:
                await self._send(ws, payload, action="send audio", req_id=req_id, now=now)
            self._timeline.add_audio_chunk(req_id, sent_at, n, pcm=view[first * 2 : (first + n) * 2])
            if on_chunk is not None:
                on_chunk(index, total)
        return req_id

    def _encode_ogg(self, pcm: Any, n_bytes: int, chunk_bytes: int, end: bool) -> tuple[str, list[bytes | None]]:
        """The messages of ``pcm`` as Ogg Opus, one per PCM chunk (None where the encoder
        made no bytes for a chunk), encoded before anything is sent so that encoding
        does not run between timed sends."""
        from .opus import OggOpusEncoder

        req_id = self._protocol.open_request()
        if self._encoder is None or self._encoder[0] != req_id:
            self._encoder = (req_id, OggOpusEncoder(self._config.sample_rate, bitrate=self._config.bitrate))
        encoder = self._encoder[1]
        view = memoryview(pcm).cast("B") if n_bytes else memoryview(b"")
        starts = list(range(0, n_bytes, chunk_bytes)) or [0]
        encoded: list[bytes] = []
        for i, a in enumerate(starts):
            data = encoder.encode(bytes(view[a : a + chunk_bytes]))
            if end and i == len(starts) - 1:
                data += encoder.flush()
                self._encoder = None
            encoded.append(data)
        messages: list[bytes | None] = []
        for i, data in enumerate(encoded):
            last = end and i == len(encoded) - 1
            if data or last:
                messages.append(self._protocol.audio(data, last)[1])
            else:
                messages.append(None)
        return req_id, messages

    def _record_pacing(self, mode: str, chunk_ms: float) -> None:
        """Record the pacing of the stream() calls in the Timeline's metadata; calls
        with different modes leave ``pacing`` None (no one mode describes the run)."""
        meta = self._timeline.meta
        for key, value in (("pacing", mode), ("chunk_ms", chunk_ms)):
            meta[key] = None if key in meta and meta[key] != value else value

    async def interrupt(self) -> str:
        """Stop generation for the latest request; return its request id.

        The request's status becomes ``interrupted`` in the Timeline (unless it had
        already finished). A server that declared ``playback_state`` answers with an
        INTERRUPTED playback state (``on_playback_state``).
        """
        ws = self._require_open("interrupt")
        req_id, message = self._protocol.interrupt()
        if self._encoder is not None and self._encoder[0] == req_id:
            self._encoder = None
        if self._protocol.is_pending(req_id):
            self._timeline.set_request_status(req_id, RequestStatus.INTERRUPTED.value, at=self._elapsed())
        await self._send(ws, message, action="send interrupt", req_id=req_id)
        return req_id

    async def pause(self) -> str:
        """Pause playback of the latest request (egress or playout mode, ``playback_control`` capability).

        A server that declared ``playback_state`` answers with the state after the
        pause (PAUSED) through ``on_playback_state``; a pause held past the server's
        limit ends in INTERRUPTED with reason ``pause_timeout`` (drop the request, do
        not resume it).
        """
        ws = self._require_open("pause")
        req_id, message = self._protocol.playback_control(MessageType.CLIENT_PAUSE)
        await self._send(ws, message, action="send pause", req_id=req_id)
        return req_id

    async def resume(self) -> str:
        """Resume the paused request; the server answers with PLAYING (``on_playback_state``)."""
        ws = self._require_open("resume")
        req_id, message = self._protocol.playback_control(MessageType.CLIENT_RESUME)
        await self._send(ws, message, action="send resume", req_id=req_id)
        return req_id
