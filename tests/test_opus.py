"""Ogg Opus codec: the incremental encoder and decoder (avatar_nb.opus).

Checked against independent implementations: libsndfile (through soundfile) reads what
the encoder writes, and the decoder reads what libsndfile writes.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile

from avatar_nb import _pcm, _wire
from avatar_nb.audio import speech_like
from avatar_nb.opus import (
    DEFAULT_OPUS_BITRATE,
    OGG_MAX_PAGE,
    OggOpusDecoder,
    OggOpusEncoder,
    OggOpusError,
    ogg_crc,
)
from avatar_nb.protocol import SUPPORTED_SAMPLE_RATES


def pages_of(stream: bytes) -> list[dict]:
    """Split an Ogg stream into pages (a reference parser for the tests, no checks)."""
    pages, pos = [], 0
    while pos < len(stream):
        assert stream[pos : pos + 4] == b"OggS", f"no page at byte {pos}"
        flags, granule, serial, seq, crc, n = struct.unpack_from("<BqIIIB", stream, pos + 5)
        lacing = stream[pos + 27 : pos + 27 + n]
        size = 27 + n + sum(lacing)
        page = stream[pos : pos + size]
        pages.append(dict(flags=flags, granule=granule, serial=serial, seq=seq, crc=crc, size=size, lacing=lacing, raw=page))
        pos += size
    return pages


def encode(pcm: bytes, rate: int, chunk_s: float = 0.04, bitrate: int = 0) -> tuple[bytes, list[bytes]]:
    encoder = OggOpusEncoder(rate, bitrate)
    step = 2 * int(rate * chunk_s)
    outputs = [encoder.encode(pcm[i : i + step]) for i in range(0, len(pcm), step)]
    outputs.append(encoder.flush())
    return b"".join(outputs), outputs


def decode(stream: bytes, rate: int, chunk: int = 4096) -> bytes:
    decoder = OggOpusDecoder(rate)
    return b"".join(decoder.feed(stream[i : i + chunk]) for i in range(0, len(stream), chunk)) + decoder.finish()


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[float, int]:
    n = min(len(a), len(b)) - 2 * max_lag
    return max(
        (float(np.corrcoef(a[max_lag : max_lag + n], b[max_lag + lag : max_lag + lag + n])[0, 1]), lag)
        for lag in range(-max_lag, max_lag + 1)
    )


@pytest.fixture(scope="module")
def clip16() -> tuple[np.ndarray, bytes]:
    x = speech_like(3.0, 16000, seed=11)
    return x, _pcm.to_s16le(x)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("rate", SUPPORTED_SAMPLE_RATES)
def test_round_trip_at_every_session_rate(rate):
    x = speech_like(2.0, rate, seed=2)
    stream, _ = encode(_pcm.to_s16le(x), rate)
    y = _pcm.from_s16le(decode(stream, rate))
    assert len(y) == len(x)  # the end page's granule trims the last frame's padding
    corr, lag = best_correlation(x, y, rate // 1000)
    assert corr > 0.8, (corr, lag)
    assert abs(lag) <= rate // 2000  # pre-skip handled: no shift beyond half a millisecond


def test_encoder_output_is_read_by_libsndfile(tmp_path, clip16):
    x, pcm = clip16
    stream, _ = encode(pcm, 16000)
    path = tmp_path / "ours.opus"
    path.write_bytes(stream)
    decoded, rate = soundfile.read(path, dtype="float32")
    assert rate == 16000  # OpusHead carries the input rate, which libsndfile reports
    assert len(decoded) == len(x)
    assert best_correlation(x, decoded, 16)[0] > 0.8


def test_encoder_output_is_read_by_ffmpeg(tmp_path, clip16):
    import av

    x, pcm = clip16
    stream, _ = encode(pcm, 16000)
    path = tmp_path / "ours.opus"
    path.write_bytes(stream)
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name in ("opus", "libopus")
        decoded = np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(audio)])
    # FFmpeg decodes at 48 kHz and applies the pre-skip and the end trim itself
    assert len(decoded) == 3 * len(x)
    assert best_correlation(x, decoded[::3], 16)[0] > 0.8


def test_decoder_reads_libsndfile_output_mono_and_stereo(tmp_path):
    x = speech_like(2.0, 48000, seed=4)
    for channels in (1, 2):
        path = tmp_path / f"theirs{channels}.opus"
        data = x if channels == 1 else np.stack([x, x], axis=1)
        soundfile.write(path, data, 48000, format="OGG", subtype="OPUS")
        y = _pcm.from_s16le(decode(path.read_bytes(), 48000))
        assert len(y) == len(x)
        assert best_correlation(x, y, 48)[0] > 0.8


def test_any_chunking_gives_the_same_audio(clip16):
    _, pcm = clip16
    stream, _ = encode(pcm[: 16000 * 2], 16000)
    whole = decode(stream, 16000, chunk=len(stream))
    for chunk in (1, 7, 4096):
        assert decode(stream, 16000, chunk=chunk) == whole


def test_decoder_memory_is_one_page_at_most(clip16):
    _, pcm = clip16
    stream, _ = encode(pcm, 16000, chunk_s=1.0)  # pages of 200 ms, the longest the encoder makes
    decoder = OggOpusDecoder(16000)
    most = 0
    for i in range(len(stream)):
        decoder.feed(stream[i : i + 1])
        most = max(most, decoder.buffered)
    decoder.finish()
    largest_page = max(p["size"] for p in pages_of(stream))
    assert most < largest_page <= OGG_MAX_PAGE


def test_audio_comes_out_as_each_page_completes(clip16):
    """Every page's audio is decoded when its last byte arrives, not later."""
    _, pcm = clip16
    stream, _ = encode(pcm, 16000)
    decoder = OggOpusDecoder(16000)
    pages = pages_of(stream)
    got_per_page = []
    for page in pages:
        raw = page["raw"]
        assert decoder.feed(raw[:-1]) == b""  # one byte short: nothing yet
        got_per_page.append(len(decoder.feed(raw[-1:])) // 2)
    audio_pages = [p for p in pages if p["granule"] > 0]
    # each 40 ms page yields its 40 ms (640 samples), give or take the resampler's 1 ms
    middle = got_per_page[len(pages) - len(audio_pages) + 2 : -2]
    assert middle and all(abs(n - 640) <= 16 for n in middle), middle


# --------------------------------------------------------------------------- the encoder's pages


def test_encoder_pages_are_a_valid_stream(clip16):
    _, pcm = clip16
    stream, outputs = encode(pcm, 16000)
    pages = pages_of(stream)
    assert pages[0]["flags"] == 0x02 and pages[0]["raw"][28:36] == b"OpusHead"
    assert pages[1]["raw"][28:36] == b"OpusTags"
    assert pages[-1]["flags"] & 0x04 and not any(p["flags"] & 0x04 for p in pages[:-1])
    assert [p["seq"] for p in pages] == list(range(len(pages)))
    assert len({p["serial"] for p in pages}) == 1
    granules = [p["granule"] for p in pages]
    assert granules == sorted(granules)
    pre_skip = struct.unpack_from("<H", pages[0]["raw"], 28 + 10)[0]
    assert granules[-1] == pre_skip + 3 * 48000  # the end trim: input length in 48 kHz samples
    for p in pages:
        raw = bytearray(p["raw"])
        raw[22:26] = b"\0\0\0\0"
        assert ogg_crc(raw) == p["crc"]
    # every encode() call returned whole pages only: each output parses on its own
    for out in outputs:
        if out:
            assert sum(p["size"] for p in pages_of(out)) == len(out)
    # headers come with the first call; each 40 ms call then makes one page of two frames
    assert len(pages_of(outputs[0])) == 3
    assert all(len(pages_of(out)) == 1 and len(pages_of(out)[0]["lacing"]) == 2 for out in outputs[1:-1])


def test_default_bitrate_is_what_goes_on_the_wire(clip16):
    _, pcm = clip16
    assert OggOpusEncoder(16000).bitrate == DEFAULT_OPUS_BITRATE
    stream, _ = encode(pcm, 16000)
    payload = sum(len(p["raw"]) - 27 - len(p["lacing"]) for p in pages_of(stream)[2:])
    bits_per_second = 8 * payload / 3.0
    assert 0.6 * DEFAULT_OPUS_BITRATE < bits_per_second < 1.4 * DEFAULT_OPUS_BITRATE
    low, _ = encode(pcm, 16000, bitrate=12000)
    assert len(low) < 0.7 * len(stream)


def test_encoder_refusals():
    with pytest.raises(ValueError, match=r"unsupported sample_rate 11025; accepted: 8000, 16000"):
        OggOpusEncoder(11025)
    with pytest.raises(ValueError, match="bitrate must be 0"):
        OggOpusEncoder(16000, -1)
    encoder = OggOpusEncoder(16000)
    with pytest.raises(ValueError, match="3 bytes, an odd number"):
        encoder.encode(b"\0\0\0")
    encoder.flush()
    with pytest.raises(ValueError, match="after flush"):
        encoder.encode(b"\0\0")
    assert encoder.flush() == b""


def test_empty_stream_is_headers_and_an_end_page():
    stream = OggOpusEncoder(16000).flush()
    pages = pages_of(stream)
    assert len(pages) == 3 and pages[-1]["flags"] & 0x04
    assert decode(stream, 16000) == b""


def test_short_audio_keeps_its_length():
    pcm = _pcm.to_s16le(np.full(100, 0.3, np.float32))  # less than one 20 ms frame
    stream, _ = encode(pcm, 16000)
    assert len(decode(stream, 16000)) == len(pcm)


# --------------------------------------------------------------------------- bad input


def test_pcm_is_not_an_ogg_stream(clip16):
    _, pcm = clip16
    with pytest.raises(OggOpusError, match=r"page 0 at byte 0: expected an Ogg page \('OggS'\)"):
        OggOpusDecoder(16000).feed(pcm[:4096])


def test_corrupt_page_is_refused(clip16):
    _, pcm = clip16
    stream, _ = encode(pcm, 16000)
    pages = pages_of(stream)
    at = sum(p["size"] for p in pages[:5]) + 40  # inside the sixth page's packets
    bad = stream[:at] + bytes([stream[at] ^ 0x55]) + stream[at + 1 :]
    with pytest.raises(OggOpusError, match=r"page 5 at byte \d+: checksum mismatch"):
        decode(bad, 16000)


def test_vorbis_is_not_opus(tmp_path):
    path = tmp_path / "v.ogg"
    soundfile.write(path, speech_like(0.5, 16000), 16000, format="OGG", subtype="VORBIS")
    with pytest.raises(OggOpusError, match="not an OpusHead header: not an Opus stream"):
        decode(path.read_bytes(), 16000)


def test_stream_cut_inside_a_page(clip16):
    _, pcm = clip16
    stream, _ = encode(pcm, 16000)
    decoder = OggOpusDecoder(16000)
    decoder.feed(stream[:-10])
    with pytest.raises(OggOpusError, match=r"ends inside a page \(\d+ bytes of it\)"):
        decoder.finish()


def test_must_begin_with_a_beginning_of_stream_page(clip16):
    _, pcm = clip16
    stream, _ = encode(pcm, 16000)
    third = pages_of(stream)[2]["raw"]
    with pytest.raises(OggOpusError, match="must begin with a beginning-of-stream page"):
        OggOpusDecoder(16000).feed(third)


def _raw_page(flags: int, serial: int, seq: int, lacing: bytes, body: bytes, granule: int = 0) -> bytes:
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, seq, 0, len(lacing))
    page = bytearray(header + lacing + body)
    struct.pack_into("<I", page, 22, ogg_crc(page))
    return bytes(page)


