"""Figures of audio, animation and frame timing (matplotlib; every function returns a Figure).

Nothing here touches pyplot's global state or calls ``plt.show``: figures are built
with ``matplotlib.figure.Figure`` so they can be shown inline, saved, or rendered into
a widget. Long series are reduced to a min/max envelope per pixel column before
drawing (the waveform through the compiled :func:`avatar_nb.peak_envelope`), so an
hour of audio or 90,000 keyframes draw about as fast as a second of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from . import _pcm
from .timeline import Timeline

__all__ = [
    "animation_timeline",
    "compare_runs",
    "envelope",
    "face",
    "face_svg",
    "frame_timing",
    "live_svg",
    "report",
    "to_png",
    "waveform",
]

_DPI = 100


# ----------------------------------------------------------------------------- helpers


def _audio_samples(audio: Any) -> np.ndarray:
    if isinstance(audio, Timeline):
        if audio.audio is None:
            raise ValueError("this Timeline carries no audio; pass the audio explicitly")
        return audio.audio
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(audio), dtype="<i2")
    arr = np.asarray(audio)
    if arr.ndim == 2:
        arr = arr.mean(axis=1).astype(np.float32)
    if arr.ndim != 1:
        raise ValueError(f"audio must be 1-D samples, s16le bytes or a Timeline, got shape {arr.shape}")
    if arr.dtype not in (np.int16, np.float32, np.float64):
        raise TypeError(f"unsupported audio dtype {arr.dtype}; accepted: int16, float32, float64, s16le bytes")
    return arr


def envelope(values: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(centers, mins, maxs)`` of ``values`` over ``n_bins`` equal spans of their index.

    Bin ``i`` covers ``[i * n // n_bins, (i + 1) * n // n_bins)``; ``centers`` are the
    mid indices. Series no longer than ``n_bins`` come back unchanged (mins == maxs).
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n <= n_bins:
        idx = np.arange(n, dtype=np.float64)
        return idx, values, values
    edges = (np.arange(n_bins + 1) * n) // n_bins
    mins = np.minimum.reduceat(values, edges[:-1])
    maxs = np.maximum.reduceat(values, edges[:-1])
    centers = (edges[:-1] + edges[1:] - 1) / 2.0
    return centers, mins, maxs


def _pixel_width(ax: Axes) -> int:
    fig = ax.figure
    return max(50, int(ax.get_position().width * fig.get_figwidth() * fig.dpi))


def _draw_series(ax: Axes, t: np.ndarray, y: np.ndarray, *, label: str | None = None, **kw: Any) -> None:
    """A line for short series; a min/max band plus its midline per pixel for long ones."""
    bins = _pixel_width(ax)
    if y.shape[0] <= 2 * bins:
        ax.plot(t, y, label=label, **kw)
        return
    centers, mins, maxs = envelope(y, bins)
    tc = np.interp(centers, np.arange(t.shape[0]), t)
    (line,) = ax.plot(tc, (mins + maxs) / 2, label=label, **kw)
    ax.fill_between(tc, mins, maxs, color=line.get_color(), alpha=0.35, linewidth=0)


def _mark_utterances(ax: Axes, tl: Timeline) -> None:
    """Dotted lines where each utterance after the first starts, as one collection:
    an hour of short utterances would otherwise cost a Line2D (~0.4 ms) per boundary."""
    starts = tl.utterance_start[1:]
    if starts.size:
        ax.vlines(starts, 0, 1, transform=ax.get_xaxis_transform(), colors="0.4", linestyles=":",
                  linewidths=0.8, label="utterance start")


def _draw_waveform(ax: Axes, samples: np.ndarray, sample_rate: int, t0: float = 0.0) -> None:
    """Draw ``samples`` (starting ``t0`` seconds into the audio) as a min/max envelope."""
    n = samples.shape[0]
    bins = min(_pixel_width(ax), max(1, n))
    if n == 0:
        ax.text(0.5, 0.5, "no audio", transform=ax.transAxes, ha="center", va="center")
    else:
        mins, maxs = _pcm.peak_envelope(samples, bins)
        k = mins.shape[0]
        t = t0 + (np.arange(k) + 0.5) * (n / k) / sample_rate
        ax.fill_between(t, mins, maxs, color="C0", linewidth=0, step="mid")
        ax.set_xlim(t0, t0 + n / sample_rate)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("amplitude")


def to_png(fig: Figure, dpi: int | None = None) -> bytes:
    """The figure rendered to PNG bytes (Agg)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or fig.dpi)
    return buf.getvalue()


