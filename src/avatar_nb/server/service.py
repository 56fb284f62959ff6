"""LocalService: the embedded avatar service, on loopback, in a thread or on your loop.

One aiohttp application serves the console routes and the ingress WebSocket on one
port. By default the service runs in a background thread with its own event loop, so
it can be used from plain notebook cells and scripts (``with LocalService() as svc``
or ``svc = LocalService().start()``); ``async with LocalService() as svc`` runs it on the
caller's loop instead.
"""

from __future__ import annotations

import asyncio
import gc
import math
import secrets
import threading
from typing import Any

from aiohttp import WSCloseCode, web

from .._loopback import LoopbackServer
from ..errors import InvalidStateError
from ..flame import DEFAULT_FPS
from ..http_api import (
    CONSOLE_TOKEN_SUFFIX,
    INGRESS_PATH,
    LEGACY_SESSION_TOKEN_PATH,
    SESSION_TOKEN_PATH,
    WEBSOCKET_PATH,
)
from .animator import DEFAULT_N_EXPRESSION
from .console import token_handler
from .egress import SimulatedEgress
from .ingress import ingress_handler
from .state import ServiceState

__all__ = ["DEFAULT_IDLE_TIMEOUT", "LocalService", "serve_forever"]

DEFAULT_IDLE_TIMEOUT = 600.0
"""Seconds without audio after which a session is closed (``no audio input for 600s``),
counted from the handshake or the latest audio. The official SDK's connection-pool
example opens 100 sessions and borrows 5 every 30 s for 10 rounds, first in first out,
so its last round uses sessions open and unused for about 270 s (and the 50 never
borrowed wait about 300 s): 600 s passes it with more than twice that to spare, and
still closes a forgotten session within ten minutes (docs/protocol.md, section 7)."""


def _positive(name: str, value: Any, *, allow_zero: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        need = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"{name} must be a number {need}{' or None' if allow_none else ''}, got {value!r}"
        )


