"""Small pieces the views share: throttled rendering, figures with fixed pixel margins,
and numbers read from browser messages.

PNG and WAV bytes come from the library's one writer of each (``avatar_nb.plots.to_png``,
``avatar_nb.audio.wav_bytes``); nothing here writes files of its own.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Throttle", "finite_number", "new_figure"]


def finite_number(value: Any) -> float | None:
    """``value`` (from a browser message) as a float if it is a finite int or float (not a
    bool), else None: what the views' message handlers accept, so a garbled message is
    ignored instead of raising in the kernel."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


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
    """An Agg figure of ``width_px`` x ``height_px`` with the views' fixed margins."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

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
