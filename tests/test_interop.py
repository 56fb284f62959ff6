"""The official clients, unchanged, against the embedded local service.

``avatarkit`` 0.1.7 and ``spatialreal`` 0.2.2 come from PyPI (the test extra). Each
gets a token from its own console route, completes the handshake, streams a
speech-like clip and receives every animation frame with ``end=true``; avatar_nb's
decoder reads the FLAME keyframes out of the raw envelopes they hand over.

Error codes: each client classifies refusals its own way, and the service words them
so that each gets the most precise code its rules allow:
- avatarkit reads phrases, so it gets ``sessionTokenInvalid`` (400 ``Invalid session
  token``), ``avatarNotFound`` (404 ``Avatar not found``) and ``unsupportedSampleRate``
  (ServerError code 0 ``unsupported sample rate: <n>``);
- spatialreal maps an upgrade refusal by HTTP status only (401/403 ->
  sessionTokenInvalid, anything else -> connectionFailed with ``http_status``), and a
  ServerError by its code (close-code range only, else serverError), so for the same
  conditions it reports connectionFailed with http_status 400 and 404, and serverError
  carrying the server's text ``unsupported sample rate: <n>``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import avatarkit
import numpy as np
import pytest
import spatialreal

from avatar_nb import _flame, _wire
from avatar_nb.server import LocalService

from .helpers import expected_frames

CHUNK = 1280  # 40 ms at 16 kHz


@pytest.fixture(autouse=True)
def _no_network(loopback_only):
    """Both URLs are always given, so no client may look anything up elsewhere
    (spatialreal asks a config service when they are missing, and falls back silently)."""
    yield
    assert loopback_only == [], f"a client tried to reach {loopback_only}"


def _expiry() -> datetime:
    return datetime.now(timezone.utc) + timedelta(minutes=5)


class Received:
    """Collects what a client's callbacks report."""

    def __init__(self) -> None:
        self.frames: list[tuple[bytes, bool]] = []
        self.errors: list[Exception] = []
        self.closed = 0
        self.done = asyncio.Event()

    def frame(self, data: bytes, last: bool) -> None:
        self.frames.append((data, last))
        if last:
            self.done.set()

    def error(self, exc: Exception) -> None:
        self.errors.append(exc)

    def close(self) -> None:
        self.closed += 1


def _official_kwargs(svc: LocalService, got: Received, overrides: dict) -> dict:
    """What both official clients take: credentials, both endpoints (spatialreal strips
    /v1/console and posts to /v1/auth/session-token), expiry and callbacks."""
    callbacks = dict(
        expire_at=_expiry(), transport_frames=got.frame, on_error=got.error, on_close=got.close
    )
    return svc.session_kwargs(**{**callbacks, **overrides})


def _avatarkit_session(svc: LocalService, got: Received, **overrides):
    return avatarkit.new_avatar_session(**_official_kwargs(svc, got, overrides))


def _spatialreal_session(svc: LocalService, got: Received, **overrides):
    return spatialreal.new_avatar_session(**_official_kwargs(svc, got, overrides))


FACTORIES = {"avatarkit": _avatarkit_session, "spatialreal": _spatialreal_session}


