"""Client CPU per audio hour: avatar_nb's client against avatarkit 0.1.7, same service, same run.

    python benchmarks/bench_client.py [--minutes 60] [--chunk-ms 40]

The local service runs in a separate process (``avatar-nb serve --fast``), so only
the client's CPU is counted (``time.process_time`` of this process, which runs one
client at a time). Both clients stream the same audio in the same chunks as fast as
the service takes it, and wait for the last animation frame:
- avatar_nb: ``AvatarSession.stream`` and decoding every keyframe into the Timeline;
- avatarkit: ``send_audio`` per chunk, frames kept as raw bytes (it does not decode).
The service accepts permessage-deflate, as the hosted one does; avatarkit offers it,
avatar_nb does not. Figures are CPU seconds per hour of audio and their ratio.
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
from datetime import datetime, timedelta, timezone

import numpy as np

from avatar_nb import _flame, _pcm, new_avatar_session, speech_like


def start_service() -> tuple[subprocess.Popen, dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "avatar_nb", "serve", "--fast", "--port", "0"],
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


async def run_avatar_nb(info: dict[str, str], pcm: bytes, chunk_ms: float) -> tuple[float, np.ndarray]:
    session = new_avatar_session(
        api_key=info["api_key"],
        app_id=info["app_id"],
        avatar_id=info["avatar_id"],
        console_endpoint_url=info["console_endpoint_url"],
        ingress_endpoint_url=info["ingress_endpoint_url"],
    )
    await session.init()
    await session.start()
    cpu = time.process_time()
    req = await session.stream(pcm, chunk_ms=chunk_ms, realtime=False)
    await session.wait_for_end(req, timeout=3600)
    keyframes = session.timeline.keyframes  # the (n, 20 + E) array, built inside the timed part
    cpu = time.process_time() - cpu
    await session.close()
    return cpu, keyframes


async def run_avatarkit(info: dict[str, str], pcm: bytes, chunk_ms: float) -> tuple[float, np.ndarray]:
    import avatarkit

    frames: list[bytes] = []
    done = asyncio.Event()

    def on_frame(data: bytes, last: bool) -> None:
        frames.append(data)
        if last:
            done.set()

    session = avatarkit.new_avatar_session(
        api_key=info["api_key"],
        app_id=info["app_id"],
        avatar_id=info["avatar_id"],
        console_endpoint_url=info["console_endpoint_url"],
        ingress_endpoint_url=info["ingress_endpoint_url"],
        expire_at=datetime.now(timezone.utc) + timedelta(hours=2),
        transport_frames=on_frame,
    )
    await session.init()
    await session.start()
    chunk = int(16000 * chunk_ms / 1000) * 2
    cpu = time.process_time()
    for i in range(0, len(pcm), chunk):
        await session.send_audio(pcm[i : i + chunk], end=i + chunk >= len(pcm))
    await asyncio.wait_for(done.wait(), 3600)
    cpu = time.process_time() - cpu
    await session.close()
    keyframes = _flame.decode_animation_batch(frames)  # outside the timed part: a check only
    return cpu, keyframes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="audio streamed by each client (default 60)")
    parser.add_argument("--chunk-ms", type=float, default=40.0)
    args = parser.parse_args()
    pcm = audio(args.minutes)
    hours = len(pcm) / 2 / 16000 / 3600
    proc, info = start_service()
    try:
        ours, kf_ours = asyncio.run(run_avatar_nb(info, pcm, args.chunk_ms))
        theirs, kf_theirs = asyncio.run(run_avatarkit(info, pcm, args.chunk_ms))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert kf_ours.shape == kf_theirs.shape, (kf_ours.shape, kf_theirs.shape)
    same = "identical" if np.array_equal(kf_ours, kf_theirs) else "same count"
    print(
        f"audio: {hours * 60:.1f} min at 16 kHz in {args.chunk_ms:g} ms chunks; "
        f"{kf_ours.shape[0]} keyframes (E={kf_ours.shape[1] - 20}) back to each client ({same})"
    )
    print(f"avatarkit 0.1.7 (raw bytes only)        {theirs / hours:7.2f} CPU s per audio hour")
    print(f"avatar_nb (every keyframe decoded)      {ours / hours:7.2f} CPU s per audio hour")
    print(f"ratio avatar_nb / avatarkit             {ours / theirs:7.2f}  (target <= 0.5)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
