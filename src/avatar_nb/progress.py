"""Progress of one long streaming call (``animate``, the demo): a ``tqdm.auto`` bar drawn
from a thread of its own, never from the session's event loop.

A measured session must not wait for a progress bar: drawing one (a terminal write, or
a widget message in a notebook) inside the event loop that stamps arrival times would
delay the very frames it counts. So the session only fills its Timeline as always, and
a daemon thread polls two counters of that Timeline :data:`POLLS_PER_SECOND` times a
second: the seconds of audio sent (its chunk log) and the seconds animated (keyframes
received over fps). It reads the entries appended since its last poll, without locks
(appending to a list and reading its length are atomic in CPython), and draws.

The bar appears only once the call has run :data:`SHOW_AFTER_SECONDS`, so calls that
end sooner print nothing; ``progress=False`` on the calling function turns it off.
Inside an enclosing :func:`streaming_bars` block (or after :func:`set_streaming_bars`,
which the command line calls for ``demo`` and a ``run`` of one file), every clip streamed
by :func:`avatar_nb.pipeline.stream_clip` gets one.

A batch of many clips (:func:`avatar_nb.batch.run_batch`, ``avatar-nb run`` of a folder)
has :class:`BatchProgress` instead: one thread draws the bar counting the runs and, below
it, a line per clip streaming (its seconds animated out of its length), closed as the
clip ends; the loop only registers each clip's Timeline and bumps a counter per run.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

    from .timeline import Timeline

__all__ = [
    "POLLS_PER_SECOND",
    "SHOW_AFTER_SECONDS",
    "BatchProgress",
    "StreamProgress",
    "batch_clip",
    "set_streaming_bars",
    "streaming_bars",
]

#: Seconds a call runs before its bar appears (shorter calls print nothing).
SHOW_AFTER_SECONDS: float = 2.0
#: Redraws a second at most, from the polling thread.
POLLS_PER_SECOND: float = 4.0

_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of audio [{elapsed}<{remaining}{postfix}]"
#: a batch's clip: its name and colon padded to the batch's longest name, so the bars line up
_CLIP_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of audio [{elapsed}<{remaining}{postfix}]"

_WANTED: contextvars.ContextVar[bool] = contextvars.ContextVar("avatar_nb_streaming_bars", default=False)


@contextlib.contextmanager
def streaming_bars(enabled: bool = True) -> Iterator[None]:
    """Within this block (and the tasks started from it), every clip that
    :func:`~avatar_nb.pipeline.stream_clip` streams shows a :class:`StreamProgress` bar."""
    token = _WANTED.set(enabled)
    try:
        yield
    finally:
        _WANTED.reset(token)


def set_streaming_bars(enabled: bool = True) -> contextvars.Token[bool]:
    """:func:`streaming_bars` for the rest of the current context (a command's process);
    the token undoes it (``_WANTED.reset(token)``)."""
    return _WANTED.set(bool(enabled))


def bars_wanted() -> bool:
    """Whether an enclosing :func:`streaming_bars` block asks for a bar per clip."""
    return _WANTED.get()


class _Polled:
    """The polling thread of a bar: :meth:`poll` every 1/:data:`POLLS_PER_SECOND` s from
    :meth:`_start` until :meth:`_finish`, which stops it and polls once more from the
    caller (the sessions have ended: the last redraw is the caller's)."""

    polls = 0
    _thread: threading.Thread | None = None

    def _start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="avatar_nb-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = 1.0 / POLLS_PER_SECOND
        while not self._stop.wait(interval):
            self.poll()

    def _finish(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()

    def poll(self) -> None:  # pragma: no cover - each bar has its own
        raise NotImplementedError


class StreamProgress(_Polled):
    """A bar of one clip's streaming: seconds animated out of ``total_seconds`` of audio,
    with the seconds sent beside it, redrawn by a polling thread (see the module's notes).

    Use as a context manager around the call that fills ``timeline``; ``enabled=False``
    makes it do nothing. ``file``, ``delay`` and ``leave`` go to tqdm (default: stderr,
    or the notebook's widget; :data:`SHOW_AFTER_SECONDS`; the bar stays). On a normal
    exit the bar ends full.
    """

    def __init__(
        self,
        timeline: Timeline,
        total_seconds: float,
        *,
        desc: str = "animating",
        enabled: bool = True,
        file: Any = None,
        delay: float | None = None,
        leave: bool = True,
    ) -> None:
        self.timeline = timeline
        self.total = max(0.0, float(total_seconds))
        self.desc = desc
        self.enabled = bool(enabled) and self.total > 0
        self.file = file
        self.delay = SHOW_AFTER_SECONDS if delay is None else float(delay)
        self.leave = leave
        self.bar: Any = None
        self._counts = _Counts(timeline)

    def __enter__(self) -> Self:
        if not self.enabled:
            return self
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=self.total,
            desc=self.desc,
            bar_format=_BAR_FORMAT,
            delay=self.delay,
            mininterval=0.9 / POLLS_PER_SECOND,
            miniters=0,  # every poll may redraw, within mininterval (and once delay has passed)
            file=self.file,
            dynamic_ncols=True,
            leave=self.leave,
        )
        self._start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.bar is None:
            return
        self._finish()
        if exc_type is None:  # the call ended normally: the whole clip is done
            self.bar.update(self.bar.total - self.bar.n)
        self.bar.close()

    def poll(self) -> None:
        """Read the Timeline's new entries and redraw (the thread's work; also called once at the end)."""
        animated, sent = self._counts.read()
        animated = min(self.total, animated)
        self.polls += 1
        self.bar.set_postfix_str(f"sent {min(sent, self.total):.1f} s", refresh=False)
        self.bar.update(animated - self.bar.n)  # redraws once tqdm's delay and minimum interval allow


class _Counts:
    """Seconds animated and sent of one Timeline, read incrementally and without locks:
    its lists only grow, so their lengths are read first, then the entries up to them."""

    __slots__ = ("keyframes", "samples", "seen_chunks", "seen_messages", "timeline")

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.seen_messages = self.seen_chunks = self.keyframes = self.samples = 0

    def read(self) -> tuple[float, float]:
        """(seconds animated, seconds sent) so far."""
        tl = self.timeline
        n_messages, n_chunks = len(tl._msg_count), len(tl._chunk_samples)
        self.keyframes += sum(tl._msg_count[self.seen_messages : n_messages])
        self.samples += sum(tl._chunk_samples[self.seen_chunks : n_chunks])
        self.seen_messages, self.seen_chunks = n_messages, n_chunks
        return self.keyframes / tl.fps, (self.samples / tl.sample_rate if tl.sample_rate else 0.0)


# ----------------------------------------------------------------------------- a batch's bars

#: The task's clip in a batch: the :class:`BatchProgress` that draws it and the clip's name.
_CLIP: contextvars.ContextVar[tuple[BatchProgress, str] | None] = contextvars.ContextVar(
    "avatar_nb_batch_clip", default=None
)


def batch_clip() -> tuple[BatchProgress, str] | None:
    """The :class:`BatchProgress` (and clip name) the current task's clip is drawn by, if any."""
    return _CLIP.get()


class _Running:
    """One clip streaming in a batch, as the loop registered it and the thread draws it."""

    __slots__ = ("animated", "bar", "counts", "ended", "name", "ok", "slot", "started", "total")

    def __init__(self, timeline: Timeline, total: float, name: str) -> None:
        self.counts = _Counts(timeline)
        self.total = total
        self.name = name
        self.started = time.monotonic()
        self.ended = False
        self.ok = False
        self.bar: Any = None
        self.slot = 0
        self.animated = 0.0


class BatchProgress(_Polled):
    """The bars of a batch (``avatar-nb run`` of many clips, :func:`avatar_nb.batch.run_batch`):
    one counting the runs finished (with the hours of audio), and one per clip streaming
    (its seconds animated out of its length, the seconds sent beside it), at positions
    1, 2 ... below it (at most the batch's concurrency), closed as each clip ends.

    All of them are drawn by one polling thread, as :class:`StreamProgress` is: the event
    loop that runs the sessions only appends to lists and bumps counters
    (:meth:`run_done`, :meth:`track`). A clip's bar appears once it has streamed
    :data:`SHOW_AFTER_SECONDS` (``delay``). ``clip_bars=False`` keeps the runs bar only;
    ``enabled=False`` draws nothing and starts no thread.

    ``finished`` lists, for each clip bar closed, ``(name, seconds animated as last counted,
    clip length)``; ``most_lines`` is the most clip lines open at once.
    """

    def __init__(
        self,
        runs: int,
        *,
        enabled: bool = True,
        clip_bars: bool = True,
        file: Any = None,
        delay: float | None = None,
        label_width: int = 0,
    ) -> None:
        self.runs = int(runs)
        self.enabled = bool(enabled)
        self.clip_bars = self.enabled and bool(clip_bars)
        self.file = file
        self.delay = SHOW_AFTER_SECONDS if delay is None else float(delay)
        self.label_width = max(0, int(label_width))
        self.bar: Any = None
        self.finished: list[tuple[str, float, float]] = []
        self.most_lines = 0
        self._done = 0
        self._audio_seconds = 0.0
        self._running: list[_Running] = []
        self._lock = threading.Lock()  # held only to copy or change the list of running clips

    # -- the loop's side: cheap

    def run_done(self, audio_seconds: float = 0.0) -> None:
        """One run finished (called by the batch, in its loop): counters only."""
        self._audio_seconds += float(audio_seconds or 0.0)
        self._done += 1

    @contextlib.contextmanager
    def clip(self, name: str) -> Iterator[None]:
        """Within this block, the clip :func:`~avatar_nb.pipeline.stream_clip` streams in the
        current task gets a bar of its own, labelled ``name``."""
        token = _CLIP.set((self, name) if self.clip_bars else None)
        try:
            yield
        finally:
            _CLIP.reset(token)

    @contextlib.contextmanager
    def track(self, timeline: Timeline, total_seconds: float, name: str) -> Iterator[None]:
        """Around the streaming of one clip into ``timeline``; a normal exit fills its bar."""
        entry = _Running(timeline, max(0.0, float(total_seconds)), name)
        with self._lock:
            self._running.append(entry)
        try:
            yield
            entry.ok = True
        finally:
            entry.ended = True

    # -- the thread's side: every write to the terminal or the notebook

    def __enter__(self) -> Self:
        if not self.enabled:
            return self
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.runs, unit="clip", desc="streaming", file=self.file or sys.stderr,
                        dynamic_ncols=True, position=0)
        self._start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.bar is None:
            return
        self._finish()
        for entry in self._running:  # interrupted: the clips that did not end
            self._close(entry)
        self._running.clear()
        self.bar.close()

    def poll(self) -> None:
        """Redraw every bar from the counters (the thread's work; also called once at the end)."""
        self.polls += 1
        with self._lock:
            running = list(self._running)
        # the clips that ended first, so that their lines are free for the clips that start
        for entry in [e for e in running if e.ended]:
            self._draw(entry)
            self._close(entry)
            with self._lock:
                self._running.remove(entry)
        for entry in running:
            if not entry.ended:
                self._draw(entry)
        bar = self.bar
        bar.set_postfix_str(f"{self._audio_seconds / 3600.0:.4f} h audio", refresh=False)
        bar.update(self._done - bar.n)

    def _draw(self, entry: _Running) -> None:
        from tqdm.auto import tqdm

        if entry.bar is None:
            with self._lock:
                taken = {e.slot for e in self._running if e.bar is not None}
            entry.slot = next(i for i in range(1, len(taken) + 2) if i not in taken)
            self.most_lines = max(self.most_lines, len(taken) + 1)
            label = entry.name if len(entry.name) <= 24 else entry.name[:21] + "..."
            entry.bar = tqdm(
                total=entry.total,
                desc=f"{label}:".ljust(min(24, self.label_width) + 1),
                bar_format=_CLIP_FORMAT,
                position=entry.slot,
                leave=False,
                # shown once the clip has streamed `delay` seconds (it may have started between polls)
                delay=max(0.0, self.delay - (time.monotonic() - entry.started)),
                mininterval=0.9 / POLLS_PER_SECOND,
                miniters=0,
                file=self.file or sys.stderr,
                dynamic_ncols=True,
            )
        animated, sent = entry.counts.read()
        entry.animated = animated
        if entry.ended and entry.ok:  # the clip streamed to its end: the whole clip is done
            animated = sent = entry.total
        entry.bar.set_postfix_str(f"sent {min(sent, entry.total):.1f} s", refresh=False)
        entry.bar.update(min(entry.total, animated) - entry.bar.n)

    def _close(self, entry: _Running) -> None:
        bar = entry.bar
        if bar is None:
            return
        if entry.ok and time.monotonic() - entry.started >= self.delay:
            bar.refresh()  # its full state, once, before its line is cleared
        self.finished.append((entry.name, entry.animated, entry.total))
        bar.close()
        entry.bar = None
