"""Fuzzing the decoder: random, truncated and bit-flipped messages raise ValueError, nothing else.

Each run feeds at least 100,000 inputs (seeded by the run's date, so different days
explore different inputs, and a failure names its seed). Every input goes through
``decode_message``; envelopes that parse also go through ``decode_animation_batch``,
and animation payloads through ``decode_animation``. A read past the end of a buffer
would show as a crash under the checked build (bounds checks + AddressSanitizer, see
tests/README.md), as a wrong result against protobuf in the property tests, or as an
exception other than ValueError here.
"""

from __future__ import annotations

import datetime
import os

import numpy as np

from avatar_nb import _flame, _reference as ref, _wire
from avatar_nb.proto import message_pb2 as pb

N_INPUTS = int(os.environ.get("AVATAR_NB_FUZZ_INPUTS", "100000"))
SEED = int(os.environ.get("AVATAR_NB_FUZZ_SEED", datetime.date.today().strftime("%Y%m%d")))


def seeds(rng: np.random.Generator) -> list[bytes]:
    """Valid messages of every kind, the starting points of the mutations."""
    out = [
        _wire.encode_animation_message(
            rng.standard_normal((k, 20 + e)).astype(np.float32), connection_id="conn", req_id="req", end=bool(k % 2),
            avatar_id="av",
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
    cfg.client_configure_session.livekit_egress.extra_attributes["k"] = "v"
    state = pb.Message(type=10)
    state.server_playback_state.played_ms = -5
    # an animation whose Flames use unpacked floats
    unpacked = pb.Message(type=5)
    flame = b"".join(bytes([0x25]) + np.float32(v).tobytes() for v in range(3))  # field 4, wire type 5
    unpacked.server_response_animation.animation = b"\x0a" + bytes([len(flame)]) + flame
    out += [m.SerializeToString() for m in (confirm, err, cfg, state, unpacked)]
    return out


def check(data: bytes) -> str:
    """Decode ``data`` every way; return 'ok' or 'ValueError'; anything else propagates."""
    try:
        msg = _wire.decode_message(data)
    except ValueError:
        return "ValueError"
    if msg.data_field == 6:
        try:
            _flame.decode_animation(msg.animation)
        except ValueError:
            assert msg.animation_error is not None
        else:
            assert msg.animation_error is None
    try:
        _flame.decode_animation_batch([data])
    except ValueError:
        pass
    return "ok"


def test_fuzz_decoder_only_raises_value_error():
    rng = np.random.default_rng(SEED)
    pool = seeds(rng)
    outcomes = {"ok": 0, "ValueError": 0}
    count = 0
    # every truncation of every seed
    for seed in pool:
        for cut in range(len(seed)):
            outcomes[check(seed[:cut])] += 1
            count += 1
    while count < N_INPUTS:
        kind = rng.integers(0, 4)
        if kind == 0:  # random bytes
            data = rng.integers(0, 256, int(rng.integers(0, 64)), dtype=np.uint8).tobytes()
        else:
            base = bytearray(pool[int(rng.integers(len(pool)))])
            if kind == 1:  # flip bits
                for _ in range(int(rng.integers(1, 4))):
                    i = int(rng.integers(len(base)))
                    base[i] ^= 1 << int(rng.integers(8))
            elif kind == 2:  # overwrite a byte with a varint-significant value
                i = int(rng.integers(len(base)))
                base[i] = int(rng.choice([0x00, 0x7F, 0x80, 0xFF, 0x0A, 0x0B, 0x0F]))
            else:  # splice two seeds
                other = pool[int(rng.integers(len(pool)))]
                base = base[: int(rng.integers(len(base) + 1))] + other[int(rng.integers(len(other) + 1)) :]
            data = bytes(base)
        outcomes[check(data)] += 1
        count += 1
    assert count >= N_INPUTS
    # both outcomes happen: the mutations reach deep into valid structure, not only the first byte
    assert outcomes["ok"] > N_INPUTS // 20 and outcomes["ValueError"] > N_INPUTS // 20, (SEED, outcomes)


def test_fuzz_results_agree_with_protobuf_where_both_accept():
    """For mutated animation messages that both parsers accept, the keyframes are the same."""
    rng = np.random.default_rng(SEED + 1)
    pool = seeds(rng)[:4]
    agreed = 0
    for _ in range(3000):
        base = bytearray(pool[int(rng.integers(len(pool)))])
        i = int(rng.integers(len(base)))
        base[i] ^= 1 << int(rng.integers(8))
        data = bytes(base)
        try:
            want = ref.decode_animation_batch([data])
        except Exception:  # protobuf refuses it (or its Flame lengths are wrong)
            continue
        got = _flame.decode_animation_batch([data])
        # values equal, NaN matching NaN (protobuf's Python floats quiet a signalling NaN;
        # the compiled decoder copies the bits as they came)
        np.testing.assert_array_equal(got, want)
        agreed += 1
    assert agreed > 100
