"""The service against clients that misbehave: a client that stops reading, silent and
slow connections, a session that never configures. Each must end without growing the
service's memory or keeping a concurrency slot, and a good client gets in afterwards.

No wall-clock thresholds: the tests wait (with generous timeouts) for the service's own
counters, and compare sizes with the configured bounds.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from websockets.exceptions import ConnectionClosed

from avatar_nb.proto import message_pb2 as pb
from avatar_nb.server import LocalService

from .helpers import (
    collect_until_end,
    expected_frames,
    handshake,
    keyframes_of,
    open_raw,
    receive,
    stream,
)


async def _until(condition, timeout: float = 30.0, what: str = "") -> None:
    """Wait for ``condition()`` to hold, polling; fail after ``timeout`` s."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        pytest.fail(f"still waiting after {timeout} s for {what or condition}")


def _sessions(svc: LocalService) -> list:
    return list(svc.state.sessions)


async def _stall(ws, svc: LocalService, pcm: bytes) -> asyncio.Task:
    """Stop reading on ``ws`` and upload in the background until the service's sends to
    it are stuck (its socket buffer full); return the uploading task."""
    ws.transport.pause_reading()

    async def upload() -> None:
        for i in range(100_000):
            await stream(ws, pcm, f"r{i}")

    uploader = asyncio.create_task(upload())
    await _until(
        lambda: (
            uploader.done()
            or any(s._peer_stalled() for s in _sessions(svc))
            or svc.stats["stalled_peers"]
        ),
        what="the service's sends to a client that does not read to block",
    )
    return uploader


async def _good_client_gets_in(svc: LocalService, pcm: bytes) -> None:
    ws = await open_raw(svc)
    assert (await handshake(ws)).type == pb.MESSAGE_SERVER_CONFIRM_SESSION
    await stream(ws, pcm, "good")
    assert keyframes_of(await collect_until_end(ws, "good")).shape[0] == expected_frames(
        len(pcm) // 2, fps=svc.fps
    )
    await ws.close()


async def _finish(uploader: asyncio.Task, ws) -> None:
    uploader.cancel()
    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
        await uploader
    ws.transport.abort()


# big keyframes, many a second: a stalled client fills the socket buffers quickly
_HEAVY = dict(fps=100.0, n_expression=1000)


async def test_a_client_that_stops_reading_is_dropped_by_the_send_timeout(speech_pcm):
    async with LocalService(
        realtime=False, max_sessions=1, send_timeout=0.3, idle_timeout=None, **_HEAVY
    ) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        uploader = await _stall(ws, svc, speech_pcm)
        await _until(lambda: svc.stats["sessions_active"] == 0, what="the stalled session to end")
        assert svc.stats["stalled_peers"] == 1
        await _good_client_gets_in(svc, speech_pcm[:16000])
        await _finish(uploader, ws)


