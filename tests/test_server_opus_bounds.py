"""Hostile Ogg Opus: bounded decoding in the decoder and in the local service.

The reproducer: a 2-byte Opus packet (TOC code 3, two empty 60 ms frames) decodes to
120 ms, so a page of 255 of them (about 800 bytes) is 30.6 s of audio and a 50 KB
message about 2,000 s. The service decoded that on its event loop without a bound
(3.4 GB, the loop blocked for seconds). Sizes and ratios are checked here, never a
wall-clock time.
"""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("av")

from avatar_nb import _pcm, opus
from avatar_nb.audio import speech_like
from avatar_nb.opus import (
    MAX_SAMPLES_PER_BYTE,
    OggOpusDecoder,
    OggOpusEncoder,
    OggOpusError,
    OggOpusLimitError,
    opus_packet_samples,
)
from avatar_nb.proto import message_pb2 as pb
from avatar_nb.protocol import build_configure_session
from avatar_nb.server import ogg_input

from .helpers import collect_until_end, expected_frames, keyframes_of, open_raw, receive

BOMB_PACKET = bytes([3 << 3 | 3, 2])  # code 3, two frames of 60 ms (SILK NB), no bytes: 120 ms


def opus_head(channels: int = 1, mapping: int = 0, table: bytes = b"") -> bytes:
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, 312, 48000, 0, mapping) + table


def opus_tags() -> bytes:
    return b"OpusTags" + struct.pack("<I", 4) + b"test" + struct.pack("<I", 0)


def bomb(pages: int, *, head: bytes | None = None, serial: int = 7) -> bytes:
    """An Ogg Opus stream of ``pages`` pages of 255 bomb packets (30.6 s each)."""
    out = opus._page(serial, 0, 0, 0x02, [head or opus_head()]) + opus._page(serial, 1, 0, 0, [opus_tags()])
    granule = 0
    for i in range(pages):
        granule += 255 * 5760
        out += opus._page(serial, 2 + i, granule, 0, [BOMB_PACKET] * 255)
    return out


def _audio_message(req_id: str, data: bytes, end: bool) -> bytes:
    msg = pb.Message(type=pb.MESSAGE_CLIENT_AUDIO_INPUT)
    msg.client_audio_input.req_id = req_id
    msg.client_audio_input.audio = data
    msg.client_audio_input.end = end
    return msg.SerializeToString()


def _speech_ogg(seconds: float, rate: int = 16000) -> tuple[bytes, int]:
    pcm = _pcm.to_s16le(speech_like(seconds, rate, seed=5))
    encoder = OggOpusEncoder(rate)
    return encoder.encode(pcm) + encoder.flush(), len(pcm) // 2


# ----------------------------------------------------------------------------- the decoder


@pytest.mark.parametrize("config", range(32))
@pytest.mark.parametrize("code", range(4))
def test_packet_durations_follow_rfc_6716(config, code):
    frame = [480, 960, 1920, 2880] * 3 + [480, 960] * 2 + [120, 240, 480, 960] * 4
    toc = config << 3 | code
    if code == 0:
        assert opus_packet_samples(bytes([toc])) == frame[config]
    elif code in (1, 2):
        assert opus_packet_samples(bytes([toc, 0, 0])) == 2 * frame[config]
    else:
        for count in range(64):
            for flags in (0x00, 0x40, 0x80, 0xC0):  # padding and VBR flags do not change the duration
                packet = bytes([toc, flags | count])
                if count == 0 or count * frame[config] > 5760:
                    with pytest.raises(ValueError):
                        opus_packet_samples(packet)
                else:
                    assert opus_packet_samples(packet) == count * frame[config]
        with pytest.raises(ValueError):
            opus_packet_samples(bytes([toc]))  # code 3 needs its frame count byte
    with pytest.raises(ValueError):
        opus_packet_samples(b"")


