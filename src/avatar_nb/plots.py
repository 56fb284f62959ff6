"""Figures of audio, animation and frame timing (matplotlib; every figure function returns a Figure).

Nothing here touches pyplot's global state or calls ``plt.show``: figures are built
with ``matplotlib.figure.Figure`` so they can be shown inline, saved, or rendered into
a widget. Long series are reduced to a min/max envelope per pixel column before
drawing (the waveform through the compiled :func:`avatar_nb.peak_envelope`), so an
hour of audio or 90,000 keyframes draw about as fast as a second of them.

- One run: :func:`waveform`, :func:`animation_timeline`, :func:`frame_timing`,
  :func:`report`, :func:`face`, :func:`av_offset`.
- Several runs: :func:`compare_runs` (Timelines side by side), and from tidy tables
  :func:`compare` (a runs table, grouped, with bootstrap confidence intervals) and
  :func:`ecdf` (a per-keyframe table, one distribution per condition).
- Building blocks that draw into given Axes (the widgets use these):
  :func:`draw_waveform`, :func:`draw_channels`, :func:`draw_timing`; and
  :func:`to_png`, :func:`face_svg`, :func:`live_svg`, :func:`waveform_svg`, :func:`envelope`,
  :func:`audio_samples`.

Times are seconds in the data and milliseconds on the axes made for people. Figures
that have no meaning under a run's pacing (lateness under ``"fast"`` pacing, where
there is no playback clock) say so instead of plotting it.
"""

from __future__ import annotations

import math as _math
from typing import TYPE_CHECKING

import numpy as _np

from . import _pcm
from .face import VIEW as _FACE_VIEW
from .face import face_geometry as _face_geometry
from .timeline import Timeline as _Timeline
from .timeline import ms_text as _ms_text

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

    from .analysis import AVOffset
    from .timeline import Timeline

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


_DPI = 100
_NO_LATENESS = "lateness n/a: fast pacing has no playback clock"


# ----------------------------------------------------------------------------- helpers


def audio_samples(audio: Any) -> _np.ndarray:
    """Mono samples of ``audio``: a Timeline's audio, s16le bytes, or 1-D/2-D int16 or float samples.

    Two-dimensional (frames, channels) input is averaged to mono; the dtype is kept
    otherwise (int16 or float), which :func:`draw_waveform` accepts as is.
    """
    if isinstance(audio, _Timeline):
        if audio.audio is None:
            raise ValueError("this Timeline carries no audio; pass the audio explicitly")
        return audio.audio
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return _np.frombuffer(bytes(audio), dtype="<i2")
    arr = _np.asarray(audio)
    if arr.ndim == 2:
        arr = arr.mean(axis=1).astype(_np.float32)
    if arr.ndim != 1:
        raise ValueError(f"audio must be 1-D samples, s16le bytes or a Timeline, got shape {arr.shape}")
    if arr.dtype not in (_np.int16, _np.float32, _np.float64):
        raise TypeError(f"unsupported audio dtype {arr.dtype}; accepted: int16, float32, float64, s16le bytes")
    return arr


def envelope(values: _np.ndarray, n_bins: int) -> tuple[_np.ndarray, _np.ndarray, _np.ndarray]:
    """``(centers, mins, maxs)`` of ``values`` over ``n_bins`` equal spans of their index.

    Bin ``i`` covers ``[i * n // n_bins, (i + 1) * n // n_bins)``; ``centers`` are the
    mid indices. Series no longer than ``n_bins`` come back unchanged (mins == maxs).
    """
    values = _np.asarray(values, dtype=_np.float64)
    n = values.shape[0]
    if n <= n_bins:
        idx = _np.arange(n, dtype=_np.float64)
        return idx, values, values
    edges = (_np.arange(n_bins + 1) * n) // n_bins
    mins = _np.minimum.reduceat(values, edges[:-1])
    maxs = _np.maximum.reduceat(values, edges[:-1])
    centers = (edges[:-1] + edges[1:] - 1) / 2.0
    return centers, mins, maxs


def _pixel_width(ax: Axes) -> int:
    fig = ax.figure
    return max(50, int(ax.get_position().width * fig.get_figwidth() * fig.dpi))


def _draw_series(ax: Axes, t: _np.ndarray, y: _np.ndarray, *, label: str | None = None, **kw: Any) -> None:
    """A line for short series; a min/max band plus its midline per pixel for long ones."""
    bins = _pixel_width(ax)
    if y.shape[0] <= 2 * bins:
        ax.plot(t, y, label=label, **kw)
        return
    centers, mins, maxs = envelope(y, bins)
    tc = _np.interp(centers, _np.arange(t.shape[0]), t)
    (line,) = ax.plot(tc, (mins + maxs) / 2, label=label, **kw)
    ax.fill_between(tc, mins, maxs, color=line.get_color(), alpha=0.35, linewidth=0)


def _mark_utterances(ax: Axes, tl: Timeline) -> None:
    """Dotted lines where each utterance after the first starts, as one collection:
    an hour of short utterances would otherwise cost a Line2D (~0.4 ms) per boundary."""
    starts = tl.utterance_start[1:]
    if starts.size:
        ax.vlines(starts, 0, 1, transform=ax.get_xaxis_transform(), colors="0.4", linestyles=":",
                  linewidths=0.8, label="utterance start")


