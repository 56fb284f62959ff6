"""A spatialreal 0.2.2 user changes only the import: its option names, environments, token
route, playback callbacks and Ogg Opus input work the same in avatar_nb."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest
import spatialreal
import spatialreal.environments
import spatialreal.events
import spatialreal.session
from aiohttp import web

import avatar_nb
from avatar_nb import (
    InterruptReason,
    LocalService,
    PlaybackSignal,
    PlaybackState,
    PlaybackStateEvent,
    SessionConfig,
    SessionConfigBuilder,
    _pcm,
    _wire,
    new_avatar_session,
)
from avatar_nb.audio import speech_like
from avatar_nb.environments import ENVIRONMENTS
from avatar_nb.opus import OggOpusEncoder
from avatar_nb.http_api import token_urls
from avatar_nb.protocol import build_confirm_session, build_playback_state
from avatar_nb.protocol import WirePlaybackState as WireState

from .helpers import expected_frames, serve_app

# ----------------------------------------------------------------------------- options


def test_every_spatialreal_option_name_is_accepted(service):
    official = {f.name for f in dataclasses.fields(spatialreal.SessionConfig)}
    values = {
        "environment": "us-west",
        "token_request_timeout": 12.0,
        "on_playback": lambda signal: None,
        "on_playback_state": lambda event: None,
    }
    assert set(values) <= official
    session = new_avatar_session(**service.session_kwargs(**values))
    config = session.config
    assert config.token_timeout == config.token_request_timeout == 12.0
    assert config.environment == "us-west" and callable(config.on_playback) and callable(config.on_playback_state)
    # the service's explicit URLs win over the environment's
    assert config.endpoints() == (service.console_url, service.ingress_url)
    for name in official:  # and SessionConfig takes every one of spatialreal's names
        assert name in {f.name for f in dataclasses.fields(SessionConfig)} | {"token_request_timeout"}


def test_token_request_timeout_is_token_timeout():
    assert SessionConfig(token_request_timeout=4).token_timeout == 4
    config = SessionConfig(token_timeout=6)
    assert config.token_request_timeout == 6
    config.token_request_timeout = 2.5
    assert config.token_timeout == 2.5
    assert dataclasses.replace(config, fps=30).token_timeout == 2.5
    with pytest.raises(ValueError, match="are one setting"):
        SessionConfig(token_timeout=5, token_request_timeout=6)
    with pytest.raises(ValueError, match="token_timeout must be a positive number"):
        SessionConfig(token_request_timeout=0)


def test_builder_takes_the_new_options():
    def on_playback(signal):
        pass

    def on_state(event):
        pass

    config = (
        SessionConfigBuilder()
        .with_avatar_id("v").with_api_key("k").with_app_id("a")
        .with_environment("us-west")
        .with_token_request_timeout(7)
        .with_on_playback(on_playback)
        .with_on_playback_state(on_state)
        .build()
    )
    assert (config.environment, config.token_timeout) == ("us-west", 7)
    assert (config.on_playback, config.on_playback_state) == (on_playback, on_state)
    assert config.missing_fields() == []  # the environment stands in for both URLs


@pytest.mark.parametrize("name", ["on_playback", "on_playback_state"])
def test_playback_callbacks_must_be_callable(name):
    with pytest.raises(TypeError, match=f"{name} must be callable"):
        SessionConfig(**{name: "print"})


# ----------------------------------------------------------------------------- environments


async def test_environments_resolve_to_spatialreals_urls_without_the_network(monkeypatch, loopback_only):
    async def unreachable():
        raise OSError("config service not reachable in tests")

    # spatialreal asks its config service first and falls back to its presets
    monkeypatch.setattr(spatialreal.environments, "_fetch", unreachable)
    spatialreal.environments.reset_cache()
    try:
        assert set(ENVIRONMENTS) == set(spatialreal.environments.BUILTIN_ENVIRONMENTS)
        for name in ENVIRONMENTS:
            theirs = await spatialreal.environments.resolve(name)
            config = SessionConfig(avatar_id="v", api_key="k", app_id="a", environment=name)
            console, ingress = config.endpoints()
            assert token_urls(console)[0] == spatialreal.session._session_token_endpoint(theirs.api)
            assert ingress == theirs.driveningress.rstrip("/") + spatialreal.session.DRIVENINGRESS_PATH
            explicit = SessionConfig(environment=name, console_endpoint_url="http://127.0.0.1:1/v1/console")
            assert explicit.endpoints() == ("http://127.0.0.1:1/v1/console", ingress)  # explicit wins
    finally:
        spatialreal.environments.reset_cache()
    assert loopback_only == []  # our side looked nothing up


def test_unknown_environment_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown environment 'mars'; known environments: 'us-west'"):
        new_avatar_session(avatar_id="v", api_key="k", app_id="a", environment="mars")


def test_without_endpoints_or_environment_the_urls_are_missing():
    with pytest.raises(ValueError, match="missing console_endpoint_url, ingress_endpoint_url"):
        new_avatar_session(avatar_id="v", api_key="k", app_id="a")


# ----------------------------------------------------------------------------- token routes


@pytest.mark.parametrize("form", ["root", "console"])
async def test_both_url_forms_work_against_the_local_service(service, speech_pcm, form):
    console = service.console_url if form == "console" else service.console_url.removesuffix("/v1/console")
    assert console != service.console_url or form == "console"
    async with new_avatar_session(**service.session_kwargs(console_endpoint_url=console)) as session:
        req = await session.stream(speech_pcm[:6400], pacing="fast")
        await session.wait_for_end(req, timeout=10)
    assert session.timeline.n_keyframes == expected_frames(3200)


@pytest.mark.parametrize("form", ["", "/v1/console", "/v1/console/"])
@pytest.mark.parametrize("routes", [("new", "legacy"), ("new",), ("legacy",)])
async def test_token_route_order_and_reply_keys(form, routes):
    asked: list[str] = []

    async def new(request):
        asked.append(request.path)
        return web.json_response({"session_token": "tok-new"})

    async def legacy(request):
        asked.append(request.path)
        return web.json_response({"sessionToken": "tok-legacy"})

    app = web.Application()
    if "new" in routes:
        app.router.add_post("/v1/auth/session-token", new)
    seed_route = form.rstrip("/") + "/session-tokens"  # the seed's, under the console URL as given
    if "legacy" in routes:
        app.router.add_post(seed_route, legacy)
    async with serve_app(app) as base:
        session = new_avatar_session(
            api_key="k", app_id="a", avatar_id="v", console_endpoint_url=base + form, ingress_endpoint_url=base
        )
        await session.init()
    if "new" in routes:
        assert asked == ["/v1/auth/session-token"] and session._token == "tok-new"
    else:  # the current route answered 404: the seed's route, once
        assert asked == [seed_route] and session._token == "tok-legacy"


# ----------------------------------------------------------------------------- playback events


def test_event_types_have_spatialreals_names_and_fields():
    for ours, theirs in (
        (PlaybackSignal, spatialreal.events.PlaybackSignal),
        (PlaybackStateEvent, spatialreal.events.PlaybackStateEvent),
    ):
        assert [(f.name, f.default) for f in dataclasses.fields(ours)] == [
            (f.name, f.default) for f in dataclasses.fields(theirs)
        ]
    for ours, theirs in ((PlaybackState, spatialreal.events.PlaybackState), (InterruptReason, spatialreal.events.InterruptReason)):
        assert {m.name: m.value for m in ours} == {m.name: m.value for m in theirs}
    assert {"PlaybackSignal", "PlaybackState", "PlaybackStateEvent", "InterruptReason"} <= set(avatar_nb.__all__)


async def test_on_playback_for_every_message_and_states_in_the_timeline():
    kf = np.ones((2, 70), np.float32)
    empty = np.zeros((0, 70), np.float32)

    async def token(request):
        return web.json_response({"session_token": "t"})

    async def ingress(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        await ws.send_bytes(build_confirm_session("c1", ["playback_state", "playback_control"]))
        audio = await ws.receive()
        req = _wire.decode_message(audio.data).req_id
        await ws.send_bytes(build_playback_state(WireState.PLAYING, connection_id="c1", req_id=req))
        await ws.send_bytes(_wire.encode_animation_message(kf, connection_id="c1", req_id=req, avatar_id="av"))
        await ws.send_bytes(_wire.encode_animation_message(empty, connection_id="c1", req_id=req, end=True))
        await ws.send_bytes(_wire.encode_animation_message(empty, connection_id="c1", req_id=req, end=True))  # again
        await ws.send_bytes(
            build_playback_state(WireState.INTERRUPTED, connection_id="c1", req_id=req, played_ms=1234, reason="preempted")
        )
        await ws.receive()  # until the client closes
        return ws

    app = web.Application()
    app.router.add_post("/v1/auth/session-token", token)
    app.router.add_get("/v2/driveningress/websocket", ingress)
    signals: list[PlaybackSignal] = []
    states: list[PlaybackStateEvent] = []
    interrupted = asyncio.Event()

    def on_state(event: PlaybackStateEvent) -> None:
        states.append(event)
        if event.state is PlaybackState.INTERRUPTED:
            interrupted.set()

    async with serve_app(app) as base:
        session = new_avatar_session(
            api_key="k", app_id="a", avatar_id="v", console_endpoint_url=base,
            ingress_endpoint_url=base + "/v2/driveningress", on_playback=signals.append, on_playback_state=on_state,
        )
        async with session:
            req = await session.send_audio(b"\x00\x00" * 320, end=True)
            await session.wait_for_end(req, timeout=10)
            await asyncio.wait_for(interrupted.wait(), 10)  # the last message
    assert [(s.req_id, s.end, s.has_animation, s.connection_id) for s in signals] == [
        (req, False, True, "c1"), (req, True, False, "c1"), (req, True, False, "c1"),  # the repeated end too
    ]
    assert signals[0].avatar_id == "av"
    assert states == [
        PlaybackStateEvent(req, PlaybackState.PLAYING, 0, "", "c1"),
        PlaybackStateEvent(req, PlaybackState.INTERRUPTED, 1234, InterruptReason.PREEMPTED.value, "c1"),
    ]
    tl = session.timeline
    table = tl.playback_states
    assert table["state"].tolist() == ["PLAYING", "INTERRUPTED"] and table["played"].tolist() == [0.0, 1.234]
    assert tl.request_status(req) == "preempted"
    assert tl.anomalies.empty  # a repeated end signal is tolerated


async def test_playout_states_reach_the_timeline_from_the_local_service():
    pcm = _pcm.to_s16le(speech_like(0.5, 16000, seed=2))
    states: list[PlaybackStateEvent] = []
    ended = asyncio.Event()

    def on_state(event: PlaybackStateEvent) -> None:
        states.append(event)
        if event.state is PlaybackState.ENDED:
            ended.set()

    async with LocalService(realtime=False, playout=True) as svc:
        async with new_avatar_session(**svc.session_kwargs(on_playback_state=on_state)) as session:
            first = await session.stream(pcm, pacing="fast")
            second = await session.stream(pcm, pacing="fast")  # preempts the first one's playout
            await session.wait_for_end(second, timeout=10)
            await asyncio.wait_for(ended.wait(), 10)  # the second one plays out
    tl = session.timeline
    assert (tl.request_status(first), tl.request_status(second)) == ("preempted", "complete")
    assert [s.state.name for s in states if s.req_id == first] == ["PLAYING", "INTERRUPTED"]
    assert set(tl.playback_states["req_id"]) == {first, second}


# ----------------------------------------------------------------------------- Ogg Opus


def ogg_of(pcm: bytes, rate: int) -> bytes:
    encoder = OggOpusEncoder(rate)
    return encoder.encode(pcm) + encoder.flush()


async def test_pre_encoded_ogg_opus_in_slices_then_an_empty_end(service):
    pcm = _pcm.to_s16le(speech_like(1.0, 24000, seed=4))
    ogg = ogg_of(pcm, 24000)
    errors: list[Exception] = []
    kwargs = service.session_kwargs(sample_rate=24000, audio_format="ogg_opus", on_error=errors.append)
    async with new_avatar_session(**kwargs) as session:
        with pytest.raises(ValueError, match="does not start with an Ogg page"):
            await session.send_audio(pcm[:4096])
        assert session.current_req_id is None
        for i in range(0, len(ogg), 4096):  # as the official clients send a file
            req = await session.send_audio(ogg[i : i + 4096])
        await session.send_audio(b"", end=True)
        await session.wait_for_end(req, timeout=20)
    assert errors == []
    assert session.timeline.n_keyframes == expected_frames(len(pcm) // 2, 24000)


async def test_stream_encodes_pcm_to_ogg_opus(service):
    pcm = _pcm.to_s16le(speech_like(1.0, 16000, seed=5))
    errors: list[Exception] = []
    kwargs = service.session_kwargs(audio_format="ogg_opus", on_error=errors.append)
    async with new_avatar_session(**kwargs) as session:
        req = await session.stream(pcm[:8000], pacing="fast", end=False)  # one Ogg stream over two calls
        assert await session.stream(pcm[8000:], pacing="fast") == req
        await session.wait_for_end(req, timeout=20)
    assert errors == []
    tl = session.timeline
    assert tl.n_keyframes == expected_frames(len(pcm) // 2)
    np.testing.assert_array_equal(tl.audio, np.frombuffer(pcm, "<i2"))  # the PCM that was encoded
