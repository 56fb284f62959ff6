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

This module holds the connection's lifecycle (token, handshake, closing); the send path
is :mod:`avatar_nb._session_send`, the read loop and the waiting for ends
:mod:`avatar_nb._session_receive`, the websockets and aiohttp helpers
:mod:`avatar_nb._session_transport`. :class:`AvatarSession` joins them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from ._session_receive import _ReceivePath
from ._session_send import _SendPath
from ._session_transport import (
    _HANDSHAKE_CLOSE_TIMEOUT,
    _MAX_MESSAGE,
    _READ_LOOP_GRACE,
    _WS_LOGGER,
    RedirectRefused,
    _closed_error,
    _Connect,
    _describe,
    _post,
    _scrub,
    _shutdown,
)
from .config import AudioFormat, SessionConfig, config_from_kwargs
from .errors import AvatarSDKError, AvatarSDKErrorCode, InvalidStateError, SessionTokenError
from .flame import DEFAULT_FPS
from .http_api import (
    parse_token_response,
    redact,
    token_urls,
    upgrade_refusal_error,
    websocket_target,
)
from .proto import message_pb2 as pb
from .protocol import ClientConnection, ClientState, fps_from_capabilities
from .timeline import Timeline

__all__ = ["AvatarSession", "new_avatar_session"]

logger = logging.getLogger("avatar_nb.session")

_DEFAULT_TOKEN_LIFETIME = timedelta(minutes=5)
_AUDIO_FORMATS = {AudioFormat.PCM_S16LE: pb.AUDIO_FORMAT_PCM_S16LE, AudioFormat.OGG_OPUS: pb.AUDIO_FORMAT_OGG_OPUS}


class AvatarSession(_SendPath, _ReceivePath):
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
        self._sends_waiting = 0  # the send path's bound on stalled sends (_session_send)
        self._send_since = 0.0
        self._send_action = ""
        self._send_req_id: str | None = None
        self._watchdog: asyncio.TimerHandle | None = None
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
            ws = await _Connect(
                url,
                additional_headers=headers,
                compression=None,
                max_size=_MAX_MESSAGE,
                open_timeout=config.token_timeout,
                close_timeout=config.io_timeout,
                ping_timeout=config.io_timeout,
                logger=_WS_LOGGER,
            )
        except RedirectRefused as exc:
            failure = AvatarSDKError(
                AvatarSDKErrorCode.connectionFailed,
                str(exc),
                phase="websocket_connect",
                http_status=exc.status,
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
        self._stop_watchdog()
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


def new_avatar_session(**kwargs: Any) -> AvatarSession:
    """Create an :class:`AvatarSession` from :class:`SessionConfig` keyword arguments.

    An unknown keyword is a ``TypeError`` naming it; a missing required field or a bad
    value a ``ValueError`` naming it and what is accepted, before anything is sent.
    """
    return AvatarSession(config_from_kwargs(kwargs))