class LocalService(LoopbackServer):
    """A real avatar service on loopback that speaks the driven-ingress v2 protocol.

    Credentials are generated per instance unless given: ``api_key`` (for the console),
    ``app_id``, and ``avatar_ids`` (``avatar_id`` is the first). ``other_app_ids`` are
    further known apps (their tokens are refused on this app's sessions with ``app id
    mismatch``). Animation: ``fps`` keyframes a second with ``n_expression`` expression
    coefficients. ``compression`` accepts permessage-deflate when a client offers it,
    as the hosted service does.

    Timing: ``realtime=True`` sends each keyframe ``latency_ms`` (plus up to
    ``jitter_ms`` of seeded half-normal jitter) after the arrival of the audio chunk
    that completed its frame (frames completed in the middle of a chunk count from that
    chunk's arrival); ``realtime=False`` as fast as it can. When a whole clip arrives in
    one message (as the official clients' examples send it: ``send_audio(clip,
    end=True)``), every keyframe of it is due ``latency_ms`` after that message
    arrived, so they all leave together, in one animation message: the service does
    not spread them over the clip's duration; a player paces them by their index.

    Simulated conditions with known ground truth (for validating analyses):
    ``av_offset_ms``: the mouth lags (positive) or leads (negative) the audio by that
    many milliseconds, exactly (the motion is computed from the audio shifted by the
    offset, in samples); a leading mouth waits for the audio it anticipates, so its
    keyframes leave that much later. ``net_delay_ms``: a one-way network delay added to
    every animation message; ``bandwidth_bps``: a per-connection link of that many
    bits per second (None: unlimited) that serialises animation messages by their
    size. Both need paced sending: with ``realtime=False`` they apply with no latency.

    Playout: ``playout=True`` simulates a player (see :mod:`avatar_nb.server.playout`):
    the service declares the ``playback_control`` and ``playback_state`` capabilities,
    answers pause/resume with the state after the operation and reports PLAYING, ENDED
    and INTERRUPTED (``explicit``, ``preempted``, or ``pause_timeout`` after a pause held
    longer than ``pause_limit`` seconds).

    Egress: the hosted service always has it, and so does this one by default
    (``egress=True``: a :class:`~avatar_nb.server.egress.SimulatedEgress` with one
    LiveKit room and one Agora channel and credentials generated per service, see
    :attr:`egress`); a given ``SimulatedEgress`` sets the rooms, channels and
    credentials. Sessions configured with ones it knows get empty control frames and
    playback states; other credentials are refused at the handshake with ServerError
    code 16 (``unauthorized``, which avatarkit classifies ``invalidEgressConfig``).
    ``egress=False`` (or None) turns it off: egress sessions then get code 14 (``egress
    client is not configured on server``).

    Limits: ``idle_timeout`` seconds without audio (counted from the handshake or the
    latest audio) end a session with ``no audio input for <n>s`` (default
    :data:`DEFAULT_IDLE_TIMEOUT`, 600 s: the official SDK's connection-pool example
    leaves pooled sessions unused for up to about 300 s; None disables it);
    ``session_time_limit`` (and the token's expiry) close it with 4002;
    ``max_sessions`` refuses more concurrent sessions (429); ``credits_seconds`` of
    audio, once used up, close sessions with 4001. Protection against clients that
    misbehave: ``handshake_timeout`` seconds for the HTTP upgrade and then for the
    ClientConfigureSession (silent or slow connections are closed); ``send_timeout``
    seconds for any send (a client that stops reading is dropped and its slot freed);
    ``max_backlog`` seconds of animation queued per session, beyond which the service
    stops reading that client's audio until the queue drains.

    Replay: ``replay`` (a capture file of ``avatar-nb tap``, a
    :class:`~avatar_nb.tap.Capture` or :class:`~avatar_nb.tap.Replay`) makes every
    session answer with the capture's server messages instead of animating, each timed
    relative to the client's message it followed in the capture
    (:mod:`avatar_nb.tap.replay`); the app id and avatar id default to the capture's.
    """

    _what = "the local service"
    _thread_name = "avatar_nb-local-service"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        app_id: str | None = None,
        avatar_ids: list[str] | tuple[str, ...] | None = None,
        other_app_ids: tuple[str, ...] = (),
        fps: float = DEFAULT_FPS,
        realtime: bool = True,
        latency_ms: float = 80.0,
        jitter_ms: float = 0.0,
        n_expression: int = DEFAULT_N_EXPRESSION,
        session_time_limit: float | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        compression: bool = True,
        seed: int = 0,
        max_sessions: int | None = None,
        credits_seconds: float | None = None,
        av_offset_ms: float = 0.0,
        net_delay_ms: float = 0.0,
        bandwidth_bps: float | None = None,
        playout: bool = False,
        pause_limit: float = 30.0,
        egress: SimulatedEgress | bool | None = True,
        send_timeout: float = 10.0,
        handshake_timeout: float = 5.0,
        max_backlog: float = 10.0,
        replay: Any = None,
    ) -> None:
        _positive("fps", fps)
        _positive("latency_ms", latency_ms, allow_zero=True)
        _positive("jitter_ms", jitter_ms, allow_zero=True)
        _positive("session_time_limit", session_time_limit, allow_none=True)
        _positive("idle_timeout", idle_timeout, allow_none=True)
        _positive("credits_seconds", credits_seconds, allow_zero=True, allow_none=True)
        _positive("net_delay_ms", net_delay_ms, allow_zero=True)
        _positive("bandwidth_bps", bandwidth_bps, allow_none=True)
        _positive("pause_limit", pause_limit)
        _positive("send_timeout", send_timeout)
        _positive("handshake_timeout", handshake_timeout)
        _positive("max_backlog", max_backlog)
        ok = (
            isinstance(av_offset_ms, (int, float))
            and not isinstance(av_offset_ms, bool)
            and math.isfinite(av_offset_ms)
        )
        if not ok or abs(av_offset_ms) > 1000.0:
            raise ValueError(
                f"av_offset_ms must be a number of milliseconds in -1000..1000, got {av_offset_ms!r}"
            )
        if egress is True:
            egress = SimulatedEgress.generated()
        elif egress is False:
            egress = None
        if egress is not None and not isinstance(egress, SimulatedEgress):
            raise ValueError(
                "egress must be True (simulated, generated credentials), a SimulatedEgress, "
                f"or False/None (no egress), got {type(egress).__name__}"
            )
        if not isinstance(n_expression, int) or n_expression < 0:
            raise ValueError(f"n_expression must be an int >= 0, got {n_expression!r}")
        if max_sessions is not None and (
            not isinstance(max_sessions, int) or isinstance(max_sessions, bool) or max_sessions < 1
        ):
            raise ValueError(f"max_sessions must be an int >= 1 or None, got {max_sessions!r}")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int in 0..65535 (0 picks a free one), got {port!r}")
        if replay is not None:  # a capture (path, Capture or Replay): its app and avatar by default
            from ..tap.replay import Replay

            replay = Replay.of(replay)
            app_id = app_id or replay.app_id or None
            avatar_ids = avatar_ids or ([replay.avatar_id] if replay.avatar_id else None)
        avatars = tuple(avatar_ids) if avatar_ids else (f"avatar-{secrets.token_hex(4)}",)
        self.host = host
        self._requested_port = port
        self.state = ServiceState(
            api_key=api_key or f"sk-local-{secrets.token_hex(16)}",
            app_id=app_id or f"app-{secrets.token_hex(4)}",
            avatar_ids=avatars,
            other_app_ids=tuple(other_app_ids),
            fps=float(fps),
            realtime=bool(realtime),
            latency_ms=float(latency_ms),
            jitter_ms=float(jitter_ms),
            n_expression=n_expression,
            session_time_limit=session_time_limit,
            idle_timeout=idle_timeout,
            compression=bool(compression),
            seed=int(seed),
            max_sessions=max_sessions,
            credits_seconds=credits_seconds,
            av_offset_ms=float(av_offset_ms),
            net_delay_ms=float(net_delay_ms),
            bandwidth_bps=None if bandwidth_bps is None else float(bandwidth_bps),
            playout=bool(playout),
            pause_limit=float(pause_limit),
            egress=egress,
            send_timeout=float(send_timeout),
            handshake_timeout=float(handshake_timeout),
            max_backlog=float(max_backlog),
            replay=replay,
        )
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ identity

    def __repr__(self) -> str:
        where = self.base_url if self._port else "not started"
        return f"<LocalService {where} app_id={self.app_id!r} avatar_id={self.avatar_id!r}>"

    @property
    def running(self) -> bool:
        return self._runner is not None

    def _not_running(self) -> Exception:
        return InvalidStateError(
            "the service is not running: call start() or use it as a context manager"
        )

    @property
    def api_key(self) -> str:
        return self.state.api_key

    @property
    def app_id(self) -> str:
        return self.state.app_id

    @property
    def avatar_id(self) -> str:
        return self.state.avatar_ids[0]

    @property
    def avatar_ids(self) -> tuple[str, ...]:
        return self.state.avatar_ids

    @property
    def fps(self) -> float:
        return self.state.fps

    @property
    def egress(self) -> SimulatedEgress | None:
        """The simulated egress: the LiveKit rooms, Agora channels and credentials it
        accepts (None when turned off)."""
        return self.state.egress

    @property
    def stats(self) -> dict[str, int]:
        """Counters: sessions, tokens, refusals, messages and keyframes in and out."""
        return self.state.stats.as_dict()

    def session_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for :func:`avatar_nb.new_avatar_session` against this service."""
        kwargs: dict[str, Any] = {
            "api_key": self.api_key,
            "app_id": self.app_id,
            "avatar_id": self.avatar_id,
            "console_endpoint_url": self.console_url,
            "ingress_endpoint_url": self.ingress_url,
        }
        kwargs.update(overrides)
        return kwargs

    def issue_token(self, app_id: str | None = None, expire_at: float | None = None) -> str:
        """A session token signed by this service (for tests of the upgrade checks)."""
        import time

        expires = int(expire_at if expire_at is not None else time.time() + 300)
        return self.state.signer.issue(app_id or self.app_id, expires)

    # ------------------------------------------------------------------ running on a loop

    def _app(self) -> web.Application:
        app = web.Application()
        console = token_handler(self.state, "sessionToken")
        auth = token_handler(self.state, "session_token")
        # every route a client's fallback asks when given this service's console_url
        # (.../v1/console/session-tokens) or its base_url (.../session-tokens)
        app.router.add_post(LEGACY_SESSION_TOKEN_PATH, console)
        app.router.add_post(CONSOLE_TOKEN_SUFFIX, console)
        app.router.add_post(SESSION_TOKEN_PATH, auth)
        app.router.add_get(INGRESS_PATH + WEBSOCKET_PATH, ingress_handler(self.state))
        app.router.add_get("/healthz", self._health)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "sessions_active": self.state.stats.sessions_active})

    async def _astart(self) -> None:
        if self._runner is not None:
            raise InvalidStateError("the service is already running")
        # keepalive_timeout also bounds a connection that has not sent a whole request yet
        # (silent TCP, slowloris): it is closed after handshake_timeout
        runner = web.AppRunner(
            self._app(),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=1.0,
            keepalive_timeout=self.state.handshake_timeout,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port, backlog=1024)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        sockets = runner.addresses
        self._port = int(sockets[0][1])
        self._runner = runner

    async def _astop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for session in list(self.state.sessions):
            await session.close(WSCloseCode.GOING_AWAY, "service stopping")
        await runner.cleanup()

    def _check_startable(self) -> None:
        if self._thread is not None or self._runner is not None:
            raise InvalidStateError("the service is already running")


async def _serve(service: LocalService, ready: Any = None) -> None:
    async with service:
        # A process that only serves: what exists now (modules, numpy, aiohttp) lives
        # as long as the process, and a full collection scanning it stalls every
        # session for ~10 ms. Frozen objects are left out of collections.
        gc.collect()
        gc.freeze()
        if ready is not None:
            ready(service)
        await asyncio.Event().wait()  # until cancelled (Ctrl-C)


def describe(service: LocalService) -> str:
    """Human-readable URLs and credentials of a running service (for ``avatar-nb serve``)."""
    return "\n".join(
        [
            f"avatar_nb local service listening on {service.base_url}",
            f"  console_endpoint_url = {service.console_url}",
            f"  ingress_endpoint_url = {service.ingress_url}",
            f"  api_key              = {service.api_key}",
            f"  app_id               = {service.app_id}",
            f"  avatar_id            = {service.avatar_id}",
            f"  fps = {service.fps:g}, realtime = {service.state.realtime}, latency = {service.state.latency_ms:g} ms",
            f"  idle_timeout = {_seconds(service.state.idle_timeout)}",
            _conditions_line(service.state),
            _limits_line(service.state),
            f"  playout = on (pause_limit {service.state.pause_limit:g} s)" if service.state.playout
            else "  playout = off (pause and resume are ignored)",
            *_egress_lines(service.egress),
            *([f"  replaying {service.state.replay!r}"] if service.state.replay is not None else []),
        ]
    )


def _conditions_line(state: ServiceState) -> str:
    bandwidth = "unlimited" if state.bandwidth_bps is None else f"{state.bandwidth_bps:g} bit/s"
    return (
        f"  conditions: jitter {state.jitter_ms:g} ms, av_offset {state.av_offset_ms:g} ms, "
        f"net_delay {state.net_delay_ms:g} ms, bandwidth {bandwidth}"
    )


def _limits_line(state: ServiceState) -> str:
    sessions = "none" if state.max_sessions is None else str(state.max_sessions)
    return (
        f"  limits: session_time_limit {_seconds(state.session_time_limit)}, max_sessions {sessions}, "
        f"credits_seconds {_seconds(state.credits_seconds)}"
    )


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:g} s"


def _egress_lines(egress: SimulatedEgress | None) -> list[str]:
    if egress is None:
        return ["  egress = off (egress sessions get code 14)"]
    return ["  egress = simulated; accepted (others get code 16 unauthorized):"] + [
        f"    {line}" for line in egress.describe()
    ]


def serve_forever(
    host: str = "127.0.0.1", port: int = 0, *, ready: Any = None, **kwargs: Any
) -> None:
    """Run a LocalService in this thread until interrupted (Ctrl-C returns cleanly).

    ``ready(service)`` is called once it listens (default: print :func:`describe`).
    """
    service = LocalService(host, port, **kwargs)
    if ready is None:

        def ready(svc: LocalService) -> None:
            print(describe(svc), flush=True)

    try:
        asyncio.run(_serve(service, ready))
    except KeyboardInterrupt:
        pass
