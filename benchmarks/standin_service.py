"""A stand-in avatar service for client benchmarks, run in its own process.

    python benchmarks/standin_service.py [--port 0] [--expression-coefficients 50] [--no-deflate]

It answers the token routes (``/v1/auth/session-token``, ``/v1/console/session-tokens``,
aiohttp) and the ingress WebSocket (``/websocket``, the websockets library with its
default settings, on a port of its own): it confirms the session
and answers the audio of each request with keyframes at 25 fps (one animation message
per audio message that completes a keyframe, the rest with the end flag), the same
deterministic values for every client. It does not animate anything, so its own CPU
stays small and every client gets byte-identical frames. permessage-deflate is accepted,
as the hosted service accepts it, unless ``--no-deflate``. It prints its endpoints, one ``name = value`` a line,
then serves until SIGINT or SIGTERM.

Independent of avatar_nb's LocalService on purpose: the clients compared are measured
against a peer none of them ships.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import numpy as np
import websockets
from aiohttp import web
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from avatar_nb import _wire
from avatar_nb.protocol import build_confirm_session

FPS = 25
MESSAGE_AUDIO = 3


class Animator:
    """Keyframes for a stretch of audio: k frames per k * rate / 25 samples, cycled from a table."""

    def __init__(self, width: int, sample_rate: int) -> None:
        t = np.arange(4096, dtype=np.float32)[:, None]
        cols = np.arange(width, dtype=np.float32)[None, :]
        self.table = (np.sin(t * 0.05 + cols) * 0.5).astype(np.float32)
        self.rate = sample_rate
        self.samples: dict[str, int] = {}
        self.frames: dict[str, int] = {}

    def message(self, req_id: str, n_samples: int, end: bool) -> bytes | None:
        total = self.samples.get(req_id, 0) + n_samples
        done = self.frames.get(req_id, 0)
        due = (total * FPS + self.rate - 1) // self.rate if end else total * FPS // self.rate
        if end:
            due = max(due, done + 1)  # the end message carries at least one keyframe
            self.samples.pop(req_id, None)
            self.frames.pop(req_id, None)
        else:
            self.samples[req_id] = total
            self.frames[req_id] = due
        k = due - done
        if k <= 0:
            return None
        rows = np.take(self.table, np.arange(done, due) % self.table.shape[0], axis=0)
        return _wire.encode_animation_message(rows, connection_id="conn-standin", req_id=req_id, end=end)


def console_app() -> web.Application:
    async def token(request: web.Request) -> web.Response:
        body = {"sessionToken": "standin-token", "session_token": "standin-token"}  # both clients' spellings
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/v1/auth/session-token", token)
    app.router.add_post("/v1/console/session-tokens", token)
    return app


async def ingress(ws: ServerConnection, width: int) -> None:
    animator: Animator | None = None
    try:
        async for data in ws:
            if isinstance(data, str):
                continue
            decoded = _wire.decode_message(data)
            if animator is None:  # the first message configures the session
                animator = Animator(width, decoded.sample_rate or 16000)
                await ws.send(build_confirm_session("conn-standin", ["fps:25"]))
                continue
            if decoded.type != MESSAGE_AUDIO:
                continue
            out = animator.message(decoded.req_id, len(decoded.audio) // 2, decoded.end)
            if out is not None:
                await ws.send(out)
    except ConnectionClosed:
        pass


async def serve(port: int, width: int, deflate: bool) -> None:
    runner = web.AppRunner(console_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    console_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with websockets.serve(
        lambda ws: ingress(ws, width),
        "127.0.0.1",
        0,
        max_size=64 << 20,
        compression="deflate" if deflate else None,
    ) as server:
        ingress_port = server.sockets[0].getsockname()[1]
        for name, value in (
            ("console_endpoint_url", f"http://127.0.0.1:{console_port}/v1/console"),
            ("ingress_endpoint_url", f"http://127.0.0.1:{ingress_port}"),
            ("api_key", "sk-standin"),
            ("app_id", "app-standin"),
            ("avatar_id", "avatar-standin"),
        ):
            print(f"  {name} = {value}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--expression-coefficients", type=int, default=50, help="E: keyframes have 20 + E columns")
    parser.add_argument(
        "--no-deflate", action="store_true", help="refuse permessage-deflate (the default accepts it, as the hosted service does)"
    )
    args = parser.parse_args()
    asyncio.run(serve(args.port, 20 + args.expression_coefficients, not args.no_deflate))


if __name__ == "__main__":
    main()
