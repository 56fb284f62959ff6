"""The ingress upgrade and handshake: credentials in both styles, every refusal, compression.

Refusals are checked over real sockets with their exact status and body (docs/protocol.md,
section 2): ``{"message":"..."}`` and a newline, as the hosted service answers; the
official clients classify them by status and phrase.
"""

from __future__ import annotations

import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from avatar_nb import _pcm, _wire
from avatar_nb.audio import speech_like
from avatar_nb.proto import message_pb2 as pb
from avatar_nb.protocol import build_configure_session
from avatar_nb.server import LocalService

from .helpers import (
    collect_until_end,
    expected_frames,
    handshake,
    keyframes_of,
    open_raw,
    refusal,
    stream,
)


def body(message: str) -> str:
    """The hosted service's refusal body: compact JSON with ``message``, then a newline."""
    return '{"message":"' + message + '"}\n'


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
    async with (
        LocalService(realtime=False, other_app_ids=("app-other",)) as svc,
        LocalService() as stranger,
    ):
        cases = [
            (dict(token="not-a-token"), 400, "Invalid session token"),
            (
                dict(token=stranger.issue_token(app_id=svc.app_id)),
                400,
                "Invalid session token",
            ),  # forged
            (dict(app_id="app-unknown"), 404, "app id unrecognized"),
            (dict(token=svc.issue_token(app_id="app-other")), 400, "app id mismatch"),
            (dict(token=svc.issue_token(expire_at=time.time() - 5)), 401, "token is expired"),
            (dict(avatar_id="avatar-nobody"), 404, "Avatar not found"),
            (dict(avatar_id=""), 404, "Avatar not found"),
        ]
        for kwargs, status, text in cases:
            assert await refusal(svc, query_auth=query_auth, **kwargs) == (status, body(text)), (
                kwargs
            )
        assert svc.stats["sessions_total"] == 0
        assert svc.stats["refusals"] == len(cases)


async def test_missing_session_key():
    async with LocalService(realtime=False) as svc:
        url = svc.ingress_url.replace("http", "ws") + f"/websocket?id={svc.avatar_id}"
        with pytest.raises(InvalidStatus) as info:
            await websockets.connect(url, additional_headers={"X-App-ID": svc.app_id})
        assert info.value.response.status_code == 400
        response = info.value.response
        assert response.body.decode() == body("Invalid session token: no session key given")
        assert response.headers["Content-Type"].startswith("application/json")


async def test_concurrency_limit():
    async with LocalService(realtime=False, max_sessions=1) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        assert await refusal(svc) == (429, body("concurrency limit reached"))
        await ws.close()


# ----------------------------------------------------------------------------- handshake


async def _handshake_error(svc, first: bytes | str) -> tuple[_wire.DecodedMessage, int]:
    ws = await open_raw(svc)
    await ws.send(first)
    msg = _wire.decode_message(await ws.recv())
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    return msg, ws.close_code


async def test_first_message_must_configure(service):
    audio = _wire.encode_audio_messages(b"\x00\x00" * 10, "r", 20)[0]
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
    msg, _ = await _handshake_error(
        service, build_configure_session(16000, audio_format=7)
    )  # no such format
    assert msg.error_message == "unsupported audio format: 7"

    class Agora:
        channel_name, token, uid, publisher_id = "room", "secret", 0, "pub"

    # the default service has (simulated) egress: credentials it does not know are refused
    msg, _ = await _handshake_error(service, build_configure_session(16000, agora_egress=Agora()))
    assert msg.error_code == 16 and "unauthorized" in msg.error_message
    assert "secret" not in msg.error_message
    # turned off explicitly, it answers as a service without egress
    async with LocalService(realtime=False, egress=False) as svc:
        msg, _ = await _handshake_error(svc, build_configure_session(16000, agora_egress=Agora()))
    assert (msg.error_code, msg.error_message) == (14, "egress client is not configured on server")


@pytest.mark.parametrize("first", [b"\xff\xff\xff", "a text frame"])
async def test_garbage_before_handshake_is_refused(service, first):
    msg, _ = await _handshake_error(service, first)
    assert msg.type == pb.MESSAGE_SERVER_ERROR and msg.error_code == 0


# ----------------------------------------------------------------------------- compression


def _extensions(ws) -> str:
    return ws.response.headers.get("Sec-WebSocket-Extensions", "")


@pytest.mark.parametrize("compression", [True, False])
async def test_permessage_deflate_when_offered_and_enabled(compression):
    """The hosted service accepts permessage-deflate; so does LocalService unless told not to."""
    pcm = _pcm.to_s16le(speech_like(0.5, 16000, seed=4))
    async with LocalService(realtime=False, compression=compression) as svc:
        ws = await open_raw(svc, compression="deflate")
        assert ("permessage-deflate" in _extensions(ws)) is compression
        assert (await handshake(ws)).type == pb.MESSAGE_SERVER_CONFIRM_SESSION
        await stream(ws, pcm, "z")
        assert keyframes_of(await collect_until_end(ws, "z")).shape[0] == expected_frames(
            len(pcm) // 2
        )
        await ws.close()


async def test_no_compression_unless_offered(service):
    ws = await open_raw(service, compression=None)
    assert "permessage-deflate" not in _extensions(ws)
    await ws.close()