def test_decoded_samples_per_input_byte_are_bounded():
    """The bomb decodes to at most MAX_SAMPLES_PER_BYTE 48 kHz samples an input byte."""
    stream = bomb(4)
    pcm = OggOpusDecoder(48000).feed(stream)
    samples = len(pcm) // 2
    assert samples == 4 * 255 * 5760 - 312  # every packet is 120 ms; FFmpeg drops the pre-skip
    ratio = samples / len(stream)
    assert 1000 < ratio <= MAX_SAMPLES_PER_BYTE, ratio
    # and never more than the bound at any rate, nor per slice
    decoder = OggOpusDecoder(16000)
    slices = [len(s) // 2 for s in decoder.feed_slices(stream)]
    assert sum(slices) <= MAX_SAMPLES_PER_BYTE * len(stream) // 3
    most = opus._SLICE_SAMPLES // 3 + 1920  # a slice, and at most one packet (120 ms) more
    assert len(slices) > 100 and max(slices) <= most


def test_a_budget_stops_decoding_before_the_packet_that_crosses_it():
    decoder = OggOpusDecoder(48000)
    decoder.budget = 10 * 48000
    decoder.budget_name = "10 s of audio (the test's limit)"
    made = 0
    with pytest.raises(OggOpusLimitError, match=r"page 2 at byte \d+: the audio decodes to more than 10 s of audio \(the test's limit\)"):
        for pcm in decoder.feed_slices(bomb(2)):
            made += len(pcm) // 2
    assert 0 < made <= 10 * 48000
    assert isinstance(OggOpusLimitError("x"), OggOpusError)  # a kind of invalid audio


@pytest.mark.parametrize(
    "channels,mapping,table",
    [
        (255, 255, bytes([255, 0]) + bytes(range(255))),  # the reproducer: 255 channels, family 255
        (8, 1, bytes([5, 3, 0, 6, 1, 2, 3, 4, 5, 7])),  # 7.1 Vorbis order
        (3, 1, bytes([2, 1, 0, 2, 1])),
        (2, 255, bytes([2, 0, 0, 1])),  # stereo, but in a family only for streams beyond 8 channels
        (1, 2, bytes([1, 0, 0])),  # an undefined family
        (3, 0, b""),  # family 0 is mono or stereo by definition
        (0, 0, b""),
    ],
)
def test_only_mono_and_stereo_streams_are_decoded(channels, mapping, table):
    with pytest.raises(OggOpusError, match=f"OpusHead declares {channels} channels"):
        OggOpusDecoder(16000).feed(bomb(1, head=opus_head(channels, mapping, table)))


def test_stereo_in_family_1_is_decoded():
    """Family 1 with 2 channels (one coupled stream) is an ordinary stereo stream."""
    pcm = OggOpusDecoder(16000).feed(bomb(1, head=opus_head(2, 1, bytes([1, 1, 0, 1]))))
    assert abs(len(pcm) // 2 - (255 * 5760 - 312) // 3) < 32  # less the resampler's few held samples


def test_the_resampler_never_returns_nothing_for_a_long_input():
    resampler = opus._Resampler(48000, 16000, "flt")
    out = resampler.resample(np.zeros(3 * (1 << 18) + 5, np.float32))
    assert abs(out.shape[0] - (3 * (1 << 18) + 5) // 3) < 64


# ----------------------------------------------------------------------------- the service


async def _configure(service, rate: int = 16000):
    ws = await open_raw(service)
    await ws.send(build_configure_session(rate, audio_format=pb.AUDIO_FORMAT_OGG_OPUS))
    confirm = await receive(ws)
    assert confirm.type == pb.MESSAGE_SERVER_CONFIRM_SESSION, confirm
    return ws


async def test_a_bomb_message_gets_code_3_naming_the_limit(service, monkeypatch):
    monkeypatch.setattr(ogg_input, "MAX_MESSAGE_SECONDS", 60)
    ws = await _configure(service)
    try:
        await ws.send(_audio_message("bomb", bomb(10), False))  # 306 s in 8 KB
        await ws.send(_audio_message("bomb", b"", True))
        messages = await collect_until_end(ws, "bomb")
        errors = [m for m in messages if m.type == pb.MESSAGE_SERVER_ERROR]
        assert len(errors) == 1 and errors[0].error_code == 3 and errors[0].req_id == "bomb"
        assert "decodes to more than 60 s of audio in one message (the local service's limit)" in errors[0].error_message
        assert errors[0].error_message.startswith("invalid Ogg Opus audio: Ogg Opus stream, page 3 at byte")
        frames = keyframes_of(messages).shape[0]
        assert expected_frames(59 * 16000) <= frames <= expected_frames(60 * 16000)  # up to the limit, no more
        # the session goes on: the next request decodes
        good, n = _speech_ogg(2.0)
        await ws.send(_audio_message("good", good, True))
        after = await collect_until_end(ws, "good")
        assert not [m for m in after if m.type == pb.MESSAGE_SERVER_ERROR]
        assert keyframes_of(after).shape[0] == expected_frames(n)
    finally:
        await ws.close()


async def test_the_request_limit_counts_every_message_of_the_request(service, monkeypatch):
    monkeypatch.setattr(ogg_input, "MAX_MESSAGE_SECONDS", 40)
    monkeypatch.setattr(ogg_input, "MAX_REQUEST_SECONDS", 50)
    stream = bomb(2)
    second_page = stream.rindex(b"OggS")  # the last page
    ws = await _configure(service)
    try:
        await ws.send(_audio_message("long", stream[:second_page], False))  # 30.6 s: within both
        await ws.send(_audio_message("long", stream[second_page:], False))  # 30.6 s more: 61 > 50
        await ws.send(_audio_message("long", b"", True))
        messages = await collect_until_end(ws, "long")
        errors = [m for m in messages if m.type == pb.MESSAGE_SERVER_ERROR]
        assert len(errors) == 1 and errors[0].error_code == 3
        assert "more than 50 s of audio in one request" in errors[0].error_message
    finally:
        await ws.close()


async def test_a_255_channel_head_gets_code_3(service):
    ws = await _configure(service)
    try:
        head = opus_head(255, 255, bytes([255, 0]) + bytes(range(255)))
        await ws.send(_audio_message("wide", bomb(4, head=head), True))
        messages = await collect_until_end(ws, "wide")
        errors = [m for m in messages if m.type == pb.MESSAGE_SERVER_ERROR]
        assert len(errors) == 1 and errors[0].error_code == 3
        assert "OpusHead declares 255 channels with channel mapping family 255" in errors[0].error_message
        assert "mono or stereo" in errors[0].error_message
        assert keyframes_of(messages).shape[0] == 0
    finally:
        await ws.close()


async def test_good_sessions_keep_working_beside_the_bomb(service, monkeypatch):
    """Three bombs and three speech sessions at once: every speech frame comes back,
    in order, and the bombs each get their error."""
    monkeypatch.setattr(ogg_input, "MAX_MESSAGE_SECONDS", 120)
    good, n = _speech_ogg(3.0)
    reference_ws = await _configure(service)
    try:
        await reference_ws.send(_audio_message("ref", good, True))
        reference = keyframes_of(await collect_until_end(reference_ws, "ref"))
    finally:
        await reference_ws.close()
    assert reference.shape[0] == expected_frames(n)

    async def bomber(i: int) -> list:
        ws = await _configure(service)
        try:
            await ws.send(_audio_message(f"bomb{i}", bomb(8), True))
            return await collect_until_end(ws, f"bomb{i}")
        finally:
            await ws.close()

    async def speaker(i: int) -> np.ndarray:
        ws = await _configure(service)
        try:
            for k in range(0, len(good), 1024):  # the official clients' small slices
                await ws.send(_audio_message(f"s{i}", good[k : k + 1024], False))
                await asyncio.sleep(0)
            await ws.send(_audio_message(f"s{i}", b"", True))
            messages = await collect_until_end(ws, f"s{i}")
            assert not [m for m in messages if m.type == pb.MESSAGE_SERVER_ERROR]
            return keyframes_of(messages)
        finally:
            await ws.close()

    results = await asyncio.gather(*(bomber(i) for i in range(3)), *(speaker(i) for i in range(3)))
    for messages in results[:3]:
        errors = [m for m in messages if m.type == pb.MESSAGE_SERVER_ERROR]
        assert len(errors) == 1 and "120 s of audio in one message" in errors[0].error_message
    for keyframes in results[3:]:
        np.testing.assert_array_equal(keyframes, reference)


_SERVICE_UNDER_BOMB = textwrap.dedent(
    """
    import asyncio, json, struct, sys
    import websockets
    from avatar_nb.server import LocalService
    from avatar_nb.http_api import websocket_target
    from avatar_nb.protocol import build_configure_session
    from avatar_nb import _wire
    from tests.test_server_opus_bounds import bomb, _audio_message
    from avatar_nb.proto import message_pb2 as pb
    from avatar_nb.server import ogg_input

    ogg_input.MAX_SPEED = 1e9  # no pacing: this test is about memory, and quick

    def peak_rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

    async def main():
        async with LocalService(realtime=False) as svc:
            url, headers = websocket_target(svc.ingress_url, svc.avatar_id, app_id=svc.app_id,
                                            session_token=svc.issue_token())
            async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
                await ws.send(build_configure_session(16000, audio_format=pb.AUDIO_FORMAT_OGG_OPUS))
                await ws.recv()
                before = peak_rss()
                stream = bomb(int(sys.argv[1]))
                await ws.send(_audio_message("bomb", stream, True))
                frames, errors = 0, []
                while True:
                    m = _wire.decode_message(await ws.recv())
                    if m.type == pb.MESSAGE_SERVER_ERROR:
                        errors.append([m.error_code, m.error_message])
                    elif m.type == pb.MESSAGE_SERVER_RESPONSE_ANIMATION:
                        frames += m.keyframes.shape[0]
                        if m.end:
                            break
            print(json.dumps(dict(bytes=len(stream), before=before, after=peak_rss(), frames=frames, errors=errors)))

    asyncio.run(main())
    """
)


def test_the_service_memory_stays_flat_under_a_50_kb_bomb(tmp_path):
    """The issue's 50 KB message (about 2,000 s of audio) in a service of its own: the
    service's peak memory grows by a few MB, not gigabytes, and the client gets code 3."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", _SERVICE_UNDER_BOMB, "64"],
        check=False,
        capture_output=True,
        text=True,
        cwd=root,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["bytes"] > 50_000
    assert [code for code, _ in out["errors"]] == [3]
    assert f"{ogg_input.MAX_MESSAGE_SECONDS} s of audio in one message" in out["errors"][0][1]
    assert out["frames"] <= ogg_input.MAX_MESSAGE_SECONDS * 25 + 1
    # the decoded audio would be 2,000 s of 16 kHz s16 (62 MB) and more as float: what it
    # held before was gigabytes; the whole message's audio is never held at once now
    print(f"bomb of {out['bytes']} bytes: service peak RSS +{(out['after'] - out['before']) / 2**20:.1f} MB")
    assert out["after"] - out["before"] < 150 * 2**20, out


def test_decoding_is_paced_after_a_burst():
    """The token bucket on a made-up clock: free within the burst, then MAX_SPEED times
    real time; idle time earns the burst back, never more."""
    speed, burst = ogg_input.MAX_SPEED, ogg_input.BURST_SECONDS
    source = ogg_input.OggOpusInput(16000)
    assert source.pause(burst / 2, now=100.0) == 0.0
    assert source.pause(burst / 2, now=100.0) == 0.0  # the burst is spent
    assert source.pause(1.0, now=100.0) == pytest.approx(1.0 / speed)
    assert source.pause(speed * 2, now=100.0) == pytest.approx((1.0 + speed * 2) / speed)
    # after a long idle time the whole burst, but only it, is free again
    assert source.pause(burst, now=10_000.0) == 0.0
    assert source.pause(1.0, now=10_000.0) == pytest.approx(1.0 / speed)
    # a real-time client (1 s of audio a second) never waits
    live = ogg_input.OggOpusInput(16000)
    assert all(live.pause(0.04, now=k * 0.04) == 0.0 for k in range(10_000))