def _lateness_applies(tl: Timeline) -> bool:
    """Lateness means something only against a playback clock: not under fast pacing."""
    return tl.pacing != "fast" and bool(_np.isfinite(tl.lateness).any())


def run_label(timeline: Timeline) -> str:
    """A run's settings in a few words, from its metadata: ``"capture, 40 ms chunks, 16 kHz"``."""
    parts = [timeline.pacing]
    chunk = timeline.meta.get("chunk_ms")
    if isinstance(chunk, (int, float)) and _math.isfinite(chunk):
        parts.append(f"{chunk:g} ms chunks")
    if timeline.sample_rate:
        parts.append(f"{timeline.sample_rate / 1000:g} kHz")
    source = timeline.meta.get("source") or timeline.meta.get("clip")
    if source:
        parts.insert(0, str(source).replace("\\", "/").rsplit("/", 1)[-1])
    return ", ".join(parts)


def to_png(fig: Figure, dpi: int | None = None) -> bytes:
    """The figure rendered to PNG bytes (Agg). The one PNG writer of avatar_nb's views."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    if dpi is None or dpi == fig.dpi:
        fig.canvas.print_png(buf)  # the figure as laid out, at its own dpi: no re-layout
    else:
        fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _figure(width: float, height: float, *, constrained: bool = True) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def _margins(fig: Figure, *, left: float = 0.85, right: float = 0.15, top: float = 0.45, bottom: float = 0.5,
             hspace: float = 0.12) -> None:
    """Fixed margins in inches. The figures of long data use these instead of the
    constrained layout engine, whose text measuring would cost more than the data."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h, hspace=hspace)


def _ms_if_seconds(name: str) -> tuple[float, str]:
    """Scale and unit for a table column on an axis: times (s) are shown in ms."""
    timed = ("latency", "lateness", "jitter", "first_frame", "inter_arrival", "delay", "offset", "lag")
    if any(word in name for word in timed) and not name.endswith("_ms"):
        return 1000.0, f"{name} (ms)"
    return 1.0, name


# ----------------------------------------------------------------------------- drawing into Axes


def draw_waveform(ax: Axes, samples: _np.ndarray, sample_rate: int, t0: float = 0.0) -> None:
    """Draw ``samples`` (int16 or float, starting ``t0`` seconds into the audio) into ``ax``
    as a min/max envelope per pixel column, with the x limits set to their time span."""
    n = samples.shape[0]
    bins = min(_pixel_width(ax), max(1, n))
    if n == 0:
        ax.text(0.5, 0.5, "no audio", transform=ax.transAxes, ha="center", va="center")
    else:
        mins, maxs = _pcm.peak_envelope(samples, bins)
        k = mins.shape[0]
        t = t0 + (_np.arange(k) + 0.5) * (n / k) / sample_rate
        ax.fill_between(t, mins, maxs, color="C0", linewidth=0, step="mid")
        ax.set_xlim(t0, t0 + n / sample_rate)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("amplitude")


def draw_channels(axes: Sequence[Axes], timeline: Timeline, span: tuple[int, int] | None = None) -> AxesImage | None:
    """Jaw, eyelids, head rotation and the expression heatmap of keyframes ``span`` (default:
    all) into four Axes, over media time, with utterance starts dotted. Returns the heatmap
    image (for a colour bar), or None when there is no expression data."""
    tl = timeline
    jaw_ax, lid_ax, head_ax, expr_ax = axes
    sel = slice(*span) if span is not None else slice(None)
    t = tl.media_time[sel]
    _draw_series(jaw_ax, t, tl.channel("jaw_open")[sel].astype(_np.float64), label="jaw open", color="C3")
    jaw_ax.set_ylabel("jaw (rad)")
    _draw_series(lid_ax, t, tl.channel("eyelid_left")[sel].astype(_np.float64), label="left", color="C1")
    _draw_series(lid_ax, t, tl.channel("eyelid_right")[sel].astype(_np.float64), label="right", color="C2",
                 linestyle="--")
    lid_ax.set_ylabel("eyelids")
    lid_ax.set_ylim(-0.05, 1.05)
    lid_ax.legend(loc="upper right", fontsize="small", ncols=2)
    for name, color in (("head_pitch", "C0"), ("head_yaw", "C4"), ("head_roll", "C5")):
        _draw_series(head_ax, t, tl.channel(name)[sel].astype(_np.float64), label=name.split("_")[1], color=color)
    head_ax.set_ylabel("head (rad)")
    head_ax.legend(loc="upper right", fontsize="small", ncols=3)
    expr = tl.channel("expression")[sel]
    image = None
    if expr.shape[0] and expr.shape[1]:
        bins = _pixel_width(expr_ax)
        if expr.shape[0] > bins:  # mean per pixel column keeps the heatmap honest and small
            edges = (_np.arange(bins + 1) * expr.shape[0]) // bins
            expr = _np.add.reduceat(expr, edges[:-1], axis=0) / _np.diff(edges)[:, None].astype(_np.float32)
        lim = float(_np.max(_np.abs(expr))) or 1.0
        t0, t1 = (float(t[0]), float(t[-1]) + 1.0 / tl.fps) if t.size else (0.0, 1.0)
        image = expr_ax.imshow(
            expr.T,
            aspect="auto",
            origin="lower",
            extent=(t0, t1, -0.5, expr.shape[1] - 0.5),
            cmap="RdBu_r",
            vmin=-lim,
            vmax=lim,
            interpolation="nearest",
        )
    expr_ax.set_ylabel("expression")
    for ax in axes:
        _mark_utterances(ax, tl)
    return image


