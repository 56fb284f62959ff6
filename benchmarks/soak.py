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
    python benchmarks/soak.py --minutes 1 --neighbour  # beside a hostile client

Every good session also measures its keyframes' lateness: when each arrives, less
when the audio that completed its frame was sent and the service's latency (so 0 is
on time; the loopback and the service's work show as a few milliseconds). The report
gives its percentiles, the service's peak memory (VmHWM) and the longest stall of its
event loop (a task ticking every 10 ms in the service process measures how late each
tick runs) and the CPU time it used (user + system), which the machine's other load
disturbs less than lateness.

``--neighbour``: one more client, in its own process, sends the reproducers of hostile
Ogg Opus input in a loop for the whole run: a 50 KB message of pages of 2-byte packets
that each declare 120 ms (about 2,000 s of audio), then a stream whose OpusHead
declares 255 channels; it waits for each request's end before the next. Its requests,
the audio they decoded to and the errors it got are reported. Run once with and once
without it to compare the good sessions' lateness (target: p99 within 2x).

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


def _peak_rss_bytes() -> int:
    """This process's peak resident memory (VmHWM), 0 where /proc has none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


async def _tick(stalls: list[float], period: float = 0.01) -> None:
    """Sleep ``period`` again and again, noting how late each wake-up is (the loop's stalls)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period
        await asyncio.sleep(period)
        stalls.append(loop.time() - due)


def service_process(conn) -> None:
    """Run a LocalService until the parent says stop; send its address and a token first."""
    _raise_fd_limit()
    from avatar_nb.server import LocalService

    async def main() -> None:
        stalls: list[float] = []
        async with LocalService(realtime=True, latency_ms=LATENCY_MS) as svc:
            ticker = asyncio.get_running_loop().create_task(_tick(stalls))
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
                lag = np.array(stalls or [0.0]) * 1000.0
                conn.send(
                    dict(
                        svc.stats,
                        loop_stall_max_ms=round(float(lag.max()), 1),
                        loop_stall_p99_ms=round(float(np.percentile(lag, 99)), 1),
                        peak_rss_mb=round(_peak_rss_bytes() / 2**20, 1),
                        cpu_s=round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1),
                    )
                )
        ticker.cancel()

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
        lateness=[],  # seconds, one per keyframe
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
            sent: list[list[float]] = [[] for _ in range(utterances)]  # when each chunk left
            spf = RATE // 25  # samples of one frame at the animator's 25 fps

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
                    now = loop.time()
                    for r in range(row, row + got.shape[0]):
                        # the chunk whose audio completed frame r (the tail: the last one)
                        chunk = min(((r + 1) * spf - 1) // (CHUNK_BYTES // 2), len(clip) // CHUNK_BYTES)
                        if chunk < len(sent[u]):
                            stats["lateness"].append(now - sent[u][chunk] - LATENCY_MS / 1000.0)
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
                    sent[u].append(loop.time())
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


def hostile_streams() -> dict[str, bytes]:
    """The hostile Ogg Opus reproducers, framed with avatar_nb.opus's page writer."""
    import struct

    from avatar_nb import opus

    def head(channels: int, mapping: int, table: bytes = b"") -> bytes:
        return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, 312, 48000, 0, mapping) + table

    tags = b"OpusTags" + struct.pack("<I", 4) + b"soak" + struct.pack("<I", 0)

    def stream(first: bytes, pages: int, packets: list[bytes]) -> bytes:
        out = opus._page(9, 0, 0, 0x02, [first]) + opus._page(9, 1, 0, 0, [tags])
        for i in range(pages):
            granule = (i + 1) * len(packets) * 5760
            out += opus._page(9, 2 + i, granule, 0x04 if i == pages - 1 else 0, packets)
        return out

    bomb = bytes([3 << 3 | 3, 2])  # code 3, two empty 60 ms frames: 120 ms in 2 bytes
    # 255 streams of the same: 254 self-delimited (a frame length of 0 added), then the last
    wide = bytes([3 << 3 | 3, 2, 0]) * 254 + bomb
    return {
        "bomb": stream(head(1, 0), 64, [bomb] * 255),  # 50 KB, 1,958 s
        "255ch": stream(head(255, 255, bytes([255, 0]) + bytes(range(255))), 4, [wide]),  # 3.4 KB
    }


