#!/usr/bin/env python3
"""Fuzz avatar_nb's decoders against protobuf: accept/reject and values must agree.

    .venv/bin/python tools/fuzz.py [--count 1000000] [--seed 20261128] [--start 0]
    .venv/bin/python tools/fuzz.py --seed S --show I     # reproduce input I of seed S
    .venv/bin/python tools/fuzz.py --mode opus [--count 1000000]   # Ogg Opus streams

Input ``i`` of seed ``s`` is generated from its own random stream
(``numpy.random.default_rng([s, i])``), so any input can be reproduced alone from the
seed and index printed with a failure. Kinds of input, in turn:

- random bytes;
- structure-aware messages: a random tree of fields, biased to the numbers the schema
  uses so that it reaches every oneof member, the egress configs and their map
  entries, FLAME payloads and keyframes, with overlong tags, unknown groups (nested,
  mismatched, unterminated), stray end-group tags, invalid UTF-8 in strings, wrong wire
  types and truncated lengths;
- mutations of valid messages of every kind (bit flips, byte overwrites with
  varint-significant values, truncations, splices of two messages).

Every input goes through ``_wire.decode_message``, ``_flame.decode_animation_batch``
and (for animation payloads) ``_flame.decode_animation``, and through protobuf (with
the pure twins in ``avatar_nb._reference``): both must accept or both reject, with
equal values when they accept; the compiled decoders may raise nothing but ValueError.
tests/test_fuzz.py runs 100,000 inputs of the same generator on every test run.

``--mode opus`` fuzzes :class:`avatar_nb.opus.OggOpusDecoder` instead, with Ogg Opus
streams fed in chunks cut at random bytes: well-framed streams of random Opus packets
(every TOC configuration, codes 0-3 with every frame count, CBR and VBR, padding of
every length form, one- and two-byte frame lengths, empty and oversized frames),
OpusHead variants (channel counts 0-255, mapping families 0, 1, 2 and 255 with their
tables, versions, short heads), mutations of valid streams (with and without their
checksums fixed up, so mutations reach past the checksum), and random bytes. Each
stream must decode or raise :class:`~avatar_nb.opus.OggOpusError` (anything else is a
bug), decode to no more samples than its packets' TOCs declare, and so to at most
:data:`~avatar_nb.opus.MAX_SAMPLES_PER_BYTE` samples (48 kHz) an input byte, and never
beyond a budget when one is set.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import Counter

import numpy as np

from avatar_nb import _flame, _reference as ref, _wire
from avatar_nb.proto import message_pb2 as pb

# ----------------------------------------------------------------------------- wire building


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def tag(field: int, wire: int, pad: int = 0) -> bytes:
    """A tag, optionally padded with ``pad`` redundant continuation bytes (overlong)."""
    raw = bytearray(varint(field << 3 | wire))
    for _ in range(pad):
        raw[-1] |= 0x80
        raw.append(0)
    return bytes(raw)


def ld(field: int, payload: bytes) -> bytes:
    return tag(field, 2) + varint(len(payload)) + payload


def seeds(rng: np.random.Generator) -> list[bytes]:
    """Valid messages of every kind, the starting points of the mutations."""
    out = [
        _wire.encode_animation_message(
            rng.standard_normal((k, 20 + e)).astype(np.float32), connection_id="conn", req_id="req",
            end=bool(k % 2), avatar_id="av",
        )
        for k, e in ((1, 50), (3, 100), (2, 0), (0, 10))
    ]
    out += _wire.encode_audio_messages(rng.integers(0, 255, 64, dtype=np.uint8).tobytes(), "req", 32)
    confirm = pb.Message(type=2)
    confirm.server_confirm_session.connection_id = "c"
    confirm.server_confirm_session.capabilities.extend(["fps:25", "playback_state"])
    err = pb.Message(type=4)
    err.server_error.code, err.server_error.message = 4001, "credits exhausted"
    cfg = pb.Message(type=1)
    cfg.client_configure_session.sample_rate = 16000
    lk = cfg.client_configure_session.livekit_egress
    lk.url, lk.room_name, lk.idle_timeout = "wss://lk", "room", 30
    lk.extra_attributes["k"] = "v"
    agora = pb.Message(type=1)
    agora.client_configure_session.agora_egress.channel_name = "ch"
    agora.client_configure_session.agora_egress.uid = 7
    state = pb.Message(type=10)
    state.server_playback_state.played_ms = -5
    state.server_playback_state.reason = "preempted"
    controls = [pb.Message(type=7 + i) for i in range(3)]
    controls[0].client_interrupt.req_id = "r"
    controls[1].client_pause.req_id = "r"
    controls[2].client_resume.req_id = "r"
    # an animation whose Flames use unpacked floats
    unpacked = pb.Message(type=5)
    flame = b"".join(bytes([0x25]) + np.float32(v).tobytes() for v in range(3))  # field 4, wire type 5
    unpacked.server_response_animation.animation = b"\x0a" + bytes([len(flame)]) + flame
    out += [m.SerializeToString() for m in (confirm, err, cfg, agora, state, *controls, unpacked)]
    return out


_SEEDS = seeds(np.random.default_rng(0))

# field numbers the schema uses at each level are the interesting ones; others are unknown
_TEXTS = [b"", b"a", b"req-1", "ü€𝄞".encode(), b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ab\xe2\x82"]


def _flame_payload(rng: np.random.Generator, depth: int) -> bytes:
    """A FlameAnimation, usually well formed (so values get compared), sometimes not."""
    n = int(rng.integers(0, 4))
    e = int(rng.choice([0, 1, 3]))
    out = bytearray()
    for _ in range(n):
        parts = []
        for number, width in ((1, 3), (2, 3), (3, 3), (4, 3), (5, 6), (6, 2), (7, e)):
            w = width + (int(rng.integers(-1, 2)) if rng.random() < 0.05 else 0)
            values = rng.standard_normal(max(w, 0)).astype("<f4")
            if rng.random() < 0.2:
                parts.extend(tag(number, 5) + v.tobytes() for v in values)
            elif w > 0:
                parts.append(ld(number, values.tobytes()))
        if rng.random() < 0.3:
            parts.insert(int(rng.integers(len(parts) + 1)), _random_fields(rng, depth + 2, 1, budget=2))
        out += ld(1, b"".join(parts))
    if rng.random() < 0.2:
        out += _random_fields(rng, depth + 1, 1, budget=2)
    return bytes(out)


def _random_fields(rng: np.random.Generator, depth: int, level: int, budget: int = 6) -> bytes:
    """A random run of fields: known and unknown numbers, every wire type, nested messages."""
    out = bytearray()
    for _ in range(int(rng.integers(0, budget + 1))):
        r = rng.random()
        field = int(rng.integers(1, 12)) if r < 0.8 else int(rng.choice([12, 15, 16, 100, 2047, 2**28, 2**29 - 1]))
        pad = 0 if rng.random() < 0.93 else int(rng.integers(1, 6))  # 5+ bytes: overlong
        kind = rng.random()
        if kind < 0.25:
            out += tag(field, 0, pad) + varint(int(rng.choice([0, 1, 5, 16000, 2**31, 2**63 - 1, 2**64 - 1])))
        elif kind < 0.6:
            if depth < 4 and rng.random() < 0.5:
                payload = _random_fields(rng, depth + 1, level + 1, budget)
            elif rng.random() < 0.3:
                payload = _flame_payload(rng, depth)
            else:
                payload = _TEXTS[int(rng.integers(len(_TEXTS)))]
            out += tag(field, 2, pad) + varint(len(payload)) + payload
        elif kind < 0.7:
            out += tag(field, 5, pad) + rng.bytes(4)
        elif kind < 0.75:
            out += tag(field, 1, pad) + rng.bytes(8)
        elif kind < 0.9:  # a group: usually matched, sometimes deep, mismatched or unterminated
            nest = 1 if rng.random() < 0.9 else int(rng.choice([2, 50, 98, 99, 100, 101]))
            inner = _random_fields(rng, depth + 1, level + 1, 2) if depth < 4 else b""
            end_field = field if rng.random() < 0.95 else field + 1
            out += tag(field, 3) * nest + inner + (tag(end_field, 4) * nest if rng.random() < 0.97 else b"")
        elif kind < 0.93:
            out += tag(field, 4)  # a stray end-group tag
        elif kind < 0.96:
            out += tag(field, int(rng.choice([6, 7])))  # invalid wire types
        else:
            out += tag(field, 2) + varint(int(rng.integers(1, 2**35)))  # a length past the end
    return bytes(out)


def structured(rng: np.random.Generator) -> bytes:
    """A Message-shaped input: type, one or more oneof members with random insides."""
    out = bytearray()
    if rng.random() < 0.9:
        out += tag(1, 0) + varint(int(rng.integers(0, 12)))
    for _ in range(int(rng.integers(1, 4))):
        member = int(rng.choice([2, 3, 4, 5, 6, 6, 6, 8, 9, 10, 11]))
        if member == 6 and rng.random() < 0.7:
            inner = (ld(1, _TEXTS[int(rng.integers(len(_TEXTS)))]) + ld(2, b"r") + tag(3, 0) + b"\x01"
                     + ld(4, _flame_payload(rng, 1)) + _random_fields(rng, 1, 2, 2))
        elif member == 2 and rng.random() < 0.6:
            sub = int(rng.choice([6, 7]))
            egress = _random_fields(rng, 2, 3, 4)
            if sub == 6 and rng.random() < 0.5:
                egress += ld(6, ld(1, _TEXTS[int(rng.integers(len(_TEXTS)))]) + ld(2, _TEXTS[int(rng.integers(len(_TEXTS)))]))
            inner = tag(1, 0) + varint(16000) + ld(sub, egress)
        else:
            inner = _random_fields(rng, 1, 2)
        out += ld(member, inner)
    if rng.random() < 0.3:
        out += _random_fields(rng, 0, 1, 3)
    return bytes(out)


def mutated(rng: np.random.Generator) -> bytes:
    base = bytearray(_SEEDS[int(rng.integers(len(_SEEDS)))])
    kind = int(rng.integers(0, 4))
    if kind == 0:  # flip bits
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(base)))
            base[i] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # overwrite a byte with a varint-significant value
        i = int(rng.integers(len(base)))
        base[i] = int(rng.choice([0x00, 0x7F, 0x80, 0xFF, 0x0A, 0x0B, 0x0C, 0x0F, 0xC0, 0xED]))
    elif kind == 2:  # truncate
        base = base[: int(rng.integers(len(base) + 1))]
    else:  # splice two messages
        other = _SEEDS[int(rng.integers(len(_SEEDS)))]
        base = base[: int(rng.integers(len(base) + 1))] + other[int(rng.integers(len(other) + 1)) :]
    return bytes(base)


def input_at(seed: int, index: int) -> tuple[str, bytes]:
    """Input ``index`` of ``seed`` and its kind, independent of every other index."""
    rng = np.random.default_rng([seed, index])
    kind = index % 5
    if kind == 0:
        return "random", rng.bytes(int(rng.integers(0, 64)))
    if kind in (1, 2):
        return "structured", structured(rng)
    return "mutated", mutated(rng)


# ----------------------------------------------------------------------------- the comparison

_ANIMATION_MEMBER = pb.Message.DESCRIPTOR.fields_by_name["server_response_animation"].number


def _protobuf(fn, *args):
    try:
        return True, fn(*args)
    except Exception as exc:  # DecodeError, or the twin's ValueError on Flame lengths
        return False, exc


def _ours(fn, *args):
    try:
        return True, fn(*args)
    except ValueError as exc:  # anything else propagates: a bug
        return False, exc


def compare(data: bytes) -> str:
    """Decode ``data`` every way and with protobuf; return the outcome or raise AssertionError."""
    pb_ok, want = _protobuf(ref.decode_message, data)
    ok, got = _ours(_wire.decode_message, data)
    assert ok == pb_ok, f"decode_message {'accepts' if ok else 'rejects'} what protobuf {'rejects' if ok else 'accepts'}: {got if not ok else want}"
    batch_ok, batch = _ours(_flame.decode_animation_batch, [data])
    pb_batch_ok, pb_batch = _protobuf(ref.decode_animation_batch, [data])
    assert batch_ok == pb_batch_ok, f"decode_animation_batch: ours {batch_ok}, protobuf {pb_batch_ok}: {batch if not batch_ok else pb_batch}"
    if not ok:
        return "rejected"
    for key, value in want.items():
        assert getattr(got, key) == value, (key, getattr(got, key), value)
    if batch_ok:
        np.testing.assert_array_equal(batch, pb_batch)
    if got.data_field == _ANIMATION_MEMBER:
        payload_ok, kf = _protobuf(ref.decode_animation, got.animation)
        assert (got.animation_error is None) == payload_ok, (got.animation_error, kf)
        ours_ok, ours_kf = _ours(_flame.decode_animation, got.animation)
        assert ours_ok == payload_ok
        if payload_ok:
            np.testing.assert_array_equal(got.keyframes, kf)
            np.testing.assert_array_equal(ours_kf, kf)
            return "animation"
        return "bad payload"
    return "accepted"


def run(seed: int, count: int, start: int = 0, progress: bool = False) -> Counter:
    """Check inputs ``start .. start + count - 1`` of ``seed``; AssertionError names the failing one."""
    outcomes: Counter = Counter()
    t0 = time.monotonic()
    for index in range(start, start + count):
        kind, data = input_at(seed, index)
        try:
            outcome = compare(data)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed} index {index} ({kind}, {data!r}): {exc}") from None
        outcomes[kind, outcome] += 1
        if progress and (index + 1 - start) % 100_000 == 0:
            print(f"{index + 1 - start:>9,} inputs, {time.monotonic() - t0:6.0f} s", file=sys.stderr, flush=True)
    return outcomes


# ----------------------------------------------------------------------------- Ogg Opus mode

_OPUS_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
_FRAME_48K = (480, 960, 1920, 2880) * 3 + (480, 960) * 2 + (120, 240, 480, 960) * 4


def _ogg_page(serial: int, sequence: int, granule: int, flags: int, segments: bytes, lacing: bytes) -> bytes:
    import struct

    from avatar_nb.opus import ogg_crc

    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, sequence, 0, len(lacing))
    page = bytearray(header + lacing + segments)
    struct.pack_into("<I", page, 22, ogg_crc(page))
    return bytes(page)


def _lace(packets: list[bytes]) -> list[tuple[bytes, bytes, bool]]:
    """Packets as Ogg pages' (lacing, body, continued) of at most 255 segments each."""
    segments: list[bytes] = []
    for packet in packets:
        segments += [packet[i : i + 255] for i in range(0, len(packet) - len(packet) % 255, 255)]
        segments.append(packet[len(packet) - len(packet) % 255 :])
    pages, continued = [], False
    for start in range(0, len(segments), 255):
        chunk = segments[start : start + 255]
        pages.append((bytes(len(s) for s in chunk), b"".join(chunk), continued))
        continued = len(chunk[-1]) == 255
    return pages


