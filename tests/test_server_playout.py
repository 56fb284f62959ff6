"""Simulated playout (``LocalService(playout=True)``) and simulated egress: the playout
clock, the playback states it reports, and egress credentials, over real sockets."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed

from avatar_nb import _pcm
from avatar_nb.audio import speech_like
from avatar_nb.flame import DEFAULT_FPS
from avatar_nb.proto import message_pb2 as pb
from avatar_nb.protocol import (
    MessageType,
    WirePlaybackState as PlaybackState,
    build_configure_session,
    build_interrupt,
    build_playback_control,
)
from avatar_nb.server import LocalService, SimulatedEgress
from avatar_nb.server.playout import Playout, Report

from .helpers import expected_frames, handshake, open_raw, receive, stream

P, S, E, I = (  # noqa: E741 - the four playback states, as the protocol letters them
    PlaybackState.PLAYING,
    PlaybackState.PAUSED,
    PlaybackState.ENDED,
    PlaybackState.INTERRUPTED,
)


# ----------------------------------------------------------------------------- the clock, without I/O


def test_clock_advances_while_playing_and_holds_while_paused():
    play = Playout(fps=25.0, pause_limit=10.0)
    assert play.delivered("a", 25, False, now=100.0) == [Report("a", P, 0)]
    assert play.position(100.4) == pytest.approx(0.4)
    assert play.pause("a", now=100.4) == [Report("a", S, 400)]
    assert play.position(105.0) == pytest.approx(0.4)  # held
    assert play.resume("a", now=105.0) == [Report("a", P, 400)]
    assert play.position(105.3) == pytest.approx(0.7)
    assert play.position(107.0) == pytest.approx(1.0)  # never past the content delivered
    # the end goes out at 107: the underrun is over, 1 s of new content plays from there
    assert play.delivered("a", 25, True, now=107.0) == []
    assert play.deadline() == pytest.approx(108.0)
    assert play.tick(107.9) == []
    assert play.tick(108.0) == [Report("a", E, 2000)]
    assert play.deadline() is None
    # a late pause of a request that ended answers with its last state
    assert play.pause("a", now=109.0) == [Report("a", E, 2000)]
    assert play.pause("unknown", now=109.0) == [Report("unknown", PlaybackState.UNSPECIFIED, 0)]


def test_interrupt_preemption_and_pause_timeout():
    play = Playout(fps=25.0, pause_limit=2.0)
    play.delivered("a", 50, True, now=0.0)
    assert play.delivered("b", 5, False, now=0.5) == [
        Report("a", I, 500, "preempted"),
        Report("b", P, 0),
    ]
    assert play.interrupt("b", now=0.6) == [Report("b", I, 100, "explicit")]
    assert play.delivered("b", 0, True, now=0.6) == []  # its closing end message: nothing more
    play.delivered("c", 50, False, now=1.0)
    assert play.pause("c", now=1.5) == [Report("c", S, 500)]
    assert play.deadline() == pytest.approx(3.5)
    assert play.tick(3.5) == [Report("c", I, 500, "pause_timeout")]
    assert play.resume("c", now=4.0) == [Report("c", I, 500, "pause_timeout")]


# ----------------------------------------------------------------------------- over sockets


async def _states(
    ws, until: int, timeout: float = 30.0
) -> list[tuple[str, PlaybackState, int, str]]:
    """Playback states received (skipping animation) until ``until`` of them arrived."""
    out = []
    while len(out) < until:
        msg = await receive(ws, timeout)
        if msg.type == pb.MESSAGE_SERVER_PLAYBACK_STATE:
            out.append((msg.req_id, PlaybackState(msg.playback_state), msg.played_ms, msg.reason))
    return out


async def test_playout_declares_capabilities_and_reports_playing_then_ended():
    pcm = _pcm.to_s16le(speech_like(0.4, 16000, seed=1))
    async with LocalService(realtime=False, playout=True) as svc:
        ws = await open_raw(svc)
        confirm = await handshake(ws)
        assert {"playback_control", "playback_state"} <= set(confirm.capabilities)
        await stream(ws, pcm, "a")
        states = await _states(ws, 2)
        assert [(r, s, reason) for r, s, _, reason in states] == [("a", P, ""), ("a", E, "")]
        played_ms = round(expected_frames(len(pcm) // 2) * 1000 / DEFAULT_FPS)  # all of it
        assert states[0][2] == 0 and states[1][2] == played_ms
        await ws.close()


async def test_pause_resume_interrupt_and_pause_timeout_over_the_wire():
    pcm = _pcm.to_s16le(speech_like(2.0, 16000, seed=2))
    async with LocalService(realtime=False, playout=True, pause_limit=0.3) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        await stream(ws, pcm, "a")
        await ws.send(build_playback_control(MessageType.CLIENT_PAUSE, "a"))
        await ws.send(build_playback_control(MessageType.CLIENT_RESUME, "a"))
        await ws.send(build_interrupt("a"))
        got = await _states(ws, 4)
        assert [(s, reason) for _, s, _, reason in got] == [
            (P, ""),
            (S, ""),
            (P, ""),
            (I, "explicit"),
        ]
        assert got[1][2] == got[2][2]  # resumed where it paused
        # a held pause runs out: the request is interrupted with pause_timeout
        await stream(ws, pcm, "b")
        await ws.send(build_playback_control(MessageType.CLIENT_PAUSE, "b"))
        got = await _states(ws, 3)
        assert [(r, s, reason) for r, s, _, reason in got] == [
            ("b", P, ""),
            ("b", S, ""),
            ("b", I, "pause_timeout"),
        ]
        await ws.close()


async def test_a_newer_request_preempts_the_one_playing():
    pcm = _pcm.to_s16le(speech_like(1.0, 16000, seed=3))
    async with LocalService(realtime=False, playout=True) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        await stream(ws, pcm, "a")
        await stream(ws, pcm[:6400], "b")
        got = await _states(ws, 4)
        assert [(r, s, reason) for r, s, _, reason in got] == [
            ("a", P, ""),
            ("a", I, "preempted"),
            ("b", P, ""),
            ("b", E, ""),
        ]
        await ws.close()


async def test_without_playout_pause_and_resume_are_ignored(speech_pcm):
    """spatialreal documents pause/resume as a no-op where the service lacks
    ``playback_control``: no error, no state, the session goes on unchanged."""
    async with LocalService(realtime=False) as svc:
        ws = await open_raw(svc)
        confirm = await handshake(ws)
        assert "playback_control" not in confirm.capabilities
        await stream(ws, speech_pcm[:6400], "a")
        await ws.send(build_playback_control(MessageType.CLIENT_PAUSE, "a"))
        await ws.send(build_playback_control(MessageType.CLIENT_RESUME, "a"))
        await ws.send(build_playback_control(MessageType.CLIENT_PAUSE, "never-sent"))
        await stream(ws, speech_pcm[6400:12800], "b")
        got = []
        while not got or not (got[-1].req_id == "b" and got[-1].end):
            got.append(await receive(ws))
        assert {m.type for m in got} == {pb.MESSAGE_SERVER_RESPONSE_ANIMATION}  # no error, no state
        assert [m.req_id for m in got if m.end] == ["a", "b"]
        assert svc.stats["playback_controls_ignored"] == 3
        assert svc.stats["protocol_errors"] == 0
        await ws.close()


# ----------------------------------------------------------------------------- simulated egress


EGRESS = SimulatedEgress(
    livekit_url="wss://lk.example.invalid",
    livekit_api_token="lk-token",
    livekit_rooms=("room-1",),
    agora_token="ag-token",
    agora_channels=("chan-1",),
)


class LiveKit:
    def __init__(self, **kw):
        self.url, self.api_key, self.api_secret, self.api_token = (
            "wss://lk.example.invalid",
            "",
            "",
            "lk-token",
        )
        self.room_name, self.publisher_id, self.extra_attributes, self.idle_timeout = (
            "room-1",
            "pub",
            {},
            0,
        )
        self.__dict__.update(kw)


class Agora:
    def __init__(self, **kw):
        self.channel_name, self.token, self.uid, self.publisher_id = "chan-1", "ag-token", 7, "pub"
        self.__dict__.update(kw)


@pytest.mark.parametrize(
    "egress", [dict(livekit_egress=LiveKit()), dict(agora_egress=Agora())], ids=["livekit", "agora"]
)
async def test_valid_egress_gets_control_frames_and_playback_states(egress):
    pcm = _pcm.to_s16le(speech_like(0.4, 16000, seed=4))
    async with LocalService(realtime=False, egress=EGRESS) as svc:
        ws = await open_raw(svc)
        await ws.send(build_configure_session(16000, **egress))
        confirm = await receive(ws)
        assert (
            confirm.type == pb.MESSAGE_SERVER_CONFIRM_SESSION
            and "playback_state" in confirm.capabilities
        )
        await stream(ws, pcm, "e")
        animations, states = [], []
        while not states or states[-1] != E:
            msg = await receive(ws)
            if msg.type == pb.MESSAGE_SERVER_RESPONSE_ANIMATION:
                animations.append(msg)
            elif msg.type == pb.MESSAGE_SERVER_PLAYBACK_STATE:
                states.append(PlaybackState(msg.playback_state))
        assert states == [P, E]
        assert animations and all(m.animation == b"" for m in animations)  # control frames only
        # one end when generation ends, one more when the playout has drained
        assert [m.end for m in animations].count(True) == 2 and animations[-1].end
        await ws.close()


@pytest.mark.parametrize(
    "egress",
    [
        dict(livekit_egress=LiveKit(api_token="stolen")),
        dict(livekit_egress=LiveKit(room_name="room-2")),
        dict(livekit_egress=LiveKit(url="wss://elsewhere.invalid")),
        dict(agora_egress=Agora(token="nope")),
        dict(agora_egress=Agora(channel_name="other")),
    ],
)
async def test_invalid_egress_is_refused_with_code_16_unauthorized(egress):
    async with LocalService(realtime=False, egress=EGRESS) as svc:
        ws = await open_raw(svc)
        await ws.send(build_configure_session(16000, **egress))
        err = await receive(ws)
        assert err.type == pb.MESSAGE_SERVER_ERROR and err.error_code == 16
        assert "unauthorized" in err.error_message
        for secret in ("stolen", "nope", "lk-token", "ag-token"):
            assert secret not in err.error_message
        with pytest.raises(ConnectionClosed):
            await receive(ws)
        assert ws.close_code == 1008


async def test_livekit_key_and_secret_pair_is_accepted():
    egress = SimulatedEgress(
        livekit_url="wss://lk", livekit_api_key="k", livekit_api_secret="s", livekit_rooms=("r",)
    )
    async with LocalService(realtime=False, egress=egress) as svc:
        ws = await open_raw(svc)
        lk = LiveKit(url="wss://lk", api_token="", api_key="k", api_secret="s", room_name="r")
        await ws.send(build_configure_session(16000, livekit_egress=lk))
        assert (await receive(ws)).type == pb.MESSAGE_SERVER_CONFIRM_SESSION
        await ws.close()


async def test_the_default_service_has_egress_with_generated_credentials():
    """As the hosted service, the default LocalService has egress: its generated room,
    channel and credentials are accepted, anything else is refused with 16."""
    async with LocalService(realtime=False) as svc, LocalService(realtime=False) as other:
        eg = svc.egress
        assert eg is not None and eg.livekit_rooms and eg.agora_channels
        assert eg.livekit_api_token != other.egress.livekit_api_token  # per service
        good = [
            dict(livekit_egress=LiveKit(url=eg.livekit_url, api_token=eg.livekit_api_token,
                                        room_name=eg.livekit_rooms[0])),
            dict(agora_egress=Agora(channel_name=eg.agora_channels[0], token=eg.agora_token)),
        ]
        for cfg in good:
            ws = await open_raw(svc)
            await ws.send(build_configure_session(16000, **cfg))
            confirm = await receive(ws)
            assert confirm.type == pb.MESSAGE_SERVER_CONFIRM_SESSION
            assert "playback_control" in confirm.capabilities
            await ws.close()
        ws = await open_raw(svc)
        lk = LiveKit(url=eg.livekit_url, api_token=other.egress.livekit_api_token,
                     room_name=eg.livekit_rooms[0])
        await ws.send(build_configure_session(16000, livekit_egress=lk))
        err = await receive(ws)
        assert err.error_code == 16 and "unauthorized" in err.error_message
        assert other.egress.livekit_api_token not in err.error_message


@pytest.mark.parametrize("off", [False, None])
def test_egress_can_be_turned_off(off):
    assert LocalService(egress=off).egress is None
    assert LocalService(egress=EGRESS).egress is EGRESS


def test_simulated_egress_hides_secrets_and_checks_its_settings():
    assert "lk-token" not in repr(EGRESS) and "ag-token" not in repr(EGRESS)
    generated = SimulatedEgress.generated()
    for secret in (generated.livekit_api_token, generated.livekit_api_secret, generated.agora_token):
        assert secret not in repr(generated) and secret in "\n".join(generated.describe())
    with pytest.raises(ValueError, match="livekit_rooms"):
        SimulatedEgress(livekit_rooms="room-1")
    with pytest.raises(ValueError, match="egress"):
        LocalService(egress={"livekit_rooms": ["r"]})


# ----------------------------------------------------------------------------- idle sessions kept for reuse

SCALE = 0.01  # the official SDK's pool example, a hundred times faster
POOL_GAP = 30.0  # seconds between the example's rounds
POOL_ROUNDS = 10  # round k reuses sessions unused for POOL_GAP * (k - 1) seconds


async def test_a_pooled_session_is_reused_after_the_pools_longest_idle_gap(speech_pcm):
    """At 1/100 scale with the default idle timeout scaled the same way (6 s): a session
    left unused for as long as the pool example's last round leaves it (270 s, here
    2.7 s) plus a second is reused."""
    from avatar_nb.server import DEFAULT_IDLE_TIMEOUT

    async with LocalService(realtime=False, idle_timeout=DEFAULT_IDLE_TIMEOUT * SCALE) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        await asyncio.sleep((POOL_GAP * (POOL_ROUNDS - 1) + 1.0) * SCALE)
        await stream(ws, speech_pcm[:6400], "late")
        while not (msg := await receive(ws)).end:
            pass
        assert msg.req_id == "late" and msg.type == pb.MESSAGE_SERVER_RESPONSE_ANIMATION
        assert svc.stats["sessions_active"] == 1
        await ws.close()


def test_default_idle_timeout_outlasts_the_pool_examples_longest_idle_time():
    from avatar_nb.server import DEFAULT_IDLE_TIMEOUT

    assert LocalService().state.idle_timeout == DEFAULT_IDLE_TIMEOUT == 600.0
    # the example's last round reuses sessions unused for 270 s, and the 50 sessions it
    # never borrows wait about 300 s until it closes them: twice that fits, with room
    assert DEFAULT_IDLE_TIMEOUT >= 2 * POOL_GAP * POOL_ROUNDS