async def _run_neighbour(target: dict, seconds: float) -> dict:
    import aiohttp

    from avatar_nb import _wire
    from avatar_nb.http_api import websocket_target
    from avatar_nb.proto import message_pb2 as pb
    from avatar_nb.protocol import MessageType, build_configure_session

    streams = hostile_streams()
    url, headers = websocket_target(
        target["ingress"], target["avatar_id"], app_id=target["app_id"], session_token=target["token"]
    )
    loop = asyncio.get_running_loop()
    stats = dict(requests=0, keyframes=0, errors={}, failures=[], sizes={k: len(v) for k, v in streams.items()})
    deadline = loop.time() + 1.0 + seconds
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            try:
                async with http.ws_connect(url, headers=headers, max_msg_size=0) as ws:
                    await ws.send_bytes(build_configure_session(RATE, audio_format=pb.AUDIO_FORMAT_OGG_OPUS))
                    await ws.receive_bytes(timeout=30)
                    n = 0
                    while loop.time() < deadline:
                        for name, data in streams.items():
                            req_id = f"20260101000000_hostile{n:06d}"
                            n += 1
                            msg = pb.Message(type=pb.MESSAGE_CLIENT_AUDIO_INPUT)
                            msg.client_audio_input.req_id = req_id
                            msg.client_audio_input.audio = data
                            msg.client_audio_input.end = True
                            await ws.send_bytes(msg.SerializeToString())
                            stats["requests"] += 1
                            while True:
                                got = _wire.decode_message(await ws.receive_bytes(timeout=max(5.0, deadline - loop.time() + 5)))
                                if got.type == MessageType.SERVER_ERROR:
                                    key = f"{name}: code {got.error_code}: {got.error_message.split(': ')[-1]}"
                                    stats["errors"][key] = stats["errors"].get(key, 0) + 1
                                elif got.type == MessageType.SERVER_RESPONSE_ANIMATION:
                                    stats["keyframes"] += got.keyframes.shape[0]
                                    if got.end and got.req_id == req_id:
                                        break
            except Exception as exc:  # reported; a new connection is tried
                stats["failures"].append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1.0)
    return stats


def neighbour_process(conn, target, seconds) -> None:
    conn.send(asyncio.run(_run_neighbour(target, seconds)))


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
    parser.add_argument(
        "--neighbour", action="store_true", help="one more client sends hostile Ogg Opus in a loop"
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
        neighbour = None
        if args.neighbour:
            neighbour, b = ctx.Pipe()
            proc = ctx.Process(target=neighbour_process, args=(b, target, seconds), daemon=True)
            proc.start()
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
        hostile = neighbour.recv() if neighbour is not None and neighbour.poll(120) else None
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
    late = np.array([x for r in results for x in r["lateness"]]) * 1000.0
    if late.size:
        p50, p99, p999 = np.percentile(late, [50, 99, 99.9])
        print(
            f"good sessions' keyframe lateness ({late.size} keyframes): p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms, p99.9 {p999:.1f} ms, max {late.max():.1f} ms"
        )
    if args.neighbour:
        if hostile is None:
            print("hostile neighbour: no report")
        else:
            print(
                f"hostile neighbour: {hostile['requests']} requests (streams of "
                + ", ".join(f"{k} {v} bytes" for k, v in hostile["sizes"].items())
                + f"), decoded to {hostile['keyframes'] / 25:.0f} s of animation; errors: "
                + ("; ".join(f"{k} x{v}" for k, v in hostile["errors"].items()) or "none")
                + "".join(f"\n  failure: {f}" for f in hostile["failures"][:5])
            )
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