def opus_head(channels: int = 1, mapping: int = 0, table: bytes = b"", version: int = 1, pre_skip: int = 312) -> bytes:
    import struct

    return b"OpusHead" + struct.pack("<BBHIhB", version, channels, pre_skip, 48000, 0, mapping) + table


_OPUS_TAGS = b"OpusTags" + (4).to_bytes(4, "little") + b"fuzz" + (0).to_bytes(4, "little")


def ogg_stream(packets: list[bytes], head: bytes | None = None, *, serial: int = 1, per_page: int = 8) -> bytes:
    """An Ogg Opus stream (head, tags, the packets ``per_page`` to a page, the last page
    marking the end with the granule the TOCs declare)."""
    from avatar_nb.opus import opus_packet_samples

    out = bytearray()
    sequence = 0
    granule = 0
    groups = [[head or opus_head()], [_OPUS_TAGS]] + [packets[i : i + per_page] for i in range(0, len(packets), per_page)]
    for g, group in enumerate(groups):
        if g >= 2:
            for packet in group:
                try:
                    granule += opus_packet_samples(packet)
                except ValueError:
                    pass
        pages = _lace(group)
        for p, (lacing, body, continued) in enumerate(pages):
            flags = (0x02 if g == 0 and p == 0 else 0) | (0x01 if continued else 0)
            if g == len(groups) - 1 and p == len(pages) - 1 and g >= 2:
                flags |= 0x04
            out += _ogg_page(serial, sequence, granule if g >= 2 else 0, flags, body, lacing)
            sequence += 1
    return bytes(out)