def _colorbar(fig: Figure, image: AxesImage | None, ax: Axes) -> None:
    """A slim colour bar just right of ``ax`` (an inset: the panel keeps its width, so the
    time axes of all panels stay aligned)."""
    if image is None:
        return
    cax = ax.inset_axes((1.01, 0.0, 0.015, 1.0))
    bar = fig.colorbar(image, cax=cax)
    bar.set_label("coefficient", fontsize="small")
    bar.ax.tick_params(labelsize="small")


def draw_timing(axes: Sequence[Axes], timeline: Timeline) -> None:
    """Arrival against media time (with the real-time line), lateness per keyframe against
    the one-frame budget, and the inter-arrival histogram, into three Axes.

    Under ``"fast"`` pacing there is no playback clock: the lateness panel says so and
    the real-time line is left out."""
    tl = timeline
    arr_ax, late_ax, hist_ax = axes
    mt, arrival = tl.media_time, tl.arrival
    timed = _lateness_applies(tl)
    if mt.size:
        _draw_series(arr_ax, mt, arrival, label="arrival", color="C0")
        if tl.pacing != "fast":
            lim = max(float(mt[-1]), float(arrival.max()))
            arr_ax.plot([0, lim], [0, lim], color="0.3", linestyle="--", linewidth=1, label="real time")
        arr_ax.legend(loc="upper left", fontsize="small")
    if mt.size and timed:
        _draw_series(late_ax, mt, tl.lateness * 1000.0, color="C3", label="lateness")
        budget = 1000.0 / tl.fps
        late_ax.axhline(budget, color="0.3", linestyle=":", linewidth=1, label=f"one frame ({budget:.0f} ms)")
        late_ax.legend(loc="best", fontsize="small")  # the line sits near the top under capture pacing
        late_ax.set_ylabel("lateness (ms)")
    elif mt.size:
        late_ax.text(0.5, 0.5, _NO_LATENESS.replace(": ", ":\n"), transform=late_ax.transAxes, ha="center",
                     va="center", color="0.35")
        late_ax.set_ylabel("lateness (n/a: fast pacing)")
    else:
        late_ax.set_ylabel("lateness (ms)")
    arr_ax.set_xlabel("media time (s)")
    arr_ax.set_ylabel("arrival (s)")
    late_ax.set_xlabel("media time (s)")
    gaps = tl.inter_arrival * 1000.0
    if gaps.size:
        hist_ax.hist(gaps, bins=min(60, max(10, int(_math.sqrt(gaps.size)))), color="C2")
    hist_ax.set_xlabel("inter-arrival (ms)")
    hist_ax.set_ylabel("messages")


def _timing_text(tl: Timeline) -> str:
    s = tl.summary()
    rtf = "n/a" if s["real_time_factor"] is None else f"{s['real_time_factor']:.3f}"
    text = (f"first-frame latency {_ms_text(s['first_frame_latency'])}   jitter {_ms_text(s['jitter'])}   "
            f"real-time factor {rtf}   pacing {tl.pacing}")
    if tl.pacing == "fast":
        text += " (lateness n/a)"
    return text


# ----------------------------------------------------------------------------- figures of one run


def _has_audio(timeline: Timeline) -> bool:
    return timeline.audio is not None and bool(timeline.sample_rate)


def _draw_animation(fig: Figure, axes: Sequence[Axes], timeline: Timeline, with_audio: bool) -> None:
    """The column of :func:`animation_timeline` and of :func:`report`'s left side: the
    waveform (``with_audio``, in ``axes[0]``) above the four channel panels."""
    if with_audio:
        draw_waveform(axes[0], timeline.audio, int(timeline.sample_rate))
        _mark_utterances(axes[0], timeline)
    image = draw_channels(axes[-4:], timeline)
    _colorbar(fig, image, axes[-1])
    axes[-1].set_xlabel("media time (s)")


def waveform(audio: Any, sample_rate: int | None = None, *, title: str | None = None, width: float = 10.0) -> Figure:
    """The waveform of ``audio`` (s16le bytes, int16 or float samples, or a Timeline's audio)."""
    if isinstance(audio, _Timeline):
        sample_rate = sample_rate or audio.sample_rate
    if not sample_rate:
        raise ValueError("waveform() needs the sample_rate of the audio")
    samples = audio_samples(audio)
    fig = _figure(width, 2.6, constrained=False)
    _margins(fig, top=0.35)
    ax = fig.add_subplot()
    draw_waveform(ax, samples, int(sample_rate))
    ax.set_xlabel("time (s)")
    ax.set_title(title or f"waveform ({samples.shape[0] / sample_rate:.2f} s @ {sample_rate} Hz)")
    return fig


