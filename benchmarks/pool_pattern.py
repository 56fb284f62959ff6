"""The official SDK's connection-pool pattern, with avatarkit, against ``avatar-nb serve``.

    python benchmarks/pool_pattern.py [--sessions 100] [--borrow 5] [--gap 30] [--rounds 10]

The service is started as a user starts it: ``avatar-nb serve --port 0`` in its own
process, no other option. A pool of ``--sessions`` avatarkit sessions is opened (token,
WebSocket, handshake); then every ``--gap`` seconds, ``--rounds`` times, ``--borrow``
sessions are taken from the front of the pool (first in, first out), each sends a
clip in one message (``send_audio(clip, end=True)``, as the example does) and waits
for its last animation frame, and goes back to the end of the pool. Round k therefore
uses sessions that have been open and unused for about ``gap * (k - 1)`` seconds: at
full scale (the defaults) up to about 270 s, longer than the local service's former
120 s idle timeout. Prints one line per round (requests passed, the longest idle time
of the sessions it used, the failures) and exits 1 if any request failed.

:func:`run_pool` takes the service's URLs and credentials, so tests run the same
pattern scaled down against a service of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

KEYS = ("console_endpoint_url", "ingress_endpoint_url", "api_key", "app_id", "avatar_id")


def serve_command() -> list[str]:
    """``avatar-nb`` next to this interpreter (the installed entry point), else ``-m``."""
    script = Path(sys.executable).with_name("avatar-nb")
    return [str(script)] if script.exists() else [sys.executable, "-m", "avatar_nb"]


def start_serve(*args: str, timeout: float = 60.0) -> tuple[subprocess.Popen, dict[str, str], list[str]]:
    """``avatar-nb serve --port 0 [args]`` in a subprocess; its endpoints and credentials
    as it prints them (``  name = value`` lines), and every line it printed so far.

    Its output keeps being read in a thread, so the process never blocks on a full pipe.
    """
    proc = subprocess.Popen(
        [*serve_command(), "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    info: dict[str, str] = {}
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            match = re.match(r"\s+(\w+)\s+= (\S+)", line)
            if match and match.group(1) not in info:
                info[match.group(1)] = match.group(2)
            if "press ctrl-c" in line.lower():  # its last line: everything above it is in
                ready.set()
        ready.set()  # the process ended

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout) or not all(k in info for k in KEYS):
        proc.kill()
        raise RuntimeError("avatar-nb serve did not print its endpoints:\n" + "\n".join(lines))
    return proc, info, lines


def stop_serve(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Pooled:
    """One pooled avatarkit session and when it was last used (opened or returned)."""

    session: object
    index: int
    last_used: float
    frames_done: asyncio.Event = field(default_factory=asyncio.Event)
    errors: list[str] = field(default_factory=list)


@dataclass
class Round:
    passed: int
    failed: int
    longest_idle: float
    failures: list[str]

    def line(self, k: int) -> str:
        text = f"round {k:2d}: {self.passed} passed, {self.failed} failed, sessions idle up to {self.longest_idle:5.1f} s"
        return text + ("" if not self.failures else "; " + "; ".join(sorted(set(self.failures))))


async def _open(info: dict[str, str], index: int) -> Pooled:
    import avatarkit

    holder: list[Pooled] = []

    def frame(_data: bytes, last: bool) -> None:
        if last and holder:
            holder[0].frames_done.set()

    def error(exc: Exception) -> None:
        if holder:
            holder[0].errors.append(str(exc))
            holder[0].frames_done.set()

    session = avatarkit.new_avatar_session(
        api_key=info["api_key"],
        app_id=info["app_id"],
        avatar_id=info["avatar_id"],
        console_endpoint_url=info["console_endpoint_url"],
        ingress_endpoint_url=info["ingress_endpoint_url"],
        expire_at=datetime.now(timezone.utc) + timedelta(hours=1),
        transport_frames=frame,
        on_error=error,
    )
    await session.init()
    await session.start()
    pooled = Pooled(session, index, time.monotonic())
    holder.append(pooled)
    return pooled


async def _use(pooled: Pooled, clip: bytes, timeout: float) -> str | None:
    """One request on a pooled session: None when its last frame came, else what failed."""
    pooled.frames_done.clear()
    pooled.errors.clear()
    try:
        await pooled.session.send_audio(clip, end=True)
        await asyncio.wait_for(pooled.frames_done.wait(), timeout)
    except Exception as exc:  # what the example's caller would see
        return f"{type(exc).__name__}: {exc}"
    finally:
        pooled.last_used = time.monotonic()
    return pooled.errors[0] if pooled.errors else None


async def run_pool(
    info: dict[str, str],
    *,
    sessions: int = 100,
    borrow: int = 5,
    gap: float = 30.0,
    rounds: int = 10,
    clip: bytes | None = None,
    request_timeout: float = 20.0,
    report=None,
) -> list[Round]:
    """The pool pattern against the service described by ``info`` (:data:`KEYS`)."""
    if clip is None:
        from avatar_nb import _pcm, speech_like

        clip = _pcm.to_s16le(speech_like(1.0, 16000, seed=5))
    opening = asyncio.Semaphore(10)

    async def open_one(i: int) -> Pooled:
        async with opening:
            return await _open(info, i)

    pool = collections.deque(await asyncio.gather(*(open_one(i) for i in range(sessions))))
    results: list[Round] = []
    start = time.monotonic()
    try:
        for k in range(rounds):
            await asyncio.sleep(max(0.0, start + k * gap - time.monotonic()))
            taken = [pool.popleft() for _ in range(min(borrow, len(pool)))]
            now = time.monotonic()
            idle = max(now - p.last_used for p in taken)
            outcomes = await asyncio.gather(*(_use(p, clip, request_timeout) for p in taken))
            pool.extend(taken)
            failures = [o for o in outcomes if o is not None]
            results.append(Round(len(taken) - len(failures), len(failures), idle, failures))
            if report is not None:
                report(results[-1].line(k + 1))
    finally:
        await asyncio.gather(*(p.session.close() for p in pool), return_exceptions=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--borrow", type=int, default=5)
    parser.add_argument("--gap", type=float, default=30.0, help="seconds between rounds")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    proc, info, _ = start_serve()
    print(f"avatar-nb serve (no options): {info['console_endpoint_url']}, "
          f"idle_timeout = {info.get('idle_timeout', '?')} s", flush=True)
    try:
        began = time.monotonic()
        results = asyncio.run(
            run_pool(info, sessions=args.sessions, borrow=args.borrow, gap=args.gap,
                     rounds=args.rounds, report=lambda line: print(line, flush=True))
        )
    finally:
        stop_serve(proc)
    passed = sum(r.passed for r in results)
    total = sum(r.passed + r.failed for r in results)
    print(f"{passed} of {total} requests passed in {time.monotonic() - began:.0f} s "
          f"({args.sessions} sessions, {args.borrow} borrowed FIFO every {args.gap:g} s, "
          f"{args.rounds} rounds; longest idle {max(r.longest_idle for r in results):.0f} s)")
    return 0 if passed == total else 1


if __name__ == "__main__":
    sys.exit(main())
