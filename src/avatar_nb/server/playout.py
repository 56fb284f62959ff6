"""Simulated playout of one session: the clock behind ServerPlaybackState messages.

With ``LocalService(playout=True)`` (and always in simulated egress mode) the service
plays each request as a player would, one request at a time, and reports it as
docs/protocol.md ("Flow", playback semantics) describes:

- PLAYING (``played_ms`` 0) when the request's first animation message goes out;
- the position advances in real time while playing, holds while paused, and never
  passes the content delivered so far (``keyframes / fps``): an underrun waits;
- ENDED when the request's end went out and its whole content has played;
- PAUSED / PLAYING in answer to every pause / resume (the state after the operation;
  for a request that is not the one playing, its last report, reason included);
- INTERRUPTED with reason ``explicit`` (a client interrupt), ``preempted`` (a newer
  request started playing before this one ended) or ``pause_timeout`` (a pause held
  longer than ``pause_limit`` seconds; the request is then over).

The class is pure: every method takes the time ``now`` (seconds, any monotonic clock)
and returns the state messages to send as :class:`Report` tuples; :meth:`deadline`
says when :meth:`tick` must run next.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from ..events import InterruptReason
from ..protocol import WirePlaybackState as PlaybackState

__all__ = ["Playout", "Report"]

_REMEMBERED = 64  # last states of requests that are no longer playing (answers to late pauses)


class Report(NamedTuple):
    req_id: str
    state: PlaybackState
    played_ms: int
    reason: str = ""


class Playout:
    """The playout clock of one session's requests (one plays at a time)."""

    def __init__(self, fps: float, pause_limit: float) -> None:
        self.fps = float(fps)
        self.pause_limit = float(pause_limit)
        self.req_id: str | None = None
        self.state = PlaybackState.UNSPECIFIED
        self.content = 0.0  # seconds of keyframes delivered
        self.complete = False  # the request's end went out
        self._played = 0.0  # position at `_since`
        self._since = 0.0  # when playing (re)started, or the pause began
        self._last: OrderedDict[str, Report] = OrderedDict()

    # ------------------------------------------------------------------ clock

    def position(self, now: float) -> float:
        """Seconds of the current request played by ``now``."""
        if self.state is PlaybackState.PLAYING:
            return min(self.content, self._played + max(0.0, now - self._since))
        return self._played

    def _rebase(self, now: float) -> None:
        self._played = self.position(now)
        self._since = now

    def _report(self, req_id: str, state: PlaybackState, played: float, reason: str = "") -> Report:
        return Report(req_id, state, round(played * 1000.0), reason)

    def _retire(self, report: Report) -> Report:
        """The current request is over with ``report``; remember its last state."""
        self._last[report.req_id] = report
        while len(self._last) > _REMEMBERED:
            self._last.popitem(last=False)
        self.req_id = None
        self.state = PlaybackState.UNSPECIFIED
        return report

    def _over(self, now: float, state: PlaybackState, reason: str = "") -> Report:
        assert self.req_id is not None
        return self._retire(self._report(self.req_id, state, self.position(now), reason))

    # ------------------------------------------------------------------ events

    def delivered(self, req_id: str, keyframes: int, end: bool, now: float) -> list[Report]:
        """An animation message of ``req_id`` with ``keyframes`` went out."""
        out: list[Report] = []
        if req_id != self.req_id:
            if req_id in self._last:  # a late message of a request already over
                return out
            if self.req_id is not None:
                out.append(self._over(now, PlaybackState.INTERRUPTED, InterruptReason.PREEMPTED.value))
            self.req_id, self.state = req_id, PlaybackState.PLAYING
            self.content, self.complete, self._played, self._since = 0.0, False, 0.0, now
            out.append(self._report(req_id, PlaybackState.PLAYING, 0.0))
        self._rebase(now)  # after an underrun, play on from where it stopped
        self.content += keyframes / self.fps
        self.complete = self.complete or end
        return out + self.tick(now)

    def interrupt(self, req_id: str, now: float) -> list[Report]:
        """A client interrupt of ``req_id``."""
        if req_id and req_id == self.req_id:
            return [self._over(now, PlaybackState.INTERRUPTED, InterruptReason.EXPLICIT.value)]
        return []

    def pause(self, req_id: str, now: float) -> list[Report]:
        if req_id and req_id == self.req_id:
            if self.state is PlaybackState.PLAYING:
                self._rebase(now)
                self.state = PlaybackState.PAUSED
            return [self._report(req_id, self.state, self._played)]
        return [self._elsewhere(req_id)]

    def resume(self, req_id: str, now: float) -> list[Report]:
        if req_id and req_id == self.req_id:
            if self.state is PlaybackState.PAUSED:
                self._since = now
                self.state = PlaybackState.PLAYING
            return [self._report(req_id, self.state, self.position(now))] + self.tick(now)
        return [self._elsewhere(req_id)]

    def _elsewhere(self, req_id: str) -> Report:
        return self._last.get(req_id) or Report(req_id, PlaybackState.UNSPECIFIED, 0)

    def deadline(self) -> float | None:
        """When :meth:`tick` has something to report next (None: nothing scheduled)."""
        if self.state is PlaybackState.PLAYING and self.complete:
            return self._since + (self.content - self._played)
        if self.state is PlaybackState.PAUSED:
            return self._since + self.pause_limit
        return None

    def tick(self, now: float) -> list[Report]:
        """ENDED once a complete request has played out; INTERRUPTED when a pause timed out."""
        due = self.deadline()
        if due is None or now < due - 1e-6:
            return []
        if self.state is PlaybackState.PAUSED:
            return [self._over(now, PlaybackState.INTERRUPTED, InterruptReason.PAUSE_TIMEOUT.value)]
        return [self._retire(self._report(self.req_id or "", PlaybackState.ENDED, self.content))]