def animation_timeline(timeline: Timeline, *, audio: bool = True, width: float = 11.0) -> Figure:
    """Animation channels over media time: waveform (if any), jaw, eyelids, head, expression
    heatmap (with its colour bar). All panels share the time axis; dotted lines mark where
    each utterance starts."""
    with_audio = audio and _has_audio(timeline)
    n = 5 if with_audio else 4
    fig = _figure(width, 1.55 * n + 0.6, constrained=False)
    _margins(fig, right=0.85)
    ratios = [1.0] * (n - 1) + [1.6]
    axes = fig.subplots(n, 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    _draw_animation(fig, axes, timeline, with_audio)
    fig.suptitle(f"animation timeline: {timeline.n_keyframes} keyframes @ {timeline.fps:g} fps")
    return fig


def frame_timing(timeline: Timeline, *, width: float = 11.0) -> Figure:
    """When keyframes arrived: arrival against media time (with the real-time line),
    lateness per keyframe against the one-frame budget, and the inter-arrival histogram;
    headline figures and the pacing in the title."""
    fig = _figure(width, 3.6, constrained=False)  # fixed margins: the layout engine costs a third
    _margins(fig, left=0.75, top=0.4)
    fig.subplots_adjust(wspace=0.3)
    axes = fig.subplots(1, 3)
    draw_timing(axes, timeline)
    fig.suptitle(f"frame timing: {_timing_text(timeline)}", fontsize="medium")
    return fig


def report(timeline: Timeline, *, width: float = 14.0) -> Figure:
    """One figure for a run: waveform and animation channels (left), frame timing (right);
    the run's settings and headline figures in the title."""
    with_audio = _has_audio(timeline)
    fig = _figure(width, 9.0)
    outer = fig.add_gridspec(1, 2, width_ratios=[1.7, 1.0])
    n = 5 if with_audio else 4
    left = outer[0].subgridspec(n, 1, height_ratios=[1.0] * (n - 1) + [1.6])
    first = fig.add_subplot(left[0])
    axes = [first] + [fig.add_subplot(left[i], sharex=first) for i in range(1, n)]
    _draw_animation(fig, axes, timeline, with_audio)
    right = outer[1].subgridspec(3, 1)
    draw_timing([fig.add_subplot(right[i]) for i in range(3)], timeline)
    fig.suptitle(f"{run_label(timeline)}: {timeline.n_keyframes} keyframes @ {timeline.fps:g} fps\n"
                 f"{_timing_text(timeline)}")
    return fig


def face(keyframe: Any, index: int | None = None, *, ax: Axes | None = None, size: float = 3.0) -> Figure:
    """A simple 2-D face drawn from one keyframe's FLAME values.

    ``keyframe`` is one row (20 + E floats) or a Timeline with ``index``. The jaw opening
    opens the mouth, the eyelids close the eyes, head roll tilts the face, yaw and pitch
    shift it, each eye's pose moves its pupil, and the first expression coefficient
    raises the brows: the shapes of :func:`avatar_nb.face.face_geometry`, which the SVG face
    and the video frames draw too.
    """
    from matplotlib.patches import Ellipse


    if isinstance(keyframe, _Timeline):
        if index is None:
            raise ValueError("face(timeline, index): which keyframe?")
        if not 0 <= index < keyframe.n_keyframes:
            raise IndexError(f"keyframe index {index} out of range 0..{keyframe.n_keyframes - 1}")
        row = keyframe.keyframes[index]
    else:
        row = _np.asarray(keyframe, dtype=_np.float64).ravel()
    g = _face_geometry(row)

    if ax is None:
        fig = _figure(size, size)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    ax.clear()
    ax.set_aspect("equal")
    ax.set_xlim(-_FACE_VIEW[0] / 2, _FACE_VIEW[0] / 2)
    ax.set_ylim(-_FACE_VIEW[1] / 2, _FACE_VIEW[1] / 2)
    ax.axis("off")
    angle = g.roll_degrees
    at = g.place_point

    def oval(o: Any, **kw: Any) -> Ellipse:
        return ax.add_patch(Ellipse(at(o.cx, o.cy), 2 * o.rx, 2 * o.ry, angle=angle, **kw))

    oval(g.head, facecolor="#f2d3b1", edgecolor="0.2", linewidth=1.5)
    for eye in g.eyes:
        w = eye.white  # a shut eye: a flat white, its lid line
        ax.add_patch(Ellipse(at(w.cx, w.cy), 2 * w.rx, max(2 * w.ry, 0.015), angle=angle, facecolor="white",
                             edgecolor="0.2"))
        if eye.pupil is not None:
            oval(eye.pupil, facecolor="0.15")
        ax.plot(*zip(*(at(x, y) for x, y in eye.brow)), color="0.25", linewidth=2.5, solid_capstyle="round")
    ax.plot(*zip(*(at(x, y) for x, y in g.nose)), color="0.45", linewidth=1.2)
    oval(g.mouth, facecolor="#8b2d2d", edgecolor="0.2")
    return fig


def av_offset(timeline_or_result: Timeline | AVOffset, *, width: float = 7.0, **options: Any) -> Figure:
    """The audio-to-motion cross-correlation of a run against lag, with the estimated lag marked.

    Takes a Timeline (analysed with :func:`avatar_nb.analysis.av_offset`, ``options``
    passed on) or the result of that function. Positive lag: the mouth opens after the
    sound. The title gives the lag in ms and the confidence.
    """
    if isinstance(timeline_or_result, _Timeline):
        from .analysis import av_offset as analyse

        result = analyse(timeline_or_result, **options)
    elif hasattr(timeline_or_result, "lags") and hasattr(timeline_or_result, "correlation"):
        result = timeline_or_result
    else:
        raise TypeError(f"av_offset() takes a Timeline or an AVOffset, got {type(timeline_or_result).__name__}")
    fig = _figure(width, 3.2)
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


# ----------------------------------------------------------------------------- several runs


def compare_runs(timelines: Sequence[Timeline], labels: Sequence[str] | None = None, *, width: float = 12.0) -> Figure:
    """Side-by-side timing of several runs: first-frame latency, lateness spread, jitter, RTF.

    Runs are labelled from their metadata (pacing, chunk, sample rate; see :func:`run_label`)
    unless ``labels`` are given. A run whose pacing gives lateness no meaning shows no box.
    """
    if not timelines:
        raise ValueError("compare_runs() needs at least one Timeline")
    if labels is None:
        labels = [run_label(t) for t in timelines]
        if len(set(labels)) < len(labels):  # the same settings: number the repeats
            labels = [f"{label} #{i + 1}" for i, label in enumerate(labels)]
    labels = list(labels)
    if len(labels) != len(timelines):
        raise ValueError(f"got {len(labels)} labels for {len(timelines)} timelines")
    fig = _figure(width, 3.8)
    lat_ax, late_ax, jit_ax, rtf_ax = fig.subplots(1, 4)
    x = _np.arange(len(timelines))

    def values(attr: str) -> _np.ndarray:
        return _np.array([getattr(t, attr) for t in timelines], dtype=_np.float64)

    lat_ax.bar(x, values("first_frame_latency") * 1000.0, color="C0")
    lat_ax.set_ylabel("first-frame latency (ms)")
    timed = [i for i, t in enumerate(timelines) if _lateness_applies(t)]
    if timed:
        late_ax.boxplot([timelines[i].lateness[_np.isfinite(timelines[i].lateness)] * 1000.0 for i in timed],
                        positions=x[timed], widths=0.6, showfliers=False)
    for i in sorted(set(range(len(timelines))) - set(timed)):
        late_ax.text(x[i], 0.5, "n/a\n(fast)", transform=late_ax.get_xaxis_transform(), ha="center", va="center",
                     color="0.4", fontsize="small")
    late_ax.set_ylabel("lateness (ms)" if timed else "lateness (n/a: fast pacing)")
    jit_ax.bar(x, values("jitter") * 1000.0, color="C2")
    jit_ax.set_ylabel("inter-arrival jitter (ms)")
    rtf_ax.bar(x, values("real_time_factor"), color="C4")
    rtf_ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="real time")
    rtf_ax.set_ylabel("real-time factor")
    for ax in (lat_ax, late_ax, jit_ax, rtf_ax):
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize="small")
        ax.set_xlim(-0.6, len(timelines) - 0.4)
    fig.suptitle(f"comparison of {len(timelines)} runs")
    return fig


