"""What a misbehaving server sends is reported and recorded, and never kills the read loop:
keyframes of another width, frames of unknown requests or after a request's end, a
clean close before the end frame. And no secret is reachable from any error raised."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from aiohttp import web

from avatar_nb import (
    AvatarSDKError,
    AvatarSDKErrorCode,
    LocalService,
    SessionTokenError,
    _wire,
    new_avatar_session,
)
from avatar_nb.proto import message_pb2 as pb
from avatar_nb.protocol import build_confirm_session

from .helpers import serve_app


def frames(n: int, expressions: int = 50) -> np.ndarray:
    return np.ones((n, 20 + expressions), np.float32)


def anim(req_id: str, kf: np.ndarray, end: bool = False) -> bytes:
    return _wire.encode_animation_message(kf, connection_id="c1", req_id=req_id, end=end)


async def next_audio(ws: web.WebSocketResponse) -> pb.Message:
    while True:
        msg = pb.Message.FromString((await ws.receive()).data)
        if msg.type == pb.MESSAGE_CLIENT_AUDIO_INPUT:
            return msg


async def test_width_change_anomalies_and_a_clean_close_before_the_end():
    async def token(request):
        return web.json_response({"sessionToken": "t"})

    async def ingress(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()  # configure
        await ws.send_bytes(build_confirm_session("c1"))
        req = (await next_audio(ws)).client_audio_input.req_id
        await ws.send_bytes(anim(req, frames(2)))
        await ws.send_bytes(anim(req, frames(3, expressions=100)))  # another width: refused
        await ws.send_bytes(anim(req, frames(1), end=True))  # the loop goes on: the end is not lost
        await ws.send_bytes(anim("stranger", frames(1)))
        await ws.send_bytes(anim(req, frames(1)))  # after the end
        await next_audio(ws)  # the second request
        await ws.close(code=1000)  # cleanly, but before its end frame
        return ws

    app = web.Application()
    app.router.add_post("/v1/console/session-tokens", token)
    app.router.add_get("/v2/driveningress/websocket", ingress)
    async with serve_app(app) as base:
        errors: list[Exception] = []
        closes: list[int] = []
        session = new_avatar_session(
            api_key="k", app_id="a", avatar_id="v", console_endpoint_url=base + "/v1/console",
            ingress_endpoint_url=base + "/v2/driveningress", on_error=errors.append,
            on_close=lambda: closes.append(1),
        )
        await session.init()
        await session.start()
        first = await session.send_audio(b"\x00\x00" * 640, end=True)
        await session.wait_for_end(first, timeout=10)
        second = await session.send_audio(b"\x00\x00" * 640, end=True)
        with pytest.raises(AvatarSDKError) as info:
            await session.wait_for_end(second, timeout=10)
        assert info.value.close_code == 1000 and info.value.code is AvatarSDKErrorCode.connectionClosed
        await session.close()
    assert [e.code for e in errors] == [AvatarSDKErrorCode.protocolError]
    assert "expression coefficients" in str(errors[0]) and errors[0].req_id == first
    assert closes == [1]
    tl = session.timeline
    assert tl.n_keyframes == 2 + 1 + 1 + 1  # every well-formed message was kept
    assert tl.request_status(first) == "complete" and tl.request_status(second) == "failed"
    kinds = sorted(zip(tl.anomalies["req_id"], tl.anomalies["kind"]))
    assert kinds == sorted(
        [(first, "width_change"), ("stranger", "unknown_request"), (first, "after_end"), (second, "closed_before_end")]
    )
    assert not tl.complete


# ----------------------------------------------------------------------------- secrets


API_KEY = "sk-live-0123456789abcdef"


def reachable(obj, depth: int = 0, seen: set | None = None):
    """Every object reachable from an exception: cause, context, args, attributes, items."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 12:
        return
    seen.add(id(obj))
    yield obj
    children: list = []
    if isinstance(obj, BaseException):
        children += [obj.__cause__, obj.__context__, *obj.args]
    if isinstance(obj, dict):
        children += [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children += list(obj)
    elif not isinstance(obj, (str, bytes, int, float, type(None))):
        try:
            children += list(vars(obj).values())
        except TypeError:
            pass
        for name in getattr(type(obj), "__slots__", ()):
            children.append(getattr(obj, name, None))
        for name in ("request_info", "headers", "history", "response", "request"):
            children.append(getattr(obj, name, None))
    for child in children:
        if child is not None:
            yield from reachable(child, depth + 1, seen)


def assert_no_secret(error: BaseException, *secrets: str) -> None:
    for obj in reachable(error):
        try:
            text = repr(obj) + str(obj)
        except Exception:
            continue
        for secret in secrets:
            assert secret not in text, f"{secret!r} reachable from {type(error).__name__} via {type(obj).__name__}"


async def raw_server(answer: bytes):
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",  # a malformed response
        b"this is not HTTP\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"sess",  # cut short
    ],
)
async def test_no_api_key_behind_a_malformed_console_answer(answer):
    server = await raw_server(answer)
    port = server.sockets[0].getsockname()[1]
    try:
        session = new_avatar_session(
            api_key=API_KEY, app_id="a", avatar_id="v",
            console_endpoint_url=f"http://127.0.0.1:{port}", ingress_endpoint_url="ws://127.0.0.1:9/x",
        )
        with pytest.raises(SessionTokenError) as info:
            await session.init()
        assert info.value.code is AvatarSDKErrorCode.connectionFailed
        assert info.value.__cause__ is None and info.value.__context__ is None
        assert_no_secret(info.value, API_KEY)
    finally:
        server.close()
        await server.wait_closed()


