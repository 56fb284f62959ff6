"""The recording proxy: any client, any avatar service, every message written down.

:class:`TapProxy` listens on one port and serves the console under ``/v1/console``
(and the token routes clients derive from it: ``/v1/auth/session-token``,
``/v1/console/session-tokens``) and the ingress under ``/v2/driveningress``. Console
requests are forwarded to the upstream console as they are (method, headers, body;
the answer likewise, not decompressed, at most ``max_message`` bytes) and each is
written as one line of ``console.jsonl`` in the output folder (:mod:`.console`: method,
path, status, seconds, sizes, the error of a refusal, a small JSON answer with every
credential redacted; never a session token or an API key). Each WebSocket session is
forwarded message by message, in both directions, unchanged (binary stays binary,
text stays text; the close code and reason are passed on), and recorded into its
own capture file (:mod:`avatar_nb.tap.fileformat`): the upgrade with credentials
redacted, every message with its direction, the monotonic time the proxy read it and
its bytes, the closes.

Bounded, whatever the peers do: each direction reads a message only once the one
before has been forwarded and written, so a session holds at most one message per
direction plus the sockets' buffers (websockets' ``max_queue`` of 1 frame and a 64
KiB write limit upstream, aiohttp's 64 KiB read-ahead downstream); a message larger
than ``max_message`` closes the session (1009). Every wait on a peer has a timeout:
``io_timeout`` for the upstream connection, the upgrade, each send and the closing
handshakes; ``idle_timeout`` for a session in which neither side sends anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import aiohttp
import websockets
from aiohttp import WSMsgType, web
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .. import _wire
from .._loopback import LoopbackServer
from ..http_api import (
    CONSOLE_SUFFIX,
    INGRESS_PATH,
    WEBSOCKET_PATH,
    check_console_url,
    check_ingress_url,
)
from ..protocol import MessageType
from .console import ConsoleLog, console_entry
from .fileformat import CAPTURE_SUFFIX, CLIENT, SERVER, CaptureWriter
from .redact import redact_configure, redact_headers, redact_query

__all__ = ["TapProxy", "run_tap"]

logger = logging.getLogger("avatar_nb.tap")

DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
_HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "content-length",
    }
)
_WS_HANDSHAKE = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-accept",
     "sec-websocket-protocol", "user-agent"}
)
_UNSENDABLE = (1005, 1006, 1015)  # close codes a peer may report but never send


class _AnswerTooLarge(Exception):
    """The upstream console's answer is over ``max_message`` bytes (args: its size so far)."""


