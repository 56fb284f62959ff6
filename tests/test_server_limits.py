"""Session limits over real sockets: idle timeout, session time limit, token expiry,
credits, and the service stopping under its sessions."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from avatar_nb import _pcm, _wire
from avatar_nb.audio import speech_like
from avatar_nb.proto import message_pb2 as pb
from avatar_nb.server import LocalService

from .helpers import handshake, open_raw, receive, stream


async def test_idle_session_is_told_and_closed():
    async with LocalService(realtime=False, idle_timeout=0.2) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        err = _wire.decode_message(await asyncio.wait_for(ws.recv(), 10))
        assert (
            err.type == pb.MESSAGE_SERVER_ERROR and err.error_message == "no audio input for 0.2s"
        )
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)


async def test_session_time_limit_closes_with_4002():
    async with LocalService(realtime=False, session_time_limit=0.2) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        err = _wire.decode_message(await asyncio.wait_for(ws.recv(), 10))
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
                msg = _wire.decode_message(await asyncio.wait_for(ws.recv(), 10))
                codes.append(msg.error_code if msg.type == pb.MESSAGE_SERVER_ERROR else None)
        assert codes[-1] == 4001
        assert ws.close_code == 4001


async def test_token_expiry_ends_the_session_with_4002():
    """A session lives no longer than its token: at expiry it is closed like a time limit."""
    async with LocalService(realtime=False) as svc:
        ws = await open_raw(svc, token=svc.issue_token(expire_at=math.ceil(time.time()) + 1))
        await handshake(ws)
        err = await receive(ws)
        assert (err.type, err.error_code, err.error_message) == (
            pb.MESSAGE_SERVER_ERROR,
            4002,
            "session time limit reached",
        )
        with pytest.raises(ConnectionClosed):
            await receive(ws)
        assert ws.close_code == 4002


async def test_idle_timer_restarts_with_audio(speech_pcm):
    """Audio keeps a session alive; the idle error names the configured time."""
    async with LocalService(realtime=False, idle_timeout=0.3) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        await stream(ws, speech_pcm[:1280], "a")
        end = await receive(ws)
        assert end.type == pb.MESSAGE_SERVER_RESPONSE_ANIMATION and end.end
        err = await receive(ws)
        assert err.error_message == "no audio input for 0.3s" and err.error_code == 0
        with pytest.raises(ConnectionClosed):
            await receive(ws)


async def test_stop_closes_active_sessions_with_1001():
    svc = LocalService(realtime=False)
    await svc.__aenter__()
    ws = await open_raw(svc)
    await handshake(ws)
    await svc.__aexit__(None, None, None)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1001


async def test_the_largest_audio_chunk_is_taken_and_a_larger_message_closes_1009():
    """The service's message limit is the client's MAX_AUDIO_CHUNK_BYTES plus its envelope."""
    from avatar_nb.protocol import MAX_AUDIO_CHUNK_BYTES, build_audio

    from .helpers import collect_until_end, expected_frames, keyframes_of

    async with LocalService(realtime=False) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        await ws.send(
            build_audio("20260101000000_bigbigbigbig", bytes(MAX_AUDIO_CHUNK_BYTES), True)
        )
        messages = await collect_until_end(ws, "20260101000000_bigbigbigbig")
        assert keyframes_of(messages).shape[0] == expected_frames(MAX_AUDIO_CHUNK_BYTES // 2)
        # cut into messages any client takes (websockets' default limit is 1 MiB)
        assert len(messages) > 1 and all(len(m.animation) < 2**20 for m in messages)
        with pytest.raises(ConnectionClosed):  # while sending it, or at the next receive
            await ws.send(build_audio("r2", bytes(MAX_AUDIO_CHUNK_BYTES + 8192), True))
            await receive(ws, 30)
        assert ws.close_code == 1009


async def test_a_long_pcm_message_is_animated_in_slices_with_the_same_keyframes():
    """A 16 MB PCM message is 500 s of audio: the service animates it a few seconds at a
    time, the event loop let run between two (its first keyframes leave before the rest are
    made), and the keyframes are those of the same audio sent in small chunks."""
    from avatar_nb.protocol import build_audio
    from avatar_nb.server import ingress

    from .helpers import collect_until_end, keyframes_of

    pcm = _pcm.to_s16le(np.tile(speech_like(10.0, 16000, seed=3), 6))  # 60 s
    async with LocalService(realtime=False) as svc:
        ws = await open_raw(svc)  # a session each: the animator starts from the same state
        await handshake(ws)
        await ws.send(build_audio("20260101000000_onebigmessage", pcm, True))
        whole = await collect_until_end(ws, "20260101000000_onebigmessage")
        await ws.close()
        ws = await open_raw(svc)
        await handshake(ws)
        await stream(ws, pcm, "20260101000000_smallchunks00", chunk=1280)
        small = await collect_until_end(ws, "20260101000000_smallchunks00")
        await ws.close()
    np.testing.assert_array_equal(keyframes_of(whole), keyframes_of(small))
    slice_frames = round(ingress._PCM_SLICE_SECONDS * 25)
    animations = [m for m in whole if m.type == pb.MESSAGE_SERVER_RESPONSE_ANIMATION and m.keyframes.shape[0]]
    assert len(animations) >= 60 // ingress._PCM_SLICE_SECONDS - 1
    assert animations[0].keyframes.shape[0] <= slice_frames + 1
