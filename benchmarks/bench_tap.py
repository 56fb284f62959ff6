"""The recording proxy's added delay per message, direct against proxied, in one run.

An echo service (a WebSocket server that sends every message back) runs in its own
process, the proxy (``TapProxy``, recording every message into a capture file) in
another, the client here. The client sends binary messages of ``--size`` bytes (1.3 KB:
a 40 ms chunk of 16 kHz audio in its envelope) every ``--interval-ms`` and times each
round trip, alternating blocks of ``--block`` messages straight to the echo service and
through the proxy, so both see the same machine. A round trip through the proxy
crosses it twice (once each way); the added delay per message crossing is half the
difference of the round-trip quantiles: ``(proxied - direct) / 2`` at p50 and p99.

    python benchmarks/bench_tap.py                      # 4000 round trips each way
    python benchmarks/bench_tap.py --messages 10000 --size 120000   # animation-sized messages
    python benchmarks/bench_tap.py --in-process         # the proxy's own cost, without scheduling between processes

Everything is on 127.0.0.1; each process stops at the end (or after ``--timeout``).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _echo(port_queue: mp.Queue) -> None:
    import websockets

    async def echo(ws) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with websockets.serve(echo, "127.0.0.1", 0, compression=None, max_size=None) as server:
            port_queue.put(server.sockets[0].getsockname()[1])
            await asyncio.Event().wait()

    asyncio.run(main())


def _tap(upstream_port: int, out: str, port_queue: mp.Queue) -> None:
    from avatar_nb.tap.proxy import run_tap

    base = f"http://127.0.0.1:{upstream_port}"
    run_tap("127.0.0.1:0", base + "/v1/console", base + "/v2/driveningress", out,
            ready=lambda proxy: port_queue.put(proxy.port))


async def _round_trips(url: str, n: int, size: int, interval: float) -> np.ndarray:
    import websockets

    payload = os.urandom(size)
    times = np.empty(n)
    async with websockets.connect(url, compression=None, max_size=None) as ws:
        for _ in range(20):  # warm up the connection
            await ws.send(payload)
            await ws.recv()
        start = time.perf_counter()
        for i in range(n):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t0 = time.perf_counter()
            await ws.send(payload)
            echoed = await ws.recv()
            times[i] = time.perf_counter() - t0
            assert len(echoed) == size
    return times


async def _in_process(args: argparse.Namespace, out: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The echo service, the proxy and the client on one event loop: no scheduling between
    processes, so what is left is the proxy's own work per message."""
    import websockets

    from avatar_nb.tap import TapProxy

    async def echo(ws) -> None:
        async for message in ws:
            await ws.send(message)

    direct: list[np.ndarray] = []
    proxied: list[np.ndarray] = []
    async with websockets.serve(echo, "127.0.0.1", 0, compression=None, max_size=None) as server:
        base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with TapProxy(base + "/v1/console", base + "/v2/driveningress", out) as tap:
            done = 0
            while done < args.messages:
                n = min(args.block, args.messages - done)
                interval = args.interval_ms / 1000
                direct.append(await _round_trips(base.replace("http", "ws") + "/x", n, args.size, interval))
                proxied.append(await _round_trips(tap.ingress_url.replace("http", "ws") + "/websocket", n,
                                                  args.size, interval))
                done += n
    return direct, proxied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=4000, help="round trips each way (default 4000)")
    parser.add_argument("--block", type=int, default=500, help="round trips per block before switching (default 500)")
    parser.add_argument("--size", type=int, default=1300, help="bytes per message (default 1300)")
    parser.add_argument("--interval-ms", type=float, default=2.0, help="time between messages (default 2 ms)")
    parser.add_argument("--in-process", action="store_true",
                        help="echo service, proxy and client on one event loop (the proxy's own cost, "
                        "without scheduling between processes)")
    parser.add_argument("--out", default=None, help="folder for the captures (default: a new temporary folder)")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    out = tempfile.mkdtemp(prefix="bench_tap_", dir=args.out)
    if args.in_process:
        direct, proxied = asyncio.run(_in_process(args, out))
    else:
        direct, proxied = _processes(args, out)
    _report(args, direct, proxied, out)


def _processes(args: argparse.Namespace, out: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    ctx = mp.get_context("spawn")
    ports: mp.Queue = ctx.Queue()
    echo = ctx.Process(target=_echo, args=(ports,), daemon=True)
    echo.start()
    echo_port = ports.get(timeout=30)
    tap = ctx.Process(target=_tap, args=(echo_port, out, ports), daemon=True)
    tap.start()
    tap_port = ports.get(timeout=30)
    direct_url = f"ws://127.0.0.1:{echo_port}/v2/driveningress/websocket?id=bench"
    proxied_url = f"ws://127.0.0.1:{tap_port}/v2/driveningress/websocket?id=bench"
    direct: list[np.ndarray] = []
    proxied: list[np.ndarray] = []
    deadline = time.monotonic() + args.timeout
    try:
        done = 0
        while done < args.messages and time.monotonic() < deadline:
            n = min(args.block, args.messages - done)
            interval = args.interval_ms / 1000
            direct.append(asyncio.run(_round_trips(direct_url, n, args.size, interval)))
            proxied.append(asyncio.run(_round_trips(proxied_url, n, args.size, interval)))
            done += n
    finally:
        tap.terminate()
        echo.terminate()
        tap.join(10)
        echo.join(10)
    return direct, proxied


def _report(args: argparse.Namespace, direct: list[np.ndarray], proxied: list[np.ndarray], out: str) -> None:
    d = np.concatenate(direct) * 1000
    p = np.concatenate(proxied) * 1000
    captures = sorted(Path(out).glob("*.anbcap"))
    recorded = sum(f.stat().st_size for f in captures)
    where = "one event loop" if args.in_process else "client, proxy and echo service in 3 processes"
    print(f"round trips: {len(d)} direct, {len(p)} proxied, {args.size} B messages every {args.interval_ms:g} ms, "
          f"{where}")
    print(f"{'':>10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for name, values in (("direct", d), ("proxied", p)):
        q = np.percentile(values, [50, 90, 99])
        print(f"{name:>10} {q[0]:8.3f} {q[1]:8.3f} {q[2]:8.3f}")
    added = (np.percentile(p, [50, 99]) - np.percentile(d, [50, 99])) / 2
    print(f"added per message crossing the proxy: p50 {added[0]:.3f} ms, p99 {added[1]:.3f} ms "
          f"(goal: p99 <= 1 ms)")
    print(f"recorded: {len(captures)} capture files, {recorded / 1e6:.1f} MB; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
