"""Ogg Opus in both directions, incrementally: PCM to Ogg pages as audio is sent, and back.

``audio_format="ogg_opus"`` sessions carry one continuous Ogg Opus stream per request
(docs/protocol.md): the client sends it in chunks cut at any byte, the service decodes
each Ogg page as soon as it is complete. :class:`OggOpusEncoder` makes such a stream
from s16le PCM; :class:`OggOpusDecoder` turns one back into s16le PCM.

The codec is libopus through PyAV, which ships libopus (and FFmpeg) in its wheel, is
well kept, and is already what avatar_nb reads compressed files with. The Ogg framing
(RFC 3533, with the Opus mapping of RFC 7845) is done here rather than by FFmpeg's Ogg
muxer and demuxer, because a stream must come out page by page as it is written and go
in page by page as bytes arrive: FFmpeg's muxer holds a page until it has about a second
of audio and writes through an I/O buffer, and its demuxer wants a seekable input.
Framing is a few dozen lines, and the page checksum runs in zlib's C code.

Opus codes at 48 kHz. The encoder gives libopus the session's rate when libopus takes
it directly (8, 12, 16, 24 and 48 kHz) and resamples the others (22.05, 32, 44.1 kHz)
to 48 kHz; the decoder decodes at 48 kHz and resamples to the rate asked for. Both
resample with FFmpeg's swresample (in PyAV) rather than soxr, because it streams: its
output follows its input sample for sample with a millisecond's delay, where soxr's
stream gives out blocks that hold back up to another 20-30 ms, as much as a page.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from .audio import AudioFormatError
from .protocol import OGG_PAGE_MAGIC, SUPPORTED_SAMPLE_RATES

__all__ = [
    "DEFAULT_OPUS_BITRATE",
    "MAX_OPUS_CHANNELS",
    "MAX_SAMPLES_PER_BYTE",
    "OGG_MAX_PAGE",
    "OggOpusDecoder",
    "OggOpusEncoder",
    "OggOpusError",
    "OggOpusLimitError",
    "ogg_crc",
    "opus_packet_samples",
]

#: Bitrate (bits/s) of :class:`OggOpusEncoder` when given 0. 24 kb/s mono is where Opus
#: codes wideband speech transparently enough for lip sync (its documentation puts
#: wideband speech at 16-20 kb/s and fullband speech at 28-40 kb/s): a tenth of 16 kHz
#: PCM (256 kb/s), a sixteenth of 24 kHz PCM (384 kb/s), with the mouth movements intact (jaw
#: opening correlates 0.998 with the PCM run's at 24 kHz).
DEFAULT_OPUS_BITRATE = 24000

#: The longest Ogg page: 27-byte header, 255 lacing values, 255 segments of 255 bytes.
OGG_MAX_PAGE = 27 + 255 + 255 * 255

_OPUS_RATE = 48000
_NATIVE_RATES = (8000, 12000, 16000, 24000, 48000)  # rates libopus encodes directly
_FRAME_MS = 20  # Opus frame: the default and the best trade of quality and overhead
_MAX_PACKETS_PER_PAGE = 10  # 200 ms: one encode() call of a long chunk still pages often
# RFC 6716: at most 120 ms in a packet, 1275 bytes per 2.5 ms frame at most
_MAX_OPUS_PACKET = 48 * 1275 + 7
_BOS, _EOS, _CONTINUED = 0x02, 0x04, 0x01
_MAX_PACKET_SAMPLES = 5760  # 120 ms at 48 kHz, the longest packet RFC 6716 allows
# RFC 6716, section 3.1: the frame length of each TOC configuration, in 48 kHz samples
_FRAME_SAMPLES = (480, 960, 1920, 2880) * 3 + (480, 960) * 2 + (120, 240, 480, 960) * 4
#: The most samples (48 kHz) one Ogg Opus input byte can make: a 1-byte packet of code 1
#: holds two empty 60 ms frames (120 ms) and takes one lacing byte. Real speech at
#: 6-64 kb/s makes 6-64 samples a byte; this is what a hostile stream gets at most.
MAX_SAMPLES_PER_BYTE = _MAX_PACKET_SAMPLES // 2
#: Channels an Ogg Opus stream may have: the protocol carries mono audio; stereo is averaged.
MAX_OPUS_CHANNELS = 2
_SLICE_SAMPLES = 9600  # 0.2 s at 48 kHz: a millisecond or two of decoding and animating a slice
_SLICE_BYTES = 256 * 1024  # pages checked (checksums) between two slices, whatever they decode to

# Ogg's CRC-32 (polynomial 0x04c11db7, no reflection, no inversion) via zlib's reflected
# CRC-32: reverse the bits of every byte, start from zlib's "0" state, reverse the result
_REVERSE_BITS = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def ogg_crc(data: bytes | bytearray | memoryview) -> int:
    """The CRC of an Ogg page (computed with its checksum field zeroed)."""
    value = zlib.crc32(bytes(data).translate(_REVERSE_BITS), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{value:032b}"[::-1], 2)


class OggOpusError(AudioFormatError):
    """Bytes that are not a well-formed Ogg Opus stream (the message says where and why)."""


class OggOpusLimitError(OggOpusError):
    """A well-formed stream that decodes to more audio than its decoder's budget allows."""


