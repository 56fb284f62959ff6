"""AvatarSession: the asyncio client of the avatar service (the seed SDK's API).

``init()`` exchanges the API key for a session token over HTTP (aiohttp),
``start()`` opens the WebSocket (websockets) and performs the handshake, ``send_audio()``
and ``stream()`` send audio, a background read loop turns every server message into the
callbacks and into the session's :class:`~avatar_nb.timeline.Timeline`, and ``close()``
ends it all, calling ``on_close`` exactly once.

What each message means, and where each request is in its lifecycle, is decided by
:class:`avatar_nb.protocol.ClientConnection`; this module only moves bytes and keeps
time. Every wait on the peer is bounded: ``token_timeout`` for the token request and
for opening the WebSocket with its handshake, ``io_timeout`` for each send and for the
closing handshake. The client does not offer permessage-deflate (PCM and float
payloads barely compress, and deflating them is a large share of a client's CPU).

Times in the Timeline are seconds on the monotonic clock since the session's origin:
the moment streaming started (the first ``stream()`` or ``send_audio()`` call).
Arrival times are read first thing when a message comes out of the socket, before
it is decoded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from .config import AudioFormat, SessionConfig, config_from_kwargs
from .errors import (
    AvatarSDKError,
    AvatarSDKErrorCode,
    InvalidStateError,
    SessionTokenError,
    error_code_for_close_code,
)
from .events import PlaybackSignal, PlaybackStateEvent
from .events import PlaybackState as PublicPlaybackState
from .flame import DEFAULT_FPS
from .http_api import parse_token_response, redact, token_urls, upgrade_refusal_error, websocket_target
from . import pacing as _pacing
from .pacing import DEFAULT_CHUNK_MS, Pacing, pacing_from_realtime
from .proto import message_pb2 as pb
from .protocol import (
    AnimationReceived,
    ClientConnection,
    ClientState,
    MessageType,
    PlaybackStateReceived,
    RequestStatus,
    ServerErrorReceived,
    check_pcm_chunk,
    fps_from_capabilities,
)
from .timeline import Timeline

__all__ = ["AvatarSession", "new_avatar_session"]

logger = logging.getLogger("avatar_nb.session")


class _RedactingLogger(logging.LoggerAdapter):
    """The websockets library logs the request line and headers at DEBUG level: this
    adapter keeps the session key (query parameter or header) out of those records."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, "%s", redact(text), **kwargs)


_WS_LOGGER = _RedactingLogger(logging.getLogger("websockets.client"), {})
_DEFAULT_TOKEN_LIFETIME = timedelta(minutes=5)
_MAX_MESSAGE = 64 * 1024 * 1024
_AUDIO_FORMATS = {AudioFormat.PCM_S16LE: pb.AUDIO_FORMAT_PCM_S16LE, AudioFormat.OGG_OPUS: pb.AUDIO_FORMAT_OGG_OPUS}
_HANDSHAKE_CLOSE_TIMEOUT = 1.0  # seconds; a server that refused the handshake closes at once
_READ_LOOP_GRACE = 1.0  # after the connection is gone, the read loop ends within a loop turn or two