async def test_no_api_key_behind_a_refused_connection_or_a_timeout():
    session = new_avatar_session(
        api_key=API_KEY, app_id="a", avatar_id="v",
        console_endpoint_url="http://127.0.0.1:9", ingress_endpoint_url="ws://127.0.0.1:9/x",
    )
    with pytest.raises(SessionTokenError) as info:
        await session.init()
    assert_no_secret(info.value, API_KEY)

    never = asyncio.Event()

    async def hang(request):
        await never.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post("/v1/auth/session-token", hang)
    async with serve_app(app) as base:
        try:
            session = new_avatar_session(
                api_key=API_KEY, app_id="a", avatar_id="v", token_timeout=0.2,
                console_endpoint_url=base, ingress_endpoint_url=base + "/x",
            )
            with pytest.raises(SessionTokenError, match="timed out after 0.2 s") as info:
                await session.init()
            assert_no_secret(info.value, API_KEY)
        finally:
            never.set()


async def test_no_api_key_echoed_by_the_console():
    async def echo(request):
        key = request.headers["X-Api-Key"]
        return web.json_response({"errors": [{"status": 401, "detail": f"key {key} is revoked"}]}, status=401)

    app = web.Application()
    app.router.add_post("/v1/auth/session-token", echo)
    async with serve_app(app) as base:
        session = new_avatar_session(
            api_key=API_KEY, app_id="a", avatar_id="v", console_endpoint_url=base, ingress_endpoint_url=base + "/x",
        )
        with pytest.raises(SessionTokenError) as info:
            await session.init()
    assert "is revoked" in info.value.server_detail
    assert_no_secret(info.value, API_KEY)


@pytest.mark.parametrize("query_auth", [False, True])
async def test_no_secret_behind_upgrade_refusals_and_handshake_timeouts(query_auth):
    async with LocalService(realtime=False) as svc:
        session = new_avatar_session(**svc.session_kwargs(use_query_auth=query_auth))
        await session.init()
        token = session._token
        for avatar_id, expired in (("nobody", False), (svc.avatar_id, True)):
            session = new_avatar_session(**svc.session_kwargs(use_query_auth=query_auth, avatar_id=avatar_id))
            await session.init()
            if expired:
                token = session._token = svc.issue_token(expire_at=time.time() - 1)
            else:
                token = session._token
            with pytest.raises(AvatarSDKError) as info:
                await session.start()
            assert info.value.phase == "websocket_connect"
            assert_no_secret(info.value, svc.api_key, token)
    # a refused connection to the ingress
    session = new_avatar_session(
        api_key=API_KEY, app_id="a", avatar_id="v", use_query_auth=query_auth,
        console_endpoint_url="http://127.0.0.1:9", ingress_endpoint_url="ws://127.0.0.1:9/x",
    )
    session._token = "tok-secret-session-key"
    with pytest.raises(AvatarSDKError) as info:
        await session.start()
    assert info.value.code is AvatarSDKErrorCode.connectionFailed
    assert_no_secret(info.value, API_KEY, "tok-secret-session-key")