def opus_packet_samples(packet: bytes | bytearray | memoryview) -> int:
    """The duration of an Opus packet in 48 kHz samples, read from its TOC (RFC 6716, 3.1-3.2).

    ``ValueError`` for a packet whose TOC cannot be valid: empty, a code 3 packet without
    its frame-count byte or with 0 frames, or more than 120 ms of audio.
    """
    if not len(packet):
        raise ValueError("an empty Opus packet")
    toc = packet[0]
    frame = _FRAME_SAMPLES[toc >> 3]
    code = toc & 3
    if code == 0:
        return frame
    if code in (1, 2):
        return 2 * frame
    if len(packet) < 2:
        raise ValueError("a code 3 Opus packet without its frame count byte")
    count = packet[1] & 0x3F
    if count == 0 or count * frame > _MAX_PACKET_SAMPLES:
        raise ValueError(f"an Opus packet of {count} frames of {frame / 48:g} ms: 1 to 120 ms are allowed")
    return count * frame


def _check_rate(sample_rate: object) -> int:
    if isinstance(sample_rate, bool) or sample_rate not in SUPPORTED_SAMPLE_RATES:
        rates = ", ".join(map(str, SUPPORTED_SAMPLE_RATES))
        raise ValueError(f"unsupported sample_rate {sample_rate!r}; accepted: {rates} Hz")
    return int(sample_rate)  # type: ignore[arg-type]


class _Resampler:
    """Mono audio from one rate to another with swresample, chunk by chunk."""

    def __init__(self, rate_in: int, rate_out: int, fmt: str) -> None:
        import av

        self._av = av
        self._rate_in = rate_in
        self._fmt = fmt
        self._dtype = np.int16 if fmt == "s16" else np.float32
        self._resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate_out)
        self._pts = 0

    _PIECE = 1 << 18  # samples given to swresample at a time (above ~3e8 it returns nothing)

    def resample(self, samples: np.ndarray | None) -> np.ndarray:
        """The output for ``samples`` (None: the end, what the filter still holds)."""
        if samples is None:
            blocks = [out.to_ndarray()[0] for out in self._resampler.resample(None)]
            return np.concatenate(blocks) if blocks else np.zeros(0, self._dtype)
        blocks = []
        samples = np.ascontiguousarray(samples, dtype=self._dtype)
        for start in range(0, samples.shape[0], self._PIECE):
            piece = samples[start : start + self._PIECE]
            frame = self._av.AudioFrame.from_ndarray(piece[None, :], format=self._fmt, layout="mono")
            frame.sample_rate = self._rate_in
            frame.pts = self._pts
            self._pts += piece.shape[0]
            blocks.extend(out.to_ndarray()[0] for out in self._resampler.resample(frame))
        out = np.concatenate(blocks) if blocks else np.zeros(0, self._dtype)
        # swresample holds back at most a few ms (its filter and a partial output sample);
        # a second of input with nothing out is a failure, never an empty answer
        if samples.shape[0] >= self._rate_in and out.shape[0] == 0:
            raise RuntimeError(f"the resampler returned no audio for {samples.shape[0]} samples")
        return out


# --------------------------------------------------------------------------- encoding