def _condition_label(names: Sequence[str], key: Any) -> str:
    key = key if isinstance(key, tuple) else (key,)
    return ", ".join(f"{n}={v:g}" if isinstance(v, (int, float)) else f"{n}={v}" for n, v in zip(names, key))


def compare(
    runs: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    *,
    ci: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    width: float = 8.0,
) -> Figure:
    """A grouped comparison from a runs table (one row per run, e.g. ``sweep(...).runs``).

    One bar per value of ``x`` (and of ``hue``, side by side): the mean of ``y`` over the
    runs of that condition, with the bootstrap ``ci`` confidence interval of the mean as
    error bar (:func:`avatar_nb.analysis.summarize`), and the runs themselves as dots.
    Times in seconds are drawn in ms. Failed runs (``status`` not ``"ok"``) are left out.
    """
    from .analysis import summarize

    by = [x] if hue is None else [x, hue]
    stats = summarize(runs, by=by, value=y, ci=ci, n_boot=n_boot, seed=seed)
    table = runs[runs["status"] == "ok"] if "status" in runs.columns else runs
    scale, ylabel = _ms_if_seconds(y)
    xs = list(dict.fromkeys(sorted(stats[x].dropna().unique().tolist())))
    hues = [None] if hue is None else sorted(stats[hue].dropna().unique().tolist())
    fig = _figure(width, 4.0)
    ax = fig.add_subplot()
    step = 0.8 / len(hues)
    for j, h in enumerate(hues):
        rows = stats if h is None else stats[stats[hue] == h]
        pos, mean, lo, hi = [], [], [], []
        for i, xv in enumerate(xs):
            r = rows[rows[x] == xv]
            if r.empty or not _np.isfinite(r["mean"].iloc[0]):
                continue
            pos.append(i - 0.4 + step * (j + 0.5))
            mean.append(float(r["mean"].iloc[0]) * scale)
            lo.append(float(r["ci_low"].iloc[0]) * scale)
            hi.append(float(r["ci_high"].iloc[0]) * scale)
            dots = table[(table[x] == xv) & ((table[hue] == h) if hue is not None else True)][y]
            dots = _np.asarray(dots, dtype=_np.float64) * scale
            jitter = _np.linspace(-step * 0.25, step * 0.25, dots.size) if dots.size > 1 else _np.zeros(dots.size)
            ax.plot(pos[-1] + jitter, dots, "o", color="0.2", markersize=2.5, alpha=0.6, zorder=3)
        mean_a = _np.array(mean)
        err = _np.vstack([mean_a - _np.array(lo), _np.array(hi) - mean_a]) if mean else None
        label = None if h is None else _condition_label([hue], h)
        ax.bar(pos, mean, width=step * 0.9, yerr=err, capsize=3, color=f"C{j}", alpha=0.85, label=label,
               error_kw={"elinewidth": 1.2})
    ax.set_xticks(range(len(xs)), [f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in xs])
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    if hue is not None:
        ax.legend(title=None, fontsize="small")
    ax.set_title(f"{y}: mean per condition, {ci:.0%} bootstrap CI, dots are runs", fontsize="medium")
    return fig


