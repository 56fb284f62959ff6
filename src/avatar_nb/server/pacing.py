"""The realtime timing model of the local service: when each animation message is due.

A live service cannot animate audio it has not received, and needs some time to do
it. So a message carrying keyframes is due ``latency_ms`` after the audio chunk that
completed those keyframes arrived, plus, optionally, a jitter drawn per message from
a half-normal distribution of scale ``jitter_ms`` (so never earlier than the latency).
Messages of a session leave in order: a due time never precedes the previous one.
The jitter comes from a generator seeded per session, so a run can be repeated.
"""

from __future__ import annotations

import random

__all__ = ["Pacer"]


class Pacer:
    """Due times (on the caller's clock, in seconds) of one session's animation messages."""

    def __init__(self, latency_ms: float, jitter_ms: float = 0.0, *, seed: int | tuple[int, ...] = 0) -> None:
        if not latency_ms >= 0 or not jitter_ms >= 0:
            raise ValueError(f"latency_ms and jitter_ms must be >= 0, got {latency_ms} and {jitter_ms}")
        self.latency = latency_ms / 1000.0
        self.jitter = jitter_ms / 1000.0
        self._random = random.Random(repr(seed))  # repr: a stable seed for tuples too
        self.last_due = float("-inf")

    def due(self, arrived: float) -> float:
        """When the message made from audio that arrived at ``arrived`` is due."""
        due = arrived + self.latency
        if self.jitter > 0:
            due += abs(self._random.gauss(0.0, self.jitter))
        if due < self.last_due:
            due = self.last_due
        self.last_due = due
        return due
