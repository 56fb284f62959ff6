"""SessionPanel: start and stop a live session from a notebook and watch it arrive.

The session and the panel's refresher are both tasks on the kernel's event loop, so the
kernel stays responsive and cells keep running while audio streams. The refresher
redraws at ``refresh_hz`` (default 12 a second) and only when the Timeline changed;
its drawing is SVG markup built from the Timeline's arrays, well under a millisecond,
so it takes no noticeable time from the stream.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ipywidgets as w

from .. import plots
from ..audio import prepare_audio, speech_like
from ..endpoints import open_service
from ..pacing import DEFAULT_CHUNK_MS, Pacing, pacing_from_realtime
from ..protocol import DEFAULT_SAMPLE_RATE
from ..session import AvatarSession
from ..timeline import Timeline

__all__ = ["SessionPanel"]


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


class SessionPanel(w.VBox):
    """Buttons to start a session and interrupt it, live status and a live timeline.

    ``audio`` (an audio file path, an array with ``sample_rate``, or s16le bytes; default
    8 s of generated speech) is streamed as one utterance in ``chunk_ms`` chunks with the
    given ``pacing`` (see :mod:`avatar_nb.pacing`; ``realtime=False`` is the older
    spelling of ``"fast"``). The service is chosen by :func:`avatar_nb.endpoints.open_service`:
    ``service``, else the endpoints in ``session_kwargs`` or the ``AVATAR_NB_*`` variables,
    else an embedded LocalService for the run. When the run ends the status shows each
    request's outcome (complete, interrupted, preempted, failed) from
    ``timeline.requests``. From code: ``panel.start()`` returns the session task,
    ``await panel.interrupt()``, ``await panel.wait()``; ``panel.timeline`` is the run's
    Timeline.
    """

    def __init__(
        self,
        audio: Any = None,
        sample_rate: int | None = None,
        *,
        service: Any = None,
        chunk_ms: float = DEFAULT_CHUNK_MS,
        pacing: Pacing | None = None,
        realtime: bool | None = None,
        refresh_hz: float = 12.0,
        window: float = 8.0,
        width: int = 700,
        target_rate: int = DEFAULT_SAMPLE_RATE,
        **session_kwargs: Any,
    ) -> None:
        if audio is None:
            audio, sample_rate = speech_like(8.0, target_rate), target_rate
        elif isinstance(audio, (bytes, bytearray, memoryview)) and sample_rate is None:
            sample_rate = target_rate
        self.pcm = prepare_audio(audio, sample_rate, target_rate=target_rate)
        self.target_rate = target_rate
        self.service = service
        self.chunk_ms = chunk_ms
        self.pacing: Pacing = pacing_from_realtime(realtime, pacing)
        self.refresh_interval = 1.0 / refresh_hz
        self.window = window
        self.width = width
        self.session_kwargs = session_kwargs
        self.timeline = Timeline(sample_rate=target_rate)
        self.session: AvatarSession | None = None
        self.refreshes = 0
        self._refresh_started = 0.0
        self._refresh_ended = 0.0
        self._task: asyncio.Task[Timeline] | None = None
        self._drawn_version = -1

        self.start_button = w.Button(description="Start", icon="play", button_style="success")
        self.stop_button = w.Button(description="Interrupt", icon="stop", button_style="warning", disabled=True)
        self.status = w.HTML("<b>idle</b>")
        self.stats = w.HTML("")
        self.live = w.HTML(plots.live_svg(self.timeline, window=window, width=width))
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: asyncio.ensure_future(self.interrupt()))
        super().__init__([w.HBox([self.start_button, self.stop_button, self.status]), self.stats, self.live])

    # ------------------------------------------------------------------ control

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def refresh_rate(self) -> float:
        """Refresher wake-ups per second during the last run (0 before one); a wake-up
        redraws only when the Timeline changed."""
        end = self._refresh_ended or time.monotonic()
        span = end - self._refresh_started
        return self.refreshes / span if self._refresh_started and span > 0 else 0.0

    def start(self) -> asyncio.Task[Timeline]:
        """Start streaming on the running event loop; return the task (its result: the Timeline)."""
        if self.running:
            raise RuntimeError("a session is already running in this panel")
        self.timeline = Timeline(sample_rate=self.target_rate)
        self._drawn_version = -1
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self._task

    async def interrupt(self) -> str | None:
        """Interrupt the utterance being animated (no-op when nothing streams)."""
        if self.session is None or self.session.closed or self.session.last_req_id is None:
            return None
        self._set_status("interrupting")
        return await self.session.interrupt()

    async def wait(self) -> Timeline:
        """Wait for the current run to finish; return its Timeline."""
        if self._task is None:
            raise RuntimeError("nothing was started")
        return await self._task

    # ------------------------------------------------------------------ the run

    async def _run(self) -> Timeline:
        self.start_button.disabled = True
        self.stop_button.disabled = False
        refresher = asyncio.get_running_loop().create_task(self._refresh_loop())
        tl = self.timeline
        error: str | None = None
        try:
            self._set_status("connecting")
            async with open_service(self.service, local_options={"realtime": self.pacing != "fast"},
                                    **self.session_kwargs) as handle:
                session = AvatarSession(handle.config(sample_rate=self.target_rate), timeline=tl)
                self.session = session
                tl.meta.update({"pacing": self.pacing, "chunk_ms": self.chunk_ms, "sample_rate": self.target_rate,
                                "service": handle.label})
                async with session:
                    self._set_status(f"streaming ({session.connection_id})")
                    req = await session.stream(self.pcm, chunk_ms=self.chunk_ms, pacing=self.pacing)
                    self._set_status("waiting for the last frames")
                    await session.wait_for_end(req, timeout=30.0)
        except Exception as exc:
            error = str(exc)
            tl.add_error(error)
        finally:
            refresher.cancel()
            try:
                await refresher
            except asyncio.CancelledError:
                pass
            self._refresh_ended = time.monotonic()
            self._render()
            outcome = final_status(tl)
            self._set_status(f"error: {error} ({outcome})" if error else outcome)
            self.start_button.disabled = False
            self.stop_button.disabled = True
        return tl

    async def _refresh_loop(self) -> None:
        loop = asyncio.get_running_loop()
        self.refreshes = 0
        self._refresh_started = time.monotonic()
        self._refresh_ended = 0.0
        due = loop.time()
        while True:
            self._render()
            due += self.refresh_interval
            await asyncio.sleep(max(0.0, due - loop.time()))

    # ------------------------------------------------------------------ drawing

    def _set_status(self, text: str) -> None:
        self.status.value = f"<b>{text}</b>"

    def _render(self) -> None:
        tl = self.timeline
        self.refreshes += 1
        if tl.version == self._drawn_version:
            return
        self._drawn_version = tl.version
        self.live.value = plots.live_svg(tl, window=self.window, width=self.width)
        n = tl.n_keyframes
        if n:
            first = tl.first_frame_latency * 1000.0
            if tl.pacing == "fast":  # no playback clock: the service's delay is what means something
                current = f"current latency: <b>{float(tl.latency[-1]) * 1000.0:.0f} ms</b> (fast pacing)"
            else:
                current = f"current lateness: <b>{float(tl.lateness[-1]) * 1000.0:.0f} ms</b>"
            self.stats.value = (
                f"frames received: <b>{n}</b> &nbsp; audio sent: {tl.audio_duration:.2f} s &nbsp; "
                f"first frame: {first:.0f} ms &nbsp; {current}"
            )
        else:
            self.stats.value = f"frames received: 0 &nbsp; audio sent: {tl.audio_duration:.2f} s"
