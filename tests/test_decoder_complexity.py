"""Every decoder path is linear in its input: doubling an adversarial input about doubles the time.

One input per kind of repetition or nesting the decoders meet (repeated and merged
fields, oneof members replacing each other, unknown fields and groups, egress configs
and map entries, keyframes, floats, messages in a batch). Each is decoded at size k and
2k; the ratio of the best-of-N times must stay under 3.5 (linear gives about 2,
quadratic 4 and more). Ratios of times measured side by side in one run, never a
wall-clock threshold; the sizes make a quadratic path cost seconds while the linear
one takes milliseconds.
"""

from __future__ import annotations

import gc
import time

import numpy as np
import pytest

from avatar_nb import _flame, _wire

from .helpers import varint


def ld(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def group(field: int, inner: bytes = b"") -> bytes:
    return varint(field << 3 | 3) + inner + varint(field << 3 | 4)


ONE_KEYFRAME = _flame.encode_animation(np.ones((1, 30), np.float32))
FLOAT = b"\x00\x00\x80\x3f"


def flame_with(extra: bytes) -> bytes:
    """A valid one-keyframe payload whose keyframe carries ``extra`` fields too."""
    fixed = b"".join(ld(f, FLOAT * w) for f, w in ((1, 3), (2, 3), (3, 3), (4, 3), (5, 6), (6, 2)))
    return ld(1, fixed + extra)


# kind -> (function, input of size k)
ENVELOPE_KINDS = {
    # issue 11's reproducer: server_confirm_session repeated, one capability each (merged)
    "capabilities, member repeated": lambda k: b"\x08\x02" + ld(3, ld(2, b"a")) * k,
    "capabilities in one member": lambda k: ld(3, ld(2, b"a") * k),
    "oneof members alternating": lambda k: (ld(3, ld(2, b"a")) + ld(4, ld(1, b"r"))) * k,
    "string overwritten": lambda k: ld(4, ld(1, b"req") * k),
    "audio overwritten": lambda k: ld(4, ld(3, b"abcd") * k),
    "animation overwritten": lambda k: ld(6, ld(4, ONE_KEYFRAME) * k),
    "animation member repeated": lambda k: ld(6, ld(4, ONE_KEYFRAME)) * k,
    "unknown varint fields": lambda k: varint(100 << 3) + b"\x01" + (varint(100 << 3) + b"\x01") * k,
    "unknown fields in a member": lambda k: ld(5, (varint(99 << 3 | 5) + FLOAT) * k),
    "groups nested 100 deep": lambda k: b"".join([varint(20 << 3 | 3) * 100 + varint(20 << 3 | 4) * 100] * k),
    "one long group": lambda k: group(20, (varint(21 << 3) + b"\x01") * k),
    "livekit map entries": lambda k: ld(2, ld(6, ld(6, ld(1, b"k") + ld(2, b"v")) * k)),
    "livekit configs repeated": lambda k: ld(2, ld(6, ld(1, b"wss://x") + ld(4, b"room")) * k),
    "agora configs repeated": lambda k: ld(2, ld(7, ld(1, b"ch") + b"\x18\x07") * k),
    "egress strings": lambda k: ld(2, ld(6, ld(3, "sécret".encode() * k))),
}
PAYLOAD_KINDS = {
    "keyframes": lambda k: ONE_KEYFRAME * k,
    "unpacked expression floats": lambda k: flame_with((b"\x3d" + FLOAT) * k),
    "expression split in packed pieces": lambda k: flame_with(ld(7, FLOAT) * k),
    "unknown groups in a keyframe": lambda k: flame_with(group(30, b"\x08\x01") * k),
    "unknown fields between keyframes": lambda k: (ONE_KEYFRAME + varint(9 << 3) + b"\x01") * k,
}

# sizes: about 0.2-1 MB at 2k, a few ms to decode when linear
K = {name: 20_000 for name in [*ENVELOPE_KINDS, *PAYLOAD_KINDS]}
K.update({"groups nested 100 deep": 500, "animation overwritten": 5_000, "animation member repeated": 5_000,
          "keyframes": 5_000, "unknown fields between keyframes": 5_000, "egress strings": 50_000})


def _timed(fn, data, loops: int) -> float:
    # CPU time of this thread: time spent descheduled on a busy machine does not count
    t = time.thread_time()
    for _ in range(loops):
        fn(data)
    return time.thread_time() - t


def ratio_of_doubling(fn, make, k: int, repeat: int = 15, bound: float = 3.5) -> float:
    """min time at 2k / min time at k, over up to ``repeat`` interleaved rounds (stops
    early once the ratio is under ``bound``: more rounds only lower a best-of ratio)."""
    small, big = make(k), make(2 * k)
    # enough calls per timing that the smaller input takes a few milliseconds: a
    # sub-millisecond timing is mostly noise
    loops = max(1, int(0.003 / max(_timed(fn, small, 1), 1e-6)))
    _timed(fn, big, 1)  # warm up
    best_small = best_big = float("inf")
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection's cost grows with the heap, not with this decoder
    try:
        for round_ in range(repeat):  # interleaved, so a busy moment hits both sizes alike
            best_small = min(best_small, _timed(fn, small, loops))
            best_big = min(best_big, _timed(fn, big, loops))
            if round_ >= 2 and best_big / best_small < bound:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return best_big / best_small


@pytest.mark.parametrize("kind", list(ENVELOPE_KINDS))
def test_decode_message_is_linear(kind):
    make = ENVELOPE_KINDS[kind]
    _wire.decode_message(make(3))  # well formed: the time measured is decoding, not an early error
    assert ratio_of_doubling(_wire.decode_message, make, K[kind]) < 3.5


@pytest.mark.parametrize("kind", list(ENVELOPE_KINDS))
def test_decode_animation_batch_is_linear_in_an_envelope(kind):
    make = ENVELOPE_KINDS[kind]
    assert ratio_of_doubling(lambda d: _flame.decode_animation_batch([d]), make, K[kind]) < 3.5


@pytest.mark.parametrize("kind", list(PAYLOAD_KINDS))
def test_decode_animation_is_linear(kind):
    make = PAYLOAD_KINDS[kind]
    _flame.decode_animation(make(3))
    assert ratio_of_doubling(_flame.decode_animation, make, K[kind]) < 3.5


def test_decode_animation_batch_is_linear_in_messages():
    message = _wire.encode_animation_message(np.ones((1, 70), np.float32), req_id="r")
    assert ratio_of_doubling(_flame.decode_animation_batch, lambda k: [message] * k, 20_000) < 3.5


def test_the_ratio_would_catch_quadratic_work():
    """The measurement itself: a deliberately quadratic function gives a ratio near 4."""

    def quadratic(data: bytes) -> None:
        items = []
        for i in range(0, len(data), 8):
            items = items + [i]  # copies the list each time

    assert ratio_of_doubling(quadratic, lambda k: b"x" * (8 * k), 3_000, bound=0) > 3.0
