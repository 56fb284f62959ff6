"""MicrophonePanel: talk to the avatar from the notebook and watch its answer and timing live.

Where the audio is converted, and why: in the browser. An AudioWorklet mixes the
microphone to mono, converts it to s16le at the session's sample rate (the AudioContext
runs at that rate, so the browser's own resampler does the work; the worklet resamples
only when a browser refuses that) and cuts it into chunks of ``chunk_ms``. Each chunk
then travels to the kernel as one binary widget message (``model.send(content,
callbacks, [buffer])``, no base64) a sixth the size of the 48 kHz float32 the browser
captures, and the kernel's event loop, which also runs the session, does no resampling.

Kernel side, one chunk message at a time (:meth:`MicrophonePanel._on_browser_msg`, the
same path for :meth:`MicrophonePanel.feed_file`; the ordering itself, without I/O, is
:class:`~avatar_nb.widgets.capture.CaptureSequencer`):

- capture pacing: a chunk is queued for the session the moment it arrives, so it
  leaves when it was captured, as from any live client; nothing waits for reordering;
- sequence numbers: a gap (chunks ``n..m-1`` missing when ``m`` arrives) is filled at
  once with silence of the missing length, so media time stays that of the capture,
  and counted (``gaps``, ``gap_seconds``); a gap longer than the queue holds (250
  chunks, 10 s of 40 ms chunks) is not filled: it ends the capture with an error saying
  so (``error``, the Timeline's errors, status "error"); a chunk arriving after its slot was filled
  (reordered) is dropped and counted ``late``, a repeated one ``duplicates``;
- sizes: a chunk must hold exactly ``chunk_ms`` of s16le, except the last (``end``),
  which may be shorter; anything else (an odd number of bytes, another length) is
  rejected with a recorded error naming the size and what is accepted, nothing of it
  is sent, and its slot is filled with silence like a gap;
- stop mid-chunk: the browser flushes the partial chunk with ``end=True``.

Times: the run's origin is the capture start (the first sample of chunk 0); the
Timeline's send and arrival times are seconds since it (``meta["pacing"] ==
"capture"``). The page and the kernel share no clock: the page stamps each chunk with
``performance.now()`` when its last sample reached the page, the kernel maps those
stamps onto its monotonic clock by taking the first chunk's transit to the kernel as
zero (on one machine it is a few ms), so every capture time and the origin follow.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import anywidget
import numpy as np
import traitlets

from .. import plots
from ..endpoints import open_service
from ..pacing import DEFAULT_CHUNK_MS, check_chunk_ms, send_offset
from ..protocol import DEFAULT_SAMPLE_RATE, check_sample_rate
from ..session import AvatarSession
from ..timeline import Timeline
from .capture import CaptureGapError, CaptureSequencer, OutgoingChunk
from .live import LiveCounters, LiveRefresher, empty_text, outcome_text, stats_html

__all__ = ["CaptureSequencer", "MicrophonePanel", "OutgoingChunk", "stats_html"]

_STATIC = Path(__file__).resolve().parent / "static"
_MAX_QUEUED = 250  # chunks waiting for the session (10 s at 40 ms) before capture stops
_FACE_SIZE = 160


# --------------------------------------------------------------------------- the widget


class MicrophonePanel(LiveCounters, anywidget.AnyWidget):
    """Speak into the browser's microphone; the kernel streams it to an avatar session.

    ``service`` and ``session_kwargs`` choose the service as everywhere in avatar_nb
    (:func:`avatar_nb.endpoints.open_service`: a given LocalService, endpoints, the
    ``AVATAR_NB_*`` variables, else an embedded LocalService for the run). Chunks are
    ``chunk_ms`` long at ``sample_rate``. Press **Start** (or call :meth:`start`), talk,
    press **Stop** (or ``await panel.stop()``); **Interrupt** ends the utterance being
    animated while capture goes on (the next chunk starts a new request).

    The view shows the captured waveform, the face and channel traces of the latest
    keyframes, first-frame latency, latency percentiles and jitter, redrawn at
    ``refresh_hz`` from a task on the kernel's loop and only when the Timeline changed;
    ``wakeups``, ``redraws``, ``redraw_seconds`` and ``redraw_ms`` count that work during
    the last run, as on every live panel (see :mod:`avatar_nb.widgets.live`).

    After a run: ``panel.timeline`` (captured audio, send and arrival times since the
    capture start, ``meta["pacing"] == "capture"``, ``meta["capture"]`` with the capture
    times and the gap/error counts), ``panel.chunks`` (one row per chunk sent) and
    ``panel.error`` (the microphone's refusal, or the run's error, as text).

    Without a microphone, :meth:`feed_file` sends a WAV file through the same kernel-side
    path at capture pace: a stand-in for the microphone in scripts and headless runs.
    """

    _esm = (_STATIC / "microphone.js").read_text(encoding="utf-8")
    _css = (_STATIC / "microphone.css").read_text(encoding="utf-8")

    status = traitlets.Unicode("idle").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    stats = traitlets.Unicode("").tag(sync=True)
    wave = traitlets.Unicode("").tag(sync=True)
    traces = traitlets.Unicode("").tag(sync=True)
    face = traitlets.Unicode("").tag(sync=True)
    running = traitlets.Bool(False).tag(sync=True)
    sample_rate = traitlets.Int(DEFAULT_SAMPLE_RATE).tag(sync=True)
    chunk_samples = traitlets.Int(640).tag(sync=True)

    def __init__(
        self,
        service: Any = None,
        *,
        chunk_ms: float = DEFAULT_CHUNK_MS,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        refresh_hz: float = 12.0,
        window: float = 8.0,
        width: int = 700,
        end_timeout: float = 10.0,
        **session_kwargs: Any,
    ) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
        check_sample_rate(sample_rate)  # one the service accepts, refused here rather than at Start
        chunk_ms = check_chunk_ms(chunk_ms, sample_rate)  # finite, positive, fits one message
        if not (isinstance(refresh_hz, (int, float)) and refresh_hz > 0):
            raise ValueError(f"refresh_hz must be a positive number, got {refresh_hz!r}")
        chunk_samples = round(sample_rate * chunk_ms / 1000.0)
        if chunk_samples < 1:
            raise ValueError(f"chunk_ms={chunk_ms!r} at {sample_rate} Hz is less than one sample")
        super().__init__(sample_rate=sample_rate, chunk_samples=chunk_samples)
        self.service = service
        self.chunk_ms = chunk_ms
        self.session_kwargs = session_kwargs
        self.refresh_interval = 1.0 / float(refresh_hz)
        self.window = float(window)
        self.width = int(width)
        self.end_timeout = float(end_timeout)
        self.session: AvatarSession | None = None
        self.refresher = LiveRefresher(
            self.refresh_interval,
            lambda: (self.timeline.version, self._captured_samples),
            self._draw_steps,
            on_wakeup=self._watch_sigint,
        )
        self._task: asyncio.Task[Timeline] | None = None
        self._ready: asyncio.Event | None = None
        self._stop_requested: asyncio.Event | None = None
        self._queue: asyncio.Queue[OutgoingChunk | None] | None = None
        self._reset_run()
        self._sigint_handler: Any = None
        self.on_msg(self._on_browser_msg)
        self._render()

    # ------------------------------------------------------------------ state of a run

    def _reset_run(self) -> None:
        self.timeline = Timeline(sample_rate=self.sample_rate, meta={"pacing": "capture"})
        self.refresher.forget()  # drawn from (Timeline version, captured samples)
        self.sequencer = CaptureSequencer(self.chunk_samples, max_gap=_MAX_QUEUED)
        self._origin: float | None = None  # kernel monotonic time of the capture start
        # (page stamp, capture time) of the first chunk
        self._page_first: tuple[float, float] | None = None
        self._log: dict[str, list[Any]] = {
            k: [] for k in ("seq", "kind", "samples", "captured_at", "arrived_at", "sent_at", "end")
        }
        # the last few seconds of capture, for the waveform (bounded), and all of it only
        # until the session shows that it attaches what it sends to the Timeline itself
        self._recent: collections.deque[np.ndarray] = collections.deque()
        self._recent_samples = 0
        self._all_captured: list[np.ndarray] | None = []
        self._captured_samples = 0
        self.device = ""
        self.capture_rate: float | None = None
        self._end_queued = asyncio.Event()  # the request's end is in the queue
        self._page_capturing = False
        self._use_microphone = True
        self._stopped: str | None = None  # the run was cancelled (the live view says so)

    @property
    def is_running(self) -> bool:
        """True while a run (connecting, capturing or finishing) is in progress."""
        return self._task is not None and not self._task.done()

    @property
    def _session_open(self) -> bool:
        """A run is in progress and its session takes chunks (start() made the queue)."""
        return self.is_running and self._ready is not None and self._ready.is_set()

    @property
    def chunks(self) -> Any:
        """One row per chunk sent (pandas DataFrame): ``seq``, ``kind`` (audio/silence),
        ``samples``, ``captured_at`` (when its last sample was captured), ``arrived_at``
        (at the kernel), ``sent_at`` (handed to the socket), ``end``; seconds since the
        capture start."""
        import pandas as pd

        return pd.DataFrame({k: list(v) for k, v in self._log.items()})

    def __repr__(self) -> str:
        return (
            f"<MicrophonePanel {self.chunk_ms:g} ms chunks @ {self.sample_rate} Hz, status={self.status!r}, "
            f"{self.timeline.n_keyframes} keyframes>"
        )

    # ------------------------------------------------------------------ control

    def start(self, *, microphone: bool = True) -> asyncio.Task[Timeline]:
        """Open the session and (with ``microphone``) ask the page to capture; return the
        run's task (its result: the Timeline). Must be called on the kernel's running
        event loop. ``microphone=False`` takes chunks from code only (:meth:`feed_file`)."""
        if self.is_running:
            raise RuntimeError("this panel is already running; stop it first")
        loop = asyncio.get_running_loop()
        self._reset_run()
        self._use_microphone = bool(microphone)
        self.error = ""
        self._ready = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._queue = asyncio.Queue()
        self._task = loop.create_task(self._run())
        return self._task

    async def stop(self, timeout: float = 3.0) -> Timeline:
        """End the capture: the page flushes its partial chunk with ``end=True``; then
        wait for the last keyframes and close the session. Returns the Timeline."""
        task = self._task
        if task is None:
            return self.timeline
        self._request_stop()
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout + self.end_timeout + 5.0)
        except asyncio.CancelledError:
            await self._abort("cancelled while stopping")
            raise

    async def wait(self) -> Timeline:
        """Wait for the current run to end (Stop pressed, or :meth:`stop`); return its Timeline.

        A kernel interrupt while waiting stops the capture and closes the session."""
        if self._task is None:
            raise RuntimeError("nothing was started")
        try:
            return await asyncio.shield(self._task)
        except asyncio.CancelledError:
            await self._abort("kernel interrupted")
            raise

    async def interrupt(self) -> str | None:
        """Interrupt the utterance being animated; capture goes on as a new request."""
        session = self.session
        if session is None or session.closed or session.last_req_id is None:
            return None
        req_id = await session.interrupt()
        self._set_status(f"interrupted {req_id}; listening")
        return req_id

    def close(self) -> None:
        """Close the widget: stop capture and close the session (in the background)."""
        task = getattr(self, "_task", None)  # None also when __init__ refused its arguments
        if task is not None:
            self._send_to_page({"type": "stop"})
            if not task.done():
                task.cancel()  # the run's finally closes the session
            self._unwatch_sigint()
        super().close()

    # ------------------------------------------------------------------ the file stand-in

    async def feed_file(
        self,
        path: str | Path | Any,
        *,
        pacing: Literal["capture", "fast"] = "capture",
        seconds: float | None = None,
        realtime: bool | None = None,
    ) -> Timeline:
        """Stream an audio file (or an array with this panel's sample rate) through the
        kernel-side path the microphone uses: chunk messages with sequence numbers and
        capture stamps. A stand-in for a microphone; returns the Timeline.

        ``pacing="capture"`` (the default) delivers chunk ``i`` when its last sample would
        have been captured, as a microphone does; ``pacing="fast"`` delivers them as fast
        as the session takes them (the Timeline then says ``"fast"`` pacing). ``seconds``
        feeds only the beginning of the file. ``realtime=`` is the older spelling
        (``realtime=False`` is ``pacing="fast"``), deprecated.
        """
        if realtime is not None:
            warnings.warn(
                "feed_file(realtime=...) is deprecated; use pacing='capture' or pacing='fast'",
                DeprecationWarning,
                stacklevel=2,
            )
            pacing = "capture" if realtime else "fast"
        if pacing not in ("capture", "fast"):
            raise ValueError(
                f"feed_file paces chunks as a microphone ('capture') or not at all ('fast'), got {pacing!r}"
            )
        from ..audio import prepare_audio

        if isinstance(path, (str, Path)):
            pcm = prepare_audio(Path(path), None, target_rate=self.sample_rate)
        else:
            pcm = prepare_audio(path, self.sample_rate, target_rate=self.sample_rate)
        if seconds is not None:
            pcm = pcm[: 2 * int(seconds * self.sample_rate)]
        task = self.start(microphone=False)
        if pacing == "fast":
            self.timeline.meta["pacing"] = "fast"
        try:
            await self._wait_ready(task)
            self.capture_rate = float(self.sample_rate)
            self.device = f"file {Path(path).name}" if isinstance(path, (str, Path)) else "array"
            step = self.sequencer.chunk_bytes
            n = max(1, math.ceil(len(pcm) / step))
            loop = asyncio.get_running_loop()
            start = loop.time()
            for seq in range(n):
                if task.done() or (
                    self._stop_requested is not None and self._stop_requested.is_set()
                ):
                    break
                piece = pcm[seq * step : (seq + 1) * step]
                offset = send_offset(pacing, seq * step // 2, len(piece) // 2, self.sample_rate)
                if offset is not None:
                    await asyncio.sleep(max(0.0, start + offset - loop.time()))
                last = seq == n - 1
                self._on_browser_msg(
                    self, {"type": "chunk", "seq": seq, "t": time.monotonic(), "end": last}, [piece]
                )
            if not self._end_queued.is_set():
                self._request_stop()
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await self._abort("kernel interrupted")
            raise

    async def _wait_ready(self, task: asyncio.Task[Timeline]) -> None:
        assert self._ready is not None
        ready = asyncio.ensure_future(self._ready.wait())
        done, _ = await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            await task  # raises what failed
            raise RuntimeError(
                f"the session ended before capture started: {self.error or self.status}"
            )

    # ------------------------------------------------------------------ browser messages

    def _on_browser_msg(self, _widget: Any, content: Any, buffers: list[Any] | None) -> None:
        """One message from the page (or :meth:`feed_file`): chunk, start, stop, interrupt, error."""
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "chunk":
            self._on_chunk(content, buffers or [])
        elif kind == "start":
            if not self.is_running:
                self.start()
            elif self._use_microphone and self._session_open:
                self._send_to_page({"type": "capture"})  # a run started from code: join it
            elif not self._use_microphone:
                # the file stand-in is running: release the microphone
                self._send_to_page({"type": "stop"})
                self.sequencer.error(
                    "Start pressed while a file was being fed; the microphone was not used"
                )
        elif kind == "stop":
            # the page stopped without an end chunk: end the request here
            self._page_capturing = False
            self._request_stop(abort=True)
        elif kind == "interrupt":
            asyncio.ensure_future(self._interrupt_safely())
        elif kind == "capturing":
            self._page_capturing = True
            self.device = str(content.get("device") or "")
            rate = content.get("capture_rate")
            self.capture_rate = float(rate) if isinstance(rate, (int, float)) else None
            self.timeline.meta.setdefault("capture", {})["device"] = self.device
            self._set_status("listening" + (f" ({self.device})" if self.device else ""))
        elif kind == "error":
            name, message, hint = (str(content.get(k) or "") for k in ("name", "message", "hint"))
            self.error = (
                f"Microphone unavailable: {hint or 'it could not be opened'} ({name}: {message})"
            )
            self.timeline.add_error(self.error)
            self._set_status("microphone unavailable")
            self._request_stop(abort=True)
        else:
            self.sequencer.error(f"unknown message from the page dropped: {str(content)[:80]}")

    def _on_chunk(self, content: dict[str, Any], buffers: list[Any]) -> None:
        now = time.monotonic()
        seq, end = content.get("seq"), bool(content.get("end"))
        if not self._session_open:
            self.sequencer.error(f"chunk {seq!r} dropped: no session is open to take it")
            return
        if len(buffers) != 1:
            data = b""
            self.sequencer.error(
                f"chunk {seq!r} carried {len(buffers)} binary buffers; expected exactly one"
            )
            # treated as a chunk of the wrong size below (zero bytes), so its slot is filled
        else:
            data = bytes(buffers[0])
        stamp = content.get("t")
        stamp = float(stamp) if isinstance(stamp, (int, float)) and math.isfinite(stamp) else None
        try:
            chunks = self.sequencer.accept(seq, data, end)
        except CaptureGapError as exc:
            # a sequence number far ahead: filling it would exhaust memory, so the run ends
            seconds = (int(seq) - self.sequencer.next_seq) * self.chunk_samples / self.sample_rate
            self.error = f"Capture stopped ({seconds:.1f} s of audio missing): {exc}"  # recorded by _record_capture
            self._request_stop(abort=True)
            return
        for chunk in chunks:
            self._queue_chunk(chunk, now, stamp if chunk.kind == "audio" else None)
        if end:
            self._end_queued.set()

    def _queue_chunk(self, chunk: OutgoingChunk, arrived: float, stamp: float | None) -> None:
        assert self._queue is not None
        samples = len(chunk.pcm) // 2
        end_sample = self._captured_samples + samples  # capture-time position of its last sample
        capture_end = end_sample / self.sample_rate
        if self._origin is None:
            # the first chunk's transit from the page is taken as zero: it arrived when captured
            self._origin = arrived - capture_end
            if stamp is not None:
                self._page_first = (stamp, capture_end)
            if self.session is not None:
                # the session times sends and arrivals from this origin (see the module docstring)
                self.session.set_time_origin(self._origin)
        if stamp is not None and self._page_first is not None:
            captured_at = stamp - self._page_first[0] + self._page_first[1]
        else:
            captured_at = capture_end  # a filler, or a page without stamps: its nominal time
        if self._queue.qsize() >= _MAX_QUEUED:
            self.sequencer.error(
                f"the session fell {_MAX_QUEUED} chunks behind the capture; capture stopped"
            )
            self._request_stop(abort=True)
            return
        block = np.frombuffer(chunk.pcm, dtype="<i2")
        self._recent.append(block)
        self._recent_samples += block.shape[0]
        keep = int((self.window + 1.0) * self.sample_rate)
        while self._recent and self._recent_samples - self._recent[0].shape[0] >= keep:
            self._recent_samples -= self._recent.popleft().shape[0]
        if self._all_captured is not None:
            self._all_captured.append(block)
        self._captured_samples = end_sample
        log = self._log
        log["seq"].append(chunk.seq)
        log["kind"].append(chunk.kind)
        log["samples"].append(samples)
        log["captured_at"].append(captured_at)
        log["arrived_at"].append(arrived - self._origin)
        log["sent_at"].append(math.nan)
        log["end"].append(chunk.end)
        self._queue.put_nowait(chunk)

    async def _interrupt_safely(self) -> None:
        try:
            await self.interrupt()
        except Exception as exc:  # noqa: BLE001 - a button press must not raise into the comm handler
            self.sequencer.error(f"interrupt failed: {exc}")

    def _request_stop(self, *, abort: bool = False) -> None:
        if self._stop_requested is None or not self.is_running:
            return
        if abort and self._session_open and not self._end_queued.is_set():
            # no more audio will come: end the request with what was sent
            assert self._queue is not None  # start() made it with _ready
            self._end_queued.set()
            self._queue.put_nowait(None)
        self._stop_requested.set()
        self._send_to_page({"type": "stop"})

    # ------------------------------------------------------------------ the run

    async def _run(self) -> Timeline:
        assert self._queue is not None and self._ready is not None
        assert self._stop_requested is not None
        self.running = True
        self.refresher.start()
        sender: asyncio.Task[None] | None = None
        try:
            self._set_status("connecting")
            async with open_service(self.service, **self.session_kwargs) as handle:
                config = handle.config(sample_rate=self.sample_rate)
                session = AvatarSession(config, timeline=self.timeline)
                self.session = session
                self.timeline.meta.update(
                    chunk_ms=self.chunk_ms,
                    sample_rate=self.sample_rate,
                    service=handle.label,
                    source="microphone" if self._use_microphone else "feed_file",
                )
                async with session:
                    sender = asyncio.get_running_loop().create_task(self._send_loop(session))
                    self._ready.set()
                    self._set_status("listening" + (f" ({self.device})" if self.device else ""))
                    if self._use_microphone:
                        self._send_to_page({"type": "capture"})
                    await self._until_stopped(sender)
                    await self._finish_sending(sender)
                    await self._wait_last_frames(session)
            self._set_status(self._final_status())
        except asyncio.CancelledError:
            self._stopped = "cancelled"
            self._set_status("stopped (cancelled); session closed")
            raise
        except Exception as exc:  # noqa: BLE001 - whatever ended the run is shown and recorded
            text = str(exc) or type(exc).__name__
            self.error = self.error or f"the run failed: {text}"
            self.timeline.add_error(text)
            self._set_status("failed")
        finally:
            if sender is not None and not sender.done():
                sender.cancel()
                with contextlib.suppress(BaseException):
                    await sender
            await self.refresher.stop()
            if self._use_microphone:  # whatever ended the run, the page stops capturing
                self._send_to_page({"type": "stop"})
            self._record_capture()
            self._unwatch_sigint()
            self.running = False
            self._render(force=True)
        return self.timeline

    async def _until_stopped(self, sender: asyncio.Task[None]) -> None:
        assert self._stop_requested is not None
        stop = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait({stop, sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()

    async def _finish_sending(self, sender: asyncio.Task[None]) -> None:
        """After a stop: let the page's end chunk arrive (bounded), else end the request."""
        assert self._queue is not None
        if sender.done():
            sender.result()  # raises the send error
            return
        if self._page_capturing:  # it flushes its partial chunk with end=True when told to stop
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._end_queued.wait(), 2.0)
        if not self._end_queued.is_set():
            self._end_queued.set()  # the page did not flush (no page, or it is gone)
            self._queue.put_nowait(None)
        self._set_status("waiting for the last frames")
        await asyncio.wait_for(sender, timeout=self.end_timeout)

    async def _send_loop(self, session: AvatarSession) -> None:
        assert self._queue is not None
        log = self._log
        index = 0
        while True:
            chunk = await self._queue.get()
            if chunk is None:
                if session.current_req_id is not None:  # an open request: end it
                    await session.send_audio(b"", end=True)
                return
            await session.send_audio(chunk.pcm, end=chunk.end)
            # the log follows queue order
            log["sent_at"][index] = time.monotonic() - (self._origin or 0.0)
            index += 1
            if self._all_captured is not None and self.timeline.audio is not None:
                self._all_captured = None  # the session keeps the sent audio: no second copy
            if chunk.end:
                return

    async def _wait_last_frames(self, session: AvatarSession) -> None:
        req = session.last_req_id
        if req is None:
            return
        try:
            await session.wait_for_end(req, timeout=self.end_timeout)
        except asyncio.TimeoutError:
            self.timeline.add_error(
                f"no end frame for {req} within {self.end_timeout:g} s of the end of the capture"
            )

    def _final_status(self) -> str:
        stopped = None
        if self.error:
            if self.error.startswith("Microphone unavailable"):
                stopped = "microphone unavailable"
            elif self.error.startswith("Capture stopped"):
                stopped = "a chunk far out of sequence (see error)"
            else:
                stopped = "error"
        return outcome_text(self.timeline, stopped=stopped, capture=True)

    def _record_capture(self) -> None:
        """Attach the captured audio and the capture times to the Timeline."""
        tl = self.timeline
        if self._all_captured and tl.audio is None:
            tl.audio = np.concatenate(self._all_captured)
        self._all_captured = None
        seq = self.sequencer
        tl.meta["capture"] = {
            **tl.meta.get("capture", {}),
            "chunk_samples": self.chunk_samples,
            "device": self.device,
            "capture_rate": self.capture_rate,
            "captured_at": [round(float(v), 6) for v in self._log["captured_at"]],
            "arrived_at": [round(float(v), 6) for v in self._log["arrived_at"]],
            "kind": list(self._log["kind"]),
            "gap_seconds": seq.gap_samples / self.sample_rate,
            **seq.counts(),
            "clock": "origin = capture start; page stamps mapped with the first chunk's transit taken as zero",
        }
        for text in seq.errors:
            tl.add_error(f"capture: {text}")
        if seq.n_errors > len(seq.errors):
            tl.add_error(
                f"capture: {seq.n_errors - len(seq.errors)} more capture errors not listed"
            )

    async def _abort(self, reason: str) -> None:
        """Stop at once (kernel interrupt, widget closed): cancel the run; its finally
        closes the session. Bounded: a session close waits at most a few seconds."""
        self._send_to_page({"type": "stop"})
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 10.0)
        self._set_status(f"stopped ({reason}); session closed")

    # ------------------------------------------------------------------ kernel interrupt

    def _watch_sigint(self) -> None:
        """Between cells ipykernel ignores SIGINT (its handler is ``SIG_IGN``), so
        "Interrupt the kernel" would leave a capture running. While a run lasts, an
        ignored SIGINT is replaced by one that stops the capture (checked at every
        refresher tick). Only ``SIG_IGN`` is ever replaced: during a cell ipykernel puts
        its own handler in and ours back afterwards; in a script Ctrl-C keeps its meaning.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            current = signal.getsignal(signal.SIGINT)
        except ValueError:
            return
        if current is not signal.SIG_IGN:
            return
        loop = asyncio.get_running_loop()

        def on_sigint(signum: int, frame: Any) -> None:
            if self.is_running:
                loop.call_soon_threadsafe(self._kernel_interrupted)
            else:  # left behind by a cell that ran while the run ended
                signal.signal(signal.SIGINT, signal.SIG_IGN)

        self._sigint_handler = on_sigint
        signal.signal(signal.SIGINT, on_sigint)

    def _kernel_interrupted(self) -> None:
        self.sequencer.error("the kernel was interrupted: capture stopped")
        self._request_stop(abort=True)

    def _unwatch_sigint(self) -> None:
        handler, self._sigint_handler = getattr(self, "_sigint_handler", None), None
        if handler is None or threading.current_thread() is not threading.main_thread():
            return
        with contextlib.suppress(ValueError):
            if signal.getsignal(signal.SIGINT) is handler:
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    # ------------------------------------------------------------------ drawing

    def _set_status(self, text: str) -> None:
        self.status = text

    def _send_to_page(self, content: dict[str, Any]) -> None:
        if self.comm is not None:  # a closed widget has no page to tell
            with contextlib.suppress(Exception):
                self.send(content)

    def _render(self, force: bool = False) -> None:
        """Redraw everything at once (before and after a run) if the view's state changed."""
        self.refresher.redraw(force)

    def _draw_steps(self) -> Any:
        """Redraw the view one piece at a time (a generator: each ``next`` draws one piece
        and sets its trait; a trait whose markup did not change sends nothing)."""
        tl = self.timeline
        self.wave = plots.waveform_svg(
            self._recent_audio(),
            self.sample_rate,
            self._captured_samples,
            window=self.window,
            width=self.trace_width,
        )
        yield
        self.traces = plots.live_svg(
            tl, window=self.window, width=self.trace_width, empty_text=self._no_keyframes_text()
        )
        yield
        keyframes = tl.keyframes
        last = keyframes[-1] if keyframes.shape[0] else np.zeros(keyframes.shape[1])
        self.face = plots.face_svg(last, size=_FACE_SIZE)
        self.stats = stats_html(tl, self.sequencer)

    def _no_keyframes_text(self) -> str:
        """What the trace lanes say while they hold no keyframe: waiting while a run goes
        on (or none was started), else why none came, with what was captured
        (:func:`~avatar_nb.widgets.live.empty_text`, as on the session panel)."""
        return empty_text(
            self.timeline,
            ended=not self.running and self._task is not None,
            error=self.error,
            stopped=self._stopped,
            captured=self._captured_samples / self.sample_rate,
            max_chars=self.trace_width // 7,
        )

    @property
    def trace_width(self) -> int:
        return max(320, self.width - _FACE_SIZE - 12)

    def _recent_audio(self) -> np.ndarray:
        need = int(self.window * self.sample_rate)
        parts: list[np.ndarray] = []
        have = 0
        for block in reversed(self._recent):
            parts.append(block)
            have += block.shape[0]
            if have >= need:
                break
        if not parts:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(parts[::-1])[-need:]