def ecdf(frame: pd.DataFrame, value: str = "latency", by: str | Sequence[str] = (), *, width: float = 7.0,
         points: int = 2000) -> Figure:
    """The empirical distribution (ECDF) of ``value`` per condition, from a per-keyframe table
    (``Timeline.to_pandas()`` or a sweep's ``.keyframes()``), one curve per combination of
    ``by``. Times in seconds are drawn in ms. NaN values (lateness under fast pacing) are
    left out; a condition with none left is named in the legend as n/a. Each curve is
    drawn through at most ``points`` quantiles, so millions of keyframes draw quickly."""
    by_cols = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [value, *by_cols] if c not in frame.columns]
    if missing:
        raise KeyError(f"columns {missing} are not in the table; it has {list(frame.columns)}")
    scale, xlabel = _ms_if_seconds(value)
    fig = _figure(width, 4.0)
    ax = fig.add_subplot()
    groups = frame.groupby(by_cols, sort=True) if by_cols else [((), frame)]
    empty: list[str] = []
    for i, (key, group) in enumerate(groups):
        label = _condition_label(by_cols, key) if by_cols else value
        v = _np.asarray(group[value], dtype=_np.float64)
        v = _np.sort(v[_np.isfinite(v)]) * scale
        if not v.size:
            empty.append(label)
            continue
        if v.size > points:
            probs = _np.linspace(0.0, 1.0, points)
            xs, ps = _np.quantile(v, probs), probs
        else:
            xs, ps = v, _np.arange(1, v.size + 1) / v.size
        ax.step(xs, ps, where="post", color=f"C{i % 10}", label=f"{label} (n={v.size})")
    for label in empty:
        ax.plot([], [], color="0.6", label=f"{label}: n/a")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of keyframes")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    title = f"distribution of {value}"
    if empty and value.startswith("lateness"):
        title += " (n/a under fast pacing)"
    ax.set_title(title, fontsize="medium")
    return fig


# ----------------------------------------------------------------------------- SVG for live views
#
# Widgets that refresh many times a second (the live session panel, the face preview
# while scrubbing) draw SVG strings instead of rasterising matplotlib figures: building
# a few hundred points of markup costs well under a millisecond.

# The lanes of live_svg and waveform_svg share their horizontal margins, so that drawn at
# one width, one above the other, their time axes line up.
_LANE_LEFT, _LANE_RIGHT = 44, 16
_SMALL_TEXT = 'font-size="10" fill="#555" font-family="sans-serif"'


def _svg(width: int, height: int, body: Sequence[str], view_box: str | None = None) -> str:
    box = f' viewBox="{view_box}"' if view_box else ""
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"{box}>' + "".join(body) + "</svg>"


_SVG_UNIT = 84.0  # SVG units per face unit in face_svg
_SVG_CENTRE = (100, 105)  # where the head's centre at rest is, in face_svg's 200 x 210 view box


