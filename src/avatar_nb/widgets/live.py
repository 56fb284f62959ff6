"""What the two live panels share: the refresher, and the words they end and report with.

:class:`LiveRefresher` is the one refresh loop of :class:`~avatar_nb.widgets.SessionPanel`
and :class:`~avatar_nb.widgets.MicrophonePanel`, and holds the one definition of their
counters:

- a **wake-up** is one tick of the refresher's task, ``refresh_hz`` times a second
  while a run lasts;
- a **redraw** is one drawing of the view from the panel's current state. It happens
  when the state (the Timeline's version, plus what else the panel draws from) differs
  from the one last drawn, or when the panel forces it; a wake-up that finds nothing
  new draws nothing and is not a redraw. A redraw outside the loop (the panel's own,
  before or after a run) counts too;
- ``redraw_seconds`` is the time spent inside the drawing code of those redraws (not
  the turns the loop gives other tasks between a redraw's pieces), ``redraw_max`` the
  longest one, so ``redraw_seconds / redraws`` is the time per redraw.

The counters restart when a run's refresher starts. :class:`LiveCounters` gives both
panels the same read-only names for them.

:func:`outcome_text` is the status a panel shows when its run ends, :func:`empty_text`
what its live view says while it holds no keyframe, and :func:`stats_html` its line of
timing figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import math
import time
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..timeline import Timeline

if TYPE_CHECKING:
    from .capture import CaptureSequencer

__all__ = ["LiveCounters", "LiveRefresher", "empty_text", "final_status", "outcome_text", "stats_html"]

_NEVER = object()  # the drawn state before the first redraw: differs from every state


class LiveRefresher:
    """Redraw a view at ``interval`` seconds while a run lasts, only when its state changed.

    ``state()`` returns what the view is drawn from, as a comparable value (a version);
    ``draw()`` draws the view and returns an iterable of its pieces: the refresher
    advances it one piece at a time and, inside its loop, lets the event loop run other
    tasks between pieces (a drawing that returns nothing, or an empty iterable, is one
    piece). ``on_wakeup`` runs at every wake-up, before the check.
    """

    def __init__(
        self,
        interval: float,
        state: Callable[[], Hashable],
        draw: Callable[[], Iterable[Any] | None],
        *,
        on_wakeup: Callable[[], None] | None = None,
    ) -> None:
        self.interval = float(interval)
        self.state = state
        self.draw = draw
        self.on_wakeup = on_wakeup
        self.enabled = True  # False: start() runs no loop (the view is drawn only when asked)
        self.wakeups = 0
        self.redraws = 0
        self.redraw_seconds = 0.0
        self.redraw_max = 0.0
        self.started = 0.0  # monotonic time the last run's loop started (0: never)
        self.ended = 0.0  # ... and stopped (0: still running)
        self._drawn: Any = _NEVER
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ one redraw

    def forget(self) -> None:
        """Forget what was drawn: the next check redraws (a new run's Timeline)."""
        self._drawn = _NEVER

    def due(self, force: bool = False) -> bool:
        """True when the view must be redrawn (its state changed, or ``force``); the state
        is then taken as drawn."""
        state = self.state()
        if not force and self._drawn is not _NEVER and state == self._drawn:
            return False
        self._drawn = state
        return True

    def _pieces(self) -> Any:
        """Run one redraw piece by piece (a generator), counting it and timing its pieces."""
        self.redraws += 1
        spent = 0.0
        started = time.perf_counter()
        pieces = iter(self.draw() or ())
        while True:
            try:
                next(pieces)
            except StopIteration:
                break
            finally:
                spent += time.perf_counter() - started
            yield
            started = time.perf_counter()
        self.redraw_seconds += spent
        self.redraw_max = max(self.redraw_max, spent)

    def redraw(self, force: bool = False) -> bool:
        """Redraw now, all at once, if due (see :meth:`due`); True when it drew."""
        if not self.due(force):
            return False
        for _ in self._pieces():
            pass
        return True

    # ------------------------------------------------------------------ the loop

    def start(self) -> asyncio.Task[None] | None:
        """Restart the counters and run the loop as a task on the running event loop."""
        self.wakeups = self.redraws = 0
        self.redraw_seconds = self.redraw_max = 0.0
        self.started, self.ended = time.monotonic(), 0.0
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._loop())
        return self._task

    async def stop(self) -> None:
        """Stop the loop (if it runs) and note when it ended."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):  # its cancellation, or whatever ended it
                await task
        self.ended = time.monotonic()

    async def wakeup(self) -> bool:
        """One wake-up of the loop: redraw if due, piece by piece; True when it drew."""
        self.wakeups += 1
        if self.on_wakeup is not None:
            self.on_wakeup()
        if not self.due():
            return False
        for _ in self._pieces():
            # give socket reads (the arrival stamps) and chunk sends their turn
            # between the pieces: the loop is never held for a whole redraw
            await asyncio.sleep(0)
        return True

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            await self.wakeup()
            due += self.interval
            await asyncio.sleep(max(0.0, due - loop.time()))

    def _per_second(self, count: int) -> float:
        end = self.ended or time.monotonic()
        span = end - self.started
        return count / span if self.started and span > 0 else 0.0


class LiveCounters:
    """The refresher's counters under the same names on both panels (``self.refresher``)."""

    refresher: LiveRefresher

    @property
    def wakeups(self) -> int:
        """Refresher wake-ups during the last run."""
        return self.refresher.wakeups

    @property
    def redraws(self) -> int:
        """Redraws during the last run, the final one included (see :mod:`avatar_nb.widgets.live`)."""
        return self.refresher.redraws

    @property
    def redraw_seconds(self) -> float:
        """Time spent drawing in those redraws (s)."""
        return self.refresher.redraw_seconds

    @property
    def redraw_max(self) -> float:
        """The longest of those redraws (s)."""
        return self.refresher.redraw_max

    @property
    def redraw_ms(self) -> float:
        """Mean time per redraw in ms during the last run (0 before one)."""
        r = self.refresher
        return 1000.0 * r.redraw_seconds / r.redraws if r.redraws else 0.0

    @property
    def refresh_rate(self) -> float:
        """Refresher wake-ups per second during the last run (0 before one); a wake-up
        redraws only when the view's state changed."""
        return self.refresher._per_second(self.refresher.wakeups)

    @property
    def redraw_rate(self) -> float:
        """Redraws per second during the last run (0 before one)."""
        return self.refresher._per_second(self.refresher.redraws)

    # older names, kept: ``refreshes`` counts redraws, ``refresh_ticks`` wake-ups
    @property
    def refreshes(self) -> int:
        """Redraws during the last run (the older name of :attr:`redraws`)."""
        return self.refresher.redraws

    @property
    def refresh_ticks(self) -> int:
        """Refresher wake-ups (the older name of :attr:`wakeups`)."""
        return self.refresher.wakeups