class AvatarSession:
    """One session with the avatar service. Single use: after ``close()`` make a new one.

    Beyond the seed's API: ``interrupt()``, ``pause()``/``resume()``, ``stream()`` (a
    whole clip, paced), ``wait_for_end()``, ``async with``, and the properties
    ``connection_id``, ``capabilities``, ``fps``, ``timeline`` (filled as frames arrive,
    with the audio sent; it survives a dropped connection) and ``closed``. Pass
    ``timeline`` to have the session fill a Timeline that a live view already watches.
    """

    def __init__(self, config: SessionConfig, *, timeline: Timeline | None = None) -> None:
        if not isinstance(config, SessionConfig):
            raise TypeError(f"config must be a SessionConfig, got {type(config).__name__}")
        self._config = config
        self._token: str | None = None
        self._ws: Any = None
        self._protocol = ClientConnection(
            sample_rate=config.sample_rate,
            bitrate=config.bitrate,
            audio_format=_AUDIO_FORMATS[config.audio_format],
            livekit_egress=config.livekit_egress,
            agora_egress=config.agora_egress,
        )
        self._ogg = config.audio_format is AudioFormat.OGG_OPUS
        self._encoder: tuple[str, Any] | None = None  # (req_id, OggOpusEncoder) of the open Ogg request
        self._read_task: asyncio.Task[None] | None = None
        self._closing = False
        self._close_notified = False
        self._close_error: AvatarSDKError | None = None  # why the connection failed (raised on later sends)
        self._peer_close: AvatarSDKError | None = None  # a clean close by the server, for pending waiters
        self._t0: float | None = None
        self._started_at: float | None = None
        self._end_waiters: dict[str, list[asyncio.Future[None]]] = {}
        if timeline is None:
            timeline = Timeline(config.fps or DEFAULT_FPS, sample_rate=config.sample_rate)
        elif timeline.n_keyframes or len(timeline.req_ids):
            raise ValueError("timeline must be empty: the session fills it")
        else:
            timeline.sample_rate = config.sample_rate
            if config.fps:
                timeline.fps = float(config.fps)
        self._timeline = timeline

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> SessionConfig:
        return self._config

    @property
    def connection_id(self) -> str | None:
        """The id the server gave this connection (after ``start()``)."""
        return self._protocol.connection_id

    @property
    def capabilities(self) -> tuple[str, ...]:
        """Capabilities the server declared at the handshake (e.g. ``fps:25``)."""
        return self._protocol.capabilities

    @property
    def fps(self) -> float:
        """Keyframe rate: ``config.fps``, else the server's ``fps:<n>`` capability, else 25."""
        return self._config.fps or fps_from_capabilities(self._protocol.capabilities)

    @property
    def timeline(self) -> Timeline:
        """Everything received so far, and the audio sent, as a Timeline."""
        return self._timeline

    @property
    def closed(self) -> bool:
        return self._closing or self._protocol.state is ClientState.CLOSED

    @property
    def current_req_id(self) -> str | None:
        return self._protocol.current_req_id

    @property
    def last_req_id(self) -> str | None:
        return self._protocol.last_req_id

    def __repr__(self) -> str:
        state = "closed" if self.closed else self._protocol.state.value
        cid = f" connection_id={self.connection_id!r}" if self.connection_id else ""
        return f"<AvatarSession avatar_id={self._config.avatar_id!r} state={state}{cid}>"

    # ------------------------------------------------------------------ init

    async def init(self) -> None:
        """Get a session token from the console.

        Asks ``{root}/v1/auth/session-token`` first and, if that route answers 404,
        ``{root}/v1/console/session-tokens`` once (the root is the console URL without a
        trailing ``/v1/console``; docs/protocol.md, "Session token"). Raises ``ValueError``
        for missing configuration (before any request) and :class:`SessionTokenError`
        when the console refuses, does not answer within ``config.token_timeout`` (both
        requests together), or answers something that is not a token. No error carries
        the API key, in its text, attributes or causes.
        """
        config = self._config.validate()
        if self.closed:
            raise InvalidStateError("this session is closed; create a new one")
        console, _ = config.endpoints()
        primary, fallback = token_urls(console)
        expire_at = config.expire_at or datetime.now(timezone.utc) + _DEFAULT_TOKEN_LIFETIME
        payload = {"expireAt": int(expire_at.timestamp())}
        headers = {"X-Api-Key": config.api_key, "Content-Type": "application/json"}
        url = primary
        failure: SessionTokenError | None = None
        try:
            async with asyncio.timeout(config.token_timeout):
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=config.token_timeout)) as http:
                    status, body = await _post(http, url, payload, headers)
                    if status == 404:
                        url = fallback
                        status, body = await _post(http, url, payload, headers)
        except TimeoutError:
            failure = SessionTokenError(
                f"session token request to {url} timed out after {config.token_timeout:g} s",
                code=AvatarSDKErrorCode.connectionFailed,
            )
        except aiohttp.ClientError as exc:
            # made here, raised below: the aiohttp error holds the request's headers
            # (X-Api-Key), so it must be neither the cause nor the context
            failure = SessionTokenError(
                f"session token request to {url} failed: {_describe(exc)}",
                code=AvatarSDKErrorCode.connectionFailed,
            )
        if failure is not None:
            raise failure
        try:
            self._token = parse_token_response(status, body)
        except SessionTokenError as exc:
            failure = _scrub(exc, config.api_key)
        if failure is not None:
            raise failure

    # ------------------------------------------------------------------ start

    async def start(self) -> str:
        """Open the WebSocket, perform the handshake, start the read loop; return the connection id.

        Opening the connection and the handshake together take at most
        ``config.token_timeout`` seconds; a refusal is the classified
        :class:`AvatarSDKError`.
        """
        if self._ws is not None or self._protocol.state is not ClientState.IDLE:
            raise InvalidStateError("session already started (a session is single use)")
        if not self._token:
            raise InvalidStateError("session not initialized: call init() before start()")
        config = self._config.validate()
        _, ingress = config.endpoints()
        url, headers = websocket_target(
            ingress,
            config.avatar_id,
            app_id=config.app_id,
            session_token=self._token,
            use_query_auth=config.use_query_auth,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.token_timeout
        failure: AvatarSDKError | None = None
        ws: Any = None
        try:
            ws = await websockets.connect(
                url,
                additional_headers=headers,
                compression=None,
                max_size=_MAX_MESSAGE,
                open_timeout=config.token_timeout,
                close_timeout=config.io_timeout,
                ping_timeout=config.io_timeout,
                logger=_WS_LOGGER,
            )
        except InvalidStatus as exc:
            failure = upgrade_refusal_error(exc.response.status_code, exc.response.body)
        except InvalidURI:
            failure = AvatarSDKError(
                AvatarSDKErrorCode.connectionFailed,
                f"invalid ingress URL built from ingress_endpoint_url {ingress!r}",
                phase="websocket_connect",
            )
        except TimeoutError:
            failure = AvatarSDKError(
                AvatarSDKErrorCode.connectionFailed,
                f"could not open the WebSocket to {ingress} within {config.token_timeout:g} s",
                phase="websocket_connect",
            )
        except (OSError, websockets.exceptions.WebSocketException) as exc:
            failure = AvatarSDKError(
                AvatarSDKErrorCode.connectionFailed,
                # websockets' messages may quote the URL, whose query can hold the session key
                f"could not open the WebSocket to {ingress}: {redact(str(exc)) or type(exc).__name__}",
                phase="websocket_connect",
            )
        if failure is not None:
            raise _scrub(failure, self._token)
        self._ws = ws
        self._started_at = time.monotonic()
        graceful = False
        try:
            async with asyncio.timeout_at(deadline):
                await ws.send(self._protocol.configure())
                raw = await ws.recv()
            self._protocol.receive(raw)  # raises the classified error on a refusal
        except ConnectionClosed as exc:
            failure = _closed_error(exc, phase="websocket_handshake")
        except TimeoutError:
            failure = AvatarSDKError(
                AvatarSDKErrorCode.connectionFailed,
                f"no handshake answer from the server within {config.token_timeout:g} s",
                phase="websocket_handshake",
            )
        except AvatarSDKError as exc:
            failure, graceful = exc, True
        except BaseException:
            await self._abort_handshake(0.0)
            raise
        if failure is not None:
            remaining = max(0.0, deadline - loop.time())
            await self._abort_handshake(min(_HANDSHAKE_CLOSE_TIMEOUT, remaining) if graceful else 0.0)
            raise failure
        if config.fps is None:
            self._timeline.fps = self.fps
        self._read_task = loop.create_task(self._read_loop(ws))
        return self._protocol.connection_id or ""

    async def _abort_handshake(self, close_timeout: float) -> None:
        """Drop a connection whose handshake failed: a short closing handshake with a
        server that answered (it refused), within what is left of ``token_timeout``; an
        abort with one that did not."""
        ws, self._ws = self._ws, None
        self._protocol.close()
        if ws is not None:
            await _shutdown(ws, close_timeout)

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

    async def _send(self, ws: Any, data: bytes, *, action: str, req_id: str | None) -> None:
        failure: AvatarSDKError | None = None
        try:
            async with asyncio.timeout(self._config.io_timeout):
                await ws.send(data)
        except TimeoutError:
            failure = self._stalled(ws, action, req_id)
        except ConnectionClosed as exc:
            failure = self._close_error or _closed_error(exc, phase="websocket_send", req_id=req_id)
        except OSError as exc:
            failure = AvatarSDKError(
                AvatarSDKErrorCode.connectionFailed, f"failed to {action}: {exc}", phase="websocket_send", req_id=req_id
            )
        if failure is not None:
            raise failure

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
        await self._send(ws, message, action="send audio", req_id=req_id)
        if self._ogg:
            self._timeline.add_audio_chunk(req_id, sent_at, 0)  # Ogg is not decoded here
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
        ``"fast"`` as fast as the connection takes them. The schedule runs on the
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
        self._record_pacing(mode, float(chunk_ms))
        view = memoryview(pcm).cast("B") if n_bytes else memoryview(b"")
        rate = self._config.sample_rate
        samples_per_chunk = chunk_bytes // 2
        total_samples = n_bytes // 2
        total = len(payloads)
        for index, payload in enumerate(payloads):
            first = index * samples_per_chunk
            n = max(0, min(samples_per_chunk, total_samples - first))
            offset = _pacing.send_offset(mode, first, n, rate)
            if offset is not None:
                delay = start + offset - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)  # let the read loop take arrivals as they come
            if self._protocol.status(req_id) is RequestStatus.INTERRUPTED:
                break  # interrupted while streaming: the rest of the utterance is dropped
            ws = self._require_open("send audio")
            sent_at = self._elapsed()
            if payload is not None:
                await self._send(ws, payload, action="send audio", req_id=req_id)
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

    # ------------------------------------------------------------------ waiting

    async def wait_for_end(self, req_id: str | None = None, timeout: float | None = None) -> None:
        """Wait until the animation of ``req_id`` (default: the latest request) has ended.

        Raises ``asyncio.TimeoutError`` after ``timeout`` seconds, and an
        :class:`AvatarSDKError` if the connection closed before the end arrived (with
        the close code, also for a clean close by the server).
        """
        req_id = req_id or self._protocol.last_req_id
        if req_id is None:
            raise InvalidStateError("no request to wait for: no audio has been sent")
        if not self._protocol.is_pending(req_id):
            status = self._protocol.status(req_id)
            if status is RequestStatus.FAILED and not self._timeline.saw_end(req_id):
                raise self._waiter_error(req_id)
            if status is not None or self._timeline.saw_end(req_id):
                return
        if self.closed:
            raise self._waiter_error(req_id)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._end_waiters.setdefault(req_id, []).append(future)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        finally:
            waiters = self._end_waiters.get(req_id, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._end_waiters.pop(req_id, None)

    def _waiter_error(self, req_id: str | None = None) -> AvatarSDKError:
        error = self._close_error or self._peer_close
        if error is not None:
            return error
        return AvatarSDKError(
            AvatarSDKErrorCode.connectionClosed, "the session closed before the end frame arrived", req_id=req_id
        )

    def _resolve_waiters(self, req_id: str | None, error: BaseException | None = None) -> None:
        if req_id is None:
            items = list(self._end_waiters.items())
            self._end_waiters.clear()
        else:
            items = [(req_id, self._end_waiters.pop(req_id, []))]
        for _, futures in items:
            for future in futures:
                if not future.done():
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)

    # ------------------------------------------------------------------ receiving

    async def _read_loop(self, ws: Any) -> None:
        receive = self._protocol.receive
        monotonic = time.monotonic
        try:
            async for data in ws:
                arrival = monotonic()  # first thing: the message just left the socket
                try:
                    event = receive(data)
                except AvatarSDKError as exc:  # malformed: report and keep reading
                    self._timeline.add_error(str(exc))
                    self._notify_error(exc)
                    continue
                kind = type(event)
                if kind is AnimationReceived:
                    self._on_animation(event, arrival)
                elif kind is PlaybackStateReceived:
                    self._on_playback_state(event, arrival)
                elif kind is ServerErrorReceived:
                    self._timeline.add_error(str(event.error))
                    if event.status is not None and event.error.req_id:
                        self._timeline.set_request_status(
                            event.error.req_id, event.status.value, at=self._elapsed(arrival)
                        )
                    self._notify_error(event.error)
                else:
                    logger.debug("ignored message: %r", event)
            # the iteration ends quietly when the server closes cleanly (1000, 1001)
            if self._close_error is None and not self._closing:
                self._peer_close = _closed_error(ws.protocol.close_exc, phase="websocket_runtime")
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            if self._close_error is None and not self._closing:
                error = _closed_error(exc, phase="websocket_runtime")
                if code in (1000, 1001):
                    self._peer_close = error  # a clean close: pending waiters still learn its code
                else:
                    self._close_error = error
                    self._timeline.add_error(str(error))
                    self._notify_error(error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never die silently
            error = AvatarSDKError(
                AvatarSDKErrorCode.connectionFailed, f"read loop failed: {exc}", phase="websocket_runtime"
            )
            self._close_error = self._close_error or error
            self._timeline.add_error(str(error))
            self._notify_error(error)
        await self._finish()

    def _on_animation(self, event: AnimationReceived, arrival: float) -> None:
        at = self._elapsed(arrival)
        req_id = event.req_id
        tl = self._timeline
        if event.animation_error is not None:
            self._protocol_error(f"unreadable animation payload for request {req_id}: {event.animation_error}", req_id)
        callback = self._config.on_playback
        if callback is not None:
            signal = PlaybackSignal(
                req_id=req_id,
                end=event.end,
                connection_id=event.connection_id,
                avatar_id=event.avatar_id,
                has_animation=event.keyframes.shape[0] > 0 or event.animation_error is not None,
            )
            try:
                callback(signal)
            except Exception:
                logger.exception("on_playback callback raised")
        if event.anomaly is not None:
            detail = (
                f"keyframes for request {req_id}, which this session did not make"
                if event.anomaly == "unknown_request"
                else f"keyframes for request {req_id} after its end frame"
            )
            tl.add_anomaly(req_id, event.anomaly, detail, at=at)
        if not event.duplicate_end:
            try:
                tl.add_animation(event.keyframes, req_id=req_id, arrival=at, end=event.end)
            except ValueError as exc:  # another keyframe width: a protocol error for this message
                tl.add_anomaly(req_id, "width_change", str(exc), at=at)
                self._protocol_error(f"animation message for request {req_id} rejected: {exc}", req_id)
                tl.add_animation(event.keyframes[:0], req_id=req_id, arrival=at, end=event.end)  # keep its end
        callback = self._config.transport_frames
        if callback is not None:
            try:
                callback(event.raw, event.end)
            except Exception:
                logger.exception("transport_frames callback raised")
        if event.status is not None:
            tl.set_request_status(req_id, event.status.value, at=at)
        if event.end and req_id in self._end_waiters:
            self._resolve_waiters(req_id)

    def _on_playback_state(self, event: PlaybackStateReceived, arrival: float) -> None:
        at = self._elapsed(arrival)
        tl = self._timeline
        tl.add_playback_state(event.req_id, event.state.name, event.played_ms, event.reason, at)
        if event.anomaly is not None:
            tl.add_anomaly(event.req_id, event.anomaly, f"playback state {event.state.name} for an unknown request", at=at)
        if event.status is not None:
            tl.set_request_status(event.req_id, event.status.value, at=at)
        callback = self._config.on_playback_state
        if callback is not None:
            public = PlaybackStateEvent(
                req_id=event.req_id,
                state=PublicPlaybackState[event.state.name],
                played_ms=int(event.played_ms),
                reason=event.reason,
                connection_id=event.connection_id,
            )
            try:
                callback(public)
            except Exception:
                logger.exception("on_playback_state callback raised")

    def _protocol_error(self, message: str, req_id: str) -> None:
        error = AvatarSDKError(
            AvatarSDKErrorCode.protocolError, message, phase="websocket_runtime", req_id=req_id or None
        )
        self._timeline.add_error(str(error))
        self._notify_error(error)

    def _notify_error(self, error: Exception) -> None:
        callback = self._config.on_error
        if callback is None:
            logger.warning("avatar session error (no on_error callback): %s", error)
            return
        try:
            callback(error)
        except Exception:
            logger.exception("on_error callback raised")

    # ------------------------------------------------------------------ closing

    async def close(self) -> None:
        """Close the connection and stop the read loop. Idempotent; ``on_close`` fires once.

        Returns within ``config.io_timeout`` plus about a second, whatever the peer
        does: a closing handshake the peer does not complete in time is cut short.
        """
        self._closing = True
        ws = self._ws
        if ws is not None:
            await _shutdown(ws, self._config.io_timeout)
        task = self._read_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=_READ_LOOP_GRACE)
            except Exception:
                task.cancel()
                try:
                    await task
                except BaseException:
                    pass
        await self._finish()

    async def _finish(self) -> None:
        """Mark the session closed, settle open requests, fail pending waiters, call
        on_close (exactly once)."""
        self._closing = True
        pending = self._protocol.close()
        if pending:
            at = self._elapsed()
            cause = self._close_error or self._peer_close
            why = f"the connection closed before its end frame ({cause.message})" if cause else (
                "the session was closed before its end frame"
            )
            for req_id, status in pending:
                self._timeline.set_request_status(req_id, status.value, at=at)
                self._timeline.add_anomaly(req_id, "closed_before_end", why, at=at)
        self._encoder = None
        self._resolve_waiters(None, self._waiter_error())
        if self._close_notified:
            return
        self._close_notified = True
        callback = self._config.on_close
        if callback is not None:
            try:
                callback()
            except Exception:
                logger.exception("on_close callback raised")

    async def __aenter__(self) -> AvatarSession:
        if self._token is None:
            await self.init()
        if self._protocol.state is ClientState.IDLE:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# ---------------------------------------------------------------------- helpers


