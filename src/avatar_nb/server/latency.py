"""The local service's latency model: when each animation message leaves, and when it arrives.
A live service cannot animate audio it has not received, and needs some time to do
it. So a message carrying keyframes is due ``latency_ms`` after the audio chunk that
completed those keyframes arrived (every keyframe a chunk completes, including those
completed in its middle, is due relative to that chunk's arrival), plus, optionally,
a jitter drawn per message from a half-normal distribution of scale ``jitter_ms`` (so
never earlier than the latency). Messages of a session leave in order: a due time
never precedes the previous one. The jitter comes from a generator seeded per
session, so a run can be repeated.

A :class:`Link` then simulates the network path of one connection: a message due at
``t`` is serialised onto a link of ``bandwidth_bps`` bits per second after the
messages before it, and reaches the client ``net_delay_ms`` later (the one-way delay).

How the client paces the audio it sends is another subject: :mod:`avatar_nb.pacing`.
"""

from __future__ import annotations

import math
import random

__all__ = ["Link", "Pacer"]


class Pacer:
    """Due times (on the caller's clock, in seconds) of one session's animation messages."""

    def __init__(
        self, latency_ms: float, jitter_ms: float = 0.0, *, seed: int | tuple[int, ...] = 0
    ) -> None:
        if not latency_ms >= 0 or not jitter_ms >= 0:
            raise ValueError(
                f"latency_ms and jitter_ms must be >= 0, got {latency_ms} and {jitter_ms}"
            )
        self.latency = latency_ms / 1000.0
        self.jitter = jitter_ms / 1000.0
        self._random = random.Random(repr(seed))  # repr: a stable seed for tuples too
        self.last_due = float("-inf")

    def due(self, arrived: float) -> float:
        """When the message made from audio that arrived at ``arrived`` is due."""
        due = arrived + self.latency
        if self.jitter > 0:
            due += abs(self._random.gauss(0.0, self.jitter))
        due = max(due, self.last_due)
        self.last_due = due
        return due


class Link:
    """One connection's simulated network path: a one-way delay and a bandwidth limit.

    ``delay_ms`` is added to every message; ``bandwidth_bps`` (bits per second, None
    for unlimited) serialises messages one after another, each taking its size in
    bits over the bandwidth. :meth:`arrival` says when a message reaches the client,
    which is when the service writes it to the (loopback) socket.
    """

    def __init__(self, delay_ms: float = 0.0, bandwidth_bps: float | None = None) -> None:
        if not (math.isfinite(delay_ms) and delay_ms >= 0):
            raise ValueError(f"delay_ms must be a finite number >= 0, got {delay_ms!r}")
        if bandwidth_bps is not None and not (math.isfinite(bandwidth_bps) and bandwidth_bps > 0):
            raise ValueError(
                f"bandwidth_bps must be a finite number > 0 or None, got {bandwidth_bps!r}"
            )
        self.delay = delay_ms / 1000.0
        self.bytes_per_second = None if bandwidth_bps is None else bandwidth_bps / 8.0
        self.free_at = float("-inf")

    @property
    def active(self) -> bool:
        """Whether the link changes anything (a delay or a bandwidth limit is set)."""
        return self.delay > 0 or self.bytes_per_second is not None

    def arrival(self, ready: float, nbytes: int) -> float:
        """When a message of ``nbytes`` handed to the link at ``ready`` reaches the client."""
        done = max(ready, self.free_at)
        if self.bytes_per_second is not None:
            done += nbytes / self.bytes_per_second
        self.free_at = done
        return done + self.delay
