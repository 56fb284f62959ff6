"""Small helpers shared by test modules, and a raw protocol client for the service tests.

The raw client speaks the protocol (docs/protocol.md) with ``websockets`` and avatar_nb's builders, not
with avatar_nb's session, so that the service tests do not depend on the client
under test elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest
import websockets
from aiohttp import web
from websockets.exceptions import InvalidStatus

from avatar_nb import _wire
from avatar_nb.http_api import websocket_target
from avatar_nb.protocol import build_configure_session
from avatar_nb.proto import message_pb2 as pb


def varint(n: int) -> bytes:
    """The protobuf base-128 varint of ``n``, for building wire data by hand."""
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def expected_frames(n_samples: int, sample_rate: int = 16000, fps: float = 25.0) -> int:
    """Keyframes the service makes for an utterance of ``n_samples`` (the last one partial)."""
    return int(np.ceil(n_samples * fps / sample_rate - 1e-9))


async def post_token(url: str, *, api_key: str | None, body: object, raw: bytes | None = None) -> tuple[int, str]:
    """POST a token request; (status, body text)."""
    headers = {"Content-Type": "application/json"}
    if api_key is not None:
        headers["X-Api-Key"] = api_key
    data = raw if raw is not None else json.dumps(body).encode()
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=data, headers=headers) as response:
            return response.status, await response.text()


async def open_raw(svc, *, token=None, app_id=None, avatar_id=None, query_auth=False, compression=None):
    """Open the ingress WebSocket of ``svc`` (defaults: valid credentials, header auth)."""
    url, headers = websocket_target(
        svc.ingress_url,
        svc.avatar_id if avatar_id is None else avatar_id,
        app_id=svc.app_id if app_id is None else app_id,
        session_token=svc.issue_token() if token is None else token,
        use_query_auth=query_auth,
    )
    return await websockets.connect(url, additional_headers=headers, compression=compression)


async def refusal(svc, **kwargs) -> tuple[int, str]:
    """(status, body) of an upgrade the service refuses."""
    with pytest.raises(InvalidStatus) as info:
        await open_raw(svc, **kwargs)
    response = info.value.response
    return response.status_code, response.body.decode()


async def handshake(ws, sample_rate: int = 16000) -> _wire.DecodedMessage:
    """Send ClientConfigureSession; the decoded answer."""
    await ws.send(build_configure_session(sample_rate))
    return _wire.decode_message(await ws.recv())


async def receive(ws, timeout: float = 10.0) -> _wire.DecodedMessage:
    return _wire.decode_message(await asyncio.wait_for(ws.recv(), timeout))


async def collect_until_end(ws, req_id: str) -> list[_wire.DecodedMessage]:
    """Every message up to and including the animation with ``end`` for ``req_id``."""
    out = []
    while True:
        msg = await receive(ws)
        out.append(msg)
        if msg.type == pb.MESSAGE_SERVER_RESPONSE_ANIMATION and msg.req_id == req_id and msg.end:
            return out


def keyframes_of(messages, req_id=None) -> np.ndarray:
    """The keyframes of the animation messages (of one request), concatenated."""
    rows = [
        m.keyframes
        for m in messages
        if m.type == pb.MESSAGE_SERVER_RESPONSE_ANIMATION and m.keyframes.shape[0] and (req_id is None or m.req_id == req_id)
    ]
    return np.concatenate(rows) if rows else np.zeros((0, 70), np.float32)


async def stream(ws, pcm: bytes, req_id: str, chunk: int = 1280, end: bool = True) -> None:
    """Send ``pcm`` as ClientAudioInput chunks of ``chunk`` bytes, as fast as possible."""
    for message in _wire.encode_audio_messages(pcm, req_id, chunk, end=end):
        await ws.send(message)


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on a free loopback port for the block; yield its base URL."""
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