class TapProxy(LoopbackServer):
    """A recording proxy between clients and an avatar service (see the module docs).

    ``upstream_console``: the service's console URL (``.../v1/console`` or a root);
    ``upstream_ingress``: its ingress URL (``http(s)``/``ws(s)``, e.g.
    ``https://host/v2/driveningress``); ``out``: the folder for the capture files.
    Run it on a loop (``async with TapProxy(...)``) or in a thread (``start()`` /
    ``stop()``, or ``with``). :attr:`console_url` and :attr:`ingress_url` are what a
    client is pointed at; :attr:`captures` lists the files written so far.
    """

    _what = "the proxy"
    _thread_name = "avatar_nb-tap"

    def __init__(
        self,
        upstream_console: str,
        upstream_ingress: str,
        out: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        io_timeout: float = 10.0,
        idle_timeout: float = 900.0,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        check_console_url(upstream_console)
        check_ingress_url(upstream_ingress)
        for name, value in (("io_timeout", io_timeout), ("idle_timeout", idle_timeout)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self.upstream_console = upstream_console.rstrip("/")
        self.upstream_root = self.upstream_console.removesuffix(CONSOLE_SUFFIX)
        parts = urlsplit(upstream_ingress)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
        self.upstream_ingress = urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))
        self.out = Path(out)
        self.host = host
        self._requested_port = port
        self.io_timeout = float(io_timeout)
        self.idle_timeout = float(idle_timeout)
        self.max_message = int(max_message)
        self.captures: list[Path] = []
        self._console_log = ConsoleLog(self.out)
        self.cut_short: list[Path] = []  # captures of the sessions a stop ended (see _astop)
        self._stopping = False
        self.stats = {"sessions": 0, "refused": 0, "console_requests": 0, "messages": 0, "bytes": 0}
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._port: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ addresses

    def _not_running(self) -> Exception:
        return RuntimeError("the proxy is not running")

    def __repr__(self) -> str:
        where = self.base_url if self._port else "not started"
        return f"<TapProxy {where} -> {self.upstream_ingress} captures={len(self.captures)}>"

    # ------------------------------------------------------------------ running

    async def _astart(self) -> None:
        self._stopping = False
        self.out.mkdir(parents=True, exist_ok=True)
        self._console_log.open()
        app = web.Application(client_max_size=self.max_message)
        app.router.add_get(INGRESS_PATH + WEBSOCKET_PATH, self._ingress)
        app.router.add_route("*", "/{tail:.*}", self._console)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0,
                               keepalive_timeout=self.io_timeout)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port, backlog=1024)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._port = int(runner.addresses[0][1])
        self._runner = runner
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.io_timeout), auto_decompress=False
        )

    async def _astop(self) -> None:
        self._stopping = True
        runner, self._runner = self._runner, None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._http is not None:
            await self._http.close()
            self._http = None
        if runner is not None:
            await runner.cleanup()
        self._console_log.close()  # after the cleanup: the last console handlers have written their lines

    # ------------------------------------------------------------------ console (HTTP)

    def _console_target(self, request: web.Request) -> str:
        path = request.rel_url.raw_path
        if path == CONSOLE_SUFFIX or path.startswith(CONSOLE_SUFFIX + "/"):
            url = self.upstream_console + path[len(CONSOLE_SUFFIX):]
        else:
            url = self.upstream_root + path
        query = request.rel_url.raw_query_string
        return url + ("?" + query if query else "")

    async def _read_answer(self, answer: aiohttp.ClientResponse) -> bytes:
        """The upstream's answer body, at most ``max_message`` bytes (``_AnswerTooLarge``
        beyond); the session's total timeout (``io_timeout``) bounds the wait."""
        limit = self.max_message
        if answer.content_length is not None and answer.content_length > limit:
            raise _AnswerTooLarge(answer.content_length)
        parts: list[bytes] = []
        size = 0
        while True:
            part = await answer.content.read(min(64 * 1024, limit + 1 - size))
            if not part:
                return b"".join(parts)
            parts.append(part)
            size += len(part)
            if size > limit:
                raise _AnswerTooLarge(size)

    async def _console(self, request: web.Request) -> web.StreamResponse:
        self.stats["console_requests"] += 1
        assert self._http is not None
        t0 = time.monotonic()
        started = datetime.now(timezone.utc).isoformat()
        target = self._console_target(request)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        result: dict[str, Any] = {"status": None, "request_bytes": 0, "content": b"", "headers": None, "error": None}
        try:
            try:
                body = await asyncio.wait_for(request.read(), self.io_timeout)
                result["request_bytes"] = len(body)
                async with self._http.request(
                    request.method, target, headers=headers, data=body,
                    allow_redirects=False, skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
                ) as answer:
                    content = await self._read_answer(answer)
                    result.update(status=answer.status, content=content, headers=answer.headers)
                    out = [(k, v) for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP]
                    response = web.Response(status=answer.status, body=content)
                    for k, v in out:
                        response.headers.add(k, v)
                    return response
            except (aiohttp.ClientError, TimeoutError, OSError, _AnswerTooLarge) as exc:
                if isinstance(exc, _AnswerTooLarge):
                    reason = f"answer larger than max_message ({exc.args[0]} > {self.max_message} bytes)"
                elif isinstance(exc, TimeoutError):
                    reason = type(exc).__name__
                else:
                    reason = str(exc) or type(exc).__name__
                response = web.json_response({"message": f"upstream console unavailable: {reason}"}, status=502)
                result.update(status=502, content=response.body, headers=response.headers,
                              error=f"upstream console unavailable: {reason}")
                return response
        except web.HTTPException as exc:  # the client's body over max_message (413): aiohttp answers it
            result.update(status=exc.status, error=exc.text or exc.reason)
            raise
        except asyncio.CancelledError:
            result["error"] = "the proxy stopped before the answer" if self._stopping else "cancelled before the answer"
            raise
        finally:
            self._console_log.write(console_entry(
                time=started, t=t0, method=request.method, path=request.rel_url.raw_path,
                query=request.rel_url.raw_query_string, upstream=target.partition("?")[0],
                request_headers=request.headers.items(), request_bytes=result["request_bytes"],
                status=result["status"], seconds=time.monotonic() - t0, response_headers=result["headers"],
                content=result["content"], error=result["error"],
            ))

    # ------------------------------------------------------------------ ingress (WebSocket)

    def _new_capture(self) -> CaptureWriter:
        self._seq += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        writer = CaptureWriter(self.out / f"session-{stamp}-{self._seq:04d}{CAPTURE_SUFFIX}")
        self.captures.append(writer.path)
        return writer

    async def _ingress(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await self._session(request)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _session(self, request: web.Request) -> web.StreamResponse:
        t_upgrade = time.monotonic()
        query = request.rel_url.raw_query_string
        url = self.upstream_ingress + WEBSOCKET_PATH + ("?" + query if query else "")
        forward = [
            (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP | _WS_HANDSHAKE
        ]
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        params = dict(parse_qsl(query, keep_blank_values=True))
        meta: dict[str, Any] = {
            "created": datetime.now(timezone.utc).isoformat(),
            "clock": "monotonic",
            "t_upgrade": t_upgrade,
            "app_id": request.headers.get("X-App-ID") or params.get("appId", ""),
            "avatar_id": params.get("id", ""),
            "client": request.headers.get("User-Agent", ""),
            "upstream_ingress": self.upstream_ingress,
        }
        upgrade: dict[str, Any] = {
            "method": request.method,
            "path": request.rel_url.raw_path,
            "query": redact_query(query),
            "headers": redact_headers(request.headers.items()),
        }
        capture = self._new_capture()
        try:
            try:
                upstream = await websockets.connect(
                    url,
                    additional_headers=forward,
                    user_agent_header=request.headers.get("User-Agent"),
                    subprotocols=protocols or None,
                    compression=None,
                    max_size=self.max_message,
                    max_queue=1,
                    write_limit=64 * 1024,
                    open_timeout=self.io_timeout,
                    close_timeout=self.io_timeout,
                    ping_interval=None,
                    proxy=None,
                )
            except InvalidStatus as exc:
                answer = exc.response
                body = bytes(answer.body or b"")
                upgrade.update(status=answer.status_code, response_headers=redact_headers(answer.headers.raw_items()),
                               body=body.decode("utf-8", "replace"))
                capture.header({**meta, "upgrade": upgrade})
                self.stats["refused"] += 1
                response = web.Response(status=answer.status_code, body=body)
                for k, v in answer.headers.raw_items():
                    if k.lower() not in _HOP_BY_HOP:
                        response.headers.add(k, v)
                return response
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                reason = f"upstream ingress unavailable: {type(exc).__name__}: {exc}"
                upgrade.update(status=502, body=reason)
                capture.header({**meta, "upgrade": upgrade})
                capture.note(reason)
                self.stats["refused"] += 1
                return web.json_response({"message": reason}, status=502)
            upgrade.update(
                status=101, response_headers=redact_headers(upstream.response.headers.raw_items())
            )
            ws = web.WebSocketResponse(
                autoclose=False, autoping=True, compress=False, max_msg_size=self.max_message,
                timeout=self.io_timeout, protocols=[upstream.subprotocol] if upstream.subprotocol else (),
            )
            try:
                async with asyncio.timeout(self.io_timeout):
                    await ws.prepare(request)
            except (TimeoutError, ConnectionError, RuntimeError) as exc:
                capture.header({**meta, "upgrade": upgrade})
                capture.note(f"the client left during the upgrade: {type(exc).__name__}")
                upstream.transport.abort()
                return ws
            capture.header({**meta, "upgrade": upgrade})
            self.stats["sessions"] += 1
            await _Relay(self, ws, upstream, capture, request.transport).run()
            return ws
        except asyncio.CancelledError:  # the proxy stops (_astop): this session ends with it
            if self._stopping:
                self.cut_short.append(capture.path)
            if not capture.has_header:  # still upgrading: no answer from the service yet
                capture.header({**meta, "upgrade": upgrade})
                capture.note("the proxy stopped during the upgrade" if self._stopping else "cancelled during the upgrade")
            raise
        except BaseException as exc:
            if not capture.has_header:  # a file read back must start with its header, whatever happened
                capture.header({**meta, "upgrade": upgrade})
                capture.note(f"the upgrade failed: {type(exc).__name__}: {exc}")
            raise
        finally:
            capture.end()


_SMALL_SEND = 16 * 1024


def _fits(transport: Any, data: bytes | str) -> bool:
    """Whether a send of ``data`` cannot wait on the peer: an empty socket buffer and a
    small message (the common case, without the cost of a timer per message)."""
    return transport is not None and not transport.get_write_buffer_size() and len(data) <= _SMALL_SEND


def _is_configure(data: bytes) -> bool:
    """Whether a client message is a ClientConfigureSession (the one that may carry egress
    credentials), by the compiled decoder: a few microseconds for any other message."""
    try:
        return _wire.decode_message(data).type == MessageType.CLIENT_CONFIGURE_SESSION
    except ValueError:
        return False


class _Relay:
    """Both directions of one session: read a message, forward it, write it down."""

    def __init__(self, proxy: TapProxy, ws: web.WebSocketResponse, upstream: Any, capture: CaptureWriter,
                 transport: asyncio.Transport | None) -> None:
        self.proxy = proxy
        self.ws = ws
        self.upstream = upstream
        self.capture = capture
        self.transport = transport
        self.io = proxy.io_timeout
        self.last_activity = time.monotonic()
        self.done = False

    def _record(self, direction: int, t: float, data: bytes | str) -> None:
        redacted = None
        if direction == CLIENT and not isinstance(data, str) and _is_configure(data):
            redacted = redact_configure(data)  # egress credentials never reach the file
        if redacted is not None:
            self.capture.message(direction, t, redacted, redacted=True)
        else:
            self.capture.message(direction, t, data)
        self.proxy.stats["messages"] += 1
        self.proxy.stats["bytes"] += len(data)

    def _abort_both(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        with contextlib.suppress(Exception):
            self.upstream.transport.abort()

    async def run(self) -> None:
        up = asyncio.ensure_future(self._client_to_server())
        down = asyncio.ensure_future(self._server_to_client())
        watchdog = asyncio.ensure_future(self._idle_watchdog())
        try:
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            # one side ended: the other gets the closing handshake's time to finish
            rest = {up, down} - done
            if rest:
                _, pending = await asyncio.wait(rest, timeout=2 * self.io + 1.0)
                for task in pending:
                    task.cancel()
                    self.capture.note("a direction did not finish after the other closed; aborted")
                if pending:
                    self._abort_both()
                    await asyncio.wait(pending, timeout=1.0)
            for task in (up, down):
                if task.done() and not task.cancelled() and task.exception() is not None:
                    exc = task.exception()
                    self.capture.note(f"relay failed: {type(exc).__name__}: {exc}")
                    self._abort_both()
        except asyncio.CancelledError:
            self.capture.note("the proxy stopped")
            self._abort_both()
            raise
        finally:
            self.done = True
            watchdog.cancel()
            for task in (up, down):
                task.cancel()

    async def _idle_watchdog(self) -> None:
        limit = self.proxy.idle_timeout
        while not self.done:
            remaining = self.last_activity + limit - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            self.capture.note(f"no message either way for {limit:g} s (idle_timeout); closed")
            self.capture.close_record("proxy", 1001, "tap idle timeout")
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.io):
                    await self.upstream.close(1001, "tap idle timeout")
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.io):
                    await self.ws.close(code=1001, message=b"tap idle timeout")
            self._abort_both()
            return

    async def _client_to_server(self) -> None:
        ws, upstream = self.ws, self.upstream
        while True:
            msg = await ws.receive()
            t = time.monotonic()
            self.last_activity = t
            kind = msg.type
            if kind is WSMsgType.BINARY or kind is WSMsgType.TEXT:
                try:
                    if _fits(upstream.transport, msg.data):
                        await upstream.send(msg.data)  # the socket takes it at once: no wait on the peer
                    else:
                        async with asyncio.timeout(self.io):
                            await upstream.send(msg.data)
                except TimeoutError:
                    self.capture.note(f"the service took no data for {self.io:g} s; session aborted")
                    self._abort_both()
                    return
                except ConnectionClosed:
                    return  # the other direction reports the close
                self._record(CLIENT, t, msg.data)
            elif kind is WSMsgType.CLOSE:
                code = int(msg.data) if msg.data else 1005
                reason = msg.extra or ""
                self.capture.close_record("client", code, reason, t)
                with contextlib.suppress(Exception):
                    if code in _UNSENDABLE:
                        await upstream.close()
                    else:
                        await upstream.close(code, reason)
                return
            elif kind is WSMsgType.CLOSING:
                return  # the proxy is closing this side (the service closed)
            else:  # CLOSED or ERROR: the client went away without a closing handshake
                if kind is WSMsgType.ERROR:
                    code = 1009 if "size" in str(msg.data).lower() else None
                    self.capture.note(f"client connection error: {msg.data}")
                    if code is not None:  # too large: aiohttp already closed the client with 1009
                        self.capture.close_record("proxy", code, "message too big", t)
                        with contextlib.suppress(Exception):
                            await upstream.close(1009, "message too big")
                        return
                self.capture.close_record("client", None, "connection lost", t)
                upstream.transport.abort()
                return

    async def _server_to_client(self) -> None:
        ws, upstream = self.ws, self.upstream
        while True:
            try:
                data = await upstream.recv()
            except ConnectionClosed as exc:
                t = time.monotonic()
                received = exc.rcvd
                if received is None:
                    self.capture.close_record("server", None, "connection lost", t)
                    sent = exc.sent
                    if sent is not None and sent.code == 1009:  # the service sent more than max_message
                        await self._close_client(1009, "message too big")
                    elif self.transport is not None:
                        self.transport.abort()
                    return
                self.capture.close_record("server", received.code, received.reason, t)
                code = received.code if received.code not in _UNSENDABLE else 1000
                await self._close_client(code, received.reason)
                return
            t = time.monotonic()
            self.last_activity = t
            try:
                if _fits(self.transport, data):  # the socket takes it at once: no wait on the peer
                    await (ws.send_str(data) if isinstance(data, str) else ws.send_bytes(data))
                else:
                    async with asyncio.timeout(self.io):
                        if isinstance(data, str):
                            await ws.send_str(data)
                        else:
                            await ws.send_bytes(data)
            except TimeoutError:
                self.capture.note(f"the client took no data for {self.io:g} s; session aborted")
                self._abort_both()
                return
            except (ConnectionError, RuntimeError):
                return  # the client is gone: the other direction reports it
            self._record(SERVER, t, data)

    async def _close_client(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(self.io + 1.0):
                await self.ws.close(code=code, message=reason.encode("utf-8")[:123])
        except (TimeoutError, ConnectionError, RuntimeError):
            if self.transport is not None:
                self.transport.abort()


# ----------------------------------------------------------------------------- CLI


def run_tap(listen: str, upstream_console: str, upstream_ingress: str, out: str | Path,
            *, ready: Any = None, **options: Any) -> TapProxy:
    """Run a :class:`TapProxy` in this thread until interrupted (``avatar-nb tap``); return
    it, stopped: every capture it wrote is finished (:attr:`TapProxy.captures`, and
    :attr:`TapProxy.cut_short` for the sessions the stop ended)."""
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}") from None
    proxy = TapProxy(upstream_console, upstream_ingress, out, host=host, port=port, **options)

    async def main() -> None:
        async with proxy:
            # a process that only proxies: what exists now lives as long as the process,
            # and a full collection scanning it would stall every session
            gc.collect()
            gc.freeze()
            if ready is not None:
                ready(proxy)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return proxy
