"""How many concurrent real-time sessions the embedded LocalService keeps on time.

The service runs alone in one process; a load generator in other processes opens N
sessions over loopback WebSockets, and each streams one utterance of speech-like
16 kHz audio in 20 ms chunks at real-time pace (sessions are spread evenly over the
20 ms period, as independent users would be). The service promises each keyframe
``latency_ms`` after the audio of its whole frame arrived; a keyframe's lateness is
its arrival at the client minus that promise (the time the chunk completing its
frame was sent + ``latency_ms``). N rises step by step; the answer is the largest N
whose 99th-percentile lateness stays under one frame (40 ms at 25 fps).

Baseline (same run): N = 1, where the service is idle; each row prints its p99
against it, and the service's CPU (share of one core: Python runs the service on one
core) per session. Lateness measured at the client includes the load generator's own
delays, so the answer is a lower bound on what the service can do. Each row also
shows the service's event-loop lag (a 5 ms tick) and longest GC pause, and how busy
the whole machine was: on a shared machine, other work shows up there, and a level
that misses is run once more before it counts (``--tries``).

    python benchmarks/bench_service.py                 # default ladder, stops at the first miss
    python benchmarks/bench_service.py --levels 1,50,100 --seconds 4
    python benchmarks/bench_service.py --pin           # service on CPU 0, load generators on CPU 1
    python benchmarks/bench_service.py --deflate       # offer permessage-deflate, as official clients do
    python benchmarks/bench_service.py --profile 200   # cProfile of the service at N=200

Every connection goes to 127.0.0.1 only; each level is bounded in time (it stops by
itself after ``--seconds`` of audio plus a grace period).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import os
import resource
import sys
import time
from dataclasses import dataclass

import numpy as np

from avatar_nb.flame import DEFAULT_FPS

FPS = DEFAULT_FPS  # the LocalService's keyframe rate
RATE = 16000
CHUNK_MS = 20
CHUNK_SAMPLES = RATE * CHUNK_MS // 1000
FRAME_SAMPLES = int(RATE / FPS)
DEFAULT_LEVELS = "1,50,100,200,300,400,500,600,800,1000"


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; psutil elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return t.user + t.system


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (Linux /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle) / tick, sum(values) / tick


# ----------------------------------------------------------------------------- the service process


class LoopProbe:
    """What stalls the service's event loop: scheduling lag of a 5 ms tick, and GC pauses."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.gc_pauses: list[tuple[int, float]] = []
        self._gc_started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses.append((info["generation"], time.perf_counter() - self._gc_started))

    async def run(self) -> None:
        tick = 0.005
        while True:
            before = time.perf_counter()
            await asyncio.sleep(tick)
            self.lags.append(time.perf_counter() - before - tick)

    def report(self) -> dict:
        lags = np.array(self.lags) if self.lags else np.zeros(1)
        full = [p for g, p in self.gc_pauses if g == 2]
        out = dict(
            lag_p99=float(np.percentile(lags, 99)),
            lag_max=float(lags.max()),
            gc_count=len(self.gc_pauses),
            gc_max=max((p for _, p in self.gc_pauses), default=0.0),
            gc_full=len(full),
            gc_seconds=sum(p for _, p in self.gc_pauses),
        )
        self.lags.clear()
        self.gc_pauses.clear()
        return out


def _pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu % os.cpu_count()})


def service_process(conn, latency_ms: float, profile_path: str | None, cpu: int | None = None) -> None:
    """Run a LocalService until the parent says stop; send its address and a token first.

    Commands on ``conn``: ``"reset"`` clears the loop probe, ``"report"`` answers with
    its figures and the service's counters, ``"stop"`` ends the process.
    """
    _raise_fd_limit()
    _pin(cpu)
    from avatar_nb.server import LocalService

    async def main() -> None:
        svc = LocalService(realtime=True, latency_ms=latency_ms, idle_timeout=None)
        async with svc:
            gc.collect()  # as serve_forever does: startup objects never reach a full collection
            gc.freeze()
            probe = LoopProbe()
            monitor = asyncio.create_task(probe.run())
            token = svc.issue_token(expire_at=time.time() + 3600)
            conn.send(dict(ingress=svc.ingress_url, app_id=svc.app_id, avatar_id=svc.avatar_id, token=token))
            loop = asyncio.get_running_loop()
            while True:
                command = await loop.run_in_executor(None, conn.recv)
                if command == "stop":
                    break
                if command == "reset":
                    probe.report()
                elif command == "report":
                    conn.send(dict(probe.report(), **svc.stats))
            monitor.cancel()

    if profile_path:
        import cProfile

        cProfile.runctx("asyncio.run(main())", globals(), {"asyncio": asyncio, "main": main}, profile_path)
    else:
        asyncio.run(main())


