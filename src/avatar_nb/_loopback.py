"""What every avatar_nb server on loopback shares: its addresses and its lifetime.

The local service (:class:`avatar_nb.server.LocalService`) and the recording proxy
(:class:`avatar_nb.tap.TapProxy`) both serve the console at ``/v1/console`` and the
ingress at ``/v2/driveningress`` from one aiohttp server, and both run either on the
caller's event loop (``async with``) or in a thread with a loop of its own
(:meth:`~LoopbackServer.start` / :meth:`~LoopbackServer.stop`, ``with``). A subclass
sets ``host``, ``_port``, ``_thread`` and ``_loop`` in its ``__init__`` and implements
``_astart`` (which sets ``_port``) and ``_astop``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, TypeVar

from .http_api import CONSOLE_SUFFIX, INGRESS_PATH

_S = TypeVar("_S", bound="LoopbackServer")


class LoopbackServer:
    """Addresses and lifetime of a console + ingress server (see the module docstring)."""

    _what = "the server"  # for messages: "the local service", "the proxy"
    _thread_name = "avatar_nb-server"

    host: str
    _port: int | None
    _thread: threading.Thread | None
    _loop: asyncio.AbstractEventLoop | None

    async def _astart(self) -> None:
        raise NotImplementedError

    async def _astop(self) -> None:
        raise NotImplementedError

    def _not_running(self) -> Exception:
        """The error for asking a stopped server its address."""
        return RuntimeError(f"{self._what} is not running")

    def _check_startable(self) -> None:
        """Raise when :meth:`start` must not run now (a subclass decides)."""

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        if self._port is None:
            raise self._not_running()
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def console_url(self) -> str:
        return self.base_url + CONSOLE_SUFFIX

    @property
    def ingress_url(self) -> str:
        return self.base_url + INGRESS_PATH

    # ------------------------------------------------------------------ on the caller's loop

    async def __aenter__(self: _S) -> _S:
        await self._astart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._astop()

    # ------------------------------------------------------------------ in a thread of its own

    def start(self: _S, timeout: float = 10.0) -> _S:
        """Run in a background thread with its own event loop; return self."""
        self._check_startable()
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._astart())
            except BaseException as exc:  # noqa: BLE001 - reported to the caller of start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._astop())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=main, name=self._thread_name, daemon=True)
        self._thread = thread
        thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"{self._what} did not start within {timeout} s")
        if failure:
            self._thread = None
            thread.join()
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop what :meth:`start` started (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None
        self._loop = None
        self._port = None

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
