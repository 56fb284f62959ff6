"""Ingress of the local service: the WebSocket upgrade checks and one streaming session.

The upgrade is refused, before any WebSocket exists, with the statuses and wording of
PROTOCOL.md section 2 (plain-text bodies, so clients classify them by phrase). After
the upgrade, :class:`IngressSession` is the I/O adapter around
:class:`avatar_nb.protocol.ServerConnection`: it feeds received audio to the
:class:`~avatar_nb.server.animator.Animator` and sends the keyframes back, either at
once (``realtime=False``) or when they are due, like a live service: a keyframe is due
``latency_ms`` (plus optional jitter) after the audio of its whole frame arrived.

Timers are loop callbacks (``call_at``), not tasks: one sender task per session waits
on an event that the head-of-queue timer sets, so a paced session costs one wake-up per
animation message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import numpy as np
from aiohttp import WSMsgType, web

from .. import _pcm
from ..errors import CloseCode
from ..protocol import (
    AudioReceived,
    InterruptRequested,
    PlaybackControlRequested,
    ProtocolViolation,
    ServerConnection,
    SessionConfigured,
)
from .animator import Animator
from .pacing import Pacer
from .state import ServiceState
from .tokens import InvalidToken

__all__ = ["check_upgrade", "ingress_handler", "IngressSession"]

logger = logging.getLogger("avatar_nb.server")

_MAX_MESSAGE = 16 * 1024 * 1024
_CLOSE_POLICY = 1008  # a handshake the client got wrong


def _refuse(state: ServiceState, status: int, text: str) -> web.Response:
    state.stats.refusals += 1
    return web.Response(status=status, text=text)


def check_upgrade(state: ServiceState, request: web.Request):
    """``(claims, avatar_id)`` for an acceptable upgrade request, else the refusal response."""
    query = request.query
    token = request.headers.get("X-Session-Key") or query.get("sessionKey") or ""
    app_id = request.headers.get("X-App-ID") or query.get("appId") or ""
    avatar_id = query.get("id", "")
    if not token:
        return _refuse(state, 400, "Invalid session token: no session key given")
    try:
        claims = state.signer.verify(token)
    except InvalidToken:
        return _refuse(state, 400, "Invalid session token")
    if app_id not in state.app_ids:
        return _refuse(state, 404, "app id unrecognized")
    if claims.app_id != app_id:
        return _refuse(state, 400, "app id mismatch")
    if claims.expired():
        return _refuse(state, 401, "token is expired")
    if avatar_id not in state.avatar_ids:
        return _refuse(state, 404, "Avatar not found")
    if state.max_sessions is not None and state.stats.sessions_active >= state.max_sessions:
        return _refuse(state, 429, "concurrency limit reached")
    return claims, avatar_id


def ingress_handler(state: ServiceState):
    async def handle(request: web.Request) -> web.StreamResponse:
        checked = check_upgrade(state, request)
        if isinstance(checked, web.Response):
            return checked
        claims, avatar_id = checked
        ws = web.WebSocketResponse(compress=state.compression, max_msg_size=_MAX_MESSAGE)
        await ws.prepare(request)
        session = IngressSession(state, ws, avatar_id=avatar_id, expires_at=claims.expires_at)
        state.sessions.add(session)
        state.stats.sessions_total += 1
        state.stats.sessions_active += 1
        try:
            await session.run()
        except Exception:  # one session's failure must never reach the others
            logger.exception("ingress session %s failed", session.connection_id)
        finally:
            state.stats.sessions_active -= 1
            state.sessions.discard(session)
            await session.shutdown()
        return ws

    return handle


class IngressSession:
    """One client's session after the upgrade."""

    def __init__(self, state: ServiceState, ws: web.WebSocketResponse, *, avatar_id: str, expires_at: float) -> None:
        self.state = state
        self.ws = ws
        self.avatar_id = avatar_id
        self.connection_id = state.new_connection_id()
        self.protocol = ServerConnection(self.connection_id, capabilities=state.capabilities())
        self.loop = asyncio.get_running_loop()
        self.animator: Animator | None = None
        self.sample_rate = 0
        # pending animation messages: (due loop time, req_id, keyframes, end)
        self.queue: deque[tuple[float, str, np.ndarray, bool]] = deque()
        self.wake = asyncio.Event()
        self.timer: asyncio.TimerHandle | None = None
        self.sender: asyncio.Task | None = None
        self.last_audio = self.loop.time()
        self.closing = False
        self.open_req_id: str | None = None  # the utterance the animator is in
        self.finished: set[str] = set()  # requests whose end message went out
        self.pacer = Pacer(state.latency_ms, state.jitter_ms, seed=(state.seed, state.stats.sessions_total))
        self._timers: list[asyncio.TimerHandle] = []
        limit = expires_at - time.time()
        if state.session_time_limit is not None:
            limit = min(limit, state.session_time_limit)
        self._timers.append(self.loop.call_later(max(0.0, limit), self._expire))
        if state.idle_timeout:
            self._timers.append(self.loop.call_later(state.idle_timeout, self._check_idle))

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        ws = self.ws
        async for msg in ws:
            if self.closing:
                break
            self.state.stats.messages_in += 1
            if msg.type == WSMsgType.BINARY:
                await self._on_message(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await self._on_message(msg.data)
            elif msg.type == WSMsgType.ERROR:
                break

    async def shutdown(self) -> None:
        self.closing = True
        for timer in self._timers:
            timer.cancel()
        if self.timer is not None:
            self.timer.cancel()
        if self.sender is not None:
            self.sender.cancel()
            try:
                await self.sender
            except (asyncio.CancelledError, Exception):
                pass
        if not self.ws.closed:
            await self.ws.close()

    async def close(self, code: int, message: str, *, reply: bytes | None = None) -> None:
        """Send ``reply`` (a ServerError) if given, then close the WebSocket with ``code``."""
        if self.closing:
            return
        self.closing = True
        try:
            if reply is not None:
                await self.ws.send_bytes(reply)
            await self.ws.close(code=code, message=message.encode("utf-8")[:120])
        except (ConnectionError, RuntimeError):
            pass

    def _spawn_close(self, code: int, message: str, error: tuple[int, str]) -> None:
        if not self.closing:
            self.loop.create_task(self.close(code, message, reply=self.protocol.error(*error)))

    def _expire(self) -> None:
        self._spawn_close(
            int(CloseCode.SESSION_TIMEOUT),
            "session time limit reached",
            (int(CloseCode.SESSION_TIMEOUT), "session time limit reached"),
        )

    def _check_idle(self) -> None:
        idle = self.state.idle_timeout
        if idle is None or self.closing:
            return
        remaining = self.last_audio + idle - self.loop.time()
        if remaining > 0:
            self._timers.append(self.loop.call_later(remaining, self._check_idle))
            return
        self._spawn_close(1000, "idle timeout", (0, f"no audio input for {idle:g}s"))

    # ------------------------------------------------------------------ receiving

    async def _on_message(self, data: bytes | str) -> None:
        event = self.protocol.receive(data)
        if isinstance(event, AudioReceived):
            await self._on_audio(event)
        elif isinstance(event, SessionConfigured):
            self.sample_rate = event.sample_rate
            self.animator = Animator(
                event.sample_rate, self.state.fps, n_expression=self.state.n_expression, seed=self.state.seed
            )
            self.last_audio = self.loop.time()
            await self._send(self.protocol.confirm())
            if self.state.realtime:
                self.sender = self.loop.create_task(self._sender())
        elif isinstance(event, InterruptRequested):
            await self._on_interrupt(event.req_id)
        elif isinstance(event, ProtocolViolation):
            self.state.stats.protocol_errors += 1
            if event.close:
                await self.close(_CLOSE_POLICY, "protocol error", reply=event.reply)
            else:
                await self._send(event.reply)
        elif isinstance(event, PlaybackControlRequested):
            await self._send(
                self.protocol.error(
                    0,
                    "unexpected message type: pause and resume need the playback_control capability, "
                    "which this service does not declare",
                    req_id=event.req_id,
                )
            )

    async def _on_audio(self, event: AudioReceived) -> None:
        animator = self.animator
        assert animator is not None  # the protocol only yields audio after the handshake
        now = self.loop.time()
        self.last_audio = now
        if event.preempted is not None:
            await self._emit(event.preempted, animator.finish(), True, now)
        self.open_req_id = None if event.end else event.req_id
        if self.state.credits_seconds is not None:
            self.state.audio_seconds_used += len(event.audio) / 2 / self.sample_rate
            if self.state.audio_seconds_used > self.state.credits_seconds:
                await self.close(
                    int(CloseCode.CREDITS_EXHAUSTED),
                    "credits exhausted",
                    reply=self.protocol.error(int(CloseCode.CREDITS_EXHAUSTED), "credits exhausted"),
                )
                return
        keyframes = animator.feed(event.audio)
        if event.end:
            tail = animator.finish()
            if tail.shape[0]:
                keyframes = np.concatenate((keyframes, tail)) if keyframes.shape[0] else tail
            await self._emit(event.req_id, keyframes, True, now)
        elif keyframes.shape[0]:
            await self._emit(event.req_id, keyframes, False, now)

    async def _on_interrupt(self, req_id: str) -> None:
        # nothing to stop: no request yet, or its end already went out (clients such as
        # avatarkit interrupt their latest request even after it ended)
        if not req_id or req_id in self.finished:
            return
        if self.animator is not None and req_id == self.open_req_id:
            self.animator.reset_utterance()
        if not self.state.realtime:  # nothing is ever queued: everything went out already
            await self._send_animation(req_id, _EMPTY, True)
            return
        # drop what was not sent yet; the interrupted request ends now, ahead of the rest
        self.queue = deque(item for item in self.queue if item[1] != req_id)
        self.queue.appendleft((self.loop.time(), req_id, _EMPTY, True))
        self._reschedule()

    # ------------------------------------------------------------------ sending

    async def _emit(self, req_id: str, keyframes: np.ndarray, end: bool, arrived: float) -> None:
        """Send keyframes now (fast mode) or when due (realtime mode)."""
        if not self.state.realtime:
            await self._send_animation(req_id, keyframes, end)
            return
        due = self.pacer.due(arrived)
        self.queue.append((due, req_id, keyframes, end))
        if len(self.queue) == 1:
            self._reschedule()

    def _reschedule(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self.wake.set)

    async def _sender(self) -> None:
        loop = self.loop
        while not self.closing:
            await self.wake.wait()
            self.wake.clear()
            now = loop.time()
            while self.queue and self.queue[0][0] <= now + 0.0005:
                _, req_id, keyframes, end = self.queue.popleft()
                await self._send_animation(req_id, keyframes, end)
                if self.closing:
                    return
            self.timer = None
            if self.queue:
                self.timer = loop.call_at(self.queue[0][0], self.wake.set)

    async def _send_animation(self, req_id: str, keyframes: np.ndarray, end: bool) -> None:
        if end:
            self.finished.add(req_id)
        data = _pcm.encode_animation_message(
            keyframes, connection_id=self.connection_id, req_id=req_id, end=end, avatar_id=self.avatar_id
        )
        self.state.stats.keyframes_out += keyframes.shape[0]
        await self._send(data)

    async def _send(self, data: bytes) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_bytes(data)
            self.state.stats.messages_out += 1
        except (ConnectionError, RuntimeError):
            self.closing = True


_EMPTY = np.zeros((0, _pcm.FLAME_FIXED_COLUMNS), dtype=np.float32)
