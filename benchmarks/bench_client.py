"""Client CPU per audio hour: avatar_nb's client against avatarkit 0.1.7 and spatialreal 0.2.2, same service, same run.

    python benchmarks/bench_client.py [--minutes 60] [--chunk-ms 40] [--repeat 1] [--no-spatialreal] [--no-deflate]

The service is a stand-in run in its own process (``benchmarks/standin_service.py``:
token routes, handshake, deterministic keyframes at 25 fps, permessage-deflate accepted
as the hosted service accepts it; ``--no-deflate`` refuses it, the official clients'
cheapest condition), so only the client's CPU is counted
(``time.process_time`` of this process, which runs one client at a time). Every client
sends the same audio in the same chunks as fast as the connection takes it and waits for
the last animation frame. Two avatar_nb paths:
- ``send_audio`` per chunk, the seed's usage (the official clients' only path);
- ``stream()``, the whole clip in one call;
both decode every keyframe into the Timeline inside the timed part. avatarkit and
spatialreal keep the frames as raw bytes (they do not decode); avatarkit offers
permessage-deflate, avatar_nb does not. Figures are CPU seconds per hour of audio and
the ratios of each avatar_nb path to each official client. ``--repeat`` runs the whole
set again (interleaved, so a busy machine weighs on every client alike) and reports
the smallest figure per client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from avatar_nb import _flame, _pcm, new_avatar_session, speech_like

STANDIN = Path(__file__).with_name("standin_service.py")


def start_service(deflate: bool) -> tuple[subprocess.Popen, dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, str(STANDIN), "--port", "0", *([] if deflate else ["--no-deflate"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    info: dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.match(r"\s+(\w+)\s+= (\S+)", line)
        if match:
            info[match.group(1)] = match.group(2)
        if "avatar_id" in info:
            break
    return proc, info


def audio(minutes: float) -> bytes:
    minute = _pcm.to_s16le(speech_like(60.0, 16000, seed=1))
    whole = int(minutes)
    rest = int((minutes - whole) * len(minute) / 2) * 2
    return minute * whole + minute[:rest]


def chunks(pcm: bytes, chunk_ms: float) -> list[bytes]:
    size = int(16000 * chunk_ms / 1000) * 2
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def _credentials(info: dict[str, str]) -> dict[str, str]:
    keys = ("api_key", "app_id", "avatar_id", "console_endpoint_url", "ingress_endpoint_url")
    return {k: info[k] for k in keys}


async def run_avatar_nb(info: dict[str, str], pcm: bytes, chunk_ms: float, per_chunk: bool) -> tuple[float, np.ndarray]:
    session = new_avatar_session(**_credentials(info))
    await session.init()
    await session.start()
    parts = chunks(pcm, chunk_ms)  # cut before the timed part, as for the official clients
    last = len(parts) - 1
    cpu = time.process_time()
    if per_chunk:
        for i, part in enumerate(parts):
            req = await session.send_audio(part, end=i == last)
    else:
        req = await session.stream(pcm, chunk_ms=chunk_ms, realtime=False)
    await session.wait_for_end(req, timeout=3600)
    keyframes = session.timeline.keyframes  # the (n, 20 + E) array, built inside the timed part
    cpu = time.process_time() - cpu
    await session.close()
    return cpu, keyframes


async def run_official(module: str, info: dict[str, str], pcm: bytes, chunk_ms: float) -> tuple[float, np.ndarray]:
    client = __import__(module)
    frames: list[bytes] = []
    done = asyncio.Event()

    def on_frame(data: bytes, last: bool) -> None:
        frames.append(data)
        if last:
            done.set()

    session = client.new_avatar_session(
        **_credentials(info),
        expire_at=datetime.now(timezone.utc) + timedelta(hours=2),
        transport_frames=on_frame,
    )
    await session.init()
    await session.start()
    parts = chunks(pcm, chunk_ms)
    last = len(parts) - 1
    cpu = time.process_time()
    for i, part in enumerate(parts):
        await session.send_audio(part, end=i == last)
    await asyncio.wait_for(done.wait(), 3600)
    cpu = time.process_time() - cpu
    await session.close()
    keyframes = _flame.decode_animation_batch(frames)  # outside the timed part: a check only
    return cpu, keyframes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="audio sent by each client (default 60)")
    parser.add_argument("--chunk-ms", type=float, default=40.0)
    parser.add_argument("--repeat", type=int, default=1, help="run every client this many times, keep the least CPU")
    parser.add_argument("--no-spatialreal", action="store_true", help="leave spatialreal out")
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="the service refuses permessage-deflate: the official clients then skip compressing",
    )
    args = parser.parse_args()
    pcm = audio(args.minutes)
    hours = len(pcm) / 2 / 16000 / 3600
    runs: dict[str, Callable[[dict[str, str]], Awaitable[tuple[float, np.ndarray]]]] = {
        "avatar_nb send_audio": lambda info: run_avatar_nb(info, pcm, args.chunk_ms, per_chunk=True),
        "avatar_nb stream()": lambda info: run_avatar_nb(info, pcm, args.chunk_ms, per_chunk=False),
        "avatarkit 0.1.7": lambda info: run_official("avatarkit", info, pcm, args.chunk_ms),
    }
    if not args.no_spatialreal:
        runs["spatialreal 0.2.2"] = lambda info: run_official("spatialreal", info, pcm, args.chunk_ms)
    best: dict[str, float] = {}
    keyframes: dict[str, np.ndarray] = {}
    proc, info = start_service(not args.no_deflate)
    try:
        for _ in range(max(1, args.repeat)):
            for name, run in runs.items():
                cpu, kf = asyncio.run(run(info))
                best[name] = min(cpu, best.get(name, cpu))
                keyframes[name] = kf
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    first = keyframes["avatar_nb send_audio"]
    for name, kf in keyframes.items():
        assert kf.shape == first.shape, (name, kf.shape, first.shape)
    same = "identical" if all(np.array_equal(kf, first) for kf in keyframes.values()) else "same count"
    print(
        f"audio: {hours * 60:.1f} min at 16 kHz in {args.chunk_ms:g} ms chunks; "
        f"{first.shape[0]} keyframes (E={first.shape[1] - 20}) back to each client ({same}); "
        f"least of {max(1, args.repeat)} run(s); permessage-deflate {'refused' if args.no_deflate else 'accepted'}"
    )
    for name, cpu in best.items():
        note = "every keyframe decoded" if name.startswith("avatar_nb") else "raw bytes only"
        print(f"{name:<22} ({note:<22}) {cpu / hours:7.2f} CPU s per audio hour")
    for ours in ("avatar_nb send_audio", "avatar_nb stream()"):
        for theirs, their_cpu in best.items():
            if not theirs.startswith("avatar_nb"):
                ratio = best[ours] / their_cpu
                print(f"ratio {ours} / {theirs:<18} {ratio:5.2f}  (target <= 0.5)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