async def test_paced_backlog_stays_bounded_while_a_client_does_not_read(speech_pcm):
    """Paced: the queue of a client that uploads but never reads stops at the bound
    (the service stops reading its audio), and the send timeout then drops it."""
    async with LocalService(
        realtime=True,
        latency_ms=0.0,
        max_sessions=1,
        send_timeout=0.5,
        max_backlog=0.5,
        idle_timeout=None,
        **_HEAVY,
    ) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        uploader = await _stall(ws, svc, speech_pcm)
        await _until(lambda: svc.stats["sessions_active"] == 0, what="the stalled session to end")
        # at most the bound plus what one message of audio makes (a 1280-byte chunk: 4 keyframes)
        bound = 0.5 * 100 + expected_frames(1280 // 2, 16000, 100)
        assert 0 < svc.stats["peak_backlog_keyframes"] <= bound
        assert svc.stats["stalled_peers"] == 1
        await _good_client_gets_in(svc, speech_pcm[:16000])
        await _finish(uploader, ws)


async def test_idle_timeout_closes_a_stalled_client_whatever_is_queued(speech_pcm):
    """The idle close does not wait behind sends that a stalled client will never take
    (the send timeout here is far longer than the test)."""
    async with LocalService(
        realtime=False, max_sessions=1, send_timeout=3600, idle_timeout=0.3, **_HEAVY
    ) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        uploader = await _stall(ws, svc, speech_pcm)
        uploader.cancel()  # no more audio: the idle timer runs out
        await _until(
            lambda: svc.stats["sessions_active"] == 0, what="the idle timeout to end the session"
        )
        assert svc.stats["stalled_peers"] == 0  # it was the idle timeout, not a send timeout
        await _good_client_gets_in(svc, speech_pcm[:16000])
        await _finish(uploader, ws)


async def test_session_time_limit_closes_a_stalled_client(speech_pcm):
    async with LocalService(
        realtime=False,
        max_sessions=1,
        send_timeout=3600,
        session_time_limit=1.0,
        idle_timeout=None,
        **_HEAVY,
    ) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        uploader = await _stall(ws, svc, speech_pcm)
        await _until(
            lambda: svc.stats["sessions_active"] == 0, what="the time limit to end the session"
        )
        await _good_client_gets_in(svc, speech_pcm[:16000])
        await _finish(uploader, ws)


# ----------------------------------------------------------------------------- before the session


async def test_a_silent_tcp_connection_is_closed():
    async with LocalService(handshake_timeout=0.3) as svc:
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.port)
        await asyncio.wait_for(reader.read(), 30)  # returns at EOF: the service closed it
        assert reader.at_eof()
        writer.close()


async def test_a_slowloris_upgrade_is_closed_before_its_headers_end():
    """Headers trickled one line at a time never make a request: the connection is
    closed long before the last line would have been sent."""
    lines = 2000
    async with LocalService(handshake_timeout=0.3) as svc:
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.port)
        sent = 0

        async def trickle() -> None:
            nonlocal sent
            writer.write(b"GET /v2/driveningress/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for i in range(lines):
                writer.write(b"X-Slow-%d: x\r\n" % i)
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.01)

        trickler = asyncio.create_task(trickle())
        try:
            await asyncio.wait_for(reader.read(), 30)
            assert reader.at_eof()
        except ConnectionResetError:
            pass  # closed with unread lines in its buffer: the kernel resets instead of FIN
        trickler.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await trickler
        assert sent < lines
        writer.close()


async def test_a_session_that_never_configures_is_closed():
    async with LocalService(handshake_timeout=0.3, idle_timeout=None, max_sessions=1) as svc:
        ws = await open_raw(svc)
        err = await receive(ws, 30)
        assert (err.type, err.error_code) == (pb.MESSAGE_SERVER_ERROR, 0)
        assert err.error_message == "expected ClientConfigureSession message within 0.3s"
        with pytest.raises(ConnectionClosed):
            await receive(ws, 30)
        assert ws.close_code == 1008
        await _until(lambda: svc.stats["sessions_active"] == 0)
        ws2 = await open_raw(svc)
        assert (await handshake(ws2)).type == pb.MESSAGE_SERVER_CONFIRM_SESSION
        await ws2.close()


async def test_a_fast_uploader_is_slowed_down_not_buffered(speech_pcm):
    """Audio arriving far faster than animation can leave (a slow link) is not queued
    without bound: the service stops reading until its queue drains, and every keyframe
    still arrives, once and in order."""
    clip = speech_pcm[:32000]  # 1 s
    async with LocalService(
        realtime=True, latency_ms=0.0, bandwidth_bps=400_000, max_backlog=0.2
    ) as svc:
        ws = await open_raw(svc)
        await handshake(ws)
        sender = asyncio.create_task(stream(ws, clip * 3, "fast"))
        messages = await collect_until_end(ws, "fast")
        await sender
        await ws.close()
    assert keyframes_of(messages).shape[0] == expected_frames(3 * len(clip) // 2)
    # bound: 0.2 s of keyframes plus the keyframes one 1280-byte chunk completes
    assert svc.stats["peak_backlog_keyframes"] <= 0.2 * 25 + 2
