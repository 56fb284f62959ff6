"""When keyframes arrived (arrival, lateness, inter-arrival), the one-run report that puts it
beside the channels, and the audio-to-motion offset."""

from __future__ import annotations

import math as _math
from typing import TYPE_CHECKING

import numpy as _np

from ..timeline import Timeline as _Timeline
from ..timeline import ms_text as _ms_text
from ..timeline_text import speed_text as _speed_text
from ._base import (NO_LATENESS, draw_series, lateness_applies, long_run_pyramid, new_figure, padded_limits,
                    pixel_width, run_label, set_margins)
from ._channels import draw_animation, has_audio

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..analysis import AVOffset
    from ..timeline import Timeline
    from ..timeline_pyramid import TimelinePyramid


def _panels(axes: Sequence[Axes]) -> tuple[Axes, Axes | None, Axes]:
    """The arrival, lateness (None when left out: two Axes) and histogram Axes."""
    if len(axes) == 2:
        return axes[0], None, axes[1]
    arr_ax, late_ax, hist_ax = axes
    return arr_ax, late_ax, hist_ax


def draw_timing(axes: Sequence[Axes], timeline: Timeline) -> None:
    """Arrival against media time (with the real-time line), lateness per keyframe against
    the one-frame budget, and the inter-arrival histogram, into three Axes; or into two
    (arrival, histogram) to leave lateness out, as :func:`frame_timing` and :func:`report`
    do under ``"fast"`` pacing.

    Under ``"fast"`` pacing there is no playback clock: a lateness panel says so and
    the real-time line is left out."""
    tl = timeline
    arr_ax, late_ax, hist_ax = _panels(axes)
    mt, arrival = tl.media_time, tl.arrival
    timed = lateness_applies(tl)
    if mt.size:
        draw_series(arr_ax, mt, arrival, label="arrival", color="C0", track=(tl, "arrival", 1.0, None))
        if tl.pacing != "fast":
            lim = max(float(mt[-1]), float(arrival.max()))
            arr_ax.plot([0, lim], [0, lim], color="0.3", linestyle="--", linewidth=1, label="real time")
        arr_ax.legend(loc="upper left", fontsize="small")
    if late_ax is not None:
        _draw_lateness(late_ax, tl, timed)
    arr_ax.set_xlabel("media time (s)")
    arr_ax.set_ylabel("arrival (s)")
    gaps = tl.inter_arrival * 1000.0
    if gaps.size:
        hist_ax.hist(gaps, bins=min(60, max(10, int(_math.sqrt(gaps.size)))), color="C2")
    hist_ax.set_xlabel("inter-arrival (ms)")
    hist_ax.set_ylabel("messages")