def face_svg(keyframe: Any, size: int = 180) -> str:
    """The face of :func:`face` as an SVG string (for widgets that redraw often): the same
    shapes (:func:`avatar_nb.face.face_geometry`), :data:`_SVG_UNIT` SVG units to a face unit."""
    g = _face_geometry(keyframe)
    u = _SVG_UNIT
    cx, cy = _SVG_CENTRE[0] + u * g.shift[0], _SVG_CENTRE[1] - u * g.shift[1]
    angle = -g.roll_degrees  # SVG's y points down: a counterclockwise roll is a negative rotate

    def oval(o: Any, min_ry: float = 0.0) -> str:
        return f'cx="{u * o.cx:.1f}" cy="{-u * o.cy:.1f}" rx="{u * o.rx:.1f}" ry="{max(min_ry, u * o.ry):.1f}"'

    def points(pts: Any) -> str:
        return " ".join(f"{u * x:.1f},{-u * y:.1f}" for x, y in pts)

    parts = [
        f'<g transform="translate({cx:.1f},{cy:.1f}) rotate({angle:.1f})">',
        f'<ellipse {oval(g.head)} fill="#f2d3b1" stroke="#333" stroke-width="2"/>',
    ]
    for eye in g.eyes:
        parts.append(f'<ellipse {oval(eye.white, 1.0)} fill="white" stroke="#333"/>')  # shut: a flat white
        if eye.pupil is not None:
            o = eye.pupil
            parts.append(f'<circle cx="{u * o.cx:.1f}" cy="{-u * o.cy:.1f}" r="{u * o.rx:.1f}" fill="#222"/>')
        parts.append(f'<polyline points="{points(eye.brow)}" fill="none" stroke="#444" stroke-width="4" stroke-linecap="round"/>')
    parts.append(f'<polyline points="{points(g.nose)}" fill="none" stroke="#737373" stroke-width="1.5"/>')
    parts.append(f'<ellipse {oval(g.mouth)} fill="#8b2d2d" stroke="#333"/>')
    parts.append("</g>")
    return _svg(size, size, parts, view_box=f"0 0 {2 * _SVG_CENTRE[0]} {2 * _SVG_CENTRE[1]}")


def _polyline(x: _np.ndarray, y: _np.ndarray, x0: float, x1: float, y0: float, y1: float, w: int, h: int,
              color: str) -> str:
    if x.size == 0:
        return ""
    px = (x - x0) / max(x1 - x0, 1e-9) * w
    py = h - (_np.clip(y, y0, y1) - y0) / max(y1 - y0, 1e-9) * h
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py))
    return f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5"/>'


def _nice_step(span: float, target: int) -> float:
    """A 1/2/5 x 10^k step giving about ``target`` ticks over ``span``."""
    raw = span / max(target, 1)
    base = 10.0 ** _math.floor(_math.log10(raw)) if raw > 0 else 1.0
    return next((m * base for m in (1, 2, 5, 10) if m * base >= raw), 10 * base)


def live_svg(timeline: Timeline, *, window: float = 8.0, width: int = 640, height: int = 220) -> str:
    """The last ``window`` seconds of a run as SVG: jaw opening and eyelid closure over media
    time (top lane), per-keyframe lateness in ms with the one-frame budget dashed (bottom
    lane), a shared time axis in seconds. Under ``"fast"`` pacing the bottom lane shows the
    per-keyframe latency instead (lateness has no meaning there) and says so. Built as
    markup from the Timeline's arrays (about a third of a millisecond), so a live view can
    redraw it many times a second."""
    n = timeline.n_keyframes
    left, top, axis_h, gap = _LANE_LEFT, 16, 18, 22
    lane_w = width - left - _LANE_RIGHT
    top_h = int((height - top - gap - axis_h) * 0.6)
    bottom_h = height - top - gap - axis_h - top_h
    bottom_y = top + top_h + gap
    text = _SMALL_TEXT
    body: list[str] = [f'<rect width="{width}" height="{height}" fill="white"/>']
    if not n:
        body.append(f'<text x="{width / 2}" y="{height / 2}" font-size="13" text-anchor="middle" fill="#777" '
                    'font-family="sans-serif">waiting for keyframes</text>')
        return _svg(width, height, body)

    mt = timeline.media_time
    t1 = float(mt[-1]) + 1.0 / timeline.fps
    t0 = max(0.0, t1 - window)
    sel = mt >= t0
    # at most one point per two pixels keeps the markup small for long windows
    step = max(1, int(_np.count_nonzero(sel) / (lane_w / 2)))
    idx = _np.flatnonzero(sel)[::step]
    x = mt[idx]
    jaw = timeline.channel("jaw_open")
    lid = timeline.channel("eyelid_left")
    timed = timeline.pacing != "fast"
    lane_name = "lateness" if timed else "latency"
    late = (timeline.lateness if timed else timeline.latency)[idx] * 1000.0
    finite = late[_np.isfinite(late)]
    budget_ms = 1000.0 / timeline.fps
    jaw_hi = max(0.35, float(jaw[idx].max()) * 1.05)
    hi = max(2.0 * budget_ms, float(finite.max()) * 1.2 if finite.size else 0.0)
    lo = min(0.0, float(finite.min()) * 1.2 if finite.size else 0.0)

    def ypos(value: float, v0: float, v1: float, y: int, h: int) -> float:
        return y + h - (min(max(value, v0), v1) - v0) / (v1 - v0) * h

    # lane frames, time grid and time labels
    for y, h in ((top, top_h), (bottom_y, bottom_h)):
        body.append(f'<rect x="{left}" y="{y}" width="{lane_w}" height="{h}" fill="none" stroke="#bbb"/>')
    tick = _nice_step(window, 8)
    for k in range(_math.ceil(t0 / tick), _math.floor((t0 + window) / tick) + 1):
        tx = left + (k * tick - t0) / window * lane_w
        body.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top}" y2="{bottom_y + bottom_h}" stroke="#eee"/>')
        body.append(f'<text x="{tx:.1f}" y="{height - 4}" text-anchor="middle" {text}>{k * tick:g} s</text>')
    # top lane: jaw opening (rad) and eyelid closure (0..1, drawn on the jaw scale)
    for value in (0.0, 0.1, 0.2, 0.3):
        if value <= jaw_hi:
            ty = ypos(value, 0.0, jaw_hi, top, top_h)
            body.append(f'<text x="{left - 4}" y="{ty + 3:.1f}" text-anchor="end" {text}>{value:g}</text>')
    body.append(f'<g transform="translate({left},{top})">')
    body.append(_polyline(x, jaw[idx], t0, t0 + window, 0.0, jaw_hi, lane_w, top_h, "#c0392b"))
    body.append(_polyline(x, lid[idx] * jaw_hi, t0, t0 + window, 0.0, jaw_hi, lane_w, top_h, "#e67e22"))
    body.append("</g>")
    body.append(f'<text x="{left}" y="{top - 4}" font-size="11" font-family="sans-serif">'
                f'<tspan fill="#c0392b">jaw opening (rad)</tspan> <tspan fill="#e67e22">eyelid closure</tspan>'
                f'<tspan fill="#555">, last {window:g} s</tspan></text>')
    # bottom lane: lateness (ms) against the one-frame budget
    labelled: list[float] = []
    for value in (budget_ms, hi, lo):  # the budget first; a label closer than 10 px to one drawn is left out
        ty = ypos(value, lo, hi, bottom_y, bottom_h)
        if all(abs(ty - other) >= 10 for other in labelled):
            labelled.append(ty)
            body.append(f'<text x="{left - 4}" y="{ty + 3:.1f}" text-anchor="end" {text}>{value:.0f}</text>')
    by = ypos(budget_ms, lo, hi, bottom_y, bottom_h)
    body.append(f'<line x1="{left}" x2="{left + lane_w}" y1="{by:.1f}" y2="{by:.1f}" stroke="#999" stroke-dasharray="4 3"/>')
    body.append(f'<g transform="translate({left},{bottom_y})">')
    keep = _np.isfinite(late)
    body.append(_polyline(x[keep], late[keep], t0, t0 + window, lo, hi, lane_w, bottom_h, "#2c3e50"))
    body.append("</g>")
    current = f"{late[-1]:.0f} ms" if _np.isfinite(late[-1]) else "n/a"
    note = "" if timed else " (fast pacing: lateness n/a)"
    body.append(f'<text x="{left}" y="{bottom_y - 4}" font-size="11" fill="#2c3e50" font-family="sans-serif">'
                f"{lane_name} {current} (dashed: one frame, {budget_ms:.0f} ms){note}</text>")
    return _svg(width, height, body)


