"""SVG for live views.

Widgets that refresh many times a second (the live session panel, the face preview
while scrubbing) draw SVG strings instead of rasterising matplotlib figures: building
a few hundred points of markup costs well under a millisecond."""

from __future__ import annotations

import html
import math as _math
from typing import TYPE_CHECKING

import numpy as _np

from ._base import svg_document

if TYPE_CHECKING:


    from ..timeline import Timeline


# The lanes of live_svg and waveform_svg share their horizontal margins, so that drawn at
# one width, one above the other, their time axes line up.
_LANE_LEFT, _LANE_RIGHT = 44, 16
_SMALL_TEXT = 'font-size="10" fill="#555" font-family="sans-serif"'


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


def live_svg(timeline: Timeline, *, window: float = 8.0, width: int = 640, height: int = 220,
             empty_text: str = "waiting for keyframes") -> str:
    """The last ``window`` seconds of a run as SVG: jaw opening and eyelid closure over media
    time (top lane), per-keyframe lateness in ms with the one-frame budget dashed (bottom
    lane), a shared time axis in seconds. Under ``"fast"`` pacing the bottom lane shows the
    per-keyframe latency instead (lateness has no meaning there) and says so. Built as
    markup from the Timeline's arrays (about a third of a millisecond), so a live view can
    redraw it many times a second. Without keyframes it shows ``empty_text`` (a view whose
    run has ended says so, rather than waiting)."""
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
                    f'font-family="sans-serif">{html.escape(empty_text)}</text>')
        return svg_document(width, height, body)

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
    return svg_document(width, height, body)


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
    return svg_document(width, height, body)
