"""WaveformView: a zoomable, scrollable waveform with a playhead."""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import numpy as np
import traitlets

from .. import plots
from ..timeline import Timeline
from ._util import Throttle, new_figure

__all__ = ["WaveformView"]


class WaveformView(w.VBox):
    """The waveform of some audio between ``window[0]`` and ``window[1]`` seconds.

    ``window`` (seconds) is set by the range slider or the zoom buttons, or from Python;
    ``playhead`` (seconds) draws a vertical line. Rendering is the min/max envelope of
    :mod:`avatar_nb.plots` and is throttled to ``max_fps`` redraws a second.
    """

    window = traitlets.Tuple(traitlets.Float(), traitlets.Float(), default_value=(0.0, 1.0))
    playhead = traitlets.Float(0.0)

    def __init__(
        self,
        audio: Any,
        sample_rate: int | None = None,
        *,
        width: int = 900,
        height: int = 150,
        max_fps: float = 15.0,
        **kwargs: Any,
    ) -> None:
        if isinstance(audio, Timeline):
            sample_rate = sample_rate or audio.sample_rate
        if not sample_rate:
            raise ValueError("WaveformView needs the sample_rate of the audio")
        self.samples = plots.audio_samples(audio)
        self.sample_rate = int(sample_rate)
        self.duration = self.samples.shape[0] / self.sample_rate
        self.image = w.Image(format="png", layout=w.Layout(width=f"{width}px", height=f"{height}px"))
        step = max(0.001, round(self.duration / 2000, 3))
        self.slider = w.FloatRangeSlider(
            value=(0.0, self.duration), min=0.0, max=max(self.duration, step), step=step,
            description="window (s)", readout_format=".2f", continuous_update=False,
            layout=w.Layout(width=f"{width - 160}px"),
        )
        self.zoom_in = w.Button(icon="search-plus", tooltip="zoom in", layout=w.Layout(width="40px"))
        self.zoom_out = w.Button(icon="search-minus", tooltip="zoom out", layout=w.Layout(width="40px"))
        self.zoom_in.on_click(lambda _: self.zoom(0.5))
        self.zoom_out.on_click(lambda _: self.zoom(2.0))
        self._fig = new_figure(width, height)
        self._ax = self._fig.add_subplot()
        self._line = None
        self._drawn_window: tuple[float, float] | None = None
        self.renders = 0
        self._throttle = Throttle(self._render, 1.0 / max_fps)
        super().__init__([self.image, w.HBox([self.slider, self.zoom_in, self.zoom_out])], **kwargs)
        traitlets.link((self.slider, "value"), (self, "window"))
        self.window = (0.0, self.duration)
        self.observe(lambda _: self._throttle(), names=["window", "playhead"])
        self._render()

    def zoom(self, factor: float) -> None:
        """Scale the window around its centre (``factor`` < 1 zooms in), within the audio."""
        start, end = self.window
        centre, half = (start + end) / 2, max((end - start) * factor / 2, 5.0 / self.sample_rate)
        half = min(half, self.duration / 2)
        start = min(max(0.0, centre - half), max(0.0, self.duration - 2 * half))
        self.window = (start, start + 2 * half)

    @traitlets.validate("window")
    def _valid_window(self, proposal: Any) -> tuple[float, float]:
        start, end = proposal["value"]
        start = float(np.clip(start, 0.0, self.duration))
        end = float(np.clip(end, start, self.duration))
        if end - start < 1.0 / self.sample_rate:
            end = min(self.duration, start + 1.0 / self.sample_rate) if self.duration else start
        return (start, end)

    def _render(self) -> None:
        start, end = self.window
        if self._drawn_window != (start, end):
            ax = self._ax
            ax.cla()
            i0, i1 = int(start * self.sample_rate), max(int(start * self.sample_rate) + 1, int(end * self.sample_rate))
            plots.draw_waveform(ax, self.samples[i0:i1], self.sample_rate, t0=i0 / self.sample_rate)
            ax.set_xlabel("time (s)")
            self._line = ax.axvline(self.playhead, color="C3", linewidth=1.2)
            self._drawn_window = (start, end)
        self._line.set_xdata([self.playhead, self.playhead])
        self.image.value = plots.to_png(self._fig)
        self.renders += 1
