"""TimelineView: animation channels over time, linked to the waveform, with a scrubber,
a face preview and an audio player that stay in step."""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import numpy as np
import traitlets

from .. import plots
from ..flame import SCALAR_CHANNELS
from ..timeline import Timeline
from ._util import Throttle, new_figure
from .player import AudioPlayer
from .waveform import WaveformView

__all__ = ["TimelineView"]


class TimelineView(w.VBox):
    """A view of one :class:`~avatar_nb.Timeline`.

    ``index`` is the keyframe shown (face preview, playhead, readout); the ``Play``
    button advances it at the timeline's frame rate, the slider scrubs it, and the audio
    player, when playing, drives it from the audio's position (scrubbing seeks the
    audio). ``window`` (seconds of media time) is shared with the waveform view.
    """

    index = traitlets.Int(0)
    window = traitlets.Tuple(traitlets.Float(), traitlets.Float(), default_value=(0.0, 1.0))

    def __init__(self, timeline: Timeline, *, width: int = 900, max_fps: float = 15.0, **kwargs: Any) -> None:
        if timeline.n_keyframes == 0:
            raise ValueError("TimelineView needs a Timeline with keyframes")
        self.timeline = timeline
        self.media_time = np.asarray(timeline.media_time)
        n = timeline.n_keyframes
        end = float(self.media_time[-1]) + 1.0 / timeline.fps
        side_width = 230
        plot_width = width - side_width  # waveform and channels share this width and their time axis
        has_audio = timeline.audio is not None and bool(timeline.sample_rate)
        self.waveform = WaveformView(timeline, width=plot_width, max_fps=max_fps) if has_audio else None
        self.channels_image = w.Image(format="png", layout=w.Layout(width=f"{plot_width}px"))
        self.face = w.HTML(plots.face_svg(timeline.keyframes[0]))
        self.readout = w.HTML()
        self.play = w.Play(value=0, min=0, max=n - 1, step=1, interval=max(1, int(1000 / timeline.fps)))
        self.slider = w.IntSlider(value=0, min=0, max=n - 1, description="keyframe", continuous_update=True,
                                  layout=w.Layout(width=f"{plot_width - 140}px"))
        self.play_link = w.jslink((self.play, "value"), (self.slider, "value"))
        self.player = AudioPlayer(timeline.audio, int(timeline.sample_rate)) if has_audio else None
        self._fig = new_figure(plot_width, 420)
        self._axes = self._fig.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1, 1, 1.5]})
        self._lines: list[Any] = []
        self._drawn_window: tuple[float, float] | None = None
        self.renders = 0
        self._from_player = False
        self._throttle = Throttle(self._render_channels, 1.0 / max_fps)

        controls = w.HBox([self.play, self.slider])
        side = w.VBox([self.face, self.readout], layout=w.Layout(width=f"{side_width}px", padding="0 0 0 10px"))
        plots_column = [controls, self.channels_image]
        if self.waveform is not None:
            plots_column.insert(0, self.waveform)
        rows: list[w.Widget] = [w.HBox([w.VBox(plots_column), side])]
        if self.player is not None:
            rows.append(self.player)
        super().__init__(rows, **kwargs)

        traitlets.link((self.slider, "value"), (self, "index"))
        if self.waveform is not None:
            traitlets.link((self.waveform, "window"), (self, "window"))
        self.window = (0.0, end)
        self.observe(self._on_index, names="index")
        self.observe(lambda _: self._throttle(), names="window")
        if self.player is not None:
            self.player.observe(self._on_player_time, names="time")
        self._on_index({"new": 0})
        self._render_channels()

    # ------------------------------------------------------------------ state changes

    def _on_player_time(self, change: dict[str, Any]) -> None:
        index = int(np.searchsorted(self.media_time, float(change["new"]), side="right")) - 1
        self._from_player = True
        try:
            self.index = int(np.clip(index, 0, self.timeline.n_keyframes - 1))
        finally:
            self._from_player = False

    def _on_index(self, change: dict[str, Any]) -> None:
        i = int(change["new"])
        tl = self.timeline
        row = tl.keyframes[i]
        t = float(self.media_time[i])
        self.face.value = plots.face_svg(row)
        late = float(tl.lateness[i]) * 1000.0
        lateness = f"{late:.0f} ms" if np.isfinite(late) else f"n/a ({tl.pacing} pacing)"
        self.readout.value = (
            f"<b>keyframe {i}</b> of {tl.n_keyframes}<br>media time {t:.2f} s<br>"
            f"jaw {row[SCALAR_CHANNELS['jaw_open']]:.3f} rad<br>"
            f"eyelids {row[SCALAR_CHANNELS['eyelid_left']]:.2f} / {row[SCALAR_CHANNELS['eyelid_right']]:.2f}<br>"
            f"arrived at {tl.arrival[i] * 1000:.0f} ms<br>lateness {lateness}"
        )
        if self.waveform is not None:
            self.waveform.playhead = t
        if self.player is not None and not self._from_player:
            self.player.seek = t
        self._throttle()

    # ------------------------------------------------------------------ drawing

    def _render_channels(self) -> None:
        start, end = self.window
        t = float(self.media_time[self.index])
        if self._drawn_window != (start, end):
            for ax in self._axes:
                ax.cla()
            i0 = int(np.searchsorted(self.media_time, start, side="left"))
            i1 = max(i0 + 1, int(np.searchsorted(self.media_time, end, side="right")))
            plots.draw_channels(self._axes, self.timeline, span=(i0, i1))
            self._axes[-1].set_xlim(start, end)
            self._axes[-1].set_xlabel("media time (s)")
            self._lines = [ax.axvline(t, color="k", linewidth=1.0, alpha=0.7) for ax in self._axes]
            self._drawn_window = (start, end)
        for line in self._lines:
            line.set_xdata([t, t])
        self.channels_image.value = plots.to_png(self._fig)
        self.renders += 1