def _figure(width: float, height: float, *, constrained: bool = True) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def _margins(fig: Figure, *, left: float = 0.85, right: float = 0.15, top: float = 0.45, bottom: float = 0.5,
             hspace: float = 0.12) -> None:
    """Fixed margins in inches. The figures of long data use these instead of the
    constrained layout engine, whose text measuring would cost more than the data."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h, hspace=hspace)


# ----------------------------------------------------------------------------- public figures


def waveform(audio: Any, sample_rate: int | None = None, *, title: str | None = None, width: float = 10.0) -> Figure:
    """The waveform of ``audio`` (s16le bytes, int16 or float samples, or a Timeline's audio)."""
    if isinstance(audio, Timeline):
        sample_rate = sample_rate or audio.sample_rate
    if not sample_rate:
        raise ValueError("waveform() needs the sample_rate of the audio")
    samples = _audio_samples(audio)
    fig = _figure(width, 2.6, constrained=False)
    _margins(fig, top=0.35)
    ax = fig.add_subplot()
    _draw_waveform(ax, samples, int(sample_rate))
    ax.set_xlabel("time (s)")
    ax.set_title(title or f"waveform ({samples.shape[0] / sample_rate:.2f} s @ {sample_rate} Hz)")
    return fig


def _draw_channels(axes: Sequence[Axes], tl: Timeline, span: tuple[int, int] | None = None) -> None:
    """Jaw, eyelids, head rotation and expression of keyframes ``span`` (default: all)."""
    jaw_ax, lid_ax, head_ax, expr_ax = axes
    sel = slice(*span) if span is not None else slice(None)
    t = tl.media_time[sel]
    _draw_series(jaw_ax, t, tl.jaw_open[sel].astype(np.float64), label="jaw open", color="C3")
    jaw_ax.set_ylabel("jaw (rad)")
    _draw_series(lid_ax, t, tl.eyelid_left[sel].astype(np.float64), label="left", color="C1")
    _draw_series(lid_ax, t, tl.eyelid_right[sel].astype(np.float64), label="right", color="C2", linestyle="--")
    lid_ax.set_ylabel("eyelids")
    lid_ax.set_ylim(-0.05, 1.05)
    lid_ax.legend(loc="upper right", fontsize="small", ncols=2)
    for name, color in (("head_pitch", "C0"), ("head_yaw", "C4"), ("head_roll", "C5")):
        _draw_series(head_ax, t, tl.channel(name)[sel].astype(np.float64), label=name.split("_")[1], color=color)
    head_ax.set_ylabel("head (rad)")
    head_ax.legend(loc="upper right", fontsize="small", ncols=3)
    expr = tl.channel("expression")[sel]
    if expr.shape[0] and expr.shape[1]:
        bins = _pixel_width(expr_ax)
        if expr.shape[0] > bins:  # mean per pixel column keeps the heatmap honest and small
            edges = (np.arange(bins + 1) * expr.shape[0]) // bins
            expr = np.add.reduceat(expr, edges[:-1], axis=0) / np.diff(edges)[:, None].astype(np.float32)
        lim = float(np.max(np.abs(expr))) or 1.0
        t0, t1 = (float(t[0]), float(t[-1]) + 1.0 / tl.fps) if t.size else (0.0, 1.0)
        expr_ax.imshow(
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


def animation_timeline(timeline: Timeline, *, audio: bool = True, width: float = 11.0) -> Figure:
    """Animation channels over media time: waveform (if any), jaw, eyelids, head, expression heatmap.

    All panels share the time axis; dotted lines mark where each utterance starts.
    """
    with_audio = audio and timeline.audio is not None and bool(timeline.sample_rate)
    n = 5 if with_audio else 4
    fig = _figure(width, 1.55 * n + 0.6, constrained=False)
    _margins(fig)
    ratios = [1.0] * (n - 1) + [1.6]
    axes = fig.subplots(n, 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    if with_audio:
        _draw_waveform(axes[0], timeline.audio, int(timeline.sample_rate))
        _mark_utterances(axes[0], timeline)
    _draw_channels(axes[-4:], timeline)
    axes[-1].set_xlabel("media time (s)")
    fig.suptitle(f"animation timeline: {timeline.n_keyframes} keyframes @ {timeline.fps:g} fps")
    return fig


def _draw_timing(axes: Sequence[Axes], tl: Timeline) -> None:
    arr_ax, late_ax, hist_ax = axes
    mt, arrival = tl.media_time, tl.arrival
    if mt.size:
        _draw_series(arr_ax, mt, arrival, label="arrival", color="C0")
        lim = max(float(mt[-1]), float(arrival.max()))
        arr_ax.plot([0, lim], [0, lim], color="0.3", linestyle="--", linewidth=1, label="real time")
        arr_ax.legend(loc="upper left", fontsize="small")
        _draw_series(late_ax, mt, tl.lateness * 1000.0, color="C3")
        late_ax.axhline(1000.0 / tl.fps, color="0.3", linestyle=":", linewidth=1)
    arr_ax.set_xlabel("media time (s)")
    arr_ax.set_ylabel("arrival (s)")
    late_ax.set_xlabel("media time (s)")
    late_ax.set_ylabel("lateness (ms)")
    gaps = tl.inter_arrival * 1000.0
    if gaps.size:
        hist_ax.hist(gaps, bins=min(60, max(10, int(math.sqrt(gaps.size)))), color="C2")
    hist_ax.set_xlabel("inter-arrival (ms)")
    hist_ax.set_ylabel("messages")


def _timing_text(tl: Timeline) -> str:
    s = tl.summary()

    def ms(v: float | None) -> str:
        return "n/a" if v is None else f"{v * 1000:.1f} ms"

    rtf = "n/a" if s["real_time_factor"] is None else f"{s['real_time_factor']:.3f}"
    return f"first-frame latency {ms(s['first_frame_latency'])}   jitter {ms(s['jitter'])}   real-time factor {rtf}"


def frame_timing(timeline: Timeline, *, width: float = 11.0) -> Figure:
    """When keyframes arrived: arrival against media time (with the real-time line),
    lateness per keyframe, and the inter-arrival histogram; headline figures in the title."""
    fig = _figure(width, 3.6, constrained=False)  # fixed margins: the layout engine costs a third
    _margins(fig, left=0.75, top=0.4)
    fig.subplots_adjust(wspace=0.3)
    axes = fig.subplots(1, 3)
    _draw_timing(axes, timeline)
    fig.suptitle(f"frame timing: {_timing_text(timeline)}")
    return fig


def report(timeline: Timeline, *, width: float = 14.0) -> Figure:
    """One figure for a run: waveform and animation channels (left), frame timing (right)."""
    with_audio = timeline.audio is not None and bool(timeline.sample_rate)
    fig = _figure(width, 9.0)
    outer = fig.add_gridspec(1, 2, width_ratios=[1.7, 1.0])
    n = 5 if with_audio else 4
    left = outer[0].subgridspec(n, 1, height_ratios=[1.0] * (n - 1) + [1.6])
    first = fig.add_subplot(left[0])
    axes = [first] + [fig.add_subplot(left[i], sharex=first) for i in range(1, n)]
    if with_audio:
        _draw_waveform(axes[0], timeline.audio, int(timeline.sample_rate))
        _mark_utterances(axes[0], timeline)
    _draw_channels(axes[-4:], timeline)
    axes[-1].set_xlabel("media time (s)")
    right = outer[1].subgridspec(3, 1)
    _draw_timing([fig.add_subplot(right[i]) for i in range(3)], timeline)
    fig.suptitle(f"{timeline.n_keyframes} keyframes @ {timeline.fps:g} fps — {_timing_text(timeline)}")
    return fig


def compare_runs(timelines: Sequence[Timeline], labels: Sequence[str] | None = None, *, width: float = 12.0) -> Figure:
    """Side-by-side timing of several runs: first-frame latency, lateness spread, jitter, RTF."""
    if not timelines:
        raise ValueError("compare_runs() needs at least one Timeline")
    labels = list(labels) if labels is not None else [f"run {i + 1}" for i in range(len(timelines))]
    if len(labels) != len(timelines):
        raise ValueError(f"got {len(labels)} labels for {len(timelines)} timelines")
    fig = _figure(width, 3.8)
    lat_ax, late_ax, jit_ax, rtf_ax = fig.subplots(1, 4)
    x = np.arange(len(timelines))

    def values(attr: str) -> np.ndarray:
        return np.array([getattr(t, attr) for t in timelines], dtype=np.float64)

    lat_ax.bar(x, values("first_frame_latency") * 1000.0, color="C0")
    lat_ax.set_ylabel("first-frame latency (ms)")
    late = [t.lateness * 1000.0 if t.lateness.size else np.zeros(1) for t in timelines]
    late_ax.boxplot(late, positions=x, widths=0.6, showfliers=False)
    late_ax.set_ylabel("lateness (ms)")
    jit_ax.bar(x, values("jitter") * 1000.0, color="C2")
    jit_ax.set_ylabel("inter-arrival jitter (ms)")
    rtf_ax.bar(x, values("real_time_factor"), color="C4")
    rtf_ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1)
    rtf_ax.set_ylabel("real-time factor")
    for ax in (lat_ax, late_ax, jit_ax, rtf_ax):
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize="small")
    fig.suptitle(f"comparison of {len(timelines)} runs")
    return fig


def face(keyframe: Any, index: int | None = None, *, ax: Axes | None = None, size: float = 3.0) -> Figure:
    """A simple 2-D face drawn from one keyframe's FLAME values.

    ``keyframe`` is one row (20 + E floats) or a Timeline with ``index``. The jaw opening
    opens the mouth, the eyelids close the eyes, head roll tilts the face, yaw and pitch
    shift it, eye_pose moves the pupils, and the first expression coefficient raises the
    brows.
    """
    if isinstance(keyframe, Timeline):
        if index is None:
            raise ValueError("face(timeline, index): which keyframe?")
        if not 0 <= index < keyframe.n_keyframes:
            raise IndexError(f"keyframe index {index} out of range 0..{keyframe.n_keyframes - 1}")
        row = keyframe.keyframes[index]
    else:
        row = np.asarray(keyframe, dtype=np.float64).ravel()
    if row.shape[0] < _pcm.FLAME_FIXED_COLUMNS:
        raise ValueError(f"a keyframe has at least {_pcm.FLAME_FIXED_COLUMNS} values, got {row.shape[0]}")
    pitch, yaw, roll = (float(v) for v in row[3:6])
    jaw = float(row[9])
    lids = np.clip(row[18:20], 0.0, 1.0)
    gaze = row[12:14]
    brow = float(row[20]) if row.shape[0] > 20 else 0.0

    if ax is None:
        fig = _figure(size, size)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    ax.clear()
    ax.set_aspect("equal")
    ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(-1.4, 1.3)
    ax.axis("off")
    cx, cy = 2.0 * yaw, -2.0 * pitch
    angle = math.degrees(roll) * 3.0
    rot = np.array([[math.cos(math.radians(angle)), -math.sin(math.radians(angle))],
                    [math.sin(math.radians(angle)), math.cos(math.radians(angle))]])

    def at(x: float, y: float) -> tuple[float, float]:
        px, py = rot @ np.array([x, y])
        return cx + px, cy + py

    ax.add_patch(Ellipse(at(0, 0), 1.7, 2.2, angle=angle, facecolor="#f2d3b1", edgecolor="0.2", linewidth=1.5))
    for side, lid, g in ((-1, lids[0], gaze), (1, lids[1], gaze)):
        ex, ey = at(0.38 * side, 0.28)
        open_h = 0.26 * (1.0 - float(lid))
        ax.add_patch(Ellipse((ex, ey), 0.34, max(open_h, 0.015), angle=angle, facecolor="white", edgecolor="0.2"))
        if open_h > 0.05:
            px, py = at(0.38 * side + 0.5 * float(g[1]), 0.28 - 0.5 * float(g[0]))
            ax.add_patch(Ellipse((px, py), 0.11, min(0.11, open_h * 0.8), facecolor="0.15"))
        bx0, by0 = at(0.38 * side - 0.17, 0.5 + 0.15 * brow)
        bx1, by1 = at(0.38 * side + 0.17, 0.5 + 0.15 * brow + 0.03 * side * brow)
        ax.plot([bx0, bx1], [by0, by1], color="0.25", linewidth=2.5, solid_capstyle="round")
    ax.plot(*zip(at(0, 0.15), at(-0.06, -0.12), at(0.05, -0.14)), color="0.45", linewidth=1.2)
    mouth_h = 0.04 + 1.6 * max(0.0, jaw)
    ax.add_patch(Ellipse(at(0, -0.52 - mouth_h / 4), 0.55, mouth_h, angle=angle, facecolor="#8b2d2d", edgecolor="0.2"))
    return fig


# ----------------------------------------------------------------------------- SVG for live views
#
# Widgets that refresh many times a second (the live session panel, the face preview
# while scrubbing) draw SVG strings instead of rasterising matplotlib figures: building
# a few hundred points of markup costs well under a millisecond.


def _face_parts(row: np.ndarray) -> dict[str, float]:
    return {
        "pitch": float(row[3]),
        "yaw": float(row[4]),
        "roll": float(row[5]),
        "jaw": max(0.0, float(row[9])),
        "lid_l": float(np.clip(row[18], 0.0, 1.0)),
        "lid_r": float(np.clip(row[19], 0.0, 1.0)),
        "gaze_x": float(row[13]),
        "gaze_y": float(row[12]),
        "brow": float(row[20]) if row.shape[0] > 20 else 0.0,
    }


def face_svg(keyframe: Any, size: int = 180) -> str:
    """The face of :func:`face` as an SVG string (for widgets that redraw often)."""
    row = np.asarray(keyframe, dtype=np.float64).ravel()
    if row.shape[0] < _pcm.FLAME_FIXED_COLUMNS:
        raise ValueError(f"a keyframe has at least {_pcm.FLAME_FIXED_COLUMNS} values, got {row.shape[0]}")
    p = _face_parts(row)
    cx, cy = 100 + 200 * p["yaw"], 105 + 200 * p["pitch"]
    angle = math.degrees(p["roll"]) * 3.0
    parts = [
        f'<g transform="translate({cx:.1f},{cy:.1f}) rotate({angle:.1f})">',
        '<ellipse rx="72" ry="92" fill="#f2d3b1" stroke="#333" stroke-width="2"/>',
    ]
    for side, lid in ((-1, p["lid_l"]), (1, p["lid_r"])):
        ex = 32 * side
        open_h = max(1.0, 11 * (1 - lid))
        parts.append(f'<ellipse cx="{ex}" cy="-22" rx="14" ry="{open_h:.1f}" fill="white" stroke="#333"/>')
        if open_h > 3:
            px, py = ex + 40 * p["gaze_x"], -22 - 40 * p["gaze_y"]
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{min(4.5, open_h * 0.8):.1f}" fill="#222"/>')
        by = -44 - 12 * p["brow"]
        parts.append(
            f'<line x1="{ex - 14}" y1="{by:.1f}" x2="{ex + 14}" y2="{by + 3 * side * p["brow"]:.1f}" '
            'stroke="#444" stroke-width="4" stroke-linecap="round"/>'
        )
    mouth_h = 3 + 130 * p["jaw"]
    parts.append(f'<ellipse cx="0" cy="{44 + mouth_h / 4:.1f}" rx="23" ry="{mouth_h / 2:.1f}" fill="#8b2d2d" stroke="#333"/>')
    parts.append("</g>")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 200 210">'
        + "".join(parts)
        + "</svg>"
    )


