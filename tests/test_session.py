"""AvatarSession and animate() against real services on loopback."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone

import numpy as np
import pytest
from aiohttp import web

import avatar_nb
from avatar_nb import (
    AvatarSDKError,
    AvatarSDKErrorCode,
    InvalidStateError,
    LocalService,
    SessionTokenError,
    _flame,
    _pcm,
    _wire,
    new_avatar_session,
)
from avatar_nb.audio import speech_like
from avatar_nb.protocol import build_confirm_session, build_server_error

from .helpers import expected_frames, serve_app


class Callbacks:
    def __init__(self) -> None:
        self.frames: list[tuple[bytes, bool]] = []
        self.errors: list[Exception] = []
        self.closes = 0
        self.closed = asyncio.Event()
        self.error_seen = asyncio.Event()

    def transport_frames(self, data: bytes, last: bool) -> None:
        self.frames.append((data, last))

    def on_error(self, exc: Exception) -> None:
        self.errors.append(exc)
        self.error_seen.set()

    def on_close(self) -> None:
        self.closes += 1
        self.closed.set()

    def kwargs(self) -> dict:
        return dict(transport_frames=self.transport_frames, on_error=self.on_error, on_close=self.on_close)


def other_tasks() -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}


# ----------------------------------------------------------------------------- the whole flow


@pytest.mark.parametrize("use_query_auth", [False, True])
async def test_full_flow(service, speech_pcm, use_query_auth):
    cb = Callbacks()
    session = new_avatar_session(**service.session_kwargs(use_query_auth=use_query_auth), **cb.kwargs())
    await session.init()
    connection_id = await session.start()
    assert connection_id == session.connection_id and connection_id.startswith("conn-")
    assert "fps:25" in session.capabilities and session.fps == 25.0
    chunk = 1280
    req_ids = {
        await session.send_audio(speech_pcm[i : i + chunk], end=i + chunk >= len(speech_pcm))
        for i in range(0, len(speech_pcm), chunk)
    }
    assert len(req_ids) == 1
    (req_id,) = req_ids
    await session.wait_for_end(req_id, timeout=10)
    await session.close()
    await session.close()  # idempotent
    assert cb.closes == 1 and cb.errors == []
    tl = session.timeline
    assert tl.n_keyframes == expected_frames(len(speech_pcm) // 2) and tl.complete
    assert tl.req_ids == [req_id]
    assert tl.chunk_samples.sum() == len(speech_pcm) // 2
    assert np.all(np.diff(tl.chunk_sent_at) >= 0) and tl.chunk_sent_at[0] == 0.0
    assert np.all(tl.message_arrival > 0)
    # transport_frames receives the raw envelopes, which decode to the timeline's keyframes
    np.testing.assert_array_equal(_flame.decode_animation_batch([d for d, _ in cb.frames]), tl.keyframes)
    assert [last for _, last in cb.frames][-1] is True
    assert not other_tasks()


async def test_new_request_id_after_end(service, speech_pcm):
    async with new_avatar_session(**service.session_kwargs()) as session:
        a = await session.send_audio(speech_pcm[:1280])
        assert await session.send_audio(speech_pcm[1280:2560], end=True) == a
        b = await session.send_audio(speech_pcm[:1280], end=True)
        assert b != a and avatar_nb.logid.LOG_ID_PATTERN.match(b)
        await session.wait_for_end(b, timeout=10)
        assert session.timeline.req_ids == [a, b]
        np.testing.assert_allclose(session.timeline.utterance_start, [0.0, 1280 / 16000])  # two 640-sample chunks
    assert session.closed


async def test_stream_and_interrupt(service, speech_pcm):
    async with new_avatar_session(**service.session_kwargs()) as session:
        half = speech_pcm[: len(speech_pcm) // 2]
        req = await session.stream(half, chunk_ms=40, realtime=False, end=False)
        assert session.current_req_id == req
        assert await session.interrupt() == req
        assert session.current_req_id is None
        await session.wait_for_end(req, timeout=10)
        assert session.timeline.n_keyframes == len(half) // 2 // 640
        req2 = await session.stream(speech_pcm, realtime=False)
        assert req2 != req
        await session.wait_for_end(req2, timeout=10)
        tl = session.timeline
        assert (tl.request_status(req), tl.request_status(req2)) == ("interrupted", "complete")
        assert not tl.complete  # one request was cut short


async def test_realtime_stream_is_paced(realtime_service):
    pcm = _pcm.to_s16le(speech_like(1.0, 16000))
    async with new_avatar_session(**realtime_service.session_kwargs()) as session:
        start = time.monotonic()
        req = await session.stream(pcm, chunk_ms=40, realtime=True)
        elapsed = time.monotonic() - start
        await session.wait_for_end(req, timeout=10)
    sent = session.timeline.chunk_sent_at
    # chunk i leaves no earlier than i * 40 ms after the first one: paced, not bursted
    assert np.all(sent >= np.arange(sent.shape[0]) * 0.04 - 0.002)
    assert elapsed >= (sent.shape[0] - 1) * 0.04 - 0.002
    assert session.timeline.first_frame_latency >= 0.08


# ----------------------------------------------------------------------------- bad input, nothing sent


async def test_invalid_audio_sends_nothing():
    async with LocalService(realtime=False) as svc:
        async with new_avatar_session(**svc.session_kwargs()) as session:
            before = svc.stats["messages_in"]
            with pytest.raises(ValueError, match="3 bytes, an odd number"):
                await session.send_audio(b"\x00\x01\x02")
            with pytest.raises(TypeError, match="numpy array of dtype float32.*to_s16le"):
                await session.send_audio(np.zeros(4, dtype=np.float32))
            with pytest.raises(TypeError, match="got str"):
                await session.send_audio("audio")
            with pytest.raises(ValueError, match="odd number"):
                await session.stream(b"\x00" * 5)
            with pytest.raises(ValueError, match="chunk_ms"):
                await session.stream(b"\x00" * 4, chunk_ms=0)
            assert session.current_req_id is None  # no request was opened
            await asyncio.sleep(0)  # nothing is in flight to wait for: nothing was sent
            assert svc.stats["messages_in"] == before
            assert session.timeline.chunk_samples.size == 0


async def test_state_errors(service):
    session = new_avatar_session(**service.session_kwargs())
    with pytest.raises(InvalidStateError, match="call init"):
        await session.start()
    with pytest.raises(InvalidStateError, match="not started"):
        await session.send_audio(b"\x00\x00")
    with pytest.raises(InvalidStateError):
        await session.interrupt()
    await session.init()
    await session.start()
    with pytest.raises(InvalidStateError, match="no audio has been sent"):
        await session.interrupt()
    with pytest.raises(InvalidStateError, match="already started"):
        await session.start()
    await session.close()
    with pytest.raises(InvalidStateError, match="closed"):
        await session.send_audio(b"\x00\x00")


# ----------------------------------------------------------------------------- refusals and errors


async def test_token_refused_with_json_error(service):
    session = new_avatar_session(**service.session_kwargs(api_key="sk-wrong-key-123"))
    with pytest.raises(SessionTokenError) as info:
        await session.init()
    err = info.value
    assert err.code is AvatarSDKErrorCode.sessionTokenInvalid
    assert err.http_status == 401 and err.server_code == "INVALID_API_KEY"
    assert "X-Api-Key header is wrong" in err.server_detail
    assert "sk-wrong-key-123" not in str(err) + repr(err)


async def test_token_request_shape_and_default_expiry():
    """Headers, JSON body and route of docs/protocol.md ("Session token"); the snake-case answer is accepted."""
    seen: list[tuple[str, dict, dict]] = []

    async def token(request):
        seen.append((request.path, dict(request.headers), await request.json()))
        return web.json_response({"session_token": "tok-snake"})

    app = web.Application()
    app.router.add_post("/v1/console/session-tokens", token)
    async with serve_app(app) as base:
        options = dict(api_key="sk-k", app_id="a", avatar_id="v", ingress_endpoint_url=base + "/x")
        session = new_avatar_session(console_endpoint_url=base + "/v1/console/", **options)
        before = time.time()
        await session.init()
        after = time.time()
        path, headers, body = seen[0]
        assert path == "/v1/console/session-tokens"  # the trailing / was stripped
        assert headers["X-Api-Key"] == "sk-k" and headers["Content-Type"].startswith("application/json")
        assert isinstance(body["expireAt"], int)
        assert int(before) + 300 <= body["expireAt"] <= int(after) + 300  # five minutes by default
        assert session._token == "tok-snake"
        expire = datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
        await new_avatar_session(console_endpoint_url=base + "/v1/console", expire_at=expire, **options).init()
        assert seen[1][2] == {"expireAt": int(expire.timestamp())}


@pytest.mark.parametrize(
    "status,errors,code",
    [
        (400, [{"status": 400, "code": "INVALID_ARGUMENT", "title": "Invalid Argument",
                "detail": "expire_at must be in the future"}], AvatarSDKErrorCode.invalidRequest),
        (402, [{"id": "BILLING", "detail": "billing required"}], AvatarSDKErrorCode.billingRequired),
        (200, [{"status": 401, "code": "UNAUTHENTICATED", "message": "key revoked"}],
         AvatarSDKErrorCode.sessionTokenInvalid),
    ],
)
async def test_token_endpoint_error_shapes(status, errors, code):
    async def token(request):
        return web.json_response({"errors": errors}, status=status)

    app = web.Application()
    app.router.add_post("/v1/console/session-tokens", token)
    async with serve_app(app) as base:
        session = new_avatar_session(
            api_key="sk-never-shown", app_id="a", avatar_id="v",
            console_endpoint_url=base + "/v1/console", ingress_endpoint_url=base + "/x",
        )
        with pytest.raises(SessionTokenError) as info:
            await session.init()
        err = info.value
        first = errors[0]
        assert err.code is code and err.http_status == first.get("status", status)
        assert err.server_code == first.get("code", first.get("id"))
        assert err.server_detail == first.get("detail", first.get("message"))
        assert err.server_detail in str(err) and "sk-never-shown" not in str(err) + repr(err)


async def test_token_request_times_out():
    never = asyncio.Event()

    async def hang(request):
        await never.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post("/v1/console/session-tokens", hang)
    async with serve_app(app) as base:
        try:
            session = new_avatar_session(
                api_key="k", app_id="a", avatar_id="v", token_timeout=0.2,
                console_endpoint_url=base + "/v1/console",
                ingress_endpoint_url=base + "/v2/driveningress",
            )
            with pytest.raises(SessionTokenError, match="timed out after 0.2 s") as info:
                await session.init()
            assert info.value.code is AvatarSDKErrorCode.connectionFailed and info.value.retryable
        finally:
            never.set()


async def test_console_unreachable():
    session = new_avatar_session(
        api_key="k", app_id="a", avatar_id="v",
        console_endpoint_url="http://127.0.0.1:9/v1/console", ingress_endpoint_url="http://127.0.0.1:9/x",
    )
    with pytest.raises(SessionTokenError) as info:
        await session.init()
    assert info.value.code is AvatarSDKErrorCode.connectionFailed


@pytest.mark.parametrize("query_auth", [False, True])
async def test_upgrade_refusals_are_classified(query_auth):
    async with LocalService(realtime=False) as svc, LocalService() as other:
        cases = [
            (dict(avatar_id="nobody"), None, AvatarSDKErrorCode.avatarNotFound, 404),
            (dict(), other.issue_token(app_id=svc.app_id), AvatarSDKErrorCode.sessionTokenInvalid, 400),
            (dict(), svc.issue_token(expire_at=time.time() - 1), AvatarSDKErrorCode.sessionTokenExpired, 401),
            (dict(app_id="app-unknown"), None, AvatarSDKErrorCode.appIDUnrecognized, 404),
        ]
        for overrides, token, code, status in cases:
            session = new_avatar_session(**svc.session_kwargs(use_query_auth=query_auth, **overrides))
            await session.init()
            if token is not None:
                session._token = token  # a token this service did not issue, or one already expired
            with pytest.raises(AvatarSDKError) as info:
                await session.start()
            err = info.value
            assert (err.code, err.http_status, err.phase) == (code, status, "websocket_connect"), overrides
            assert not err.retryable
            assert session._token not in str(err) + repr(err) and svc.api_key not in str(err)


async def test_idle_timeout_reaches_on_error_then_on_close():
    async with LocalService(realtime=False, idle_timeout=0.2) as svc:
        cb = Callbacks()
        session = new_avatar_session(**svc.session_kwargs(), **cb.kwargs())
        await session.init()
        await session.start()
        await asyncio.wait_for(cb.closed.wait(), 10)
        assert [e.code for e in cb.errors] == [AvatarSDKErrorCode.idleTimeout]
        assert cb.closes == 1 and session.closed
        await session.close()
        assert cb.closes == 1
        assert session.timeline.errors and "no audio input for 0.2s" in session.timeline.errors[0]


async def test_session_time_limit_error_and_close_code():
    async with LocalService(realtime=False, session_time_limit=0.3) as svc:
        cb = Callbacks()
        session = new_avatar_session(**svc.session_kwargs(), **cb.kwargs())
        await session.init()
        await session.start()
        await asyncio.wait_for(cb.closed.wait(), 10)
        codes = [e.code for e in cb.errors]
        assert codes == [AvatarSDKErrorCode.sessionDurationExceeded] * 2  # the ServerError, then the close 4002
        assert cb.errors[1].close_code == 4002 and cb.errors[1].retryable


# ----------------------------------------------------------------------------- a connection that dies


class KillableProxy:
    """A TCP relay in front of a service, whose connections can be cut without a close frame."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.transports: list[asyncio.Transport] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.transports += [writer.transport, up_writer.transport]

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def kill(self) -> None:
        for transport in self.transports:
            transport.abort()

    async def stop(self) -> None:
        self.kill()
        self.server.close()
        await self.server.wait_closed()


