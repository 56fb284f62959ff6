"""Small pieces the views share: throttled rendering and figure-to-PNG with a reused canvas."""

from __future__ import annotations

import asyncio
import io
import time
import wave
from collections.abc import Callable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["Throttle", "figure_png", "new_figure", "wav_bytes"]


class Throttle:
    """Call ``fn`` at most once per ``interval`` seconds; the last request always runs.

    Inside a running event loop (a Jupyter kernel) a request that comes too soon is
    deferred with ``call_later``; without one (tests, scripts) it runs at once.
    """

    def __init__(self, fn: Callable[[], None], interval: float) -> None:
        self.fn = fn
        self.interval = interval
        self.last = -1e9
        self.pending: asyncio.TimerHandle | None = None
        self.calls = 0

    def __call__(self) -> None:
        now = time.monotonic()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        wait = self.last + self.interval - now
        if loop is None or wait <= 0:
            self._run()
        elif self.pending is None:
            self.pending = loop.call_later(wait, self._run)

    def _run(self) -> None:
        self.pending = None
        self.last = time.monotonic()
        self.calls += 1
        self.fn()


# Pixel margins of the views' figures. Fixed (not the constrained layout) so that the
# waveform and the channel panels of a TimelineView, drawn as separate images of the
# same width, put their time axes at the same pixels.
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 82, 12, 8, 44


def new_figure(width_px: int, height_px: int, dpi: int = 100) -> Figure:
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=MARGIN_LEFT / width_px,
        right=1 - MARGIN_RIGHT / width_px,
        top=1 - MARGIN_TOP / height_px,
        bottom=MARGIN_BOTTOM / height_px,
        hspace=0.12,
    )
    return fig


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.canvas.print_png(buf)
    return buf.getvalue()


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """Mono 16-bit WAV file bytes for an int16 array (for the browser's audio element)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return buf.getvalue()
