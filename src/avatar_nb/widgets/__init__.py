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

from .._lazy import lazy_getattr as _lazy_getattr

if TYPE_CHECKING:
    from ._show import show
    from .explorer import Explorer, explore
    from .microphone import MicrophonePanel
    from .panel import SessionPanel
    from .player import AudioPlayer
    from .timeline import TimelineView
    from .waveform import WaveformView

# each name from its own module, imported on first use: ``an.explore`` needs anywidget
# only, not matplotlib and the microphone's machinery (about half a second on import)
_EXPORTS = {
    "AudioPlayer": ".player",
    "Explorer": ".explorer",
    "MicrophonePanel": ".microphone",
    "SessionPanel": ".panel",
    "TimelineView": ".timeline",
    "WaveformView": ".waveform",
    "explore": ".explorer",
    "show": "._show",
}

__all__ = ["AudioPlayer", "Explorer", "MicrophonePanel", "SessionPanel", "TimelineView", "WaveformView", "explore", "show"]


__getattr__ = _lazy_getattr(__name__, globals(), _EXPORTS)


def __dir__() -> list[str]:
    # the public names only (not the submodules or what they import), for tab completion
    return sorted(__all__)