def waveform_svg(recent: _np.ndarray, sample_rate: int, total_samples: int, *, window: float = 8.0,
                 width: int = 520, height: int = 70) -> str:
    """The last ``window`` seconds of captured int16 audio as an SVG min/max envelope,
    right-aligned at the capture's current end (``total_samples``), time in seconds. Its
    lane has the margins of :func:`live_svg`'s, so the two stacked at one width share
    their time axis."""
    left = _LANE_LEFT
    lane_w = width - left - _LANE_RIGHT
    body = [
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<rect x="{left}" y="14" width="{lane_w}" height="{height - 18}" fill="none" stroke="#bbb"/>',
    ]
    end = total_samples / sample_rate
    t0 = max(0.0, end - window)
    body.append(
        f'<text x="{left}" y="10" font-size="11" fill="#2471a3" font-family="sans-serif">captured audio'
        f'<tspan fill="#555">, {end:.1f} s so far</tspan></text>'
    )
    mid, half = 14 + (height - 18) / 2, (height - 18) / 2 - 2
    n = recent.shape[0]
    if n:
        bins = max(1, min(lane_w // 2, n))  # a vertical line every two pixels
        usable = (n // bins) * bins
        blocks = recent[n - usable :].astype(_np.float32).reshape(bins, -1) / 32768.0
        lo, hi = blocks.min(axis=1), blocks.max(axis=1)
        # x of each bin: its time within the window
        t_start = end - usable / sample_rate
        xs = left + ((t_start + (_np.arange(bins) + 0.5) * (usable / bins) / sample_rate) - t0) / window * lane_w
        # one %-format over all the numbers: several times faster than a string per bin
        coords = _np.column_stack([xs, mid - hi * half, mid - lo * half]).ravel()
        path = ("M%.1f,%.1fV%.1f" * bins) % tuple(coords.tolist())
        body.append(f'<path d="{path}" stroke="#2471a3" stroke-width="1" fill="none"/>')
    body.append(f'<text x="{left - 4}" y="{mid + 3:.1f}" text-anchor="end" {_SMALL_TEXT}>0</text>')
    return _svg(width, height, body)


def _register_ipython_png() -> None:
    """Make bare Figures display as PNG in IPython even when pyplot was never imported."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None:
        return
    from matplotlib.figure import Figure

    formatter = ip.display_formatter.formatters.get("image/png")
    if formatter is not None:
        formatter.for_type(Figure, lambda fig: to_png(fig))


_register_ipython_png()