def _draw_long_timing(axes: Sequence[Axes], timeline: Timeline, pyramid: TimelinePyramid) -> None:
    """:func:`draw_timing`'s panels for a run too long to draw keyframe by keyframe, from
    its pyramid and with the cheaper parts of :mod:`._light` (see there why): arrival and
    lateness as a min/max band and its midline per pixel column, the histogram as one
    step patch, lines named beside them instead of in legends."""
    from matplotlib.transforms import blended_transform_factory

    from ..timeline_pyramid import LINE_COLUMNS
    from ._light import bands, light_axes, place_labels, side_labels

    tl = timeline
    arr_ax, late_ax, hist_ax = _panels(axes)
    for ax in axes:
        light_axes(ax, xbins=4, ybins=4)
    lines = pyramid.lines
    view = lines.window(lines.start, lines.start + lines.n / lines.rate, pixel_width(arr_ax))  # 1-2 px buckets
    centres = view.times + view.bucket / lines.rate / 2.0
    span = (min(0.0, pyramid.slot_start), pyramid.slot_start + pyramid.n_slots / pyramid.fps)

    def column(name: str) -> tuple[_np.ndarray, _np.ndarray]:
        c = LINE_COLUMNS.index(name)
        return view.mins[:, c].astype(_np.float64), view.maxs[:, c].astype(_np.float64)

    lo, hi = column("arrival")
    bands(arr_ax, [(centres, lo, hi, "C0", "-")], label="arrival")
    names = [("arrival", "C0")]
    if tl.pacing != "fast":
        lim = max(float(tl.media_time[-1]), float(_np.nanmax(hi)))
        arr_ax.plot([0, lim], [0, lim], color="0.3", linestyle="--", linewidth=1, label="real time")
        names.append(("real time (dashed)", "0.3"))
        arr_ax.set_xlim(*padded_limits(_np.array(span), [0.0, lim]))
        arr_ax.set_ylim(*padded_limits(lo, hi, [0.0, lim]))
    else:
        arr_ax.set_xlim(*padded_limits(_np.array(span)))
        arr_ax.set_ylim(*padded_limits(lo, hi))
    side_labels(arr_ax, names, x=0.03, y=0.97)
    arr_ax.set_xlabel("media time (s)")
    arr_ax.set_ylabel("arrival (s)")
    if late_ax is not None:
        if lateness_applies(tl):
            lo, hi = column("lateness_ms")
            bands(late_ax, [(centres, lo, hi, "C3", "-")], label="lateness")
            budget = 1000.0 / tl.fps
            name = f"one frame ({budget:.0f} ms)"
            late_ax.axhline(budget, color="0.3", linestyle=":", linewidth=1, label=name)
            late_ax.text(0.98, budget, name, transform=blended_transform_factory(late_ax.transAxes, late_ax.transData),
                         ha="right", va="bottom", fontsize="small", color="0.3")
            late_ax.set_xlim(*padded_limits(_np.array(span)))
            late_ax.set_ylim(*padded_limits(lo, hi, [budget]))
            late_ax.set_ylabel("lateness (ms)")
            late_ax.set_xlabel("media time (s)")
        else:
            _draw_lateness(late_ax, tl, False)
    gaps = tl.inter_arrival * 1000.0
    if gaps.size:
        counts, edges = _np.histogram(gaps, bins=min(60, max(10, int(_math.sqrt(gaps.size)))))
        hist_ax.stairs(counts, edges, fill=True, color="C2", label="messages")
    hist_ax.set_xlabel("inter-arrival (ms)")
    hist_ax.set_ylabel("messages")
    for ax in axes:
        place_labels(ax)


def _draw_lateness(late_ax: Axes, tl: Timeline, timed: bool) -> None:
    mt = tl.media_time
    if mt.size and timed:
        draw_series(late_ax, mt, tl.lateness * 1000.0, color="C3", label="lateness", track=(tl, "lateness_ms", 1.0, None))
        budget = 1000.0 / tl.fps
        late_ax.axhline(budget, color="0.3", linestyle=":", linewidth=1, label=f"one frame ({budget:.0f} ms)")
        late_ax.legend(loc="best", fontsize="small")  # the line sits near the top under capture pacing
        late_ax.set_ylabel("lateness (ms)")
    elif mt.size:
        late_ax.text(0.5, 0.5, NO_LATENESS.replace(": ", ":\n"), transform=late_ax.transAxes, ha="center",
                     va="center", color="0.35")
        late_ax.set_ylabel("lateness (n/a: fast pacing)")
    else:
        late_ax.set_ylabel("lateness (ms)")
    late_ax.set_xlabel("media time (s)")


def _timing_panels(tl: Timeline) -> int:
    """Three timing panels, or two without lateness under fast pacing (no playback clock)."""
    return 2 if tl.pacing == "fast" else 3


def _timing_text(tl: Timeline) -> str:
    s = tl.summary()
    speed = " ".join(_speed_text(s))
    text = (f"first-frame latency {_ms_text(s['first_frame_latency'])}   jitter {_ms_text(s['jitter'])}   "
            f"{speed}   pacing {tl.pacing}")
    if tl.pacing == "fast":
        text += " (lateness n/a)"
    return text