@pytest.mark.parametrize("client", sorted(FACTORIES))
@pytest.mark.parametrize("use_query_auth", [False, True])
async def test_official_client_full_flow(service, speech_pcm, client, use_query_auth):
    got = Received()
    session = FACTORIES[client](service, got, use_query_auth=use_query_auth)
    await session.init()
    connection_id = await session.start()
    assert connection_id.startswith("conn-")
    req_ids = set()
    for i in range(0, len(speech_pcm), CHUNK):
        req_ids.add(await session.send_audio(speech_pcm[i : i + CHUNK], end=i + CHUNK >= len(speech_pcm)))
    await asyncio.wait_for(got.done.wait(), 20)
    await session.close()
    assert len(req_ids) == 1
    assert got.errors == []
    # spatialreal calls on_close exactly once; avatarkit 0.1.7 may call it again from its read loop
    assert got.closed == 1 if client == "spatialreal" else got.closed >= 1
    assert [last for _, last in got.frames].count(True) == 1 and got.frames[-1][1]
    keyframes = _flame.decode_animation_batch([data for data, _ in got.frames])
    assert keyframes.shape == (expected_frames(len(speech_pcm) // 2), 70)
    messages = [_wire.decode_message(data) for data, _ in got.frames]
    assert {m.req_id for m in messages} == req_ids
    assert {m.connection_id for m in messages} == {connection_id}


async def test_spatialreal_reads_capabilities(service):
    got = Received()
    session = _spatialreal_session(service, got)
    await session.init()
    await session.start()
    assert "fps:25" in session.capabilities
    await session.close()


async def test_official_clients_interrupt(service, speech_pcm):
    for client in sorted(FACTORIES):
        got = Received()
        session = FACTORIES[client](service, got)
        await session.init()
        await session.start()
        half = speech_pcm[: len(speech_pcm) // 2]
        for i in range(0, len(half), CHUNK):
            await session.send_audio(half[i : i + CHUNK])
        await session.interrupt()
        await asyncio.wait_for(got.done.wait(), 20)
        await session.close()
        keyframes = _flame.decode_animation_batch([data for data, _ in got.frames])
        assert keyframes.shape[0] == len(half) // 2 // 640, client


# ----------------------------------------------------------------------------- error codes


async def _start_error(make, svc, got, **overrides):
    session = make(svc, got, **overrides)
    await session.init()
    with pytest.raises(Exception) as info:
        await session.start()
    return info.value


async def test_invalid_session_token_codes(service):
    """A token that does not verify (issued by another service instance)."""
    async with LocalService() as other:
        for client, expected_code in (("avatarkit", "sessionTokenInvalid"), ("spatialreal", "connectionFailed")):
            got = Received()
            # token from `other`, WebSocket to `service`: the signature does not verify there
            err = await _start_error(
                FACTORIES[client],
                other,
                got,
                ingress_endpoint_url=service.ingress_url,
                app_id=service.app_id,
                avatar_id=service.avatar_id,
            )
            assert err.code.value == expected_code, client
            assert err.http_status == 400, client


async def test_avatar_not_found_codes(service):
    for client, expected_code in (("avatarkit", "avatarNotFound"), ("spatialreal", "connectionFailed")):
        err = await _start_error(FACTORIES[client], service, Received(), avatar_id="avatar-that-does-not-exist")
        assert err.code.value == expected_code, client
        assert err.http_status == 404, client


async def test_unsupported_sample_rate_codes(service):
    err = await _start_error(_avatarkit_session, service, Received(), sample_rate=12345)
    assert err.code.value == "unsupportedSampleRate"
    assert err.server_code == "0" and err.server_detail == "unsupported sample rate: 12345"
    err = await _start_error(_spatialreal_session, service, Received(), sample_rate=12345)
    assert err.code.value == "serverError"
    assert err.server_detail == "unsupported sample rate: 12345"


async def test_wrong_api_key_is_a_session_token_error(service):
    for client in sorted(FACTORIES):
        session = FACTORIES[client](service, Received(), api_key="sk-not-the-key")
        with pytest.raises(Exception) as info:
            await session.init()
        err = info.value
        assert type(err).__name__ == "SessionTokenError", client
        assert err.http_status == 401, client
        assert "sk-not-the-key" not in str(err)


async def test_credits_exhausted_reaches_official_clients(speech_pcm):
    async with LocalService(realtime=False, credits_seconds=0.5) as svc:
        got = Received()
        session = _avatarkit_session(svc, got)
        await session.init()
        await session.start()
        for i in range(0, len(speech_pcm), CHUNK):
            try:
                await session.send_audio(speech_pcm[i : i + CHUNK])
            except Exception:
                break
        for _ in range(200):
            if got.closed:
                break
            await asyncio.sleep(0.02)
        await session.close()
        codes = [getattr(e, "code", None) for e in got.errors]
        assert avatarkit.AvatarSDKErrorCode.creditsExhausted in codes
        np.testing.assert_equal(got.closed >= 1, True)


def test_the_network_guard_records_what_it_refuses(loopback_only):
    import socket

    with pytest.raises(socket.gaierror, match="only reach loopback"):
        socket.getaddrinfo("config.example.invalid", 443)
    assert loopback_only == ["config.example.invalid"]
    loopback_only.clear()  # seen: the module's guard must not report it
