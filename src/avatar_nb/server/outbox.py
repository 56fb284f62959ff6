"""When a paced session's animation messages leave: the queue, its bound and its sender.

Each message is queued with its due time (:class:`~avatar_nb.server.latency.Pacer`); one
sender task per session waits on an event that a loop timer (``call_at``) sets for the
head of the queue, so a paced session costs one wake-up per message. A message is
built when it is due (the protocol marks a request finished when its end message is
built, so an interrupt can still drop what is queued), crosses the simulated
:class:`~avatar_nb.server.latency.Link`, and is handed to the session's send.

The queue is bounded: once it holds more than ``max_keyframes``, :meth:`Outbox.put`
waits until it drains, so the session stops reading its client's audio instead of
buffering animation without end (a client that stopped reading is then dropped by the
send timeout, which :meth:`Outbox.close` turns into an immediate return).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

import numpy as np

from .latency import Link

__all__ = ["Outbox"]

_EARLY = 0.0005  # a message due this close to now leaves in the same wake-up

Build = Callable[[str, np.ndarray, bool], bytes]
Send = Callable[[str, np.ndarray, bool, bytes], Awaitable[None]]


class Outbox:
    """The paced animation queue of one session."""

    def __init__(
        self,
        build: Build,
        send: Send,
        *,
        link: Link,
        max_keyframes: int,
        on_peak: Callable[[int], None],
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._build = build
        self._send = send
        self._link = link if link.active else None
        self.max_keyframes = max_keyframes
        self._on_peak = on_peak
        self.queue: deque[tuple[float, str, np.ndarray, bool]] = deque()
        self.keyframes = 0  # queued
        self.drained = asyncio.Event()  # set while the queue is within its bound
        self.drained.set()
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.task = self.loop.create_task(self._sender())

    async def put(self, due: float, req_id: str, keyframes: np.ndarray, end: bool) -> None:
        """Queue a message due at ``due`` (loop time); wait while the queue is over its bound."""
        if self.closed:
            return
        self.queue.append((due, req_id, keyframes, end))
        self.keyframes += keyframes.shape[0]
        self._on_peak(self.keyframes)
        if len(self.queue) == 1:
            self._reschedule()
        self._update_drained()
        if not self.drained.is_set():
            await self.drained.wait()

    def end_now(self, req_id: str, empty: np.ndarray) -> None:
        """An interrupt: drop what is queued for ``req_id`` and end it now, ahead of the rest."""
        kept = deque(item for item in self.queue if item[1] != req_id)
        self.keyframes = sum(item[2].shape[0] for item in kept)
        kept.appendleft((self.loop.time(), req_id, empty, True))
        self.queue = kept
        self._update_drained()
        self._reschedule()

    def close(self) -> None:
        """Drop everything queued and stop; a waiting :meth:`put` returns."""
        self.closed = True
        self.queue.clear()
        self.keyframes = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.drained.set()
        self._wake.set()

    def _update_drained(self) -> None:
        if self.keyframes > self.max_keyframes and not self.closed:
            self.drained.clear()
        else:
            self.drained.set()

    def _reschedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.queue and not self.closed:
            self._timer = self.loop.call_at(self.queue[0][0], self._wake.set)

    async def _sender(self) -> None:
        loop, link = self.loop, self._link
        while not self.closed:
            await self._wake.wait()
            self._wake.clear()
            now = loop.time()
            while self.queue and self.queue[0][0] <= now + _EARLY and not self.closed:
                due, req_id, keyframes, end = self.queue.popleft()
                self.keyframes -= keyframes.shape[0]
                data = self._build(req_id, keyframes, end)
                if link is not None:
                    arrival = link.arrival(due, len(data))
                    if arrival > loop.time():
                        await asyncio.sleep(arrival - loop.time())
                    if self.closed:
                        return
                await self._send(req_id, keyframes, end, data)
                self._update_drained()
                now = loop.time()
            self._timer = None
            self._reschedule()