# --------------------------------------------------------------------------- words


def final_status(timeline: Timeline) -> str:
    """The end of a run in a few words, from its per-request record: ``"complete"``, or
    each status that is not complete with its count (``"interrupted"``, ``"preempted 1 of
    2 requests"`` ...)."""
    if not timeline.req_ids:
        return "nothing was sent"
    statuses = timeline.requests["status"].tolist()
    if all(s == "complete" for s in statuses):
        return "complete"
    counts = {s: statuses.count(s) for s in dict.fromkeys(statuses) if s != "complete"}
    if len(statuses) == 1:
        return next(iter(counts))
    return ", ".join(f"{s} {n} of {len(statuses)} requests" for s, n in counts.items())


def outcome_text(
    timeline: Timeline, *, error: str | None = None, stopped: str | None = None, capture: bool = False
) -> str:
    """The status a panel shows when its run ended.

    - ``stopped``: the run was ended early for that reason (``"stopped: <reason>"``);
    - ``error``: the run failed with that text (``"error: <text> (<requests>)"``);
    - else the requests' outcome (:func:`final_status`); with ``capture``, after what was
      captured (``"done: 50 keyframes for 2.00 s of capture"``, the outcome added in
      parentheses when a request did not complete).
    """
    if stopped:
        return f"stopped: {stopped}"
    requests = final_status(timeline)
    if error:
        return f"error: {error} ({requests})"
    if capture:
        done = f"done: {timeline.n_keyframes} keyframes for {timeline.audio_duration:.2f} s of capture"
        return done if requests in ("complete", "nothing was sent") else f"{done} ({requests})"
    return requests


