"""The embedded local service over real sockets: console, upgrade checks, handshake, streaming."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import numpy as np
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from avatar_nb import _pcm
from avatar_nb.audio import speech_like
from avatar_nb.protocol import (
    build_configure_session,
    build_interrupt,
    websocket_target,
)
from avatar_nb.proto import message_pb2 as pb
from avatar_nb.server import LocalService

from .helpers import expected_frames


# ----------------------------------------------------------------------------- helpers


async def post_token(url: str, *, api_key: str | None, body: object, raw: bytes | None = None):
    headers = {"Content-Type": "application/json"}
    if api_key is not None:
        headers["X-Api-Key"] = api_key
    data = raw if raw is not None else json.dumps(body).encode()
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=data, headers=headers) as response:
            return response.status, await response.text()


async def open_raw(svc: LocalService, *, token=None, app_id=None, avatar_id=None, query_auth=False):
    url, headers = websocket_target(
        svc.ingress_url,
        svc.avatar_id if avatar_id is None else avatar_id,
        app_id=svc.app_id if app_id is None else app_id,
        session_token=svc.issue_token() if token is None else token,
        use_query_auth=query_auth,
    )
    return await websockets.connect(url, additional_headers=headers, compression=None)


async def refusal(svc: LocalService, **kwargs) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as info:
        await open_raw(svc, **kwargs)
    response = info.value.response
    return response.status_code, response.body.decode()


async def handshake(ws, sample_rate: int = 16000) -> _pcm.DecodedMessage:
    await ws.send(build_configure_session(sample_rate))
    return _pcm.decode_message(await ws.recv())


async def collect_until_end(ws, req_id: str) -> list[_pcm.DecodedMessage]:
    out = []
    while True:
        msg = _pcm.decode_message(await asyncio.wait_for(ws.recv(), 10))
        out.append(msg)
        if msg.type == pb.MESSAGE_SERVER_RESPONSE_ANIMATION and msg.req_id == req_id and msg.end:
            return out


def keyframes_of(messages, req_id=None) -> np.ndarray:
    rows = [m.keyframes for m in messages if m.type == 5 and m.keyframes.shape[0] and (req_id is None or m.req_id == req_id)]
    return np.concatenate(rows) if rows else np.zeros((0, 70), np.float32)


async def stream(ws, pcm: bytes, req_id: str, chunk: int = 1280, end: bool = True) -> None:
    for message in _pcm.encode_audio_messages(pcm, req_id, chunk, end=end):
        await ws.send(message)


# ----------------------------------------------------------------------------- console


@pytest.mark.parametrize("route,key", [("/v1/console/session-tokens", "sessionToken"), ("/v1/auth/session-token", "session_token")])
async def test_token_routes(service, route, key):
    status, body = await post_token(service.base_url + route, api_key=service.api_key, body={"expireAt": int(time.time()) + 60})
    assert status == 200
    token = json.loads(body)[key]
    claims = service.state.signer.verify(token)
    assert claims.app_id == service.app_id


@pytest.mark.parametrize(
    "api_key,body,status,code,detail",
    [
        (None, {"expireAt": 2**31}, 401, "INVALID_API_KEY", "header is missing"),
        ("sk-wrong", {"expireAt": 2**31}, 401, "INVALID_API_KEY", "header is wrong"),
        ("OK", {}, 400, "INVALID_ARGUMENT", "expireAt is required"),
        ("OK", {"expireAt": "soon"}, 400, "INVALID_ARGUMENT", "integer number of unix seconds"),
        ("OK", {"expireAt": True}, 400, "INVALID_ARGUMENT", "integer number of unix seconds"),
        ("OK", {"expireAt": 1000}, 400, "INVALID_ARGUMENT", "expire_at must be in the future"),
        ("OK", {"expireAt": 4102444800}, 400, "INVALID_ARGUMENT", "at most"),
        ("OK", ["not", "an", "object"], 400, "INVALID_ARGUMENT", "JSON object"),
    ],
)
async def test_token_refusals_use_the_json_error_shape(service, api_key, body, status, code, detail):
    key = service.api_key if api_key == "OK" else api_key
    got, text = await post_token(service.console_url + "/session-tokens", api_key=key, body=body)
    assert got == status
    error = json.loads(text)["errors"][0]
    assert error["status"] == status and error["code"] == code and detail in error["detail"]
    assert error["title"] and error["id"]
    assert service.api_key not in text


async def test_token_body_not_json(service):
    status, text = await post_token(service.console_url + "/session-tokens", api_key=service.api_key, body=None, raw=b"{nope")
    assert status == 400 and "JSON object" in text


# ----------------------------------------------------------------------------- upgrade checks


@pytest.mark.parametrize("query_auth", [False, True])
async def test_both_auth_styles_are_accepted(service, query_auth):
    ws = await open_raw(service, query_auth=query_auth)
    confirm = await handshake(ws)
    assert confirm.type == pb.MESSAGE_SERVER_CONFIRM_SESSION
    assert confirm.connection_id.startswith("conn-")
    assert "fps:25" in confirm.capabilities
    await ws.close()


@pytest.mark.parametrize("query_auth", [False, True])
async def test_upgrade_refusals(query_auth):
    async with LocalService(realtime=False, other_app_ids=("app-other",)) as svc, LocalService() as stranger:
        cases = [
            (dict(token="not-a-token"), 400, "Invalid session token"),
            (dict(token=stranger.issue_token(app_id=svc.app_id)), 400, "Invalid session token"),  # forged
            (dict(app_id="app-unknown"), 404, "app id unrecognized"),
            (dict(token=svc.issue_token(app_id="app-other")), 400, "app id mismatch"),
            (dict(token=svc.issue_token(expire_at=time.time() - 5)), 401, "token is expired"),
            (dict(avatar_id="avatar-nobody"), 404, "Avatar not found"),
            (dict(avatar_id=""), 404, "Avatar not found"),
        ]
        for kwargs, status, text in cases:
            assert await refusal(svc, query_auth=query_auth, **kwargs) == (status, text), kwargs
        assert svc.stats["sessions_total"] == 0
        assert svc.stats["refusals"] == len(cases)


async def test_missing_session_key():
    async with LocalService(realtime=False) as svc:
        url = svc.ingress_url.replace("http", "ws") + f"/websocket?id={svc.avatar_id}"
        with pytest.raises(InvalidStatus) as info:
            await websockets.connect(url, additional_headers={"X-App-ID": svc.app_id})
        assert info.value.response.status_code == 400
        assert info.value.response.body.startswith(b"Invalid session token")


async def test_concurrency_limit():
    async with LocalService(realtime=False, max_sessions=1) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        assert await refusal(svc) == (429, "concurrency limit reached")
        await ws.close()


# ----------------------------------------------------------------------------- handshake


async def _handshake_error(svc, first: bytes | str) -> tuple[_pcm.DecodedMessage, int]:
    ws = await open_raw(svc)
    await ws.send(first)
    msg = _pcm.decode_message(await ws.recv())
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    return msg, ws.close_code


async def test_first_message_must_configure(service):
    audio = _pcm.encode_audio_messages(b"\x00\x00" * 10, "r", 20)[0]
    msg, close_code = await _handshake_error(service, audio)
    assert msg.type == pb.MESSAGE_SERVER_ERROR
    assert msg.error_message.startswith("expected ClientConfigureSession message")
    assert msg.error_code == 0
    assert close_code == 1008


@pytest.mark.parametrize("rate", [12345, 0, 96000])
async def test_unsupported_sample_rate(service, rate):
    msg, _ = await _handshake_error(service, build_configure_session(rate))
    # code 0, not 3: clients that read code 3 as invalidRequest would never see the phrase
    assert (msg.error_code, msg.error_message) == (0, f"unsupported sample rate: {rate}")


async def test_unsupported_audio_format_and_egress(service):
    msg, _ = await _handshake_error(service, build_configure_session(16000, audio_format=pb.AUDIO_FORMAT_OGG_OPUS))
    assert msg.error_message == "unsupported audio format: AUDIO_FORMAT_OGG_OPUS"

    class Agora:
        channel_name, token, uid, publisher_id = "room", "secret", 0, "pub"

    msg, _ = await _handshake_error(service, build_configure_session(16000, agora_egress=Agora()))
    assert (msg.error_code, msg.error_message) == (14, "egress client is not configured on server")


@pytest.mark.parametrize("first", [b"\xff\xff\xff", "a text frame"])
async def test_garbage_before_handshake_is_refused(service, first):
    msg, _ = await _handshake_error(service, first)
    assert msg.type == pb.MESSAGE_SERVER_ERROR and msg.error_code == 0


# ----------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
async def test_stream_returns_every_keyframe_then_end(service, rate):
    pcm = _pcm.to_s16le(speech_like(1.3, rate))
    ws = await open_raw(service)
    confirm = await handshake(ws, rate)
    await stream(ws, pcm, "req-1", chunk=rate // 25 * 2)
    messages = await collect_until_end(ws, "req-1")
    kf = keyframes_of(messages)
    assert kf.shape == (expected_frames(len(pcm) // 2, rate), 70)
    assert [m.end for m in messages] == [False] * (len(messages) - 1) + [True]
    assert all(m.connection_id == confirm.connection_id and m.avatar_id == service.avatar_id for m in messages)
    await ws.close()


async def test_utterances_interrupt_and_preemption(service, speech_pcm):
    ws = await open_raw(service)
    await handshake(ws)
    half = speech_pcm[: len(speech_pcm) // 2]
    # 1: half of an utterance, then an interrupt: the request ends with what it had
    await stream(ws, half, "u1", end=False)
    await ws.send(build_interrupt("u1"))
    got = keyframes_of(await collect_until_end(ws, "u1"))
    assert got.shape[0] == len(half) // 2 // 640
    # 2: a full new utterance works after the interrupt
    await stream(ws, speech_pcm, "u2")
    assert keyframes_of(await collect_until_end(ws, "u2")).shape[0] == expected_frames(len(speech_pcm) // 2)
    # 3: a new req_id while u3 is still open ends u3 (preemption), then u4 runs
    await stream(ws, half, "u3", end=False)
    await stream(ws, half, "u4")
    messages = await collect_until_end(ws, "u4")
    ends = [(m.req_id, m.end) for m in messages if m.end]
    assert ends == [("u3", True), ("u4", True)]
    # 4: audio for a request that already ended is an error, and the session goes on
    await stream(ws, half[:1280], "u2")
    err = _pcm.decode_message(await ws.recv())
    assert err.type == pb.MESSAGE_SERVER_ERROR and err.error_code == 3 and "already ended" in err.error_message
    await stream(ws, half, "u5")
    assert keyframes_of(await collect_until_end(ws, "u5")).shape[0] == expected_frames(len(half) // 2)
    await ws.close()


@pytest.mark.parametrize(
    "bad,expected",
    [
        (_pcm.encode_audio_messages(b"\x00" * 4, "x", 4)[0].replace(b"\x1a\x04\x00\x00\x00\x00", b"\x1a\x03\x00\x00\x00"), None),
        ("hello", "text frame"),
        (b"\x08\x03\x22\xff\xff", "failed to unmarshal"),
    ],
)
async def test_bad_messages_get_an_error_and_the_session_continues(service, speech_pcm, bad, expected):
    ws = await open_raw(service)
    await handshake(ws)
    if expected is None:  # patch the inner length too: an odd-length but well-formed audio chunk
        msg = pb.Message(type=3)
        msg.client_audio_input.req_id = "x"
        msg.client_audio_input.audio = b"\x00\x01\x02"
        bad = msg.SerializeToString()
        expected = "odd number"
    await ws.send(bad)
    err = _pcm.decode_message(await ws.recv())
    assert err.type == pb.MESSAGE_SERVER_ERROR and expected in err.error_message
    await stream(ws, speech_pcm, "after")
    assert keyframes_of(await collect_until_end(ws, "after")).shape[0] == expected_frames(len(speech_pcm) // 2)
    await ws.close()


async def test_misbehaving_client_next_to_a_good_one(service, speech_pcm):
    async def bad_client():
        ws = await open_raw(service)
        await handshake(ws)
        for junk in (b"\x00", "text", b"\x0a\xff\xff\xff\xff\x0f", b"\x08" * 50):
            await ws.send(junk)
            await ws.recv()
        await ws.close()

    async def good_client(name: str):
        ws = await open_raw(service)
        await handshake(ws)
        await stream(ws, speech_pcm, name)
        kf = keyframes_of(await collect_until_end(ws, name))
        await ws.close()
        return kf

    results = await asyncio.gather(bad_client(), *(good_client(f"g{i}") for i in range(4)), bad_client())
    good = results[1:5]
    for kf in good:
        assert kf.shape[0] == expected_frames(len(speech_pcm) // 2)
        np.testing.assert_array_equal(kf, good[0])  # deterministic: same audio, same animation


async def test_same_audio_same_keyframes_whatever_the_chunking(service, speech_pcm):
    results = []
    for chunk in (640, 1280, 4000, len(speech_pcm)):
        ws = await open_raw(service)
        await handshake(ws)
        await stream(ws, speech_pcm, "d", chunk=chunk)
        results.append(keyframes_of(await collect_until_end(ws, "d")))
        await ws.close()
    for kf in results[1:]:
        np.testing.assert_array_equal(kf, results[0])


# ----------------------------------------------------------------------------- limits and timing


async def test_idle_session_is_told_and_closed():
    async with LocalService(realtime=False, idle_timeout=0.2) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        err = _pcm.decode_message(await asyncio.wait_for(ws.recv(), 10))
        assert err.type == pb.MESSAGE_SERVER_ERROR and err.error_message == "no audio input for 0.2s"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)


async def test_session_time_limit_closes_with_4002():
    async with LocalService(realtime=False, session_time_limit=0.2) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        err = _pcm.decode_message(await asyncio.wait_for(ws.recv(), 10))
        assert (err.error_code, err.error_message) == (4002, "session time limit reached")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 4002


async def test_credits_exhausted_closes_with_4001(speech_pcm):
    async with LocalService(realtime=False, credits_seconds=0.5) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        await stream(ws, speech_pcm, "c")
        codes = []
        with pytest.raises(ConnectionClosed):
            while True:
                msg = _pcm.decode_message(await asyncio.wait_for(ws.recv(), 10))
                codes.append(msg.error_code if msg.type == pb.MESSAGE_SERVER_ERROR else None)
        assert codes[-1] == 4001
        assert ws.close_code == 4001


async def test_realtime_keyframes_are_never_early(realtime_service, speech_pcm):
    """A keyframe leaves no sooner than the service latency after its audio arrived."""
    ws = await open_raw(realtime_service)
    await handshake(ws)
    loop = asyncio.get_running_loop()
    sent: list[float] = []
    arrivals: list[tuple[float, int]] = []

    async def receive():
        while True:
            msg = _pcm.decode_message(await ws.recv())
            arrivals.append((loop.time(), msg.keyframes.shape[0]))
            if msg.end:
                return

    reader = asyncio.create_task(receive())
    for message in _pcm.encode_audio_messages(speech_pcm[:32000], "rt", 1280):
        sent.append(loop.time())
        await ws.send(message)
        await asyncio.sleep(0.04)
    await asyncio.wait_for(reader, 10)
    await ws.close()
    # chunk i completes keyframe i: it cannot arrive before chunk i was sent + 80 ms
    keyframe_arrival = np.repeat([t for t, _ in arrivals], [n for _, n in arrivals])
    assert keyframe_arrival.shape[0] == 25
    assert np.all(keyframe_arrival - np.array(sent[:25]) >= 0.080 - 0.002)


async def test_stop_closes_active_sessions_with_1001():
    svc = LocalService(realtime=False)
    await svc.__aenter__()
    ws = await open_raw(svc)
    await handshake(ws)
    await svc.__aexit__(None, None, None)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1001


# ----------------------------------------------------------------------------- the service object


def test_thread_mode_and_properties():
    svc = LocalService(realtime=False, api_key="sk-test-123", app_id="app-x", avatar_ids=["a1", "a2"])
    assert "not started" in repr(svc)
    with svc:
        assert svc.console_url == f"http://127.0.0.1:{svc.port}/v1/console"
        assert svc.ingress_url == f"http://127.0.0.1:{svc.port}/v2/driveningress"
        assert (svc.api_key, svc.app_id, svc.avatar_id, svc.avatar_ids) == ("sk-test-123", "app-x", "a1", ("a1", "a2"))
        kwargs = svc.session_kwargs(sample_rate=8000)
        assert kwargs["console_endpoint_url"] == svc.console_url and kwargs["sample_rate"] == 8000
        assert "sk-test-123" not in repr(svc) and "sk-test-123" not in repr(svc.state)
    assert not svc.running


def test_generated_credentials_differ_per_instance():
    a, b = LocalService(), LocalService()
    assert a.api_key != b.api_key and a.app_id != b.app_id and a.avatar_id != b.avatar_id


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(fps=0), "fps"),
        (dict(latency_ms=-1), "latency_ms"),
        (dict(port=70000), "port"),
        (dict(n_expression=-2), "n_expression"),
        (dict(idle_timeout=0), "idle_timeout"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LocalService(**kwargs)


def test_port_in_use_is_reported():
    with LocalService() as first:
        with pytest.raises(OSError):
            LocalService(port=first.port).start()
