"""The official clients, unchanged, against the local service's simulated playout and
egress: spatialreal 0.2.2's ``on_playback_state`` and ``on_playback`` receive the
states and control frames it documents, avatar_nb driven the same way receives the same
sequence, and egress credentials the service cannot use are refused as the hosted
service refuses them (ServerError 16, ``unauthorized``: avatarkit classifies it as
``invalidEgressConfig``; spatialreal, which reads codes only in the close-code range,
as ``serverError`` carrying code 16 and the text)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import avatarkit
import pytest
import spatialreal

import avatar_nb
from avatar_nb import _pcm
from avatar_nb.audio import speech_like
from avatar_nb.server import LocalService, SimulatedEgress

CHUNK = 1280


@pytest.fixture(autouse=True)
def _no_network(loopback_only):
    yield
    assert loopback_only == [], f"a client tried to reach {loopback_only}"


def _expiry() -> datetime:
    return datetime.now(timezone.utc) + timedelta(minutes=5)


class Recorder:
    """What a client's callbacks report: playback states as (req index, state name, reason)."""

    def __init__(self) -> None:
        self.states: list[tuple[str, str, str]] = []
        self.signals: list = []
        self.errors: list[Exception] = []
        self.changed = asyncio.Event()

    def state(self, event) -> None:
        self.states.append((event.req_id, event.state.name, event.reason))
        self.changed.set()

    def signal(self, signal) -> None:
        self.signals.append(signal)

    def error(self, exc: Exception) -> None:
        self.errors.append(exc)

    async def wait_states(self, n: int, timeout: float = 30.0) -> None:
        async def wait() -> None:
            while len(self.states) < n:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def sequence(self) -> list[tuple[int, str, str]]:
        """States with req_ids replaced by their order of appearance (ids differ per client)."""
        order: dict[str, int] = {}
        return [(order.setdefault(r, len(order)), s, reason) for r, s, reason in self.states]


def _spatialreal(svc: LocalService, rec: Recorder, **kw):
    return spatialreal.new_avatar_session(
        **svc.session_kwargs(
            expire_at=_expiry(),
            on_playback_state=rec.state,
            on_playback=rec.signal,
            on_error=rec.error,
            **kw,
        )
    )


def _avatar_nb(svc: LocalService, rec: Recorder, **kw):
    return avatar_nb.new_avatar_session(
        **svc.session_kwargs(
            on_playback_state=rec.state, on_playback=rec.signal, on_error=rec.error, **kw
        )
    )


async def _send_clip(session, data: bytes) -> None:
    """``data`` in CHUNK-byte messages, the last one ending the request."""
    for i in range(0, len(data), CHUNK):
        await session.send_audio(data[i : i + CHUNK], end=i + CHUNK >= len(data))


async def _drive(session, rec: Recorder, pcm: bytes) -> None:
    """One scenario, the same for every client: a clip that plays out (PLAYING, ENDED);
    a clip paused and resumed then interrupted; a clip preempted by a newer one."""
    await session.init()
    await session.start()
    await _send_clip(session, pcm[:8000])
    await rec.wait_states(2)  # PLAYING, ENDED
    await _send_clip(session, pcm)
    await rec.wait_states(3)  # PLAYING
    await session.pause()
    await rec.wait_states(4)
    await session.resume()
    await rec.wait_states(5)
    await session.interrupt()
    await rec.wait_states(6)
    await _send_clip(session, pcm)
    await rec.wait_states(7)
    await _send_clip(session, pcm[:8000])
    await rec.wait_states(10)  # INTERRUPTED (preempted), PLAYING, ENDED
    await session.close()


EXPECTED = [
    (0, "PLAYING", ""),
    (0, "ENDED", ""),
    (1, "PLAYING", ""),
    (1, "PAUSED", ""),
    (1, "PLAYING", ""),
    (1, "INTERRUPTED", "explicit"),
    (2, "PLAYING", ""),
    (2, "INTERRUPTED", "preempted"),
    (3, "PLAYING", ""),
    (3, "ENDED", ""),
]


async def test_spatialreal_and_avatar_nb_receive_the_same_playback_states():
    pcm = _pcm.to_s16le(speech_like(2.0, 16000, seed=9))
    async with LocalService(realtime=False, playout=True) as svc:
        official = Recorder()
        await _drive(_spatialreal(svc, official), official, pcm)
        ours = Recorder()
        await _drive(_avatar_nb(svc, ours), ours, pcm)
    assert official.errors == [] and ours.errors == []
    assert official.sequence() == EXPECTED
    assert ours.sequence() == official.sequence()


