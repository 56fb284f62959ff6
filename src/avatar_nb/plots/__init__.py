"""Figures of audio, animation and frame timing (matplotlib; every figure function returns a Figure).

Nothing here touches pyplot's global state or calls ``plt.show``: figures are built
with ``matplotlib.figure.Figure`` so they can be shown inline, saved, or rendered into
a widget. Long series are reduced to a min/max envelope per pixel column before
drawing (the waveform through the compiled :func:`avatar_nb.peak_envelope`), so an
hour of audio or 90,000 keyframes draw about as fast as a second of them. The figures
of such runs (:func:`animation_timeline`, :func:`frame_timing`) are drawn with cheaper
artists than matplotlib's defaults: fewer ticks placed when drawn, one band and one
midline collection a panel, lines named in their colour beside the panel instead of in
a legend.

- One run: :func:`waveform`, :func:`animation_timeline`, :func:`frame_timing`,
  :func:`report`, :func:`face`, :func:`av_offset`.
- Several runs: :func:`compare_runs` (Timelines side by side), and from tidy tables
  :func:`compare` (a runs table, grouped, with bootstrap confidence intervals) and
  :func:`ecdf` (a per-keyframe table, one distribution per condition).
- Building blocks that draw into given Axes (the widgets use these):
  :func:`draw_waveform`, :func:`draw_channels`, :func:`draw_timing`; and
  :func:`to_png`, :func:`face_svg`, :func:`live_svg`, :func:`waveform_svg`, :func:`envelope`,
  :func:`audio_samples`.

The package is split where its concerns part: ``_base`` (shared helpers, PNG and SVG
output), ``_channels`` (waveform and animation channels), ``_timing`` (frame timing, the
one-run report, the audio-to-motion offset), ``_comparisons`` (several runs), ``_faces``
(the face, drawn from :mod:`avatar_nb.face`), ``_live`` (SVG lanes for live views) and
``_light`` (the cheaper ticks, bands and names of long runs' figures).
The modules are private: every public name is here, as ``avatar_nb.plots.X``.

Times are seconds in the data and milliseconds on the axes made for people. A panel
that has no meaning under a run's pacing (lateness under ``"fast"`` pacing, where
there is no playback clock) is left out, or says so where other runs share it; a fast
run's speed is shown as a multiple of real time (``"310x"``), not as a real-time factor
near zero.
"""

from __future__ import annotations

from ._base import audio_samples, envelope, register_ipython_png, run_label, to_png
from ._channels import animation_timeline, draw_channels, draw_waveform, waveform
from ._comparisons import compare, compare_runs, ecdf
from ._faces import face, face_svg
from ._live import live_svg, waveform_svg
from ._timing import av_offset, draw_timing, frame_timing, report

__all__ = [
    "animation_timeline",
    "audio_samples",
    "av_offset",
    "compare",
    "compare_runs",
    "draw_channels",
    "draw_timing",
    "draw_waveform",
    "ecdf",
    "envelope",
    "face",
    "face_svg",
    "frame_timing",
    "live_svg",
    "report",
    "run_label",
    "to_png",
    "waveform",
    "waveform_svg",
]


def __dir__() -> list[str]:
    return sorted(__all__)


register_ipython_png()
