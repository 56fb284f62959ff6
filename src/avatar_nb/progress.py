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
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

    from .timeline import Timeline

__all__ = ["POLLS_PER_SECOND", "SHOW_AFTER_SECONDS", "StreamProgress", "set_streaming_bars", "streaming_bars"]

#: Seconds a call runs before its bar appears (shorter calls print nothing).
SHOW_AFTER_SECONDS: float = 2.0
#: Redraws a second at most, from the polling thread.
POLLS_PER_SECOND: float = 4.0

_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of audio [{elapsed}<{remaining}{postfix}]"

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


class StreamProgress:
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
        self.polls = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen_messages = 0
        self._seen_chunks = 0
        self._keyframes = 0
        self._samples = 0

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
        self._thread = threading.Thread(target=self._run, name="avatar_nb-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.bar is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()
        if exc_type is None:  # the call ended normally: the whole clip is done
            self.bar.update(self.bar.total - self.bar.n)
        self.bar.close()

    def _run(self) -> None:
        interval = 1.0 / POLLS_PER_SECOND
        while not self._stop.wait(interval):
            self.poll()

    def poll(self) -> None:
        """Read the Timeline's new entries and redraw (the thread's work; also called once at the end)."""
        tl = self.timeline
        # the lists only grow; read their lengths first, then the entries up to them
        n_messages, n_chunks = len(tl._msg_count), len(tl._chunk_samples)
        self._keyframes += sum(tl._msg_count[self._seen_messages : n_messages])
        self._samples += sum(tl._chunk_samples[self._seen_chunks : n_chunks])
        self._seen_messages, self._seen_chunks = n_messages, n_chunks
        animated = min(self.total, self._keyframes / tl.fps)
        sent = self._samples / tl.sample_rate if tl.sample_rate else 0.0
        self.polls += 1
        self.bar.set_postfix_str(f"sent {min(sent, self.total):.1f} s", refresh=False)
        self.bar.update(animated - self.bar.n)  # redraws once tqdm's delay and minimum interval allow