async def test_spatialreal_pause_timeout():
    pcm = _pcm.to_s16le(speech_like(2.0, 16000, seed=9))
    async with LocalService(realtime=False, playout=True, pause_limit=0.2) as svc:
        rec = Recorder()
        session = _spatialreal(svc, rec)
        await session.init()
        await session.start()
        await _send_clip(session, pcm)
        await rec.wait_states(1)
        await session.pause()
        await rec.wait_states(3)
        await session.close()
    assert [(s, reason) for _, s, reason in rec.sequence()] == [
        ("PLAYING", ""),
        ("PAUSED", ""),
        ("INTERRUPTED", "pause_timeout"),
    ]


# ----------------------------------------------------------------------------- egress

EGRESS = SimulatedEgress(
    livekit_url="wss://lk.example.invalid",
    livekit_api_token="lk-token",
    livekit_rooms=("room-1",),
    agora_token="ag-token",
    agora_channels=("chan-1",),
)


async def test_spatialreal_with_a_valid_livekit_egress_gets_control_frames_and_states():
    pcm = _pcm.to_s16le(speech_like(0.5, 16000, seed=2))
    async with LocalService(realtime=False, egress=EGRESS) as svc:
        rec = Recorder()
        lk = spatialreal.LiveKitEgressConfig(
            url="wss://lk.example.invalid", api_token="lk-token", room_name="room-1"
        )
        session = _spatialreal(svc, rec, livekit_egress=lk)
        await session.init()
        await session.start()
        assert "playback_state" in session.capabilities
        await _send_clip(session, pcm)
        await rec.wait_states(2)
        await session.close()
    assert [s for _, s, _ in rec.sequence()] == ["PLAYING", "ENDED"]
    assert rec.signals and not any(s.has_animation for s in rec.signals)
    # the end signal twice (generation, then playout drained), as spatialreal documents for egress
    assert [s.end for s in rec.signals].count(True) == 2


@pytest.mark.parametrize("kind", ["livekit", "agora"])
async def test_official_clients_classify_refused_egress(kind):
    async with LocalService(realtime=False, egress=EGRESS) as svc:
        for module, expected in ((avatarkit, "invalidEgressConfig"), (spatialreal, "serverError")):
            if kind == "livekit":
                cfg = {
                    "livekit_egress": module.LiveKitEgressConfig(
                        url="wss://lk.example.invalid", api_token="wrong", room_name="room-1"
                    )
                }
            else:
                cfg = {
                    "agora_egress": module.AgoraEgressConfig(channel_name="chan-1", token="wrong")
                }
            session = module.new_avatar_session(**svc.session_kwargs(expire_at=_expiry(), **cfg))
            await session.init()
            with pytest.raises(Exception) as info:
                await session.start()
            err = info.value
            assert err.code.value == expected, module.__name__
            assert err.server_code == "16" and "unauthorized" in err.server_detail, module.__name__
            assert "wrong" not in str(err)


async def test_avatar_nb_classifies_refused_egress():
    async with LocalService(realtime=False, egress=EGRESS) as svc:
        lk = avatar_nb.LiveKitEgressConfig(
            url="wss://lk.example.invalid", api_token="wrong", room_name="room-1"
        )
        session = avatar_nb.new_avatar_session(**svc.session_kwargs(livekit_egress=lk))
        await session.init()
        with pytest.raises(avatar_nb.AvatarSDKError) as info:
            await session.start()
        assert info.value.code.value == "invalidEgressConfig"
        assert "unauthorized" in str(info.value) and "wrong" not in str(info.value)


async def test_avatar_nb_with_a_valid_egress_takes_the_duplicate_end():
    pcm = _pcm.to_s16le(speech_like(0.5, 16000, seed=2))
    async with LocalService(realtime=False, egress=EGRESS) as svc:
        rec = Recorder()
        lk = avatar_nb.LiveKitEgressConfig(
            url="wss://lk.example.invalid", api_token="lk-token", room_name="room-1"
        )
        session = _avatar_nb(svc, rec, livekit_egress=lk)
        await session.init()
        await session.start()
        await _send_clip(session, pcm)
        await rec.wait_states(2)
        await session.close()
    assert rec.errors == []
    assert [s for _, s, _ in rec.sequence()] == ["PLAYING", "ENDED"]
    assert [s.end for s in rec.signals].count(True) == 2 and not any(
        s.has_animation for s in rec.signals
    )