async def test_connection_killed_mid_stream_keeps_frames(speech_pcm):
    async with LocalService(realtime=True, latency_ms=10) as svc:
        proxy = KillableProxy(svc.port)
        port = await proxy.start()
        base = f"http://127.0.0.1:{port}"
        cb = Callbacks()
        session = new_avatar_session(
            **svc.session_kwargs(console_endpoint_url=base + "/v1/console", ingress_endpoint_url=base + "/v2/driveningress"),
            **cb.kwargs(),
        )
        await session.init()
        await session.start()
        received = asyncio.Event()
        chunk = 1280
        for i in range(0, len(speech_pcm), chunk):
            await session.send_audio(speech_pcm[i : i + chunk])
            if session.timeline.n_keyframes >= 10:
                received.set()
                break
            await asyncio.sleep(0.04)
        assert received.is_set()
        kept = session.timeline.n_keyframes
        proxy.kill()
        await asyncio.wait_for(cb.closed.wait(), 10)
        assert cb.closes == 1
        assert [e.code for e in cb.errors] == [AvatarSDKErrorCode.connectionClosed]
        assert cb.errors[0].retryable and cb.errors[0].close_code is None
        assert session.timeline.n_keyframes >= kept >= 10  # nothing received was lost
        assert session.timeline.errors
        with pytest.raises(AvatarSDKError) as info:
            await session.send_audio(speech_pcm[:chunk])
        assert info.value.code is AvatarSDKErrorCode.connectionClosed
        with pytest.raises(AvatarSDKError):
            await session.wait_for_end(timeout=1)
        await session.close()
        assert cb.closes == 1
        assert not other_tasks() - {t for t in asyncio.all_tasks() if "start_server" in repr(t) or "_handle" in repr(t)}
        await proxy.stop()


