"""``show(timeline)``: a summary, the animation view and the frame-timing figure in one widget."""

from __future__ import annotations

from typing import Any

import ipywidgets as _w

from .. import plots as _plots
from ..timeline import Timeline as _Timeline
from .timeline import TimelineView


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