def opus_packet(rng: np.random.Generator) -> bytes:
    """An Opus packet of any TOC: every code, frame count, padding and length form."""
    config = int(rng.integers(32))
    code = int(rng.integers(4))
    toc = bytes([config << 3 | (int(rng.integers(2)) << 2) | code])

    def frame() -> bytes:
        return rng.bytes(int(rng.choice([0, 0, 1, 2, 3, 10, 40, 120, 251, 252, 300, 1275, 1276])))

    def length(n: int) -> bytes:  # RFC 6716 3.1: one byte below 252, else two
        return bytes([n]) if n < 252 else bytes([252 + (n - 252) % 4, (n - 252 - (n - 252) % 4) // 4 % 256])

    if code == 0:
        return toc + frame()
    if code == 1:
        f = frame()
        return toc + f + (f if rng.random() < 0.8 else frame())
    if code == 2:
        a, b = frame(), frame()
        return toc + length(len(a)) + a + b
    count = int(rng.choice([0, 1, 2, 3, 6, 12, 24, 47, 48, 49, 63])) if rng.random() < 0.3 else int(rng.integers(1, 49))
    vbr, padded = rng.random() < 0.5, rng.random() < 0.4
    out = bytearray(toc + bytes([vbr << 7 | padded << 6 | count]))
    pad = 0
    if padded:  # 255 means 254 bytes and another length byte
        pad = int(rng.choice([0, 1, 254, 255, 300, 600]))
        left = pad
        while left >= 255:
            out.append(255)
            left -= 254
        out.append(left)
    frames = [frame() for _ in range(min(count, 48))]
    if vbr:
        for f in frames[:-1]:
            out += length(len(f))
        out += b"".join(frames)
    else:
        size = len(frames[0]) if frames else 0
        out += b"".join(f[:size].ljust(size, b"\0") for f in frames)
    out += bytes(pad) if rng.random() < 0.9 else bytes(max(0, pad - 1))
    if rng.random() < 0.05:
        out = out[: int(rng.integers(1, len(out) + 1))]
    return bytes(out)


def opus_head_variant(rng: np.random.Generator) -> bytes:
    channels = int(rng.choice([0, 1, 2, 3, 6, 8, 9, 255])) if rng.random() < 0.7 else int(rng.integers(256))
    mapping = int(rng.choice([0, 1, 2, 255]))
    table = b""
    if mapping and rng.random() < 0.9:
        streams = int(rng.integers(1, max(2, channels + 1)))
        coupled = int(rng.integers(0, streams + 1))
        table = bytes([streams, coupled]) + bytes(min(255, int(rng.integers(streams + coupled))) if rng.random() < 0.95 else 255 for _ in range(channels))
    version = int(rng.choice([1, 1, 1, 0, 15, 16, 255]))
    head = opus_head(channels, mapping, table, version, int(rng.choice([0, 312, 3840, 65535])))
    if rng.random() < 0.05:
        head = head[: int(rng.integers(len(head) + 1))]
    return head


def _speech_packets() -> list[list[bytes]]:
    from avatar_nb import _pcm, audio
    from avatar_nb.opus import OggOpusEncoder

    out = []
    for rate, bitrate in ((16000, 0), (24000, 6000), (48000, 64000)):
        encoder = OggOpusEncoder(rate, bitrate)
        out.append(encoder.encode(_pcm.to_s16le(audio.speech_like(0.4, rate, seed=rate))) + encoder.flush())
    return out


_OPUS_SEEDS: list[bytes] = []


def opus_input_at(seed: int, index: int) -> tuple[str, bytes, int, list[int], int | None]:
    """Input ``index`` of ``seed`` for the Ogg Opus mode: (kind, stream, rate, cuts, budget)."""
    if not _OPUS_SEEDS:
        _OPUS_SEEDS.extend(_speech_packets())
    rng = np.random.default_rng([seed, index, 0x0995])
    kind = index % 6
    if kind in (0, 1):
        name = "packets"
        packets = [opus_packet(rng) for _ in range(int(rng.integers(1, 12)))]
        if rng.random() < 0.05:  # the bomb: many 2-byte 120 ms packets
            packets += [bytes([3 << 3 | 3, 2])] * int(rng.integers(1, 300))
        data = ogg_stream(packets, per_page=int(rng.choice([1, 4, 8, 255])))
    elif kind == 2:
        name = "head"
        data = ogg_stream([opus_packet(rng) for _ in range(int(rng.integers(1, 4)))], opus_head_variant(rng))
    elif kind in (3, 4):
        name = "mutated"
        base = bytearray(_OPUS_SEEDS[int(rng.integers(len(_OPUS_SEEDS)))])
        for _ in range(int(rng.integers(1, 4))):
            op = int(rng.integers(4)) if base else 3  # an empty stream can only be spliced
            if op == 0:
                i = int(rng.integers(len(base)))
                base[i] ^= 1 << int(rng.integers(8))
            elif op == 1:
                i = int(rng.integers(len(base)))
                base[i] = int(rng.choice([0x00, 0x01, 0x02, 0x03, 0x04, 0x1B, 0x7F, 0x80, 0xFC, 0xFF]))
            elif op == 2:
                base = base[: int(rng.integers(len(base) + 1))]
            else:
                other = _OPUS_SEEDS[int(rng.integers(len(_OPUS_SEEDS)))]
                base = base[: int(rng.integers(len(base) + 1))] + other[int(rng.integers(len(other) + 1)) :]
        if rng.random() < 0.7:  # fix the checksums so the mutation reaches the packets
            base = bytearray(_fix_crcs(bytes(base)))
        data = bytes(base)
        name += "+crc" if data and _fix_crcs(data) == data else ""
    else:
        name = "random"
        data = b"OggS" + rng.bytes(int(rng.integers(0, 200))) if rng.random() < 0.7 else rng.bytes(int(rng.integers(0, 200)))
    rate = int(rng.choice(_OPUS_RATES))
    cuts = sorted(int(c) for c in rng.integers(0, len(data) + 1, int(rng.integers(0, 4))))
    budget = int(rng.integers(0, 200_000)) if rng.random() < 0.2 else None
    return name, data, rate, cuts, budget


def _fix_crcs(data: bytes) -> bytes:
    """``data`` with the checksum of every whole page it starts with recomputed."""
    import struct

    from avatar_nb.opus import ogg_crc

    out = bytearray(data)
    pos = 0
    while pos + 27 <= len(out) and out[pos : pos + 4] == b"OggS":
        n = out[pos + 26]
        if pos + 27 + n > len(out):
            break
        size = 27 + n + sum(out[pos + 27 : pos + 27 + n])
        if pos + size > len(out):
            break
        page = bytearray(out[pos : pos + size])
        struct.pack_into("<I", page, 22, 0)
        struct.pack_into("<I", out, pos + 22, ogg_crc(page))
        pos += size
    return bytes(out)


def _declared_samples(data: bytes) -> int:
    """The 48 kHz samples the Opus packets of ``data`` declare (valid TOCs only), an upper
    bound of what a decoder may make; packets are taken from the lacing of whole pages."""
    from avatar_nb.opus import opus_packet_samples

    total, pos, packet = 0, 0, bytearray()
    while pos + 27 <= len(data) and data[pos : pos + 4] == b"OggS":
        n = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + n]
        body = pos + 27 + n
        for value in lacing:
            packet += data[body : body + value]
            body += value
            if value < 255:
                try:
                    total += opus_packet_samples(packet) if packet else 0
                except ValueError:
                    pass
                packet = bytearray()
        pos = body
    return total


def check_opus(data: bytes, rate: int, cuts: list[int], budget: int | None) -> str:
    """Decode ``data`` fed in pieces cut at ``cuts``; the outcome, or AssertionError."""
    from avatar_nb.opus import MAX_SAMPLES_PER_BYTE, OggOpusDecoder, OggOpusError, OggOpusLimitError

    decoder = OggOpusDecoder(rate)
    if budget is not None:
        decoder.budget, decoder.budget_name = budget, "the fuzz budget"
    made = 0
    bounds = [0, *cuts, len(data)]
    outcome = "decoded"
    try:
        for a, b in itertools.pairwise(bounds):
            for pcm in decoder.feed_slices(data[a:b]):
                assert len(pcm) % 2 == 0
                made += len(pcm) // 2
        made += len(decoder.finish()) // 2
    except OggOpusLimitError:
        outcome = "over budget"
    except OggOpusError:
        outcome = "rejected"
    # the resampler may hold a few samples and give them back at the end: 64 of slack
    ceiling = _declared_samples(data) * rate // 48000 + 64
    assert made <= ceiling, f"{made} samples at {rate} Hz, more than the {ceiling} the packets declare"
    assert made <= MAX_SAMPLES_PER_BYTE * len(data) * rate // 48000 + 64, f"{made} samples from {len(data)} bytes"
    if budget is not None:
        assert made <= budget * rate // 48000 + 64, f"{made} samples at {rate} Hz beyond a budget of {budget} at 48 kHz"
    return outcome if made or outcome != "decoded" else "decoded nothing"


def run_opus(seed: int, count: int, start: int = 0, progress: bool = False) -> Counter:
    """Check Ogg Opus inputs ``start .. start + count - 1`` of ``seed``."""
    outcomes: Counter = Counter()
    t0 = time.monotonic()
    try:
        _run_opus(seed, start, count, outcomes, t0, progress)
    except KeyboardInterrupt:  # stopped by hand: what was checked so far still counts
        print(f"interrupted after {sum(outcomes.values()):,} inputs (from index {start})", file=sys.stderr)
    return outcomes


def _run_opus(seed: int, start: int, count: int, outcomes: Counter, t0: float, progress: bool) -> None:
    for index in range(start, start + count):
        kind, data, rate, cuts, budget = opus_input_at(seed, index)
        try:
            outcome = check_opus(data, rate, cuts, budget)
        except AssertionError as exc:
            raise AssertionError(f"opus seed {seed} index {index} ({kind}): {exc}") from None
        except Exception as exc:  # anything but OggOpusError is a bug
            raise AssertionError(f"opus seed {seed} index {index} ({kind}): {type(exc).__name__}: {exc}") from exc
        outcomes[kind, outcome] += 1
        if progress and (index + 1 - start) % 10_000 == 0:
            elapsed = time.monotonic() - t0
            print(f"{index + 1 - start:>9,} inputs, {elapsed:6.0f} s, {(index + 1 - start) / elapsed:.0f}/s", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("protobuf", "opus"), default="protobuf")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=int(time.strftime("%Y%m%d")))
    parser.add_argument("--start", type=int, default=0, help="first index (to resume or split a run)")
    parser.add_argument("--show", type=int, help="print input SHOW of the seed and check it alone")
    args = parser.parse_args()
    if args.mode == "opus":
        if args.show is not None:
            kind, data, rate, cuts, budget = opus_input_at(args.seed, args.show)
            print(kind, rate, cuts, budget, data.hex())
            print(check_opus(data, rate, cuts, budget))
            return
        t0 = time.monotonic()
        outcomes = run_opus(args.seed, args.count, args.start, progress=True)
        done = sum(outcomes.values())
        print(f"opus seed {args.seed}: {done:,} inputs (indices {args.start:,}..{args.start + done - 1:,}) "
              f"in {time.monotonic() - t0:.0f} s, every bound held")
        for (kind, outcome), n in sorted(outcomes.items()):
            print(f"  {kind:12s} {outcome:16s} {n:>9,}")
        return
    if args.show is not None:
        kind, data = input_at(args.seed, args.show)
        print(kind, data.hex())
        print(compare(data))
        return
    t0 = time.monotonic()
    outcomes = run(args.seed, args.count, args.start, progress=True)
    print(f"seed {args.seed}: {args.count:,} inputs in {time.monotonic() - t0:.0f} s, no disagreement with protobuf")
    for (kind, outcome), n in sorted(outcomes.items()):
        print(f"  {kind:11s} {outcome:12s} {n:>9,}")


if __name__ == "__main__":
    main()