def _polyline(x: np.ndarray, y: np.ndarray, x0: float, x1: float, y0: float, y1: float, w: int, h: int, color: str) -> str:
    if x.size == 0:
        return ""
    px = (x - x0) / max(x1 - x0, 1e-9) * w
    py = h - (np.clip(y, y0, y1) - y0) / max(y1 - y0, 1e-9) * h
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py))
    return f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5"/>'


def _nice_step(span: float, target: int) -> float:
    """A 1/2/5 x 10^k step giving about ``target`` ticks over ``span``."""
    raw = span / max(target, 1)
    base = 10.0 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next((m * base for m in (1, 2, 5, 10) if m * base >= raw), 10 * base)


def live_svg(timeline: Timeline, *, window: float = 8.0, width: int = 640, height: int = 220) -> str:
    """The last ``window`` seconds of a run as SVG: jaw opening and eyelid closure over media
    time (top lane), per-keyframe lateness in ms with the one-frame budget dashed (bottom
    lane), a shared time axis in seconds. Built as markup from the Timeline's arrays (about
    a third of a millisecond), so a live view can redraw it many times a second."""
    n = timeline.n_keyframes
    left, right, top, axis_h, gap = 44, 16, 16, 18, 22
    lane_w = width - left - right
    top_h = int((height - top - gap - axis_h) * 0.6)
    bottom_h = height - top - gap - axis_h - top_h
    bottom_y = top + top_h + gap
    text = 'font-size="10" fill="#555" font-family="sans-serif"'
    body: list[str] = [f'<rect width="{width}" height="{height}" fill="white"/>']
    if not n:
        body.append(f'<text x="{width / 2}" y="{height / 2}" font-size="13" text-anchor="middle" fill="#777" '
                    'font-family="sans-serif">waiting for keyframes</text>')
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">' + "".join(body) + "</svg>"

    mt = timeline.media_time
    t1 = float(mt[-1]) + 1.0 / timeline.fps
    t0 = max(0.0, t1 - window)
    sel = mt >= t0
    # at most one point per two pixels keeps the markup small for long windows
    step = max(1, int(np.count_nonzero(sel) / (lane_w / 2)))
    idx = np.flatnonzero(sel)[::step]
    x = mt[idx]
    kf = timeline.keyframes
    late = timeline.lateness[idx] * 1000.0
    budget_ms = 1000.0 / timeline.fps
    jaw_hi = max(0.35, float(kf[idx, 9].max()) * 1.05)
    hi = max(2.0 * budget_ms, float(late.max()) * 1.2)
    lo = min(0.0, float(late.min()) * 1.2)

    def ypos(value: float, v0: float, v1: float, y: int, h: int) -> float:
        return y + h - (min(max(value, v0), v1) - v0) / (v1 - v0) * h

    # lane frames, time grid and time labels
    for y, h in ((top, top_h), (bottom_y, bottom_h)):
        body.append(f'<rect x="{left}" y="{y}" width="{lane_w}" height="{h}" fill="none" stroke="#bbb"/>')
    tick = _nice_step(window, 8)
    for k in range(math.ceil(t0 / tick), math.floor((t0 + window) / tick) + 1):
        tx = left + (k * tick - t0) / window * lane_w
        body.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top}" y2="{bottom_y + bottom_h}" stroke="#eee"/>')
        body.append(f'<text x="{tx:.1f}" y="{height - 4}" text-anchor="middle" {text}>{k * tick:g} s</text>')
    # top lane: jaw opening (rad) and eyelid closure (0..1, drawn on the jaw scale)
    for value in (0.0, 0.1, 0.2, 0.3):
        if value <= jaw_hi:
            ty = ypos(value, 0.0, jaw_hi, top, top_h)
            body.append(f'<text x="{left - 4}" y="{ty + 3:.1f}" text-anchor="end" {text}>{value:g}</text>')
    body.append(f'<g transform="translate({left},{top})">')
    body.append(_polyline(x, kf[idx, 9], t0, t0 + window, 0.0, jaw_hi, lane_w, top_h, "#c0392b"))
    body.append(_polyline(x, kf[idx, 18] * jaw_hi, t0, t0 + window, 0.0, jaw_hi, lane_w, top_h, "#e67e22"))
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
    body.append(_polyline(x, late, t0, t0 + window, lo, hi, lane_w, bottom_h, "#2c3e50"))
    body.append("</g>")
    body.append(f'<text x="{left}" y="{bottom_y - 4}" font-size="11" fill="#2c3e50" font-family="sans-serif">'
                f"lateness {late[-1]:.0f} ms (dashed: one frame, {budget_ms:.0f} ms)</text>")
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">' + "".join(body) + "</svg>"


def _register_ipython_png() -> None:
    """Make bare Figures display as PNG in IPython even when pyplot was never imported."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None:
        return
    formatter = ip.display_formatter.formatters.get("image/png")
    if formatter is not None:
        formatter.for_type(Figure, lambda fig: to_png(fig))


_register_ipython_png()
