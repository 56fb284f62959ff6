"""How much delay the client adds to the arrival times it records.

A small in-process server stamps each animation message on the monotonic clock right
before it sends it; the receiver's arrival time minus that stamp is the delay from the
server's send call to the moment the client recorded the message. The baseline is a
bare ``websockets`` reader that takes ``time.monotonic()`` as each message comes out of
``recv()``; AvatarSession's figure comes from its Timeline (``message_arrival`` plus the
session's origin). Both run over loopback in one process, at 1 and at 100 concurrent
sessions, and the script prints medians and 99th percentiles and avatar_nb's figure as a
ratio of the baseline's.

    .venv/bin/python benchmarks/bench_arrival.py [--messages 200] [--interval-ms 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np
import websockets
from aiohttp import web

from avatar_nb import _wire, new_avatar_session
from avatar_nb.protocol import build_audio, build_configure_session, build_confirm_session


class StampingServer:
    """Confirms every session, waits for its first audio chunk, then sends ``messages``
    one-keyframe animation messages ``interval`` seconds apart, each keyframe carrying
    its index, and records the monotonic time just before each send."""

    def __init__(self, messages: int, interval: float) -> None:
        self.messages = messages
        self.interval = interval
        self.stamps: dict[str, list[float]] = {}  # req_id -> send times

    async def token(self, request: web.Request) -> web.Response:
        return web.json_response({"session_token": "t"})

    async def ingress(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        await ws.send_bytes(build_confirm_session("c"))
        req_id = _wire.decode_message((await ws.receive()).data).req_id
        stamps = self.stamps[req_id] = []
        kf = np.zeros((1, 70), np.float32)
        start = time.monotonic()
        for i in range(self.messages):
            kf[0, 0] = i
            data = _wire.encode_animation_message(kf, connection_id="c", req_id=req_id, end=i == self.messages - 1)
            delay = start + i * self.interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            stamps.append(time.monotonic())
            await ws.send_bytes(data)
        await ws.receive()  # until the client closes
        return ws


async def raw_client(url: str) -> tuple[str, list[float]]:
    """The baseline: arrival read as each message leaves ``recv()``."""
    async with websockets.connect(url, compression=None) as ws:
        await ws.send(build_configure_session(16000))
        await ws.recv()
        req_id = f"raw-{id(ws)}"
        await ws.send(build_audio(req_id, b"\x00\x00" * 320, True))
        arrivals: list[float] = []
        while True:
            data = await ws.recv()
            arrivals.append(time.monotonic())
            if _wire.decode_message(data).end:
                return req_id, arrivals


async def session_client(base: str) -> tuple[str, list[float]]:
    """avatar_nb: arrival as its Timeline records it, on the same monotonic clock."""
    session = new_avatar_session(
        api_key="k", app_id="a", avatar_id="v", console_endpoint_url=base, ingress_endpoint_url=base + "/ingress"
    )
    async with session:
        req_id = await session.send_audio(b"\x00\x00" * 320, end=True)
        await session.wait_for_end(req_id, timeout=120)
    tl = session.timeline
    order = np.argsort(tl.keyframes[:, 0], kind="stable")
    return req_id, (tl.arrival[order] + session._t0).tolist()


def delays(server: StampingServer, results: list[tuple[str, list[float]]]) -> np.ndarray:
    out = []
    for req_id, arrivals in results:
        stamps = server.stamps[req_id]
        assert len(arrivals) == len(stamps), (len(arrivals), len(stamps))
        out.extend(a - s for a, s in zip(arrivals, stamps))
    return np.asarray(out)


async def run(concurrency: int, messages: int, interval: float) -> tuple[np.ndarray, np.ndarray]:
    server = StampingServer(messages, interval)
    app = web.Application()
    app.router.add_post("/v1/auth/session-token", server.token)
    app.router.add_get("/ingress/websocket", server.ingress)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        raw = await asyncio.gather(*(raw_client(base.replace("http", "ws") + "/ingress/websocket") for _ in range(concurrency)))
        ours = await asyncio.gather(*(session_client(base) for _ in range(concurrency)))
        return delays(server, raw), delays(server, ours)
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    args = parser.parse_args()
    print(f"{args.messages} messages per session, {args.interval_ms:g} ms apart, loopback, one process")
    print(f"{'sessions':>8}  {'client':<10} {'median ms':>10} {'p99 ms':>8}  {'median / baseline':>18}")
    for concurrency in (1, 100):
        raw, ours = asyncio.run(run(concurrency, args.messages, args.interval_ms / 1000.0))
        base_median = statistics.median(raw)
        for name, values in (("websockets", raw), ("avatar_nb", ours)):
            median = statistics.median(values)
            p99 = float(np.percentile(values, 99))
            print(f"{concurrency:>8}  {name:<10} {median * 1e3:>10.3f} {p99 * 1e3:>8.3f}  {median / base_median:>18.2f}")


if __name__ == "__main__":
    main()
