"""The official clients against ``avatar-nb serve`` as a user starts it: a subprocess,
``--port 0`` and no other option, its endpoints and credentials read from what it prints.

What the hosted service does and the local one must do by default, with the official
clients from PyPI (avatarkit 0.1.7, spatialreal 0.2.2) driven unchanged:
- egress exists: a LiveKit config whose token is unusable is refused with code 16
  (``unauthorized``; avatarkit: ``invalidEgressConfig``), the credentials the service
  prints are accepted;
- pause and resume are ignored where the service does not play out, as spatialreal
  documents (no error reaches ``on_error``, the request completes);
- the session token's fallback is the seed's ``{console_endpoint_url}/session-tokens``,
  also behind a gateway that only has that route;
- the connection-pool example's idle pattern passes (its full scale is
  ``benchmarks/pool_pattern.py``; here a short scale, with the idle timeout scaled);
- misuse raises what spatialreal raises (a ValueError) and what avatar_nb always raised
  (a RuntimeError), as one exception.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import avatarkit
import pytest
import spatialreal
from aiohttp import ClientSession, web

import avatar_nb
from avatar_nb import _pcm
from avatar_nb.audio import speech_like
from avatar_nb.server import DEFAULT_IDLE_TIMEOUT, LocalService

from .helpers import serve_app

_POOL_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pool_pattern.py"
_spec = importlib.util.spec_from_file_location("pool_pattern", _POOL_SCRIPT)
pool_pattern = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("pool_pattern", pool_pattern)  # its dataclasses look their module up
_spec.loader.exec_module(pool_pattern)

CHUNK = 1280  # 40 ms at 16 kHz


@pytest.fixture(scope="module")
def served():
    """``avatar-nb serve --port 0``: (what it printed as name = value, all its lines)."""
    proc, info, lines = pool_pattern.start_serve()
    try:
        yield info, lines
    finally:
        pool_pattern.stop_serve(proc)


@pytest.fixture
def info(served, loopback_only):
    yield served[0]
    assert loopback_only == [], f"a client tried to reach {loopback_only}"


def _kwargs(info: dict[str, str], **overrides) -> dict:
    kwargs = {k: info[k] for k in pool_pattern.KEYS}
    kwargs.update(overrides)
    return kwargs


def _expiry() -> datetime:
    return datetime.now(timezone.utc) + timedelta(minutes=5)


def _clip(seconds: float = 1.0) -> bytes:
    return _pcm.to_s16le(speech_like(seconds, 16000, seed=11))


def test_serve_prints_its_endpoints_defaults_and_egress(served):
    info, lines = served
    assert info["console_endpoint_url"].endswith("/v1/console")
    assert info["idle_timeout"] == f"{DEFAULT_IDLE_TIMEOUT:g}"  # "600 s": the pool example fits
    text = "\n".join(lines)
    assert "egress = simulated" in text and "livekit_egress: url=" in text and "agora_egress:" in text


# ----------------------------------------------------------------------------- 1. egress


def _printed_livekit(served) -> dict[str, str]:
    line = next(text for text in served[1] if "livekit_egress:" in text)
    return dict(re.findall(r"(url|room_name|api_token)=(\S+)", line))


@pytest.mark.parametrize("client", ["avatarkit", "spatialreal", "avatar_nb"])
async def test_livekit_egress_with_an_unusable_token_is_refused_with_16(info, served, client):
    module = {"avatarkit": avatarkit, "spatialreal": spatialreal, "avatar_nb": avatar_nb}[client]
    printed = _printed_livekit(served)
    # the room and URL the service knows, a token it did not issue (the e2e suite's case)
    lk = module.LiveKitEgressConfig(url=printed["url"], api_token="not-a-livekit-token",
                                    room_name=printed["room_name"])
    extra = {} if client == "avatar_nb" else {"expire_at": _expiry()}
    session = module.new_avatar_session(**_kwargs(info, livekit_egress=lk, **extra))
    await session.init()
    with pytest.raises(Exception) as caught:
        await session.start()
    err = caught.value
    # spatialreal reads ServerError codes only in the close-code range: serverError with the code
    expected = "serverError" if client == "spatialreal" else "invalidEgressConfig"
    assert err.code.value == expected
    if client != "avatar_nb":
        assert err.server_code == "16"
    assert "unauthorized" in str(err) and "not-a-livekit-token" not in str(err)


async def test_livekit_egress_with_the_printed_credentials_is_accepted(info, served):
    printed = _printed_livekit(served)
    lk = avatarkit.LiveKitEgressConfig(**printed)
    done = asyncio.Event()
    frames: list[tuple[bytes, bool]] = []

    def frame(data: bytes, last: bool) -> None:
        frames.append((data, last))
        if last:
            done.set()

    session = avatarkit.new_avatar_session(
        **_kwargs(info, livekit_egress=lk, expire_at=_expiry(), transport_frames=frame)
    )
    await session.init()
    await session.start()
    await session.send_audio(_clip(0.4), end=True)
    await asyncio.wait_for(done.wait(), 20)
    await session.close()
    assert frames and all(avatar_nb._wire.decode_message(d).animation == b"" for d, _ in frames)


# ----------------------------------------------------------------------------- 3. pause and resume


async def test_spatialreal_pause_and_resume_are_ignored_without_playout(info):
    errors: list[Exception] = []
    states: list = []
    done = asyncio.Event()
    ends: list[bool] = []

    def frame(_data: bytes, last: bool) -> None:
        ends.append(last)
        if last:
            done.set()

    session = spatialreal.new_avatar_session(
        **_kwargs(info, expire_at=_expiry(), transport_frames=frame, on_error=errors.append,
                  on_playback_state=states.append)
    )
    await session.init()
    await session.start()
    assert "playback_control" not in session.capabilities
    clip = _clip(1.0)
    half = len(clip) // 2 // CHUNK * CHUNK
    for i in range(0, half, CHUNK):
        await session.send_audio(clip[i : i + CHUNK])
    req_id = await session.pause()
    assert await session.resume() == req_id
    for i in range(half, len(clip), CHUNK):
        await session.send_audio(clip[i : i + CHUNK], end=i + CHUNK >= len(clip))
    await asyncio.wait_for(done.wait(), 20)
    await session.close()
    assert errors == [] and states == []  # nothing answered: no error, no state
    assert ends.count(True) == 1 and ends[-1]


# ----------------------------------------------------------------------------- 4. the token route


async def test_the_local_console_answers_the_seeds_route(info):
    """The seed posts to ``{console_endpoint_url}/session-tokens``."""
    async with ClientSession() as http:
        url = info["console_endpoint_url"] + "/session-tokens"
        body = {"expireAt": int(_expiry().timestamp())}
        async with http.post(url, json=body, headers={"X-Api-Key": info["api_key"]}) as resp:
            assert resp.status == 200 and (await resp.json())["sessionToken"]


async def test_token_fallback_through_a_gateway_that_only_has_the_seeds_route(info):
    """A console behind a gateway at ``{gw}/console``: spatialreal's route answers 404
    there, the fallback asks ``{gw}/console/session-tokens`` (not
    ``{gw}/v1/console/session-tokens``), and the token it relays starts a session."""
    asked: list[str] = []

    @web.middleware
    async def record(request, handler):
        asked.append(request.path)
        return await handler(request)

    async def relay(request):  # the gateway forwards the seed's route to the console
        async with ClientSession() as http:
            async with http.post(info["console_endpoint_url"] + "/session-tokens",
                                 data=await request.read(),
                                 headers={"X-Api-Key": request.headers["X-Api-Key"],
                                          "Content-Type": "application/json"}) as resp:
                return web.Response(status=resp.status, body=await resp.read(),
                                    content_type="application/json")

    app = web.Application(middlewares=[record])
    app.router.add_post("/console/session-tokens", relay)
    async with serve_app(app) as gw:
        session = avatar_nb.new_avatar_session(**_kwargs(info, console_endpoint_url=gw + "/console"))
        await session.init()
        async with session:
            req = await session.stream(_clip(0.4), pacing="fast")
            await session.wait_for_end(req, timeout=20)
    assert asked == ["/console/v1/auth/session-token", "/console/session-tokens"]
    assert session.timeline.n_keyframes == 10


# ----------------------------------------------------------------------------- 2. the pool pattern


async def test_pool_pattern_against_serve_a_few_rounds(info):
    """The example's flow (open a pool, borrow first in first out, one clip each in one
    message, return) against the service as it ships, a few quick rounds."""
    rounds = await pool_pattern.run_pool(info, sessions=6, borrow=2, gap=0.5, rounds=3,
                                         clip=_clip(0.4))
    assert [(r.passed, r.failed) for r in rounds] == [(2, 0)] * 3


SCALE = 0.01  # the pool example a hundred times faster: rounds every 0.3 s, 10 of them


@pytest.mark.parametrize("idle_timeout,passes", [(DEFAULT_IDLE_TIMEOUT, True), (120.0, False)],
                         ids=["default", "former-120s"])
async def test_pool_pattern_at_a_hundredth_scale(idle_timeout, passes):
    """The full pattern's timing scaled by 1/100 with the idle timeout scaled the same
    way: the default passes every round; the former 120 s default (1.2 s here) fails the
    rounds that reuse sessions left unused longer than it, as the example did."""
    async with LocalService(realtime=False, idle_timeout=idle_timeout * SCALE) as svc:
        info = svc.session_kwargs()
        rounds = await pool_pattern.run_pool(
            info, sessions=20, borrow=2, gap=30.0 * SCALE, rounds=10, clip=_clip(0.2),
            request_timeout=5.0,
        )
    failed = [k + 1 for k, r in enumerate(rounds) if r.failed]
    if passes:
        assert failed == []
        assert max(r.longest_idle for r in rounds) >= 9 * 30.0 * SCALE * 0.9
    else:  # sessions unused for 30 s x (k - 1) > 120 s: rounds 6 to 10 (5 is at the edge)
        assert failed and set(range(6, 11)) <= set(failed) and 1 not in failed


# ----------------------------------------------------------------------------- 6. misuse


async def _misuses(module, info: dict[str, str]) -> dict[str, BaseException | None]:
    """Each misuse spatialreal raises ValueError for, done with ``module``'s session."""
    extra = {} if module is avatar_nb else {"expire_at": _expiry()}
    got: dict[str, BaseException | None] = {}

    async def attempt(name: str, coro) -> None:
        try:
            await coro
            got[name] = None
        except Exception as exc:
            got[name] = exc

    session = module.new_avatar_session(**_kwargs(info, **extra))
    await attempt("start before init", session.start())
    await attempt("send before start", session.send_audio(b"\x00\x00" * 160))
    await session.init()
    await session.start()
    await attempt("pause before any audio", session.pause())
    await attempt("second start", session.start())
    await session.close()
    await attempt("send after close", session.send_audio(b"\x00\x00" * 160))
    return got


async def test_misuse_raises_value_error_like_spatialreal_and_runtime_error(info):
    theirs = await _misuses(spatialreal, info)
    ours = await _misuses(avatar_nb, info)
    assert set(ours) == set(theirs)
    for name, exc in theirs.items():
        assert isinstance(exc, ValueError), name
        assert isinstance(ours[name], ValueError) and isinstance(ours[name], RuntimeError), name