async def _post(http: Any, url: str, payload: dict[str, Any], headers: dict[str, str]) -> tuple[int, str]:
    async with http.post(url, json=payload, headers=headers) as response:
        return response.status, await response.text()


def _describe(exc: BaseException) -> str:
    """An exception's type and text, with keys and tokens redacted."""
    text = redact(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _scrub(error: AvatarSDKError, secret: str | None) -> AvatarSDKError:
    """``error`` with ``secret`` (an API key or session token a server may echo) blanked
    in its text and attributes, and without a cause or context."""
    if secret:
        for name in ("message", "server_title", "server_detail", "server_code", "raw_body", "close_reason"):
            value = getattr(error, name, None)
            if isinstance(value, str) and secret in value:
                setattr(error, name, value.replace(secret, "<redacted>"))
        error.args = tuple(a.replace(secret, "<redacted>") if isinstance(a, str) else a for a in error.args)
    error.__cause__ = None
    error.__context__ = None
    error.__suppress_context__ = True
    return error


async def _shutdown(ws: Any, timeout: float) -> None:
    """Close ``ws`` within ``timeout`` seconds, then abort it; returns once it is gone."""
    if timeout > 0:
        try:
            await asyncio.wait_for(ws.close(), timeout)
            return
        except Exception:
            pass
    ws.transport.abort()
    try:
        await asyncio.wait_for(ws.wait_closed(), _READ_LOOP_GRACE)
    except Exception:
        pass


def _closed_error(exc: ConnectionClosed, *, phase: str, req_id: str | None = None) -> AvatarSDKError:
    frame = exc.rcvd or exc.sent
    code = frame.code if frame is not None else None
    reason = frame.reason if frame is not None else None
    text = "the connection closed"
    if code is not None:
        text += f" (code {code}{': ' + reason if reason else ''})"
    elif exc.rcvd is None:
        text += " without a close frame"
    return AvatarSDKError(
        error_code_for_close_code(code if exc.rcvd is not None else None),
        text,
        phase=phase,
        req_id=req_id,
        close_code=code if exc.rcvd is not None else None,
        close_reason=reason or None,
    )


def new_avatar_session(**kwargs: Any) -> AvatarSession:
    """Create an :class:`AvatarSession` from :class:`SessionConfig` keyword arguments.

    An unknown keyword is a ``TypeError`` naming it; a missing required field or a bad
    value a ``ValueError`` naming it and what is accepted, before anything is sent.
    """
    return AvatarSession(config_from_kwargs(kwargs))