def test_endless_packet_is_refused_with_memory_bounded():
    """A packet continued page after page is refused once longer than Opus allows."""
    head = _raw_page(0x02, 1, 0, bytes([19]), b"OpusHead\x01\x01\x38\x01\x80\x3e\0\0\0\0\0")
    tags = _raw_page(0, 1, 1, bytes([16]), b"OpusTags" + struct.pack("<I", 0) + struct.pack("<I", 0))
    decoder = OggOpusDecoder(16000)
    decoder.feed(head + tags)
    full = bytes([255]) * 255
    first = _raw_page(0, 1, 2, full, bytes(255 * 255))
    with pytest.raises(OggOpusError, match=r"a packet longer than \d+ bytes, the most Opus allows"):
        decoder.feed(first)
        for seq in range(3, 10):
            decoder.feed(_raw_page(0x01, 1, seq, full, bytes(255 * 255)))
    assert decoder.buffered <= 2 * OGG_MAX_PAGE


def test_large_comment_packets_are_skipped_not_stored(clip16):
    """Comments may hold cover art: megabytes across pages, counted and dropped."""
    _, pcm = clip16
    stream, _ = encode(pcm[:32000], 16000)
    pages = pages_of(stream)
    serial = pages[0]["serial"]
    comment = b"OpusTags" + struct.pack("<I", 0) + struct.pack("<I", 1) + struct.pack("<I", 300_000) + bytes(300_000)
    tag_pages, seq, pos = [], 1, 0
    while pos < len(comment):
        part = comment[pos : pos + 255 * 200]
        more = pos + len(part) < len(comment)
        lacing = bytes([255]) * (len(part) // 255) + (b"" if more else bytes([len(part) % 255]))
        tag_pages.append(_raw_page(0x01 if pos else 0, serial, seq, lacing, part))
        seq, pos = seq + 1, pos + len(part)
    rest = b"".join(_raw_page(p["flags"], serial, seq + i, p["lacing"], p["raw"][27 + len(p["lacing"]) :], p["granule"]) for i, p in enumerate(pages[2:]))
    decoder = OggOpusDecoder(16000)
    out = decoder.feed(pages[0]["raw"])
    for page in tag_pages:
        out += decoder.feed(page)
        assert decoder.buffered < OGG_MAX_PAGE
    out += decoder.feed(rest) + decoder.finish()
    assert out == decode(stream, 16000)


def test_interleaved_streams_are_refused_chained_ones_decoded(clip16):
    _, pcm = clip16
    a, _ = encode(pcm[:16000], 16000)
    b, _ = encode(pcm[16000:32000], 16000)
    chained = _pcm.from_s16le(decode(a + b, 16000))
    assert len(chained) == 16000
    pages_a, pages_b = pages_of(a), pages_of(b)
    interleaved = pages_a[0]["raw"] + pages_b[0]["raw"]
    assert pages_a[0]["serial"] != pages_b[0]["serial"]  # random serials: equal once in 2^32
    with pytest.raises(OggOpusError, match=r"a second logical stream \(serial \d+\) interleaved"):
        OggOpusDecoder(16000).feed(interleaved)


# --------------------------------------------------------------------------- the local service


import asyncio  # noqa: E402

import spatialreal  # noqa: E402

from avatar_nb.flame import DEFAULT_FPS, SCALAR_CHANNELS  # noqa: E402
from avatar_nb.proto import message_pb2 as pb  # noqa: E402
from avatar_nb.protocol import build_configure_session  # noqa: E402

from .helpers import collect_until_end, expected_frames, keyframes_of, open_raw, receive  # noqa: E402
from .test_interop import Received, _official_kwargs  # noqa: E402

JAW = SCALAR_CHANNELS["jaw_open"]
SLICE = 4096  # what the official clients cut a pre-encoded file into


def _audio_message(req_id: str, data: bytes, end: bool) -> bytes:
    msg = pb.Message(type=pb.MESSAGE_CLIENT_AUDIO_INPUT)
    msg.client_audio_input.req_id = req_id
    msg.client_audio_input.audio = data
    msg.client_audio_input.end = end
    return msg.SerializeToString()


@pytest.fixture(scope="module")
def clip24(tmp_path_factory) -> tuple[bytes, bytes]:
    """4 s of speech at 24 kHz: its PCM, and an Ogg Opus file made by libsndfile (not by avatar_nb)."""
    x = speech_like(4.0, 24000, seed=21)
    path = tmp_path_factory.mktemp("opus") / "clip.opus"
    soundfile.write(path, x, 24000, format="OGG", subtype="OPUS")
    return _pcm.to_s16le(x), path.read_bytes()


async def _raw_run(svc, audio_format: int, chunks: list[bytes], rate: int = 24000) -> list:
    ws = await open_raw(svc)
    try:
        await ws.send(build_configure_session(rate, audio_format=audio_format))
        confirm = await receive(ws)
        assert confirm.type == pb.MESSAGE_SERVER_CONFIRM_SESSION, confirm
        for i, chunk in enumerate(chunks):
            await ws.send(_audio_message("req-1", chunk, i == len(chunks) - 1))
        return await collect_until_end(ws, "req-1")
    finally:
        await ws.close()


@pytest.mark.parametrize("encoder", ["libsndfile", "avatar_nb"])
async def test_service_takes_official_slices_and_follows_pcm(service, clip24, encoder):
    """4096-byte slices of a pre-encoded file, then an empty end chunk: animated like the PCM."""
    pcm, ogg = clip24
    if encoder == "avatar_nb":  # at the default bitrate, 24 kb/s
        ogg, _ = encode(pcm, 24000)
    slices = [ogg[i : i + SLICE] for i in range(0, len(ogg), SLICE)] + [b""]
    page_ends = set(np.cumsum([p["size"] for p in pages_of(ogg)]).tolist())
    assert len(slices) > 3 and any(k * SLICE not in page_ends for k in range(1, len(slices) - 1))  # cut inside pages
    opus_messages = await _raw_run(service, pb.AUDIO_FORMAT_OGG_OPUS, slices)
    assert not [m for m in opus_messages if m.type == pb.MESSAGE_SERVER_ERROR]
    pcm_messages = await _raw_run(service, pb.AUDIO_FORMAT_PCM_S16LE, [pcm[i : i + 1920] for i in range(0, len(pcm), 1920)])
    opus_jaw = keyframes_of(opus_messages)[:, JAW]
    pcm_jaw = keyframes_of(pcm_messages)[:, JAW]
    # the decoded stream has the clip's exact length (the end page's granule trims it)
    assert len(opus_jaw) == len(pcm_jaw) == expected_frames(len(pcm) // 2, 24000)
    assert np.ptp(pcm_jaw) > 0.05  # the mouth moves
    corr = float(np.corrcoef(opus_jaw, pcm_jaw)[0, 1])
    print(f"jaw correlation, Ogg Opus ({encoder}, 24 kHz) against PCM: {corr:.4f}")
    assert corr > 0.8, corr


async def test_spatialreal_sends_pre_encoded_opus(service, clip24, loopback_only):
    """spatialreal 0.2.2's own Ogg Opus path (it does not encode: callers send the file)."""
    pcm, ogg = clip24
    got = Received()
    session = spatialreal.new_avatar_session(
        **_official_kwargs(service, got, dict(sample_rate=24000, audio_format="ogg_opus"))
    )
    await session.init()
    await session.start()
    for i in range(0, len(ogg), SLICE):
        await session.send_audio(ogg[i : i + SLICE])
    await session.send_audio(b"", end=True)
    await asyncio.wait_for(got.done.wait(), 20)
    await session.close()
    assert got.errors == []
    assert loopback_only == []
    messages = [_wire.decode_message(data) for data, _ in got.frames]
    jaw = keyframes_of(messages)[:, JAW]
    assert len(jaw) == expected_frames(len(pcm) // 2, 24000)
    reference = await _raw_run(service, pb.AUDIO_FORMAT_PCM_S16LE, [pcm])
    assert float(np.corrcoef(jaw, keyframes_of(reference)[:, JAW])[0, 1]) > 0.8


async def test_service_animates_each_page_as_it_completes(service):
    """Lockstep: after each page is sent, the keyframes of all its audio (but the
    resampler's last millisecond) come back before anything more is sent."""
    rate = 24000
    spf = int(rate / DEFAULT_FPS)
    x = speech_like(2.0, rate, seed=3)
    stream, _ = encode(_pcm.to_s16le(x), rate, chunk_s=0.1)  # pages of 100 ms: 2.5 frames each
    pages = pages_of(stream)
    pre_skip = struct.unpack_from("<H", pages[0]["raw"], 28 + 10)[0]
    ws = await open_raw(service)
    try:
        await ws.send(build_configure_session(rate, audio_format=pb.AUDIO_FORMAT_OGG_OPUS))
        assert (await receive(ws)).type == pb.MESSAGE_SERVER_CONFIRM_SESSION
        frames = 0
        checked = 0
        for page in pages[:-1]:
            await ws.send(_audio_message("lock", page["raw"], False))
            audio_so_far = max(0, page["granule"] - pre_skip) * rate // 48000
            owed = audio_so_far // spf - 1  # one frame of slack for the resampler's 16 samples
            while frames < owed:
                msg = await receive(ws, timeout=10)  # a page held back would time out here
                assert msg.type == pb.MESSAGE_SERVER_RESPONSE_ANIMATION, msg
                frames += msg.keyframes.shape[0]
            checked += owed > 0
        assert checked >= 15
        await ws.send(_audio_message("lock", pages[-1]["raw"], True))
        rest = await collect_until_end(ws, "lock")
        assert frames + keyframes_of(rest).shape[0] == expected_frames(len(x), rate)
    finally:
        await ws.close()


async def test_service_reports_a_broken_stream_and_still_ends_the_request(service, clip24):
    pcm, _ = clip24
    ws = await open_raw(service)
    try:
        await ws.send(build_configure_session(24000, audio_format=pb.AUDIO_FORMAT_OGG_OPUS))
        assert (await receive(ws)).type == pb.MESSAGE_SERVER_CONFIRM_SESSION
        await ws.send(_audio_message("bad", pcm[:4096], False))  # PCM where Ogg was agreed
        error = await receive(ws)
        assert error.type == pb.MESSAGE_SERVER_ERROR and error.req_id == "bad"
        assert error.error_code == 3
        assert error.error_message.startswith("invalid Ogg Opus audio: Ogg Opus stream, page 0 at byte 0: expected an Ogg page")
        await ws.send(_audio_message("bad", pcm[4096:8192], False))  # the rest is dropped quietly
        await ws.send(_audio_message("bad", b"", True))
        end = await collect_until_end(ws, "bad")
        assert not [m for m in end if m.type == pb.MESSAGE_SERVER_ERROR]
        # the next request decodes again
        stream, _ = encode(pcm[:48000], 24000)
        await ws.send(_audio_message("good", stream, True))
        good = await collect_until_end(ws, "good")
        assert keyframes_of(good).shape[0] == expected_frames(24000, 24000)
    finally:
        await ws.close()


def test_fuzz_opus_mode_holds_its_bounds():
    """tools/fuzz.py's Ogg Opus mode on a few thousand inputs (it runs 1,000,000 by hand):
    each stream decodes or raises OggOpusError, within what its packets declare, within
    MAX_SAMPLES_PER_BYTE an input byte and within a budget when one is set."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "tools" / "fuzz.py"
    spec = importlib.util.spec_from_file_location("avatar_nb_tools_fuzz_opus", path)
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    outcomes = fuzz.run_opus(20261206, 3000)
    by_outcome: dict[str, int] = {}
    for (_, outcome), n in outcomes.items():
        by_outcome[outcome] = by_outcome.get(outcome, 0) + n
    assert sum(by_outcome.values()) == 3000
    # the inputs reach decoding, the budget and refusals, not only the first check
    assert by_outcome["decoded"] > 100 and by_outcome["rejected"] > 100 and by_outcome["over budget"] > 5, by_outcome
