"""Speed of the compiled core against its baselines, measured side by side in one run.

    python benchmarks/bench_pcm.py [--quick]

Each figure is the best of several repetitions (the machines are shared and noisy;
the best run is the least disturbed one), printed with the baseline's absolute speed
and the ratio. Baselines:
- to_s16le: ``(np.clip(x, -1, 1) * 32767).astype('<i2').tobytes()`` on float32;
- encode_audio_messages: one protobuf ``Message`` per 20 ms chunk, ``SerializeToString``;
- decode_animation_batch: protobuf parsing of each envelope and FlameAnimation, then
  numpy stacking (1 hour of 25 fps keyframes, E = 100, one keyframe per message);
- peak_envelope: numpy reshape + min/max (an hour, memory bound, and a minute, in cache).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from avatar_nb import _flame, _pcm, _reference as ref, _wire


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def row(name: str, ours: float, base: float, unit: str, amount: float, target: float) -> None:
    ratio = base / ours
    mark = "ok" if ratio >= target else "BELOW TARGET"
    print(
        f"{name:24s} avatar_nb {amount / ours:12,.1f} {unit}/s   baseline {amount / base:12,.1f} {unit}/s   "
        f"ratio {ratio:7.1f}x  (target {target:g}x: {mark})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repetitions")
    args = parser.parse_args()
    repeat = 3 if args.quick else 7
    rng = np.random.default_rng(0)

    # to_s16le: 60 s of 48 kHz float32 audio
    x = (rng.standard_normal(48000 * (10 if args.quick else 60)) * 0.3).astype(np.float32)
    assert _pcm.to_s16le(x)  # warm up
    ours = best(lambda: _pcm.to_s16le(x), repeat)
    base = best(lambda: ref.numpy_to_s16le(x), repeat)
    row("to_s16le", ours, base, "MB", x.nbytes / 1e6, 2)

    # encode_audio_messages: 10 min of 16 kHz audio in 20 ms chunks
    pcm = rng.integers(-3000, 3000, 16000 * (60 if args.quick else 600), dtype=np.int16).tobytes()
    chunk = 640
    req = "20261124120000_AbCdEfGhIjKl"
    ours = best(lambda: _wire.encode_audio_messages(pcm, req, chunk), repeat)
    base = best(lambda: ref.encode_audio_messages(pcm, req, chunk), max(2, repeat // 2))
    row("encode_audio_messages", ours, base, "msg", len(pcm) / chunk, 5)

    # decode_animation_batch: 1 hour at 25 fps, E = 100, one keyframe per message
    n = 25 * 3600 // (10 if args.quick else 1)
    kf = rng.standard_normal((n, 120)).astype(np.float32)
    messages = [
        _wire.encode_animation_message(kf[i : i + 1], connection_id="conn-1", req_id=req, end=False, avatar_id="av")
        for i in range(n)
    ]
    got = _flame.decode_animation_batch(messages)
    assert np.array_equal(got, kf)
    ours = best(lambda: _flame.decode_animation_batch(messages), repeat)
    base = best(lambda: ref.decode_animation_batch(messages), 2)
    row("decode_animation_batch", ours, base, "keyframes", n, 50)

    # peak_envelope into 2000 bins (a waveform's pixel columns): an hour of 16 kHz audio
    # (memory bound: one pass here, two for numpy's min then max), and a minute (a zoomed
    # window, in cache), as int16 and as float32
    scale = 10 if args.quick else 1
    hour_i16 = rng.integers(-32768, 32767, 16000 * 3600 // scale, dtype=np.int16)
    hour_f32 = (rng.standard_normal(16000 * 3600 // scale) * 0.3).astype(np.float32)
    for label, x in (
        ("peak_envelope 1h int16", hour_i16),
        ("peak_envelope 1h f32", hour_f32),
        ("peak_envelope 1min int16", hour_i16[: 16000 * 60].copy()),
        ("peak_envelope 1min f32", hour_f32[: 16000 * 60].copy()),
    ):
        r = repeat if x.shape[0] > 16000 * 60 else 5 * repeat
        ours = best(lambda: _pcm.peak_envelope(x, 2000), r)
        base = best(lambda: ref.numpy_peak_envelope(x, 2000), r)
        row(label, ours, base, "Msamples", x.shape[0] / 1e6, 3)

    # frame_features has no numpy one-liner baseline; its per-frame reference twin:
    minute = hour_i16[: 16000 * 60]
    ours = best(lambda: _pcm.frame_features(minute, 16000, 25), repeat)
    base = best(lambda: ref.frame_features(minute, 16000, 25), 1)
    row("frame_features", ours, base, "frames", 25 * 60, 1)


if __name__ == "__main__":
    main()