# ----------------------------------------------------------------------------- a server that sends garbage


async def test_garbage_from_the_server_is_reported_and_reading_goes_on():
    animation = _wire.encode_animation_message(np.ones((2, 70), np.float32), connection_id="c1", req_id="r1", end=True)

    async def token(request):
        return web.json_response({"sessionToken": "t"})

    async def ingress(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()  # the configure message
        await ws.send_bytes(build_confirm_session("c1", ["fps:30"]))
        await ws.send_bytes(b"\xff\xff\xff")  # not a message
        await ws.send_str("text is not allowed")
        bad_payload = _wire.encode_animation_message(np.ones((1, 70), np.float32), req_id="r1")[:-7]
        await ws.send_bytes(bad_payload)  # truncated
        await ws.send_bytes(build_server_error(3, "bad things", req_id="r1"))
        await ws.send_bytes(animation)
        await ws.receive()  # until the client closes
        return ws

    app = web.Application()
    app.router.add_post("/v1/console/session-tokens", token)
    app.router.add_get("/v2/driveningress/websocket", ingress)
    async with serve_app(app) as base:
        cb = Callbacks()
        session = new_avatar_session(
            api_key="k", app_id="a", avatar_id="v", console_endpoint_url=base + "/v1/console",
            ingress_endpoint_url=base + "/v2/driveningress", **cb.kwargs(),
        )
        await session.init()
        await session.start()
        assert session.fps == 30.0 and session.timeline.fps == 30.0
        await session.wait_for_end("r1", timeout=10)
        codes = [e.code for e in cb.errors]
        assert codes[:3] == [AvatarSDKErrorCode.protocolError] * 3
        assert codes[3] is AvatarSDKErrorCode.invalidRequest
        assert session.timeline.n_keyframes == 2  # the good message after the garbage arrived
        await session.close()
        assert cb.closes == 1


# ----------------------------------------------------------------------------- secrets and callbacks


async def test_secrets_stay_out_of_repr_and_logs(service, speech_pcm, caplog):
    caplog.set_level(logging.DEBUG)

    def broken(*args):
        raise RuntimeError("callback bug")

    session = new_avatar_session(
        **service.session_kwargs(use_query_auth=True), transport_frames=broken, on_close=broken
    )
    await session.init()
    token = session._token
    await session.start()
    req = await session.stream(speech_pcm[:12800], realtime=False)
    await session.wait_for_end(req, timeout=10)  # the loop survived the raising callback
    assert session.timeline.n_keyframes == 10  # 6400 samples
    await session.close()
    texts = [repr(session), repr(session.config), str(session.config), caplog.text]
    for text in texts:
        assert service.api_key not in text and token not in text
    assert "transport_frames callback raised" in caplog.text


async def test_interrupt_stops_a_running_stream(realtime_service):
    pcm = _pcm.to_s16le(speech_like(4.0, 16000))
    async with new_avatar_session(**realtime_service.session_kwargs()) as session:
        cb_errors: list[Exception] = []
        session.config.on_error = cb_errors.append
        streaming = asyncio.ensure_future(session.stream(pcm, chunk_ms=40, realtime=True))
        while session.timeline.n_keyframes < 10:
            await asyncio.sleep(0.02)
        req = await session.interrupt()
        assert await streaming == req
        await session.wait_for_end(req, timeout=10)
        sent = int(session.timeline.chunk_samples.sum())
    assert sent < len(pcm) // 2  # the rest of the clip was not sent
    assert cb_errors == []  # and the server was not sent audio for a finished request
