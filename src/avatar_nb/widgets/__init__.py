"""ipywidgets views of avatar_nb's results: thin views over a Timeline, drawn by avatar_nb.plots.

- :class:`WaveformView`: zoomable, scrollable waveform with a playhead;
- :class:`TimelineView`: animation channels linked to the waveform, a Play button and
  slider that scrub keyframes, a face preview and an audio player kept in step;
- :class:`SessionPanel`: start and interrupt a live session and watch it arrive;
- :class:`MicrophonePanel`: speak into the browser's microphone and watch the avatar answer;
- :func:`explore`: one run (or two) on a zoomable time axis, drawn in the browser from
  the run's pyramid (:class:`Explorer`; hour-long runs stay fluid);
- :func:`show`: everything about one Timeline in one widget.

The views draw only through the public functions of :mod:`avatar_nb.plots`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as _w

from .. import plots as _plots
from ..timeline import Timeline as _Timeline
from .explorer import Explorer, explore
from .microphone import MicrophonePanel
from .panel import SessionPanel
from .player import AudioPlayer
from .timeline import TimelineView
from .waveform import WaveformView

if TYPE_CHECKING:
    from typing import Any

__all__ = ["AudioPlayer", "Explorer", "MicrophonePanel", "SessionPanel", "TimelineView", "WaveformView", "explore", "show"]


def __dir__() -> list[str]:
    # the public names only (not the submodules or what they import), for tab completion
    return sorted(__all__)


def show(timeline: _Timeline, *, width: int = 900, **kwargs: Any) -> _w.VBox:
    """A summary, the animation view and the frame-timing figure of ``timeline``."""
    if not isinstance(timeline, _Timeline):
        raise TypeError(f"show() takes a Timeline, got {type(timeline).__name__}")
    summary = _w.HTML(timeline._repr_html_())
    timing = _w.Image(value=_plots.to_png(_plots.frame_timing(timeline, width=width / 100)), format="png")
    if timeline.n_keyframes == 0:
        return _w.VBox([summary, timing])
    tabs = _w.Tab([TimelineView(timeline, width=width, **kwargs), timing])
    tabs.titles = ("animation", "frame timing")
    return _w.VBox([summary, tabs])
