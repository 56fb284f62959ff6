"""Credentials stay at their origin: a console or ingress answering a redirect to another
origin (another port on loopback here) gets no API key, session key or app id sent
there; the error names the target without secrets. Redirects within the origin are
followed (docs/protocol.md, "Redirects")."""

from __future__ import annotations

import pytest
from aiohttp import web

from avatar_nb import (
    AvatarSDKError,
    AvatarSDKErrorCode,
    LocalService,
    SessionTokenError,
    new_avatar_session,
)
from avatar_nb.http_api import origin, public_url, redirect_refusal
from avatar_nb.protocol import build_confirm_session

from .helpers import serve_app

API_KEY = "ak-redirect-secret-0123456789"
CODES = (301, 302, 303, 307, 308)


class Recorder:
    """A second server, on another port, that records every request's headers and
    answers like a console and an ingress would."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.receive()
            await ws.send_bytes(build_confirm_session("evil"))
            await ws.receive()
            return ws
        return web.json_response({"sessionToken": "token-from-the-other-host"})

    def leaked(self, *secrets: str) -> list[str]:
        found = []
        for _, path, headers in self.requests:
            text = path + "\n" + "\n".join(f"{k}: {v}" for k, v in headers.items())
            found += [s for s in secrets if s in text]
            found += [k for k in headers if k.lower() in ("x-api-key", "x-session-key", "x-app-id")]
        return found


def redirecting_app(code: int, target: str, *, routes: tuple[str, ...]) -> web.Application:
    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=code, headers={"Location": target + request.path})

    app = web.Application()
    for route in routes:
        app.router.add_route("*", route, redirect)
    return app


def kwargs(console: str, ingress: str, **extra):
    return dict(api_key=API_KEY, app_id="app-1", avatar_id="v", console_endpoint_url=console,
                ingress_endpoint_url=ingress, token_timeout=5, **extra)


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("route", ["/v1/auth/session-token", "/v1/console/session-tokens"])
async def test_token_request_does_not_follow_a_redirect_to_another_origin(code, route):
    other = Recorder()
    async with serve_app(other.app) as other_base:
        async def missing(request):
            return web.Response(status=404)

        async def redirect(request):
            return web.Response(status=code, headers={"Location": other_base + request.path})

        app = web.Application()
        if route != "/v1/auth/session-token":  # the first route answers 404: the fallback redirects
            app.router.add_post("/v1/auth/session-token", missing)
        app.router.add_route("*", route, redirect)
        async with serve_app(app) as base:
            session = new_avatar_session(**kwargs(base + "/v1/console", base + "/v2/driveningress"))
            with pytest.raises(SessionTokenError) as info:
                await session.init()
    assert other.requests == []
    assert session._token is None
    error = info.value
    assert error.http_status == code and error.code is AvatarSDKErrorCode.connectionFailed
    assert f"{other_base}{route}" in str(error) and "refused to follow a redirect" in str(error)
    assert API_KEY not in repr(error) and error.__cause__ is None and error.__context__ is None


async def test_token_request_is_not_downgraded_and_the_error_shows_no_query_secret():
    assert redirect_refusal("https://c.example/t", "http://c.example/t") == "it would downgrade a secure connection"
    assert redirect_refusal("http://c.example/t", "https://c.example/t") is not None  # another origin too
    assert redirect_refusal("https://c.example/t", "https://c.example:443/other?x=1") is None
    assert redirect_refusal("http://C.example:80/t", "http://c.example/u") is None
    assert redirect_refusal("wss://i.example/w", "wss://i.example:8443/w") is not None
    assert origin("ws://h/x") == ("ws", "h", 80)
    assert public_url("https://user:pw@h.example:8443/p?sessionKey=s#f") == "https://h.example:8443/p"


async def test_token_request_follows_a_redirect_within_the_origin():
    seen: list[tuple[str, str | None]] = []

    async def moved(request):
        return web.Response(status=307, headers={"Location": "/moved/session-token?x=1"})

    async def token(request):
        seen.append((request.method, request.headers.get("X-Api-Key")))
        return web.json_response({"session_token": "good"})

    async def see_other(request):
        return web.Response(status=303, headers={"Location": "/result"})

    async def result(request):
        seen.append((request.method, request.headers.get("X-Api-Key")))
        return web.json_response({"sessionToken": "from-get"})

    app = web.Application()
    app.router.add_post("/v1/auth/session-token", moved)
    app.router.add_post("/moved/session-token", token)
    async with serve_app(app) as base:
        session = new_avatar_session(**kwargs(base, base + "/x"))
        await session.init()
    assert session._token == "good" and seen == [("POST", API_KEY)]

    seen.clear()
    app = web.Application()
    app.router.add_post("/v1/auth/session-token", see_other)
    app.router.add_get("/result", result)
    async with serve_app(app) as base:
        session = new_avatar_session(**kwargs(base, base + "/x"))
        await session.init()
    assert session._token == "from-get" and seen == [("GET", API_KEY)]


async def test_token_request_gives_up_after_five_redirects():
    async def loop(request):
        return web.Response(status=302, headers={"Location": request.path})

    app = web.Application()
    app.router.add_route("*", "/v1/auth/session-token", loop)
    async with serve_app(app) as base:
        session = new_avatar_session(**kwargs(base, base + "/x"))
        with pytest.raises(SessionTokenError, match="redirected more than 5 times"):
            await session.init()


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("query_auth", [False, True])
async def test_upgrade_does_not_follow_a_redirect_to_another_origin(code, query_auth):
    other = Recorder()
    async with LocalService(realtime=False) as svc, serve_app(other.app) as other_base:
        ws_other = other_base.replace("http://", "ws://")
        app = redirecting_app(code, ws_other, routes=("/v2/driveningress/websocket",))
        async with serve_app(app) as ingress:
            session = new_avatar_session(
                **svc.session_kwargs(use_query_auth=query_auth, ingress_endpoint_url=ingress + "/v2/driveningress")
            )
            await session.init()
            token = session._token
            with pytest.raises(AvatarSDKError) as info:
                await session.start()
    assert other.leaked(token, svc.api_key) == []
    assert other.requests == []
    error = info.value
    assert error.code is AvatarSDKErrorCode.connectionFailed and error.http_status == code
    assert error.phase == "websocket_connect"
    assert f"{ws_other}/v2/driveningress/websocket" in str(error)
    assert token not in repr(error) and "sessionKey" not in str(error)


async def test_upgrade_follows_a_redirect_within_the_origin():
    paths: list[tuple[str, str | None]] = []

    async def moved(request):
        return web.Response(status=302, headers={"Location": "/v3/websocket?" + request.query_string})

    async def ingress(request):
        paths.append((request.path, request.headers.get("X-Session-Key")))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        await ws.send_bytes(build_confirm_session("c-same"))
        await ws.receive()
        return ws

    async def token(request):
        return web.json_response({"sessionToken": "tok"})

    app = web.Application()
    app.router.add_post("/v1/auth/session-token", token)
    app.router.add_get("/v2/driveningress/websocket", moved)
    app.router.add_get("/v3/websocket", ingress)
    async with serve_app(app) as base:
        session = new_avatar_session(**kwargs(base, base + "/v2/driveningress"))
        await session.init()
        assert await session.start() == "c-same"
        await session.close()
    assert paths == [("/v3/websocket", "tok")]


@pytest.mark.parametrize("location", ["http://[::1", "http://127.0.0.1:99999/x", "javascript:alert(1)"])
async def test_an_invalid_location_is_a_refused_redirect(location):
    async def token(request):
        return web.Response(status=302, headers={"Location": location})

    async def ingress(request):
        return web.Response(status=302, headers={"Location": location.replace("http", "ws")})

    app = web.Application()
    app.router.add_post("/v1/auth/session-token", token)
    app.router.add_get("/v2/driveningress/websocket", ingress)
    async with serve_app(app) as base:
        session = new_avatar_session(**kwargs(base, base + "/v2/driveningress"))
        with pytest.raises(SessionTokenError, match="its Location is not a valid URL"):
            await session.init()
        session._token = "tok"
        with pytest.raises(AvatarSDKError, match="its Location is not a valid URL") as info:
            await session.start()
    assert info.value.code is AvatarSDKErrorCode.connectionFailed