def frame_timing(timeline: Timeline, *, width: float = 11.0) -> Figure:
    """When keyframes arrived: arrival against media time (with the real-time line),
    lateness per keyframe against the one-frame budget, and the inter-arrival histogram;
    headline figures and the pacing in the title.

    Under ``"fast"`` pacing lateness has no meaning and its panel is left out (the title
    says so), and the speed reads as a multiple of real time (``"310x real time"``).

    A run of more keyframes than two a pixel is drawn from its pyramid (arrival and
    lateness as min/max bands per pixel column and their midlines, the histogram as one
    step patch), with light ticks and the lines named in their colour, not in legends."""
    fig = new_figure(width, 3.6, constrained=False)  # fixed margins: the layout engine costs a third
    set_margins(fig, left=0.75, top=0.4)
    fig.subplots_adjust(wspace=0.3)
    axes = fig.subplots(1, _timing_panels(timeline))
    pyramid = long_run_pyramid(timeline, pixel_width(axes[0]))
    if pyramid is None:
        draw_timing(axes, timeline)
    else:
        _draw_long_timing(axes, timeline, pyramid)
    fig.suptitle(f"frame timing: {_timing_text(timeline)}", fontsize="medium")
    return fig


def report(timeline: Timeline, *, width: float = 14.0) -> Figure:
    """One figure for a run: waveform and animation channels (left), frame timing (right,
    as in :func:`frame_timing`: no lateness under ``"fast"`` pacing); the run's settings
    and headline figures in the title."""
    with_audio = has_audio(timeline)
    fig = new_figure(width, 9.0)
    outer = fig.add_gridspec(1, 2, width_ratios=[1.7, 1.0])
    n = 5 if with_audio else 4
    left = outer[0].subgridspec(n, 1, height_ratios=[1.0] * (n - 1) + [1.6])
    first = fig.add_subplot(left[0])
    axes = [first] + [fig.add_subplot(left[i], sharex=first) for i in range(1, n)]
    draw_animation(fig, axes, timeline, with_audio)
    n_timing = _timing_panels(timeline)
    right = outer[1].subgridspec(n_timing, 1)
    draw_timing([fig.add_subplot(right[i]) for i in range(n_timing)], timeline)
    fig.suptitle(f"{run_label(timeline)}: {timeline.n_keyframes} keyframes @ {timeline.fps:g} fps\n"
                 f"{_timing_text(timeline)}")
    return fig


def av_offset(timeline_or_result: Timeline | AVOffset, *, width: float = 7.0, **options: Any) -> Figure:
    """The audio-to-motion cross-correlation of a run against lag, with the estimated lag marked.

    Takes a Timeline (analysed with :func:`avatar_nb.analysis.av_offset`, ``options``
    passed on) or the result of that function. Positive lag: the mouth opens after the
    sound. The title gives the lag in ms and the confidence.
    """
    if isinstance(timeline_or_result, _Timeline):
        from ..analysis import av_offset as analyse

        result = analyse(timeline_or_result, **options)
    elif hasattr(timeline_or_result, "lags") and hasattr(timeline_or_result, "correlation"):
        result = timeline_or_result
    else:
        raise TypeError(f"av_offset() takes a Timeline or an AVOffset, got {type(timeline_or_result).__name__}")
    fig = new_figure(width, 3.2)
    ax = fig.add_subplot()
    lags = _np.asarray(result.lags, dtype=_np.float64) * 1000.0
    corr = _np.asarray(result.correlation, dtype=_np.float64)
    ax.plot(lags, corr, color="C0", label="correlation")
    ax.axvline(0.0, color="0.6", linewidth=0.8)
    if _math.isfinite(result.lag):
        lag_ms = result.lag * 1000.0
        ax.axvline(lag_ms, color="C3", linestyle="--", label=f"estimated lag {lag_ms:+.1f} ms")
        way = "lags" if lag_ms >= 0 else "leads"
        ax.set_title(f"mouth {way} audio by {abs(lag_ms):.1f} ms (confidence {result.confidence:.2f})")
    else:
        ax.set_title("audio-to-motion offset undetermined (too little speech or motion)")
    ax.set_xlabel("lag of mouth opening behind audio loudness (ms)")
    ax.set_ylabel("correlation")
    ax.legend(loc="lower right", fontsize="small")
    return fig