WAITING = "waiting for keyframes"


def _one_line(text: str | None) -> str:
    """The first non-blank line of ``text`` ("" for none)."""
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def empty_text(
    timeline: Timeline,
    *,
    ended: bool,
    error: str | None = None,
    stopped: str | None = None,
    captured: float | None = None,
    max_chars: int = 90,
) -> str:
    """What a live view shows while ``timeline`` holds no keyframe, in one short line.

    Before a run and while one goes on: ``"waiting for keyframes"``. Once it ``ended``,
    why none came: ``"no keyframes: <why>"``, where the reason is the first line of
    ``error`` (the run failed or was refused), else ``stopped`` (it was ended early, e.g.
    ``"cancelled"``), else the first error the Timeline recorded, else the requests'
    outcome (``"interrupted"``, ``"nothing was sent"``; a run whose requests completed says
    so). ``captured`` (seconds) adds what was captured. The reason is cut so that the line
    keeps to ``max_chars``.
    """
    if not ended:
        return WAITING
    why = _one_line(error) or _one_line(stopped) or next(filter(None, map(_one_line, timeline.errors)), "")
    if not why:
        requests = final_status(timeline)
        why = "the run completed without any" if requests == "complete" else requests
    prefix, suffix = "no keyframes: ", "" if captured is None else f" ({captured:.1f} s captured)"
    room = max(int(max_chars) - len(prefix) - len(suffix), 12)  # the reason is what gets cut
    if len(why) > room:
        cut = why[: room - 1]
        word = cut.rsplit(" ", 1)[0]  # at a word's end, unless that drops most of it
        why = (word if len(word) >= room // 2 else cut).rstrip(" ,;:-") + "\u2026"
    return prefix + why + suffix


def _ms(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value * 1000:.0f} ms"


def stats_html(
    tl: Timeline,
    sequencer: CaptureSequencer | None = None,
    *,
    current: bool = False,
    count_label: str = "keyframes",
) -> str:
    """First-frame latency, latency percentiles and jitter of ``tl``, in ms, as one line.

    ``current`` adds the latest keyframe's lateness (its latency under ``"fast"`` pacing,
    which has no playback clock); ``sequencer`` adds the capture's trouble counts.
    """
    n = tl.n_keyframes
    parts = [f"{count_label} <b>{n}</b>", f"audio sent {tl.audio_duration:.2f} s"]
    if n:
        latency = tl.latency
        finite = latency[np.isfinite(latency)]
        parts.append(f"first frame <b>{_ms(tl.first_frame_latency)}</b>")
        if finite.size:
            p50, p90, p99 = np.percentile(finite, (50, 90, 99))
            parts.append(f"latency p50 / p90 / p99 <b>{_ms(p50)}</b> / {_ms(p90)} / {_ms(p99)}")
        parts.append(f"jitter {_ms(tl.jitter)}")
        if current:
            if tl.pacing == "fast":  # no playback clock: the service's delay is what means something
                parts.append(f"current latency <b>{_ms(float(latency[-1]))}</b> (fast pacing)")
            else:
                parts.append(f"current lateness <b>{_ms(float(tl.lateness[-1]))}</b>")
    if sequencer is not None:
        counts = sequencer.counts()
        trouble = {k: v for k, v in counts.items() if k not in ("gap_samples", "errors") and v}
        if trouble:
            parts.append(
                '<span style="color:#b03a2e">'
                + html.escape(", ".join(f"{k} {v}" for k, v in trouble.items()))
                + "</span>"
            )
    return " &nbsp;·&nbsp; ".join(parts)
