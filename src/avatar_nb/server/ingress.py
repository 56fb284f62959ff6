"""Ingress of the local service: the WebSocket upgrade checks and one streaming session.

The upgrade is refused, before any WebSocket exists, with the statuses and wording of
docs/protocol.md, section 2: a JSON body ``{"message": "..."}`` and a
newline, as the hosted service answers, so clients classify refusals by status and
phrase. After the upgrade, :class:`IngressSession` is the I/O adapter around
:class:`avatar_nb.protocol.ServerConnection`, which owns the protocol and each
request's lifecycle: the adapter feeds received audio to the
:class:`~avatar_nb.server.animator.Animator` and sends the keyframes back, either at
once (``realtime=False``) or when they are due, like a live service: a keyframe is due
``latency_ms`` (plus optional jitter) after the audio of its whole frame arrived, then
crosses the simulated network :class:`~avatar_nb.server.latency.Link`.

Bounded in memory and time, whatever the client does:

- a session queues at most ``max_backlog`` seconds of animation (or one message, if
  larger); beyond it the service stops reading that client's audio until the queue
  drains, so a fast uploader is slowed down, not buffered without end;
- every send has a timeout (``send_timeout``): a client that stops reading is dropped
  (the connection aborted, its slot freed) instead of holding the service's memory;
- timeouts and limits (idle, session time, credits) close the connection whatever is
  queued: the closing error and close frame get a short bounded try, then the
  transport is aborted;
- the ClientConfigureSession must arrive within ``handshake_timeout`` of the upgrade
  (the HTTP upgrade itself is bounded by the server's keep-alive timeout, set to the
  same value in :mod:`avatar_nb.server.service`).

Paced messages wait in the session's :class:`~avatar_nb.server.outbox.Outbox`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from ..errors import CloseCode, ServerErrorCode
from ..flame import FIXED_COLUMNS
from ..protocol import (
    MAX_AUDIO_CHUNK_BYTES,
    AudioReceived,
    InterruptRequested,
    MessageType,
    PlaybackControlRequested,
    WirePlaybackState as PlaybackState,
    ProtocolViolation,
    ServerConnection,
    SessionConfigured,
)
from .animator import Animator
from .latency import Link, Pacer
from .ogg_input import OggOpusInput
from .outbox import Outbox
from .playout import Playout, Report
from .state import ServiceState
from .tokens import InvalidToken

__all__ = ["IngressSession", "check_upgrade", "ingress_handler"]

logger = logging.getLogger("avatar_nb.server")

# the largest audio chunk a client may send, plus room for its envelope (req_id, tags)
_MAX_MESSAGE = MAX_AUDIO_CHUNK_BYTES + 4096
_CLOSE_POLICY = WSCloseCode.POLICY_VIOLATION  # 1008: a handshake the client got wrong
_CLOSE_TIMEOUT = 2.0  # the polite close (error, close frame, the peer's answer) before an abort
_PCM_SLICE_SECONDS = 2.0  # a PCM message is animated in slices of this much audio, the loop let run between
_KEYFRAMES_PER_MESSAGE = 250  # 10 s at 25 fps; 70-120 KB for 50-100 expression coefficients
_SMALL_SEND = 16 * 1024  # bytes a send may write into an empty socket buffer without a timeout
_EMPTY = np.zeros((0, FIXED_COLUMNS), dtype=np.float32)


def _refuse(state: ServiceState, status: int, message: str) -> web.Response:
    """An upgrade refusal as the hosted service words it: ``{"message": ...}`` and a newline."""
    state.stats.refusals += 1
    body = json.dumps({"message": message}, separators=(",", ":")) + "\n"
    return web.Response(status=status, text=body, content_type="application/json")


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
        transport = request.transport
        ws = web.WebSocketResponse(
            compress=state.compression, max_msg_size=_MAX_MESSAGE, timeout=_CLOSE_TIMEOUT
        )
        await ws.prepare(request)
        # replaying a capture, the session answers from it instead of the animator
        make = IngressSession if state.replay is None else state.replay.session_class(IngressSession)
        session = make(state, ws, transport, avatar_id=avatar_id, expires_at=claims.expires_at)
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

    def __init__(
        self,
        state: ServiceState,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None = None,
        *,
        avatar_id: str,
        expires_at: float,
    ) -> None:
        self.state = state
        self.ws = ws
        self.transport = transport
        self.avatar_id = avatar_id
        self.connection_id = state.new_connection_id()
        # egress is decided here (simulated rooms and credentials), so the protocol lets it through
        self.protocol = ServerConnection(
            self.connection_id, capabilities=state.capabilities(), supports_egress=True
        )
        self.loop = asyncio.get_running_loop()
        self.animator: Animator | None = None
        self.sample_rate = 0
        self.ogg_input: OggOpusInput | None = None  # set for an Ogg Opus session
        self.egress = False  # animation goes to a (simulated) room: control frames only
        self.outbox: Outbox | None = None  # paced sessions, once configured
        self.last_audio = self.loop.time()
        self.closing = False
        self.pacer = Pacer(
            state.latency_ms, state.jitter_ms, seed=(state.seed, state.stats.sessions_total)
        )
        self.link = Link(state.net_delay_ms, state.bandwidth_bps)
        self.paced = state.realtime or self.link.active
        self.playout: Playout | None = None
        self._playout_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self._timers: list[asyncio.TimerHandle] = []
        limit = expires_at - time.time()
        if state.session_time_limit is not None:
            limit = min(limit, state.session_time_limit)
        self._timers.append(self.loop.call_later(max(0.0, limit), self._expire))
        self._timers.append(self.loop.call_later(state.handshake_timeout, self._check_configured))
        self._idle_timer: asyncio.TimerHandle | None = None
        if state.idle_timeout:
            self._idle_timer = self.loop.call_later(state.idle_timeout, self._check_idle)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        async for msg in self.ws:
            if self.closing:
                break
            self.state.stats.messages_in += 1
            if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                await self._on_message(msg.data)
            elif msg.type == WSMsgType.ERROR:
                break

    async def shutdown(self) -> None:
        self.closing = True
        self._cancel_timers()
        sender = self.outbox.task if self.outbox is not None else None
        current = asyncio.current_task()
        tasks = [task for task in (sender, *self._tasks) if task not in (None, current)]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if not self.ws.closed:
            try:
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await self.ws.close()
            except (TimeoutError, ConnectionError, RuntimeError):
                self.abort()

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for timer in (self._playout_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()

    def abort(self) -> None:
        """Drop the connection at once: nothing queued is sent, the slot frees."""
        self.closing = True
        self._cancel_timers()
        if self.outbox is not None:
            self.outbox.close()
        if self.transport is not None:
            self.transport.abort()

    def _peer_stalled(self) -> bool:
        """Whether the socket's send buffer is full: the client is not reading."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return transport is not None
        return transport.get_write_buffer_size() >= transport.get_write_buffer_limits()[1]

    async def close(self, code: int, message: str, *, reply: bytes | None = None) -> None:
        """Send ``reply`` (a ServerError) if given, then close the WebSocket with ``code``;
        whatever is queued is dropped, and a peer that does not take the error and the
        close frame within a short time is aborted."""
        if self.closing:
            return
        self.closing = True
        if self.outbox is not None:
            self.outbox.close()
        if self._peer_stalled():
            self.abort()
            return
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                if reply is not None:
                    await self.ws.send_bytes(reply)
                await self.ws.close(code=code, message=message.encode("utf-8")[:120])
        except (TimeoutError, ConnectionError, RuntimeError):
            self.abort()

    def _spawn(self, coro) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn_close(self, code: int, message: str, error: tuple[int, str]) -> None:
        if not self.closing:
            self._spawn(self.close(code, message, reply=self.protocol.error(*error)))

    def _expire(self) -> None:
        self._spawn_close(
            int(CloseCode.SESSION_TIMEOUT),
            "session time limit reached",
            (ServerErrorCode.SESSION_DURATION_EXCEEDED, "session time limit reached"),
        )

    def _check_configured(self) -> None:
        if self.animator is None and not self.closing:
            limit = self.state.handshake_timeout
            self._spawn_close(
                _CLOSE_POLICY,
                "no ClientConfigureSession",
                (ServerErrorCode.OK, f"expected ClientConfigureSession message within {limit:g}s"),
            )

    def _check_idle(self) -> None:
        idle = self.state.idle_timeout
        if idle is None or self.closing:
            return
        remaining = self.last_audio + idle - self.loop.time()
        if remaining > 0:  # audio came meanwhile: check again when it can have run out
            self._idle_timer = self.loop.call_later(remaining, self._check_idle)
            return
        self._spawn_close(
            WSCloseCode.OK, "idle timeout", (ServerErrorCode.OK, f"no audio input for {idle:g}s")
        )

    # ------------------------------------------------------------------ receiving

    async def _on_message(self, data: bytes | str) -> None:
        event = self.protocol.receive(data)
        if isinstance(event, AudioReceived):
            await self._on_audio(event)
        elif isinstance(event, SessionConfigured):
            await self._on_configured(event)
        elif isinstance(event, InterruptRequested):
            await self._on_interrupt(event)
        elif isinstance(event, ProtocolViolation):
            self.state.stats.protocol_errors += 1
            if event.close:
                await self.close(_CLOSE_POLICY, "protocol error", reply=event.reply)
            else:
                await self._send(event.reply)
        elif isinstance(event, PlaybackControlRequested):
            await self._on_playback_control(event)

    async def _on_configured(self, event: SessionConfigured) -> None:
        state = self.state
        if event.egress is not None:
            if state.egress is None:
                code = ServerErrorCode.UNAVAILABLE
                refusal: str | None = "egress client is not configured on server"
            else:
                code = ServerErrorCode.UNAUTHENTICATED
                refusal = state.egress.refusal(event.egress_type, event.egress)
            if refusal is not None:
                await self.close(
                    _CLOSE_POLICY, "egress refused", reply=self.protocol.refuse(code, refusal)
                )
                return
            self.egress = True
        self.sample_rate = event.sample_rate
        self.ogg_input = OggOpusInput.for_session(event.sample_rate, event.audio_format)
        # the mouth lags (positive) or leads the audio by av_offset_ms, to the sample
        offset = round(state.av_offset_ms * event.sample_rate / 1000.0)
        self.animator = Animator(
            event.sample_rate,
            state.fps,
            n_expression=state.n_expression,
            seed=state.seed,
            offset_samples=offset,
        )
        if state.playout or self.egress:
            self.playout = Playout(state.fps, state.pause_limit)
        self.protocol.capabilities = tuple(state.capabilities(egress=self.egress))
        self.last_audio = self.loop.time()
        await self._send(self.protocol.confirm())
        if self.paced:
            self.outbox = Outbox(
                self._animation_bytes,
                self._send_bytes_animation,
                link=self.link,
                max_keyframes=max(1, round(state.max_backlog * state.fps)),
                on_peak=self._note_backlog,
            )

    async def _on_audio(self, event: AudioReceived) -> None:
        animator = self.animator
        assert animator is not None  # the protocol only yields audio after the handshake
        now = self.loop.time()
        self.last_audio = now
        if event.preempted is not None:
            await self._emit(event.preempted, animator.finish(), True, now)
        audio = event.audio
        if self.ogg_input is not None:  # Ogg Opus: the PCM of the pages this chunk completes
            decoded = await self._decode_ogg(event, now)
            if decoded is None:
                return
            audio = decoded
        if not await self._charge(audio):
            return
        audio = await self._feed_slices(event.req_id, audio, now)
        if audio is None:
            return
        keyframes = animator.feed(audio)
        if event.end:
            tail = animator.finish()
            if tail.shape[0]:
                keyframes = np.concatenate((keyframes, tail)) if keyframes.shape[0] else tail
            await self._emit(event.req_id, keyframes, True, now)
        elif keyframes.shape[0]:
            await self._emit(event.req_id, keyframes, False, now)

    async def _feed_slices(self, req_id: str, audio: bytes, arrived: float) -> bytes | None:
        """Animate all but the last :data:`_PCM_SLICE_SECONDS` of ``audio``, a slice at a
        time with the event loop let run between two (a 16 MB message is 500 s of 16 kHz
        audio, about a quarter of a second of animation: other sessions keep their pace);
        the rest, to be fed by the caller. None when the session closed meanwhile."""
        step = 2 * max(1, round(_PCM_SLICE_SECONDS * self.sample_rate))
        if len(audio) <= step:
            return audio
        assert self.animator is not None
        view = memoryview(audio)
        start = 0
        while len(audio) - start > step:
            keyframes = self.animator.feed(view[start : start + step])
            start += step
            if keyframes.shape[0]:
                await self._emit(req_id, keyframes, False, arrived)
            await asyncio.sleep(0)
            if self.closing:
                return None
        return bytes(view[start:])

    async def _decode_ogg(self, event: AudioReceived, arrived: float) -> bytes | None:
        """The last slice of an Ogg Opus chunk's audio; the slices before it are animated
        here, with the event loop let run between two (a small message can decode to
        minutes of audio) and the session's decoding kept to its pace (the wait tells
        the client to slow down: its next message is read after). None when the session
        closed meanwhile."""
        assert self.ogg_input is not None and self.animator is not None
        slices = self.ogg_input.slices(event.req_id, event.audio, event.end)
        previous: bytes | None = None
        try:
            for pcm in slices:
                if previous:
                    if not await self._charge(previous):
                        return None
                    keyframes = self.animator.feed(previous)
                    if keyframes.shape[0]:
                        await self._emit(event.req_id, keyframes, False, arrived)
                if pcm:
                    seconds = len(pcm) / 2 / self.sample_rate
                    await asyncio.sleep(self.ogg_input.pause(seconds, self.loop.time()))
                    if self.closing:
                        return None
                previous = pcm
        finally:
            slices.close()
        problem = self.ogg_input.problem
        if problem is not None:
            await self._send(
                self.protocol.error(ServerErrorCode.INVALID_ARGUMENT, problem, req_id=event.req_id)
            )
        return previous or b""

    async def _charge(self, audio: bytes) -> bool:
        """Count ``audio`` against the credits; False (and the session closing) once they are spent."""
        if self.state.credits_seconds is None:
            return True
        self.state.audio_seconds_used += len(audio) / 2 / self.sample_rate
        if self.state.audio_seconds_used > self.state.credits_seconds:
            await self.close(
                int(CloseCode.CREDITS_EXHAUSTED),
                "credits exhausted",
                reply=self.protocol.error(ServerErrorCode.CREDITS_EXHAUSTED, "credits exhausted"),
            )
            return False
        return True

    async def _on_interrupt(self, event: InterruptRequested) -> None:
        if self.playout is not None and event.req_id:
            self._report(self.playout.interrupt(event.req_id, self.loop.time()))
        if not event.pending:  # nothing to stop: no such request, or its end already went out
            return
        if event.streaming and self.animator is not None:
            self.animator.reset_utterance()
        if self.outbox is None:  # nothing is ever queued: everything went out already
            await self._send_animation(event.req_id, _EMPTY, True)
            return
        # drop what was not sent yet; the interrupted request ends now, ahead of the rest
        self.outbox.end_now(event.req_id, _EMPTY)

    async def _on_playback_control(self, event: PlaybackControlRequested) -> None:
        if self.playout is None:
            # no playback_control capability: ignored without an answer, as spatialreal
            # documents pause/resume where the service does not play out
            self.state.stats.playback_controls_ignored += 1
            return
        now = self.loop.time()
        if event.kind == MessageType.CLIENT_PAUSE:
            self._report(self.playout.pause(event.req_id, now))
        else:
            self._report(self.playout.resume(event.req_id, now))

    # ------------------------------------------------------------------ playout

    def _report(self, reports: list[Report]) -> None:
        """Send playback states (in order, without waiting) and re-arm the playout timer."""
        for report in reports:
            if self.egress and report.state is PlaybackState.ENDED:
                # in egress mode an end control frame also says the playout has drained:
                # the request's end arrives twice, as the hosted egress may deliver it
                self._spawn(self._send(self._animation_bytes(report.req_id, _EMPTY, True)))
            data = self.protocol.playback_state(
                report.req_id, report.state, played_ms=report.played_ms, reason=report.reason
            )
            self._spawn(self._send(data))
        if self._playout_timer is not None:
            self._playout_timer.cancel()
            self._playout_timer = None
        deadline = self.playout.deadline() if self.playout is not None else None
        if deadline is not None and not self.closing:
            self._playout_timer = self.loop.call_at(deadline, self._playout_tick)

    def _playout_tick(self) -> None:
        self._playout_timer = None
        if self.playout is not None and not self.closing:
            self._report(self.playout.tick(self.loop.time()))

    # ------------------------------------------------------------------ sending

    async def _emit(self, req_id: str, keyframes: np.ndarray, end: bool, arrived: float) -> None:
        """Send keyframes now (fast mode) or when due (paced mode), in messages of at most
        ``_KEYFRAMES_PER_MESSAGE`` (a whole clip in one audio message would otherwise make
        one animation message larger than clients take: websockets' default is 1 MiB)."""
        n, step = keyframes.shape[0], _KEYFRAMES_PER_MESSAGE
        for start in range(0, max(n, 1), step):  # an end without keyframes is one message too
            await self._emit_one(
                req_id, keyframes[start : start + step], end and start + step >= n, arrived
            )

    async def _emit_one(
        self, req_id: str, keyframes: np.ndarray, end: bool, arrived: float
    ) -> None:
        if self.outbox is None:
            await self._send_animation(req_id, keyframes, end)
            return
        due = self.pacer.due(arrived) if self.state.realtime else arrived
        # waits while the queue is over its bound: the client is given its animation more
        # slowly than it sends audio, so its audio is not read until the queue drains
        await self.outbox.put(due, req_id, keyframes, end)

    def _note_backlog(self, keyframes: int) -> None:
        self.state.stats.peak_backlog_keyframes = max(
            self.state.stats.peak_backlog_keyframes, keyframes
        )

    def _animation_bytes(self, req_id: str, keyframes: np.ndarray, end: bool) -> bytes:
        # in egress mode the animation goes to the room: the WebSocket gets a control frame
        payload = _EMPTY if self.egress else keyframes
        return self.protocol.animation(req_id, payload, end=end, avatar_id=self.avatar_id)

    async def _send_animation(self, req_id: str, keyframes: np.ndarray, end: bool) -> None:
        await self._send_bytes_animation(
            req_id, keyframes, end, self._animation_bytes(req_id, keyframes, end)
        )

    async def _send_bytes_animation(
        self, req_id: str, keyframes: np.ndarray, end: bool, data: bytes
    ) -> None:
        self.state.stats.keyframes_out += keyframes.shape[0]
        await self._send(data)
        if self.playout is not None:
            self._report(self.playout.delivered(req_id, keyframes.shape[0], end, self.loop.time()))

    async def _send(self, data: bytes) -> None:
        if self.ws.closed or (self.transport is not None and self.transport.is_closing()):
            return
        try:
            transport = self.transport
            if (
                transport is not None
                and not transport.get_write_buffer_size()
                and len(data) <= _SMALL_SEND
            ):
                # the socket takes everything at once: this send cannot wait on the peer
                # (the common case, without the cost of a timer per message)
                await self.ws.send_bytes(data)
            else:
                async with asyncio.timeout(self.state.send_timeout):
                    await self.ws.send_bytes(data)
            self.state.stats.messages_out += 1
        except TimeoutError:
            # the client stopped reading: drop it rather than hold its backlog
            self.state.stats.stalled_peers += 1
            logger.info(
                "session %s: send timed out after %gs, dropping it",
                self.connection_id,
                self.state.send_timeout,
            )
            self.abort()
        except (ConnectionError, RuntimeError):
            self.closing = True
