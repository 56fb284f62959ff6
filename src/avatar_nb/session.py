"""AvatarSession: the asyncio client of the avatar service (the seed SDK's API).

``init()`` exchanges the API key for a session token over HTTP (aiohttp),
``start()`` opens the WebSocket (websockets) and performs the handshake, ``send_audio()``
streams PCM, a background read loop turns every server message into the seed's
callbacks and into the session's :class:`~avatar_nb.timeline.Timeline`, and ``close()``
ends it all, calling ``on_close`` exactly once.

What each message means is decided by :class:`avatar_nb.protocol.ClientConnection`;
this module only moves bytes and keeps time. The client does not offer
permessage-deflate (PCM and float payloads barely compress, and deflating them is a
large share of a client's CPU), and builds and decodes messages with the compiled core.
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

from .config import SessionConfig, config_from_kwargs
from .errors import (
    AvatarSDKError,
    AvatarSDKErrorCode,
    InvalidStateError,
    SessionTokenError,
    error_code_for_close_code,
)
from .protocol import (
    AnimationReceived,
    ClientConnection,
    ClientState,
    MessageType,
    PlaybackStateReceived,
    ServerErrorReceived,
    UnknownMessage,
    fps_from_capabilities,
    parse_token_response,
    redact,
    session_token_url,
    upgrade_refusal_error,
    validate_pcm_chunk,
    websocket_target,
)
from .flame import DEFAULT_FPS
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
_AUDIO_FORMATS = {"pcm_s16le": 0, "ogg_opus": 1}


class AvatarSession:
    """One session with the avatar service. Single use: after ``close()`` make a new one.

    Beyond the seed's API: ``interrupt()``, ``stream()`` (a whole clip, paced),
    ``wait_for_end()``, ``async with``, and the properties ``connection_id``,
    ``capabilities``, ``fps``, ``timeline`` (filled as frames arrive; it survives a
    dropped connection) and ``closed``. Pass ``timeline`` to have the session fill a
    Timeline that a live view already watches.
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
            audio_format=_AUDIO_FORMATS[config.audio_format.value],
            livekit_egress=config.livekit_egress,
            agora_egress=config.agora_egress,
        )
        self._read_task: asyncio.Task[None] | None = None
        self._closing = False
        self._close_notified = False
        self._close_error: AvatarSDKError | None = None
        self._t0: float | None = None
        self._started_at: float | None = None
        self._ended: set[str] = set()
        self._interrupted: set[str] = set()
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
        """Everything received so far (and the audio chunks sent), as a Timeline."""
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
        """Get a session token from the console (``POST {console}/session-tokens``).

        Raises ``ValueError`` for missing configuration (before any request) and
        :class:`SessionTokenError` when the console refuses, times out
        (``config.token_timeout``) or answers something that is not a token.
        """
        config = self._config.validate()
        if self.closed:
            raise InvalidStateError("this session is closed; create a new one")
        url = session_token_url(config.console_endpoint_url)
        expire_at = config.expire_at or datetime.now(timezone.utc) + _DEFAULT_TOKEN_LIFETIME
        payload = {"expireAt": int(expire_at.timestamp())}
        headers = {"X-Api-Key": config.api_key, "Content-Type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=config.token_timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                async with http.post(url, json=payload, headers=headers) as response:
                    status = response.status
                    body = await response.text()
        except asyncio.TimeoutError:
            raise SessionTokenError(
                f"session token request to {url} timed out after {config.token_timeout:g} s",
                code=AvatarSDKErrorCode.connectionFailed,
            ) from None
        except aiohttp.ClientError as exc:
            raise SessionTokenError(
                f"session token request to {url} failed: {exc}",
                code=AvatarSDKErrorCode.connectionFailed,
            ) from exc
        self._token = parse_token_response(status, body)

    # ------------------------------------------------------------------ start

    async def start(self) -> str:
        """Open the WebSocket, perform the handshake, start the read loop; return the connection id."""
        if self._ws is not None or self._protocol.state is not ClientState.IDLE:
            raise InvalidStateError("session already started (a session is single use)")
        if not self._token:
            raise InvalidStateError("session not initialized: call init() before start()")
        config = self._config.validate()
        url, headers = websocket_target(
            config.ingress_endpoint_url,
            config.avatar_id,
            app_id=config.app_id,
            session_token=self._token,
            use_query_auth=config.use_query_auth,
        )
        try:
            ws = await websockets.connect(
                url,
                additional_headers=headers,
                compression=None,
                max_size=_MAX_MESSAGE,
                open_timeout=config.token_timeout,
                logger=_WS_LOGGER,
            )
        except InvalidStatus as exc:
            response = exc.response
            raise upgrade_refusal_error(response.status_code, response.body) from None
        except InvalidURI:
            raise AvatarSDKError(
                AvatarSDKErrorCode.connectionFailed,
                f"invalid ingress URL built from ingress_endpoint_url {config.ingress_endpoint_url!r}",
                phase="websocket_connect",
            ) from None
        except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as exc:
            raise AvatarSDKError(
                AvatarSDKErrorCode.connectionFailed,
                # websockets' messages may quote the URL, whose query can hold the session key
                f"could not open the WebSocket to {config.ingress_endpoint_url}: {redact(str(exc)) or type(exc).__name__}",
                phase="websocket_connect",
            ) from exc
        self._ws = ws
        self._started_at = time.monotonic()
        try:
            await ws.send(self._protocol.configure())
            raw = await asyncio.wait_for(ws.recv(), timeout=config.token_timeout)
            self._protocol.receive(raw)  # raises the classified error on a refusal
        except ConnectionClosed as exc:
            await self._abort_handshake()
            raise _closed_error(exc, phase="websocket_handshake") from None
        except asyncio.TimeoutError:
            await self._abort_handshake()
            raise AvatarSDKError(
                AvatarSDKErrorCode.connectionFailed,
                f"no handshake answer from the server within {config.token_timeout:g} s",
                phase="websocket_handshake",
            ) from None
        except BaseException:
            await self._abort_handshake()
            raise
        if config.fps is None:
            self._timeline.fps = self.fps
        self._read_task = asyncio.get_running_loop().create_task(self._read_loop(ws))
        return self._protocol.connection_id or ""

    async def _abort_handshake(self) -> None:
        ws, self._ws = self._ws, None
        self._protocol.close()
        if ws is not None:
            try:
                await ws.close()
            except Exception:
                pass

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

    def _now(self) -> float:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        return now - self._t0

    async def _send(self, ws: Any, data: bytes, *, action: str, req_id: str | None) -> None:
        try:
            await ws.send(data)
        except ConnectionClosed as exc:
            raise _closed_error(exc, phase="websocket_send", req_id=req_id) from None
        except OSError as exc:
            raise AvatarSDKError(
                AvatarSDKErrorCode.connectionFailed, f"failed to {action}: {exc}", phase="websocket_send", req_id=req_id
            ) from exc

    async def send_audio(self, audio: bytes, end: bool = False) -> str:
        """Send one chunk of mono s16le PCM; return its request id.

        The request id of an utterance is made at its first chunk and kept until a chunk
        with ``end=True``. Raises ``TypeError``/``ValueError`` for audio that is not
        bytes-like or has an odd length; nothing is sent then.
        """
        data = validate_pcm_chunk(audio)
        ws = self._require_open("send audio")
        req_id, message = self._protocol.audio(data, bool(end))
        sent_at = self._now()
        await self._send(ws, message, action="send audio", req_id=req_id)
        self._timeline.add_audio_chunk(req_id, sent_at, len(data) // 2)
        return req_id

    async def stream(
        self,
        pcm: bytes,
        *,
        chunk_ms: float = 40.0,
        realtime: bool = True,
        end: bool = True,
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> str:
        """Send a whole stretch of PCM as one utterance in ``chunk_ms`` chunks; return its request id.

        With ``realtime`` the chunks leave at the pace of the audio, scheduled against the
        monotonic clock from the first chunk (no drift builds up); otherwise as fast as
        the connection takes them. ``on_chunk(index, total)`` is called after each chunk.
        An ``interrupt()`` while this runs stops it: the remaining chunks are not sent.
        """
        data = validate_pcm_chunk(pcm)
        if not (isinstance(chunk_ms, (int, float)) and chunk_ms > 0):
            raise ValueError(f"chunk_ms must be a positive number of milliseconds, got {chunk_ms!r}")
        rate = self._config.sample_rate
        chunk_bytes = max(2, int(round(rate * chunk_ms / 1000.0)) * 2)
        ws = self._require_open("send audio")
        req_id, messages = self._protocol.audio_messages(data, chunk_bytes, end=end)
        loop_start = time.monotonic()
        total = len(messages)
        for index, message in enumerate(messages):
            if realtime and index:
                delay = loop_start + index * chunk_bytes / 2 / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if req_id in self._interrupted:
                break  # interrupted while streaming: the rest of the utterance is dropped
            ws = self._require_open("send audio")
            samples = min(chunk_bytes, len(data) - index * chunk_bytes) // 2
            sent_at = self._now()
            await self._send(ws, message, action="send audio", req_id=req_id)
            self._timeline.add_audio_chunk(req_id, sent_at, max(0, samples))
            if on_chunk is not None:
                on_chunk(index, total)
        return req_id

    async def interrupt(self) -> str:
        """Stop generation for the latest request; return its request id."""
        ws = self._require_open("interrupt")
        req_id, message = self._protocol.interrupt()
        self._interrupted.add(req_id)
        await self._send(ws, message, action="send interrupt", req_id=req_id)
        return req_id

    async def pause(self) -> str:
        """Pause playback of the latest request (egress mode, ``playback_control`` capability)."""
        ws = self._require_open("pause")
        req_id, message = self._protocol.playback_control(MessageType.CLIENT_PAUSE)
        await self._send(ws, message, action="send pause", req_id=req_id)
        return req_id

    async def resume(self) -> str:
        """Resume the paused request (egress mode, ``playback_control`` capability)."""
        ws = self._require_open("resume")
        req_id, message = self._protocol.playback_control(MessageType.CLIENT_RESUME)
        await self._send(ws, message, action="send resume", req_id=req_id)
        return req_id

    # ------------------------------------------------------------------ waiting

    async def wait_for_end(self, req_id: str | None = None, timeout: float | None = None) -> None:
        """Wait until the animation of ``req_id`` (default: the latest request) has ended.

        Raises ``asyncio.TimeoutError`` after ``timeout`` seconds, and the connection's
        :class:`AvatarSDKError` if it closed before the end arrived.
        """
        req_id = req_id or self._protocol.last_req_id
        if req_id is None:
            raise InvalidStateError("no request to wait for: no audio has been sent")
        if req_id in self._ended:
            return
        if self.closed:
            raise self._close_error or AvatarSDKError(
                AvatarSDKErrorCode.connectionClosed, "the session closed before the end frame arrived", req_id=req_id
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._end_waiters.setdefault(req_id, []).append(future)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        finally:
            waiters = self._end_waiters.get(req_id, [])
            if future in waiters:
                waiters.remove(future)

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
        try:
            async for data in ws:
                try:
                    event = receive(data)
                except AvatarSDKError as exc:  # malformed: report and keep reading
                    self._timeline.add_error(str(exc))
                    self._notify_error(exc)
                    continue
                if type(event) is AnimationReceived:
                    self._on_animation(event)
                elif type(event) is ServerErrorReceived:
                    self._timeline.add_error(str(event.error))
                    self._notify_error(event.error)
                elif type(event) is PlaybackStateReceived or type(event) is UnknownMessage:
                    logger.debug("ignored message: %r", event)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            if not self._closing and code not in (1000, 1001):
                error = _closed_error(exc, phase="websocket_runtime")
                self._close_error = error
                self._timeline.add_error(str(error))
                self._notify_error(error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never die silently
            error = AvatarSDKError(
                AvatarSDKErrorCode.connectionFailed, f"read loop failed: {exc}", phase="websocket_runtime"
            )
            self._close_error = error
            self._timeline.add_error(str(error))
            self._notify_error(error)
        await self._finish()

    def _on_animation(self, event: AnimationReceived) -> None:
        t0 = self._t0 if self._t0 is not None else self._started_at or time.monotonic()
        arrival = time.monotonic() - t0
        if event.animation_error is not None:
            error = AvatarSDKError(
                AvatarSDKErrorCode.protocolError,
                f"unreadable animation payload for request {event.req_id}: {event.animation_error}",
                phase="websocket_runtime",
                req_id=event.req_id or None,
            )
            self._timeline.add_error(str(error))
            self._notify_error(error)
        self._timeline.add_animation(event.keyframes, req_id=event.req_id, arrival=arrival, end=event.end)
        callback = self._config.transport_frames
        if callback is not None:
            try:
                callback(event.raw, event.end)
            except Exception:
                logger.exception("transport_frames callback raised")
        if event.end:
            self._ended.add(event.req_id)
            if event.req_id in self._end_waiters:
                self._resolve_waiters(event.req_id)

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
        """Close the connection and stop the read loop. Idempotent; ``on_close`` fires once."""
        self._closing = True
        ws = self._ws
        if ws is not None:
            try:
                await ws.close()
            except Exception:
                pass
        task = self._read_task
        if task is not None and task is not asyncio.current_task():
            if not task.done():
                try:
                    await asyncio.wait_for(asyncio.shield(task), timeout=5.0)
                except (asyncio.TimeoutError, Exception):
                    task.cancel()
                    try:
                        await task
                    except BaseException:
                        pass
        await self._finish()

    async def _finish(self) -> None:
        """Mark the session closed, fail pending waiters, call on_close (exactly once)."""
        self._closing = True
        self._protocol.close()
        self._resolve_waiters(
            None,
            self._close_error
            or AvatarSDKError(AvatarSDKErrorCode.connectionClosed, "the session closed before the end frame arrived"),
        )
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