# ----------------------------------------------------------------------------- the load generator


@dataclass
class WorkerResult:
    lateness: np.ndarray  # seconds, one per keyframe received
    stream_time: np.ndarray  # arrival of each keyframe since streaming started (s)
    keyframes_expected: int
    errors: list[str]
    cpu_seconds: float
    send_lag_p99: float  # how late the generator itself sent its chunks (s)


async def _run_sessions(conn, target: dict, n: int, first_index: int, n_total: int, seconds: float,
                        latency_ms: float) -> WorkerResult:
    """Open ``n`` sessions, tell the parent, stream from the start time it answers, measure."""
    import aiohttp

    from avatar_nb import _pcm, _wire
    from avatar_nb.audio import speech_like
    from avatar_nb.http_api import websocket_target
    from avatar_nb.protocol import MessageType, build_configure_session

    pcm = _pcm.to_s16le(speech_like(seconds, RATE, seed=3))
    n_samples = len(pcm) // 2
    chunks = _wire.encode_audio_messages(pcm, "20260101000000_bench0000000", CHUNK_SAMPLES * 2, end=True)
    n_chunks = len(chunks)
    n_frames = int(np.ceil(n_samples / FRAME_SAMPLES))
    # keyframe k is complete once sample (k+1)*FRAME_SAMPLES arrived: the chunk holding it
    completing_chunk = np.minimum(((np.arange(1, n_frames + 1) * FRAME_SAMPLES) - 1) // CHUNK_SAMPLES, n_chunks - 1)

    url, headers = websocket_target(target["ingress"], target["avatar_id"], app_id=target["app_id"],
                                    session_token=target["token"])
    errors: list[str] = []
    cpu_used = 0.0
    sent_at = np.zeros((n, n_chunks))
    arrivals: list[list[tuple[float, int]]] = [[] for _ in range(n)]
    loop = asyncio.get_running_loop()
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    sockets = []
    try:
        for _ in range(n):
            ws = await http.ws_connect(url, headers=headers, compress=15 if target['deflate'] else 0,
                                       autoping=True, max_msg_size=0)
            await ws.send_bytes(build_configure_session(RATE))
            confirm = _wire.decode_message(await ws.receive_bytes())
            if confirm.type != MessageType.SERVER_CONFIRM_SESSION:
                raise RuntimeError(f"handshake refused: {confirm.error_message}")
            sockets.append(ws)
    except Exception as exc:
        errors.append(f"connecting: {type(exc).__name__}: {exc}")
    conn.send(len(sockets))  # ready
    start_at = await loop.run_in_executor(None, conn.recv)  # one start time for every worker
    try:
        if len(sockets) < n:
            raise RuntimeError(f"only {len(sockets)} of {n} sessions connected")

        async def receive(i: int, ws) -> None:
            mine = arrivals[i]
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    errors.append(f"session {i}: {msg.type!r}")
                    return
                now = time.monotonic()
                decoded = _wire.decode_message(msg.data)
                if decoded.type == MessageType.SERVER_ERROR:
                    errors.append(f"session {i}: {decoded.error_message}")
                    continue
                mine.append((now, decoded.keyframes.shape[0]))
                if decoded.end:
                    return

        readers = [loop.create_task(receive(i, ws)) for i, ws in enumerate(sockets)]
        # one ticker for all sessions of this process; session i sends at its phase in the period
        phase = (first_index + np.arange(n)) / n_total * (CHUNK_MS / 1000.0)
        order = np.argsort(phase, kind="stable")
        cpu_start = time.process_time()
        for c in range(n_chunks):
            period_start = start_at + c * CHUNK_MS / 1000.0
            message = chunks[c]
            for i in order:
                when = period_start + phase[i]
                delay = when - time.monotonic()
                if delay > 0.0005:
                    await asyncio.sleep(delay)
                sent_at[i, c] = time.monotonic()
                await sockets[i].send_bytes(message)
        await asyncio.wait_for(asyncio.gather(*readers), timeout=30 + latency_ms / 1000)
        cpu_used = time.process_time() - cpu_start
    except Exception as exc:  # reported, the parent decides
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        for ws in sockets:
            await ws.close()
        await http.close()

    lateness, stream_time = [], []
    for i in range(n):
        times = np.repeat([t for t, _ in arrivals[i]], [k for _, k in arrivals[i]])[:n_frames]
        due = sent_at[i, completing_chunk[: times.shape[0]]] + latency_ms / 1000.0
        lateness.append(times - due)
        stream_time.append(times - start_at)
    send_lag = (sent_at - (start_at + np.arange(n_chunks)[None, :] * CHUNK_MS / 1000.0 + phase[:, None])).ravel()
    return WorkerResult(
        lateness=np.concatenate(lateness) if lateness else np.zeros(0),
        stream_time=np.concatenate(stream_time) if stream_time else np.zeros(0),
        keyframes_expected=n * n_frames,
        errors=errors[:5],
        cpu_seconds=cpu_used,
        send_lag_p99=float(np.percentile(send_lag, 99)) if send_lag.size else 0.0,
    )


def client_process(conn, target, n, first_index, n_total, seconds, latency_ms, cpu=None) -> None:
    _raise_fd_limit()
    _pin(cpu)

    conn.send(asyncio.run(_run_sessions(conn, target, n, first_index, n_total, seconds, latency_ms)))


# ----------------------------------------------------------------------------- one level


def run_level(ctx, target, service, n: int, workers: int, seconds: float, latency_ms: float,
              dump: str | None = None, pin: bool = False) -> dict:
    workers = max(1, min(workers, n))
    split = np.array_split(np.arange(n), workers)
    pipes, procs = [], []
    for part in split:
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=client_process,
            args=(child, target, len(part), int(part[0]), n, seconds, latency_ms, 1 if pin else None),
            daemon=True,
        )
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    # streaming starts together once every worker has its sessions open
    for pipe in pipes:
        if not pipe.poll(60 + n * 0.05):
            raise TimeoutError(f"a load generator did not connect its sessions in time at N={n}")
        pipe.recv()
    start_at = time.monotonic() + 0.2
    for pipe in pipes:
        pipe.send(start_at)
    while time.monotonic() < start_at:
        time.sleep(0.01)
    service_pid, control = service
    control.send("reset")
    cpu0, t0, machine0 = _cpu_seconds(service_pid), time.monotonic(), _machine_busy()
    results: list[WorkerResult] = []
    for pipe in pipes:
        if not pipe.poll(seconds + 60):
            raise TimeoutError(f"a load generator did not report within {seconds + 60:.0f} s at N={n}")
        results.append(pipe.recv())
    cpu1, t1, machine1 = _cpu_seconds(service_pid), time.monotonic(), _machine_busy()
    control.send("report")
    probe = control.recv()
    for proc in procs:
        proc.join(5)
    lateness = np.concatenate([r.lateness for r in results])
    if dump:  # for a look at when late keyframes happen (a start-up burst, a stall...)
        os.makedirs(dump, exist_ok=True)
        np.savez(os.path.join(dump, f"lateness_n{n}.npz"), lateness=lateness,
                 stream_time=np.concatenate([r.stream_time for r in results]))
    got = lateness.shape[0]
    expected = sum(r.keyframes_expected for r in results)
    return dict(
        n=n,
        keyframes=got,
        missing=expected - got,
        p50=float(np.percentile(lateness, 50)) if got else float("nan"),
        p99=float(np.percentile(lateness, 99)) if got else float("nan"),
        max=float(lateness.max()) if got else float("nan"),
        early=int((lateness < -0.002).sum()),
        service_cpu=(cpu1 - cpu0) / (t1 - t0),
        machine_busy=(machine1[0] - machine0[0]) / max(1e-9, machine1[1] - machine0[1]),
        client_cpu=sum(r.cpu_seconds for r in results) / (t1 - t0),
        send_lag_p99=max(r.send_lag_p99 for r in results),
        errors=[e for r in results for e in r.errors],
        loop_lag_p99=probe["lag_p99"],
        loop_lag_max=probe["lag_max"],
        gc_max=probe["gc_max"],
        gc_full=probe["gc_full"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default=DEFAULT_LEVELS, help=f"session counts to try (default {DEFAULT_LEVELS})")
    parser.add_argument("--seconds", type=float, default=6.0, help="audio per session and level (default 6)")
    parser.add_argument("--workers", type=int, default=2, help="load generator processes (default 2)")
    parser.add_argument("--latency-ms", type=float, default=80.0, help="the service's processing latency")
    parser.add_argument("--tries", type=int, default=2,
                        help="runs of a level before it counts as a miss (the machine is shared; default 2)")
    parser.add_argument("--keep-going", action="store_true", help="run every level, even after a miss")
    parser.add_argument("--deflate", action="store_true",
                        help="offer permessage-deflate, as the official clients do (avatar_nb's does not)")
    parser.add_argument("--pin", action="store_true",
                        help="pin the service to CPU 0 and the load generators to CPU 1")
    parser.add_argument("--dump", metavar="DIR", help="save each level's lateness and arrival times (.npz) in DIR")
    parser.add_argument("--profile", type=int, metavar="N", help="profile the service (cProfile) at N sessions only")
    args = parser.parse_args(argv)
    levels = [args.profile] if args.profile else [int(x) for x in args.levels.split(",") if x.strip()]
    budget = 1.0 / FPS

    _raise_fd_limit()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    profile_path = f"/tmp/avatar_nb_service_{os.getpid()}.prof" if args.profile else None
    server = ctx.Process(target=service_process, args=(child, args.latency_ms, profile_path, 0 if args.pin else None),
                         daemon=True)
    server.start()
    target = dict(parent.recv(), deflate=args.deflate)
    print(f"LocalService pid {server.pid}, {os.cpu_count()} cores; {args.seconds:g} s of 16 kHz audio per session "
          f"in {CHUNK_MS} ms chunks at real-time pace; latency {args.latency_ms:g} ms; "
          f"{args.workers} load generator processes; permessage-deflate {'on' if args.deflate else 'off'}")
    print(f"lateness = arrival - (chunk completing the frame sent + latency); budget p99 < {budget * 1000:.0f} ms; "
          "times in ms; CPU as a share of one core; machine = busy share of all cores (others' work included)")
    header = (f"{'N':>5} {'keyframes':>9} {'miss':>4} | {'p50':>6} {'p99':>6} {'max':>6} {'p99/base':>8} | "
              f"{'svc CPU':>7} {'/sess':>6} {'loop lag p99/max':>16} {'GC max':>6} | {'gen CPU':>7} {'gen lag':>7} | {'machine':>7} | verdict")
    print(header)
    best = 0
    baseline = None
    rows = []
    try:
        for n in levels:
            for attempt in range(1, args.tries + 1):
                row = run_level(ctx, target, (server.pid, parent), n, args.workers, args.seconds,
                                args.latency_ms, args.dump, args.pin)
                rows.append(row)
                if baseline is None:
                    baseline = max(row["p99"], 1e-4)
                ok = row["p99"] < budget and row["missing"] == 0 and not row["errors"] and row["early"] == 0
                verdict = "ok" if ok else ("MISS" if attempt == args.tries else "miss, again")
                ms = {k: row[k] * 1e3 for k in ("p50", "p99", "max", "loop_lag_p99", "loop_lag_max", "gc_max", "send_lag_p99")}
                print(f"{n:>5} {row['keyframes']:>9} {row['missing']:>4} | {ms['p50']:>6.1f} {ms['p99']:>6.1f} {ms['max']:>6.1f} "
                      f"{row['p99'] / baseline:>7.1f}x | {row['service_cpu']:>7.0%} {row['service_cpu'] / n:>6.2%} "
                      f"{ms['loop_lag_p99']:>7.1f} /{ms['loop_lag_max']:>7.1f} {ms['gc_max']:>6.1f} | "
                      f"{row['client_cpu']:>7.0%} {ms['send_lag_p99']:>7.1f} | {row['machine_busy']:>7.0%} | {verdict}", flush=True)
                for error in row["errors"][:3]:
                    print(f"      error: {error}")
                if ok:
                    break
            if ok:
                best = max(best, n)
            elif not args.keep_going:
                break
    finally:
        parent.send("stop")
        server.join(10)
        if server.is_alive():
            server.terminate()
    print(f"largest N with p99 lateness < {budget * 1000:.0f} ms: {best} (target 200)")
    if profile_path:
        import pstats

        print(f"\ncProfile of the service at N={levels[0]} (cumulative top 25, self top 25):")
        stats = pstats.Stats(profile_path)
        stats.sort_stats("cumulative").print_stats(25)
        stats.sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
