"""Every wait on a peer is bounded: a server that stops reading, never confirms, or never
answers the upgrade ends the session with a classified error within the documented
timeout. pytest-timeout is the only clock here: without the bounds these tests hang."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import numpy as np
import pytest
import websockets
from aiohttp import web
from websockets.asyncio.server import serve

from avatar_nb import AvatarSDKError, AvatarSDKErrorCode, _wire, new_avatar_session
from avatar_nb.protocol import build_confirm_session

from .helpers import serve_app

MiB = 1 << 20


class Callbacks:
    def __init__(self) -> None:
        self.errors: list[Exception] = []
        self.closes = 0
        self.closed = asyncio.Event()

    def kwargs(self) -> dict:
        return dict(on_error=self.errors.append, on_close=self.on_close)

    def on_close(self) -> None:
        self.closes += 1
        self.closed.set()


@contextlib.asynccontextmanager
async def console() -> AsyncIterator[str]:
    async def token(request: web.Request) -> web.Response:
        return web.json_response({"session_token": "tok"})

    app = web.Application()
    app.router.add_post("/v1/auth/session-token", token)
    async with serve_app(app) as base:
        yield base


@contextlib.asynccontextmanager
async def ingress(behaviour) -> AsyncIterator[str]:
    """A websockets server running ``behaviour(ws)`` per connection; yields its URL."""
    release = asyncio.Event()

    async def handler(ws):
        try:
            await behaviour(ws, release)
        except websockets.exceptions.ConnectionClosed:
            pass

    async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"ws://127.0.0.1:{port}/v2/driveningress"
        finally:
            release.set()


async def confirm_then_stop_reading(ws, release: asyncio.Event) -> None:
    """Confirm, send one animation message, then never read again (the kernel buffers fill)."""
    await ws.recv()
    await ws.send(build_confirm_session("conn-stalled"))
    await ws.send(_wire.encode_animation_message(np.ones((2, 70), np.float32), req_id="early", end=True))
    ws.transport.pause_reading()
    await release.wait()
    ws.transport.abort()  # a paused reader never sees the client go: drop it for the server's shutdown


async def never_confirm(ws, release: asyncio.Event) -> None:
    await ws.recv()
    await release.wait()
    ws.transport.abort()


def options(base: str, ingress_url: str, **extra) -> dict:
    return dict(
        api_key="sk-k", app_id="a", avatar_id="v",
        console_endpoint_url=base, ingress_endpoint_url=ingress_url, **extra,
    )


@pytest.mark.timeout(60)
async def test_a_server_that_stops_reading_ends_the_session_with_a_classified_error():
    async with console() as base, ingress(confirm_then_stop_reading) as url:
        cb = Callbacks()
        session = new_avatar_session(**options(base, url, io_timeout=0.5), **cb.kwargs())
        await session.init()
        await session.start()
        await session.wait_for_end("early")  # the frames sent before the stall arrived
        with pytest.raises(AvatarSDKError) as info:
            for _ in range(1000):  # far more than the socket buffers hold
                await session.send_audio(bytes(MiB))
        err = info.value
        assert err.code is AvatarSDKErrorCode.connectionFailed and err.phase == "websocket_send"
        assert "io_timeout" in err.message and err.retryable
        await cb.closed.wait()
        assert cb.closes == 1 and cb.errors == []  # raised where it happened, not reported twice
        assert session.closed and session.timeline.n_keyframes == 2  # frames kept
        assert any("io_timeout" in e for e in session.timeline.errors)
        with pytest.raises(AvatarSDKError, match="io_timeout"):
            await session.send_audio(b"\x00\x00")
        await session.close()
        assert cb.closes == 1


@pytest.mark.timeout(60)
async def test_a_stalled_stream_fails_the_same_way_and_concurrent_sends_share_the_bound():
    async with console() as base, ingress(confirm_then_stop_reading) as url:
        session = new_avatar_session(**options(base, url, io_timeout=0.5))
        await session.init()
        await session.start()
        await session.wait_for_end("early")
        streaming = asyncio.ensure_future(session.stream(bytes(64 * MiB), chunk_ms=16000, pacing="fast"))
        while not session._ws.transport.get_write_buffer_size():  # the socket is full: the stream waits
            await asyncio.sleep(0.01)
        sending = asyncio.ensure_future(session.send_audio(bytes(MiB)))  # waits behind it
        results = await asyncio.gather(streaming, sending, return_exceptions=True)
        assert all(isinstance(r, AvatarSDKError) for r in results), results
        assert {r.code for r in results} == {AvatarSDKErrorCode.connectionFailed}
        assert all("io_timeout" in r.message and r.phase == "websocket_send" for r in results)
        assert session.closed and session._watchdog is None
        await session.close()


async def confirm_then_read(ws, release: asyncio.Event) -> None:
    """Confirm, then read and drop everything."""
    await ws.recv()
    await ws.send(build_confirm_session("conn-reading"))
    async for _ in ws:
        pass


@pytest.mark.timeout(60)
async def test_sends_spread_over_many_io_timeouts_to_a_reading_server_never_trip_the_bound():
    """The bound is on one wait, not on a run of sends: a session that keeps sending for
    many times io_timeout to a server that reads is never aborted, and keeps one timer."""
    async with console() as base, ingress(confirm_then_read) as url:
        session = new_avatar_session(**options(base, url, io_timeout=0.05))
        await session.init()
        await session.start()
        for i in range(40):
            await session.send_audio(bytes(1280), end=i == 39)
            await asyncio.sleep(0.01)
        assert not session.closed and session.timeline.errors == []
        await session.close()
        assert session._watchdog is None


@pytest.mark.timeout(60)
async def test_sends_share_one_watchdog_instead_of_a_timer_each():
    """The bound costs no timer per send: 200 chunks sent at once arm it once."""
    async with console() as base, ingress(confirm_then_read) as url:
        session = new_avatar_session(**options(base, url, io_timeout=5.0))
        await session.init()
        await session.start()
        loop = asyncio.get_running_loop()
        timers = []
        original = loop.call_at  # every timer (call_later, asyncio.timeout, sleep) goes through it

        def counting(*args, **kwargs):
            timers.append(args)
            return original(*args, **kwargs)

        loop.call_at = counting
        try:
            for i in range(200):
                await session.send_audio(bytes(1280), end=i == 199)
            await session.stream(bytes(64000), chunk_ms=40, pacing="fast")
        finally:
            del loop.call_at  # the instance attribute goes, the loop's method is back
        assert len(timers) == 1, timers
        await session.close()


@pytest.mark.timeout(60)
async def test_close_returns_while_a_send_is_blocked_on_a_stalled_server():
    async with console() as base, ingress(confirm_then_stop_reading) as url:
        cb = Callbacks()
        session = new_avatar_session(**options(base, url, io_timeout=0.5), **cb.kwargs())
        await session.init()
        await session.start()
        ws = session._ws

        async def fill() -> None:  # a send the session does not bound, as a stuck caller's would be
            while True:
                await ws.send(bytes(MiB))

        filler = asyncio.ensure_future(fill())
        while not ws.transport.get_write_buffer_size():  # the socket is full: sends now queue and block
            await asyncio.sleep(0.01)
        assert not filler.done()
        await session.close()
        assert cb.closes == 1 and session.closed
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await filler


@pytest.mark.timeout(8)  # websockets' own close would add 10 s to the 0.3 s bound
async def test_start_is_bounded_by_token_timeout_when_the_server_never_confirms():
    async with console() as base, ingress(never_confirm) as url:
        session = new_avatar_session(**options(base, url, token_timeout=0.3))
        await session.init()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(AvatarSDKError) as info:
            await session.start()
        assert loop.time() - started >= 0.3  # it did wait for the answer
        err = info.value
        assert err.code is AvatarSDKErrorCode.connectionFailed and err.phase == "websocket_handshake"
        assert "no handshake answer from the server within 0.3 s" in err.message
        assert session.closed


@pytest.mark.timeout(8)
async def test_start_is_bounded_when_the_upgrade_is_never_answered():
    silent: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with console() as base:
            session = new_avatar_session(**options(base, f"http://127.0.0.1:{port}/x", token_timeout=0.3))
            await session.init()
            with pytest.raises(AvatarSDKError) as info:
                await session.start()
            assert info.value.code is AvatarSDKErrorCode.connectionFailed
            assert info.value.phase == "websocket_connect" and "within 0.3 s" in info.value.message
    finally:
        for writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), True, "5"])
def test_io_timeout_is_validated(value):
    with pytest.raises(ValueError, match="io_timeout must be a positive number of seconds"):
        new_avatar_session(**options("http://h", "ws://h", io_timeout=value))


def test_io_timeout_defaults_to_a_bound_and_has_a_builder():
    from avatar_nb import SessionConfigBuilder

    session = new_avatar_session(**options("http://h", "ws://h"))
    assert 0 < session.config.io_timeout <= 30
    built = (
        SessionConfigBuilder().with_avatar_id("v").with_api_key("k").with_app_id("a")
        .with_console_endpoint_url("http://h").with_ingress_endpoint_url("ws://h")
        .with_io_timeout(2.5).build()
    )
    assert built.io_timeout == 2.5
