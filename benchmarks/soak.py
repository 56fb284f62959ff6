"""Soak: many concurrent real-time sessions for minutes against the local service.

The service runs alone in its own process (``realtime=True``, 80 ms latency, default
settings otherwise); load generators in other processes open ``--sessions`` sessions
over loopback WebSockets, and each streams speech-like 16 kHz audio at real-time pace,
in 40 ms chunks, as back-to-back utterances of ``--utterance`` seconds, for
``--minutes``. Each session checks every keyframe it receives against the keyframes
the service's animator makes from the same audio (the animation is deterministic: same
audio, same seed), in order, so a keyframe lost, duplicated, reordered or sent for the
wrong request shows up as a mismatch. The service's resident memory (RSS) is sampled
every few seconds.

Report: keyframes expected, received, matched and lost (target 0), errors; the
service's RSS after warm-up (the baseline, same run) and at the end, their ratio, and
the slope of a line fitted to the samples after warm-up (target: flat).

    python benchmarks/soak.py                          # 100 sessions, 10 minutes
    python benchmarks/soak.py --sessions 20 --minutes 1
    nice python benchmarks/soak.py > soak.txt          # beside other work

Every connection goes to 127.0.0.1 only; the run stops by itself after ``--minutes``
plus a grace period.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import sys
import time

import numpy as np

from avatar_nb.pacing import DEFAULT_CHUNK_MS, chunk_bytes

RATE = 16000
CHUNK_MS = DEFAULT_CHUNK_MS  # the chunk stream() sends
CHUNK_BYTES = chunk_bytes(CHUNK_MS, RATE)
LATENCY_MS = 80.0  # the service's


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc; psutil elsewhere)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return psutil.Process(pid).memory_info().rss


# ----------------------------------------------------------------------------- the service process


def service_process(conn) -> None:
    """Run a LocalService until the parent says stop; send its address and a token first."""
    _raise_fd_limit()
    from avatar_nb.server import LocalService

    async def main() -> None:
        async with LocalService(realtime=True, latency_ms=LATENCY_MS) as svc:
            token = svc.issue_token(expire_at=time.time() + 24 * 3600)
            conn.send(
                dict(
                    ingress=svc.ingress_url, app_id=svc.app_id, avatar_id=svc.avatar_id, token=token
                )
            )
            loop = asyncio.get_running_loop()
            while True:
                command = await loop.run_in_executor(None, conn.recv)
                if command == "stop":
                    break
                conn.send(svc.stats)

    asyncio.run(main())


# ----------------------------------------------------------------------------- the load generator


def _clip(seconds: float):
    from avatar_nb import _pcm
    from avatar_nb.audio import speech_like

    return _pcm.to_s16le(speech_like(seconds, RATE, seed=21))


def _expected(clip: bytes, utterances: int) -> list[np.ndarray]:
    """The keyframes of each utterance, as the service's animator makes them (same seed,
    one stream across utterances)."""
    from avatar_nb.server import Animator

    animator = Animator(RATE)
    return [np.concatenate([animator.feed(clip), animator.finish()]) for _ in range(utterances)]


async def _run_sessions(
    target: dict, first: int, n: int, n_total: int, seconds: float, utterance: float
) -> dict:
    import aiohttp

    from avatar_nb import _wire
    from avatar_nb.http_api import websocket_target
    from avatar_nb.protocol import MessageType, build_configure_session

    clip = _clip(utterance)
    utterances = max(1, int(np.ceil(seconds / utterance)))
    expected = _expected(clip, utterances)
    url, headers = websocket_target(
        target["ingress"],
        target["avatar_id"],
        app_id=target["app_id"],
        session_token=target["token"],
    )
    loop = asyncio.get_running_loop()
    stats = dict(
        expected=sum(e.shape[0] for e in expected) * n,
        received=0,
        matched=0,
        mismatched=0,
        errors=[],
    )
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    start_at = loop.time() + 1.0

    async def session(i: int) -> None:
        ws = await http.ws_connect(url, headers=headers, max_msg_size=0)
        try:
            await ws.send_bytes(build_configure_session(RATE))
            confirm = _wire.decode_message(await ws.receive_bytes(timeout=30))
            if confirm.type != MessageType.SERVER_CONFIRM_SESSION:
                raise RuntimeError(f"handshake refused: {confirm.error_message}")
            req_ids = [f"20260101000000_s{first + i:04d}u{u:05d}" for u in range(utterances)]

            async def receive() -> None:
                u, row = 0, 0  # the utterance and keyframe expected next
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        stats["errors"].append(f"session {first + i}: {msg.type!r}")
                        return
                    decoded = _wire.decode_message(msg.data)
                    if decoded.type == MessageType.SERVER_ERROR:
                        stats["errors"].append(f"session {first + i}: {decoded.error_message}")
                        continue
                    got = decoded.keyframes
                    stats["received"] += got.shape[0]
                    if u >= utterances or decoded.req_id != req_ids[u]:
                        stats["mismatched"] += got.shape[0]
                        continue
                    want = expected[u][row : row + got.shape[0]]
                    if want.shape == got.shape and np.array_equal(want, got):
                        stats["matched"] += got.shape[0]
                    else:
                        stats["mismatched"] += got.shape[0]
                    row += got.shape[0]
                    if decoded.end:
                        u, row = u + 1, 0
                        if u == utterances:
                            return

            reader = loop.create_task(receive())
            # sessions spread evenly over the chunk period, as independent users would be
            t = start_at + (first + i) / n_total * CHUNK_MS / 1000.0
            for u in range(utterances):
                for message in _wire.encode_audio_messages(clip, req_ids[u], CHUNK_BYTES, end=True):
                    delay = t - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await ws.send_bytes(message)
                    t += CHUNK_MS / 1000.0
            await asyncio.wait_for(reader, 60)
        except Exception as exc:  # reported, the run goes on
            stats["errors"].append(f"session {first + i}: {type(exc).__name__}: {exc}")
        finally:
            await ws.close()

    try:
        await asyncio.gather(*(session(i) for i in range(n)))
    finally:
        await http.close()
    return stats


def client_process(conn, target, first, n, n_total, seconds, utterance) -> None:
    _raise_fd_limit()
    conn.send(asyncio.run(_run_sessions(target, first, n, n_total, seconds, utterance)))


# ----------------------------------------------------------------------------- the run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--utterance", type=float, default=8.0, help="seconds of audio per request")
    parser.add_argument("--workers", type=int, default=2, help="load generator processes")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument(
        "--warmup", type=float, default=60.0, help="seconds before the RSS baseline"
    )
    args = parser.parse_args(argv)
    seconds = args.minutes * 60.0
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    service = ctx.Process(target=service_process, args=(child,), daemon=True)
    service.start()
    try:
        if not parent.poll(60):
            raise TimeoutError("the service did not start")
        target = parent.recv()
        split = np.array_split(np.arange(args.sessions), max(1, min(args.workers, args.sessions)))
        pipes, procs = [], []
        for part in split:
            a, b = ctx.Pipe()
            proc = ctx.Process(
                target=client_process,
                args=(b, target, int(part[0]), len(part), args.sessions, seconds, args.utterance),
                daemon=True,
            )
            proc.start()
            pipes.append(a)
            procs.append(proc)
        t0 = time.monotonic()
        samples: list[tuple[float, int]] = []
        deadline = t0 + seconds + 180
        while not all(p.poll() for p in pipes):
            if time.monotonic() > deadline:
                raise TimeoutError("the load generators did not finish in time")
            samples.append((time.monotonic() - t0, _rss_bytes(service.pid)))
            time.sleep(args.sample)
        samples.append((time.monotonic() - t0, _rss_bytes(service.pid)))
        results = [p.recv() for p in pipes]
        for proc in procs:
            proc.join(10)
        parent.send("stats")
        service_stats = parent.recv() if parent.poll(10) else {}
        parent.send("stop")
    finally:
        service.join(10)
        if service.is_alive():
            service.kill()

    expected = sum(r["expected"] for r in results)
    received = sum(r["received"] for r in results)
    matched = sum(r["matched"] for r in results)
    mismatched = sum(r["mismatched"] for r in results)
    errors = [e for r in results for e in r["errors"]]
    t = np.array([s for s, _ in samples])
    rss = np.array([b for _, b in samples]) / 2**20
    after = t >= args.warmup
    if after.sum() < 2:
        after = t >= t[len(t) // 2]
    base, end = rss[after][0], rss[-1]
    slope = np.polyfit(t[after], rss[after], 1)[0] * 60.0 if after.sum() >= 2 else float("nan")
    print(
        f"soak: {args.sessions} real-time sessions x {args.minutes:g} min, {args.utterance:g} s utterances, "
        f"{CHUNK_MS:g} ms chunks, service latency {LATENCY_MS:g} ms"
    )
    print(
        f"keyframes: expected {expected}, received {received}, matched in order {matched}, "
        f"mismatched {mismatched}, lost {expected - matched}"
    )
    print(f"errors: {len(errors)}" + "".join(f"\n  {e}" for e in errors[:10]))
    print(
        f"service RSS: start {rss[0]:.1f} MB, after {args.warmup:g} s warm-up {base:.1f} MB (baseline), "
        f"peak {rss.max():.1f} MB, end {end:.1f} MB; end / baseline = {end / base:.3f}; "
        f"slope after warm-up {slope:+.3f} MB/min"
    )
    half = t >= t[-1] / 2
    if half.sum() >= 2:
        late = np.polyfit(t[half], rss[half], 1)[0] * 60.0
        print(
            f"service RSS over the second half: {rss[half].min():.1f}..{rss[half].max():.1f} MB, "
            f"slope {late:+.3f} MB/min"
        )
    print("service stats: " + ", ".join(f"{k}={v}" for k, v in service_stats.items()))
    print("rss samples (s, MB): " + " ".join(f"{s:.0f}:{m:.1f}" for s, m in zip(t, rss)))
    return 0 if expected == matched and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
