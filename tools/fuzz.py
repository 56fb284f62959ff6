#!/usr/bin/env python3
"""Fuzz avatar_nb's decoders against protobuf: accept/reject and values must agree.

    .venv/bin/python tools/fuzz.py [--count 1000000] [--seed 20261128] [--start 0]
    .venv/bin/python tools/fuzz.py --seed S --show I     # reproduce input I of seed S

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
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=int(time.strftime("%Y%m%d")))
    parser.add_argument("--start", type=int, default=0, help="first index (to resume or split a run)")
    parser.add_argument("--show", type=int, help="print input SHOW of the seed and check it alone")
    args = parser.parse_args()
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
