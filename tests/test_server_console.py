"""The console API of the local service: both token routes and every refusal."""

from __future__ import annotations

import json
import time

import pytest

from .helpers import post_token


@pytest.mark.parametrize(
    "route,key",
    [
        ("/v1/console/session-tokens", "sessionToken"),  # the fallback under console_url
        ("/session-tokens", "sessionToken"),  # the fallback under base_url
        ("/v1/auth/session-token", "session_token"),
    ],
)
async def test_token_routes(service, route, key):
    status, body = await post_token(
        service.base_url + route, api_key=service.api_key, body={"expireAt": int(time.time()) + 60}
    )
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
async def test_token_refusals_use_the_json_error_shape(
    service, api_key, body, status, code, detail
):
    key = service.api_key if api_key == "OK" else api_key
    got, text = await post_token(service.console_url + "/session-tokens", api_key=key, body=body)
    assert got == status
    error = json.loads(text)["errors"][0]
    assert error["status"] == status and error["code"] == code and detail in error["detail"]
    assert error["title"] and error["id"]
    assert service.api_key not in text


async def test_token_body_not_json(service):
    status, text = await post_token(
        service.console_url + "/session-tokens", api_key=service.api_key, body=None, raw=b"{nope"
    )
    assert status == 400 and "JSON object" in text


@pytest.mark.parametrize(
    "raw",
    [
        b'{"expireAt": Infinity}',
        b'{"expireAt": -Infinity}',
        b'{"expireAt": NaN}',
        b'{"expireAt": 1e400}',
        b'{"expireAt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b"[" * 1000 + b"]" * 1000,
        b'{"expireAt": 1.5e9, "x": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}",
    ],
    ids=["inf", "-inf", "nan", "1e400", "deep-100k", "deep-array", "deep-41"],
)
async def test_non_json_numbers_and_deep_nesting_are_400(service, raw):
    """Python's json takes NaN, Infinity and 1e400 (as inf) and recurses on nesting: the
    console answers each with a 400 in the documented error shape, never a 500."""
    status, text = await post_token(
        service.console_url + "/session-tokens", api_key=service.api_key, body=None, raw=raw
    )
    assert status == 400, text[:200]
    error = json.loads(text)["errors"][0]
    assert (
        error["status"] == 400
        and error["code"] == "INVALID_ARGUMENT"
        and error["title"]
        and error["id"]
    )
    assert error["detail"]


async def test_nesting_inside_strings_is_not_nesting(service):
    body = {"expireAt": int(time.time()) + 60, "note": "[" * 100}
    status, text = await post_token(
        service.console_url + "/session-tokens", api_key=service.api_key, body=body
    )
    assert status == 200 and json.loads(text)["sessionToken"]


async def test_a_body_in_pieces_is_read_whole_and_a_stalled_one_is_refused():
    import asyncio

    from avatar_nb.server import LocalService

    async with LocalService(handshake_timeout=0.5) as svc:
        body = json.dumps({"expireAt": int(time.time()) + 60}).encode()

        async def post(parts: list[bytes], length: int) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", svc.port)
            head = (
                f"POST /v1/console/session-tokens HTTP/1.1\r\nHost: x\r\nX-Api-Key: {svc.api_key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode())
            for part in parts:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.05)  # separate segments, well within the timeout
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            size = int(
                next(
                    v
                    for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                    if k.lower() == b"content-length"
                )
            )
            answer = head + await asyncio.wait_for(reader.readexactly(size), 30)
            writer.close()
            return answer

        answer = await post([body[:5], body[5:]], len(body))
        assert answer.startswith(b"HTTP/1.1 200") and b"sessionToken" in answer
        answer = await post([body[:5]], len(body))  # the rest never comes
        assert answer.startswith(b"HTTP/1.1 400") and b"not received within 0.5s" in answer
