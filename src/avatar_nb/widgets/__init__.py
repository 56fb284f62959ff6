"""ipywidgets views of avatar_nb's results: thin views over a Timeline, drawn by avatar_nb.plots.

- :class:`WaveformView`: zoomable, scrollable waveform with a playhead;
- :class:`TimelineView`: animation channels linked to the waveform, a Play button and
  slider that scrub keyframes, a face preview and an audio player kept in step;
- :class:`SessionPanel`: start and interrupt a live session and watch it arrive;
- :class:`MicrophonePanel`: speak into the browser's microphone and watch the avatar answer;
- :func:`show`: everything about one Timeline in one widget.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from .. import plots
from ..timeline import Timeline
from .microphone import MicrophonePanel
from .panel import SessionPanel
from .player import AudioPlayer
from .timeline import TimelineView
from .waveform import WaveformView

__all__ = ["AudioPlayer", "MicrophonePanel", "SessionPanel", "TimelineView", "WaveformView", "show"]


def show(timeline: Timeline, *, width: int = 900, **kwargs: Any) -> w.VBox:
    """A summary, the animation view and the frame-timing figure of ``timeline``."""
    if not isinstance(timeline, Timeline):
        raise TypeError(f"show() takes a Timeline, got {type(timeline).__name__}")
    summary = w.HTML(timeline._repr_html_())
    timing = w.Image(value=plots.to_png(plots.frame_timing(timeline, width=width / 100)), format="png")
    if timeline.n_keyframes == 0:
        return w.VBox([summary, timing])
    tabs = w.Tab([TimelineView(timeline, width=width, **kwargs), timing])
    tabs.titles = ("animation", "frame timing")
    return w.VBox([summary, tabs])
