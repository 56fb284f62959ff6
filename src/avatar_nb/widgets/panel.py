"""SessionPanel: start and stop a live session from a notebook and watch it arrive.

The session and the panel's refresher are both tasks on the kernel's event loop, so the
kernel stays responsive and cells keep running while audio streams. The refresher
redraws at ``refresh_hz`` (default 12 a second) and only when the Timeline changed;
its drawing is SVG markup built from the Timeline's arrays, well under a millisecond,
so it takes no noticeable time from the stream.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ipywidgets as w

from .. import plots
from ..audio import prepare_audio, speech_like
from ..endpoints import open_service
from ..pacing import DEFAULT_CHUNK_MS, Pacing, pacing_from_realtime
from ..protocol import DEFAULT_SAMPLE_RATE
from ..session import AvatarSession
from ..timeline import Timeline
from .live import LiveCounters, LiveRefresher, empty_text, final_status, outcome_text, stats_html

__all__ = ["SessionPanel", "final_status"]


class SessionPanel(LiveCounters, w.VBox):
    """Buttons to start a session and interrupt it, live status and a live timeline.

    ``audio`` (an audio file path, an array with ``sample_rate``, or s16le bytes; default
    8 s of generated speech) is streamed as one utterance in ``chunk_ms`` chunks with the
    given ``pacing`` (see :mod:`avatar_nb.pacing`; ``realtime=False`` is the older
    spelling of ``"fast"``). The service is chosen by :func:`avatar_nb.endpoints.open_service`:
    ``service``, else the endpoints in ``session_kwargs`` or the ``AVATAR_NB_*`` variables,
    else an embedded LocalService for the run. When the run ends the status shows each
    request's outcome (complete, interrupted, preempted, failed) from
    ``timeline.requests``; a run that ended without keyframes (refused, failed, cancelled,
    interrupted) says why on the live view too, as the microphone panel does. From code: ``panel.start()`` returns the session task,
    ``await panel.interrupt()``, ``await panel.wait()``; ``panel.timeline`` is the run's
    Timeline. ``wakeups``, ``redraws``, ``redraw_seconds`` and ``redraw_ms`` count the live
    view's work during the last run, as on every live panel (see :mod:`avatar_nb.widgets.live`).
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
        self._task: asyncio.Task[Timeline] | None = None
        # how the last run ended, for the live view while it holds no keyframe
        self._ended = False
        self._error: str | None = None
        self._stopped: str | None = None
        self.refresher = LiveRefresher(
            self.refresh_interval, lambda: (self.timeline.version, self._ended), self._draw
        )

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

    def start(self) -> asyncio.Task[Timeline]:
        """Start streaming on the running event loop; return the task (its result: the Timeline)."""
        if self.running:
            raise RuntimeError("a session is already running in this panel")
        self.timeline = Timeline(sample_rate=self.target_rate)
        self._ended, self._error, self._stopped = False, None, None
        self.refresher.forget()
        self._render()  # the last run's view (and what it said) is gone at once
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
        self.refresher.start()
        tl = self.timeline
        error: str | None = None
        stopped: str | None = None
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
        except asyncio.CancelledError:
            stopped = "cancelled"
            raise
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            tl.add_error(error)
        finally:
            await self.refresher.stop()
            self._ended, self._error, self._stopped = True, error, stopped
            self._render()  # the view's state changed (the run ended): a redraw
            self._set_status(outcome_text(tl, error=error, stopped=stopped))
            self.start_button.disabled = False
            self.stop_button.disabled = True
        return tl

    # ------------------------------------------------------------------ drawing

    def _set_status(self, text: str) -> None:
        self.status.value = f"<b>{text}</b>"

    def _render(self) -> None:
        """Redraw now if the Timeline changed since the last redraw."""
        self.refresher.redraw()

    def _draw(self) -> None:
        tl = self.timeline
        why = empty_text(tl, ended=self._ended, error=self._error, stopped=self._stopped, max_chars=self.width // 7)
        self.live.value = plots.live_svg(tl, window=self.window, width=self.width, empty_text=why)
        self.stats.value = stats_html(tl, current=True, count_label="frames received:")