def _page(serial: int, sequence: int, granule: int, flags: int, packets: list[bytes]) -> bytes:
    lacing = bytearray()
    for packet in packets:
        lacing += b"\xff" * (len(packet) // 255) + bytes((len(packet) % 255,))
    if len(lacing) > 255:
        raise AssertionError("too many segments for one page")  # callers split before this
    header = struct.pack("<4sBBqIIIB", OGG_PAGE_MAGIC, 0, flags, granule, serial, sequence, 0, len(lacing))
    page = bytearray(header + lacing + b"".join(packets))
    struct.pack_into("<I", page, 22, ogg_crc(page))
    return bytes(page)


class OggOpusEncoder:
    """Mono s16le PCM at ``sample_rate`` to an Ogg Opus stream, a page at a time.

    ``encode(pcm)`` returns the Ogg pages completed so far (the two header pages come
    with the first call); every call ends a page (a long call makes pages of at most
    200 ms), so what a caller sends per chunk is decodable on arrival, with less than
    one 20 ms Opus frame of its audio held back until the frame is whole. ``flush()``
    encodes that remainder (padded with silence, trimmed again on decoding by the final
    granule position) and returns the last page, marked end of stream. ``bitrate`` in
    bits/s; 0 means :data:`DEFAULT_OPUS_BITRATE`. libopus runs in its ``voip`` mode,
    tuned for speech.
    """

    def __init__(self, sample_rate: int, bitrate: int = 0) -> None:
        import av

        self.sample_rate = _check_rate(sample_rate)
        if isinstance(bitrate, bool) or not isinstance(bitrate, int) or not (bitrate == 0 or 500 <= bitrate <= 512000):
            raise ValueError(f"bitrate must be 0 (default {DEFAULT_OPUS_BITRATE}) or 500..512000 bits/s, got {bitrate!r}")
        self.bitrate = bitrate or DEFAULT_OPUS_BITRATE
        self._codec_rate = self.sample_rate if self.sample_rate in _NATIVE_RATES else _OPUS_RATE
        self._resampler = _Resampler(self.sample_rate, _OPUS_RATE, "s16") if self._codec_rate != self.sample_rate else None
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate = self._codec_rate
        codec.layout = "mono"
        codec.format = "s16"
        codec.bit_rate = self.bitrate
        codec.options = {"application": "voip", "frame_duration": str(_FRAME_MS)}
        codec.open()
        self._codec = codec
        self._frame = codec.frame_size  # samples at the codec's rate
        self._to_48k = _OPUS_RATE // self._codec_rate
        head = bytearray(codec.extradata)  # FFmpeg's OpusHead: version, channels, pre-skip, ...
        struct.pack_into("<I", head, 12, self.sample_rate)  # the input rate, for information
        self.pre_skip = struct.unpack_from("<H", head, 10)[0]
        self._head = bytes(head)
        self._serial = int.from_bytes(os.urandom(4), "little")
        self._sequence = 0
        self._granule = 0  # 48 kHz samples in the packets paged so far
        self._pending = np.zeros(0, np.int16)  # samples at the codec rate not yet a whole frame
        self._pts = 0
        self._input_samples = 0  # at the session rate, for the end trim
        self._started = False
        self._finished = False

    # the pages ------------------------------------------------------------

    def _next_page(self, granule: int, flags: int, packets: list[bytes]) -> bytes:
        page = _page(self._serial, self._sequence, granule, flags, packets)
        self._sequence += 1
        return page

    def _headers(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        vendor = b"avatar_nb"
        tags = b"OpusTags" + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
        return self._next_page(0, _BOS, [self._head]) + self._next_page(0, 0, [tags])

    def _paged(self, packets: list[tuple[bytes, int]], *, last: bool = False) -> bytes:
        """Pages holding ``packets`` ((data, duration in 48 kHz samples)); the last one ends the stream when ``last``."""
        out = bytearray()
        for start in range(0, max(len(packets), 1 if last else 0), _MAX_PACKETS_PER_PAGE):
            group = packets[start : start + _MAX_PACKETS_PER_PAGE]
            self._granule += sum(duration for _, duration in group)
            final = last and start + _MAX_PACKETS_PER_PAGE >= len(packets)
            granule = self._granule
            if final:  # end trim: the decoder drops what padding the last frame added
                granule = min(granule, self.pre_skip + self._input_samples * _OPUS_RATE // self.sample_rate)
            out += self._next_page(granule, _EOS if final else 0, [data for data, _ in group])
        return bytes(out)

    def _encode_frames(self, samples: np.ndarray) -> list[tuple[bytes, int]]:
        import av

        if self._pending.shape[0]:
            samples = np.concatenate((self._pending, samples))
        whole = samples.shape[0] - samples.shape[0] % self._frame
        self._pending = samples[whole:].copy()
        packets: list[tuple[bytes, int]] = []
        for start in range(0, whole, self._frame):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + self._frame], format="s16", layout="mono")
            frame.sample_rate = self._codec_rate
            frame.pts = self._pts
            self._pts += self._frame
            packets.extend(self._packets(frame))
        return packets

    def _packets(self, frame: Any) -> list[tuple[bytes, int]]:
        # every Opus packet decodes to a whole frame, whatever FFmpeg says of the last
        return [(bytes(p), self._frame * self._to_48k) for p in self._codec.encode(frame)]

    # the interface ----------------------------------------------------------

    def encode(self, pcm: bytes | bytearray | memoryview) -> bytes:
        """Encode mono s16le ``pcm``; the Ogg pages completed so far (possibly empty)."""
        if self._finished:
            raise ValueError("encode() after flush(): the Ogg Opus stream has ended")
        data = memoryview(pcm).cast("B")
        if len(data) % 2:
            raise ValueError(f"s16le audio has {len(data)} bytes, an odd number")
        samples = np.frombuffer(data, dtype="<i2")
        self._input_samples += samples.shape[0]
        if self._resampler is not None and samples.shape[0]:
            samples = self._resampler.resample(samples)
        return self._headers() + self._paged(self._encode_frames(samples))

    def flush(self) -> bytes:
        """End the stream: the remaining audio (padded to a whole frame) and the final page."""
        if self._finished:
            return b""
        self._finished = True
        out = self._headers()
        samples = np.zeros(0, np.int16)
        if self._resampler is not None:
            samples = self._resampler.resample(None)
        packets = self._encode_frames(samples)
        if self._pending.shape[0]:
            packets += self._encode_frames(np.zeros(self._frame - self._pending.shape[0], np.int16))
        if self._input_samples:
            packets += self._packets(None)  # what libopus still holds of its lookahead
        return out + self._paged(packets, last=True)


# --------------------------------------------------------------------------- decoding


class OggOpusDecoder:
    """An Ogg Opus stream, fed in chunks cut anywhere, to mono s16le PCM at ``sample_rate``.

    ``feed(data)`` returns the audio of the pages completed so far; ``finish()`` the rest
    (the resampler's tail) and checks that the stream did not stop inside a page. Memory
    is bounded: at most one incomplete page (:data:`OGG_MAX_PAGE` bytes, which Ogg's
    header cannot exceed) and one incomplete Opus packet (120 ms at most by RFC 6716;
    a longer one is refused) are held; comment packets are skipped, not stored.
    Malformed input raises :class:`OggOpusError` saying where and why: bytes that are
    not an Ogg page, a bad checksum, a first packet that is not an Opus header,
    interleaved logical streams. Chained streams (a new stream after the previous
    one's end-of-stream page) are decoded one after the other.

    Work is bounded too. Only mono and stereo streams are decoded (an OpusHead
    declaring more channels, or a channel mapping family other than 0 or 1, is
    refused). Every packet's duration is read from its header before it is decoded,
    and ``budget``, when set, is how many more 48 kHz samples the decoder may make: a
    packet that would go beyond it raises :class:`OggOpusLimitError` (whose message
    ends with ``budget_name``, the limit as the caller states it) and nothing of it is
    decoded. :meth:`feed_slices` gives the audio in slices of about 0.2 s, so a
    caller on an event loop can let others run between them; an Opus byte decodes to
    at most :data:`MAX_SAMPLES_PER_BYTE` samples whatever the stream.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = _check_rate(sample_rate)
        self.budget: int | None = None  # 48 kHz samples this decoder may still make
        self.budget_name = ""
        self._buffer = bytearray()
        self._offset = 0  # stream position of the buffer's first byte, for messages
        self._pages = 0
        self._serial: int | None = None
        self._ended = True  # no logical stream open: the next page must begin one
        self._resampler = _Resampler(_OPUS_RATE, self.sample_rate, "flt") if self.sample_rate != _OPUS_RATE else None
        self._reset_stream()

    def _reset_stream(self) -> None:
        self._codec: Any = None
        self._packet_index = 0  # 0: OpusHead, 1: OpusTags, then audio
        self._partial = bytearray()  # a packet continued on the next page
        self._partial_len = 0  # its length (tags are counted, not kept)
        self._pre_skip = 0  # 48 kHz samples before the audio starts (libopus drops them)
        self._decoded = 0  # 48 kHz samples decoded in this logical stream, after the pre-skip

    @property
    def buffered(self) -> int:
        """Bytes held: the incomplete page and the incomplete packet."""
        return len(self._buffer) + len(self._partial)

    def _fail(self, problem: str, kind: type[OggOpusError] = OggOpusError) -> OggOpusError:
        return kind(f"Ogg Opus stream, page {self._pages} at byte {self._offset}: {problem}")

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        """Take the next bytes of the stream; the PCM of the pages they complete."""
        return b"".join(self.feed_slices(data))

    def feed_slices(
        self, data: bytes | bytearray | memoryview, slice_samples: int = _SLICE_SAMPLES
    ) -> Iterator[bytes]:
        """:meth:`feed` a slice at a time: the PCM of each run of about ``slice_samples``
        decoded samples (48 kHz; or of 256 KB of pages), possibly empty, as it is made.
        The bytes are taken at the first step; the stream is consumed only as far as the
        iteration goes."""
        self._buffer += data
        blocks: list[np.ndarray] = []
        held = 0  # 48 kHz samples in blocks
        checked = 0  # page bytes since the last slice
        while len(self._buffer) >= 27:
            buf = self._buffer
            if buf[:4] != OGG_PAGE_MAGIC:
                raise self._fail(f"expected an Ogg page ('OggS'), got {bytes(buf[:4])!r}")
            if buf[4] != 0:
                raise self._fail(f"Ogg version {buf[4]}, only version 0 exists")
            n_segments = buf[26]
            if len(buf) < 27 + n_segments:
                break
            lacing = buf[27 : 27 + n_segments]
            size = 27 + n_segments + sum(lacing)  # never more than OGG_MAX_PAGE
            if len(buf) < size:
                break
            page = bytes(buf[:size])
            del buf[:size]
            checked += size
            for block in self._on_page(page, lacing):
                blocks.append(block)
                held += block.shape[0]
                if held >= slice_samples:
                    yield self._pcm(blocks, last=False)
                    blocks, held, checked = [], 0, 0
            self._offset += size
            self._pages += 1
            if checked >= _SLICE_BYTES:
                yield self._pcm(blocks, last=False)
                blocks, held, checked = [], 0, 0
        yield self._pcm(blocks, last=False)

    def finish(self) -> bytes:
        """The end of the input: the audio still held back, after checking nothing was cut off."""
        if self._buffer:
            raise self._fail(f"the stream ends inside a page ({len(self._buffer)} bytes of it)")
        if self._partial_len:
            raise self._fail("the stream ends inside a packet continued from the previous page")
        return self._pcm([], last=True)

    # pages and packets ------------------------------------------------------

    def _on_page(self, page: bytes, lacing: bytes | bytearray) -> Iterator[np.ndarray]:
        flags, granule, serial, _sequence, crc = struct.unpack_from("<BqIII", page, 5)
        if ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) != crc:
            raise self._fail("checksum mismatch (corrupt or cut page)")
        if self._ended:
            if not flags & _BOS:
                raise self._fail("the stream must begin with a beginning-of-stream page")
            self._serial, self._ended = serial, False
            self._reset_stream()
        elif serial != self._serial:
            raise self._fail(f"a second logical stream (serial {serial}) interleaved; one Opus stream is accepted")
        continued = bool(flags & _CONTINUED)
        if continued != bool(self._partial_len):
            if continued:
                raise self._fail("the page continues a packet, but the previous page ended its last packet")
            raise self._fail("the previous page's last packet goes on, but this page does not continue it")
        # the end page's granule position says where the audio stops: what its packets
        # decode beyond it (the padding of the last frame) is dropped
        end = bool(flags & _EOS) and granule >= 0
        pos = 27 + len(lacing)
        for value in lacing:
            self._add_segment(page[pos : pos + value])
            pos += value
            if value < 255:  # a lacing value below 255 ends the packet
                packet, length = bytes(self._partial), self._partial_len
                self._partial.clear()
                self._partial_len = 0
                for block in self._on_packet(packet, length):
                    if end:
                        keep = granule - self._pre_skip - (self._decoded - block.shape[0])
                        block = block[: max(0, keep)]
                    yield block
        if flags & _EOS:
            self._ended = True

    def _add_segment(self, segment: bytes) -> None:
        self._partial_len += len(segment)
        if self._packet_index == 1:
            return  # comments: counted, never stored (they may hold pictures)
        if self._partial_len > _MAX_OPUS_PACKET:
            raise self._fail(f"a packet longer than {_MAX_OPUS_PACKET} bytes, the most Opus allows")
        self._partial += segment

    def _on_packet(self, packet: bytes, length: int) -> list[np.ndarray]:
        index = self._packet_index
        self._packet_index += 1
        if index == 0:
            self._open_codec(packet)
            return []
        if index == 1:
            return []
        if not length:
            return []
        return self._decode(packet)

    def _open_codec(self, head: bytes) -> None:
        import av

        if len(head) < 19 or head[:8] != b"OpusHead":
            raise self._fail("the first packet is not an OpusHead header: not an Opus stream")
        version, channels, pre_skip, _rate, _gain, mapping = struct.unpack_from("<BBHIhB", head, 8)
        if version >> 4 != 0:
            raise self._fail(f"OpusHead version {version}: only version 0.x streams can be decoded")
        if channels < 1 or (mapping == 0 and channels > 2):
            raise self._fail(f"OpusHead declares {channels} channels with mapping family {mapping}")
        if channels > MAX_OPUS_CHANNELS or mapping not in (0, 1):
            raise self._fail(
                f"OpusHead declares {channels} channels with channel mapping family {mapping}; "
                "accepted: mono or stereo, mapping family 0 or 1"
            )
        codec = av.CodecContext.create("libopus", "r")
        codec.extradata = head
        try:
            codec.open()
        except av.error.FFmpegError as exc:
            raise self._fail(f"libopus refuses the OpusHead header ({exc})") from None
        self._codec = codec
        self._pre_skip = pre_skip  # FFmpeg's libopus decoder drops these itself

    def _decode(self, packet: bytes) -> list[np.ndarray]:
        import av

        try:
            duration = opus_packet_samples(packet)
        except ValueError as exc:
            raise self._fail(str(exc)) from None
        if self.budget is not None:
            if duration > self.budget:
                limit = self.budget_name or "the decoder's budget"
                raise self._fail(f"the audio decodes to more than {limit}", OggOpusLimitError)
            self.budget -= duration
        try:
            frames = self._codec.decode(av.Packet(packet))
        except av.error.FFmpegError as exc:
            raise self._fail(f"libopus cannot decode a packet of {len(packet)} bytes ({exc})") from None
        out = []
        for frame in frames:
            samples = frame.to_ndarray()
            scale = 1 / 32768.0 if samples.dtype == np.int16 else 1.0
            if not frame.format.is_planar:  # interleaved: one row, channels alternating
                samples = samples.reshape(-1, len(frame.layout.channels)).T
            mono = (samples.mean(axis=0) if samples.shape[0] > 1 else samples[0]).astype(np.float32) * np.float32(scale)
            self._decoded += mono.shape[0]
            out.append(mono)
        return out

    def _pcm(self, blocks: list[np.ndarray], *, last: bool) -> bytes:
        from . import _pcm

        samples = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
        if self._resampler is not None:
            if samples.shape[0]:
                samples = self._resampler.resample(samples)
            if last:
                samples = np.concatenate((samples, self._resampler.resample(None)))
        if not samples.shape[0]:
            return b""
        return _pcm.to_s16le(np.clip(samples, -1.0, 1.0))
