"""Helpers the figures of :mod:`avatar_nb.plots` share: audio input, envelopes, series drawn
per pixel column, figures and margins, PNG and SVG output."""

from __future__ import annotations

import math as _math
from typing import TYPE_CHECKING

import numpy as _np

from ..timeline import Timeline as _Timeline

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..timeline import Timeline
    from ..timeline_pyramid import TimelinePyramid


_DPI = 100
NO_LATENESS = "lateness n/a: fast pacing has no playback clock"


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


def pixel_width(ax: Axes) -> int:
    fig = ax.figure
    return max(50, int(ax.get_position().width * fig.get_figwidth() * fig.dpi))


Track = tuple["Timeline", str, float, "tuple[float, float] | None"]


def draw_series(ax: Axes, t: _np.ndarray, y: _np.ndarray, *, label: str | None = None,
                track: Track | None = None, **kw: Any) -> None:
    """A line for short series; a min/max band plus its midline per pixel for long ones.

    ``track``: ``(timeline, column, scale, window)`` when ``y`` is ``column`` (one of
    :data:`avatar_nb.timeline_pyramid.LINE_COLUMNS`) times ``scale``, of the whole
    timeline (``window`` None) or of the keyframes in ``window`` (media time, s): a long
    one is then read from the timeline's pyramid (built once, kept with it) instead of
    reduced again for every figure."""
    bins = pixel_width(ax)
    if y.shape[0] <= 2 * bins:
        ax.plot(t, y, label=label, **kw)
        return
    band = pyramid_band(track, bins) if track is not None else None
    if band is not None:
        tc, mins, maxs = band
    else:
        centers, mins, maxs = envelope(y, bins)
        tc = _np.interp(centers, _np.arange(t.shape[0]), t)
    (line,) = ax.plot(tc, (mins + maxs) / 2, label=label, **kw)
    ax.fill_between(tc, mins, maxs, color=line.get_color(), alpha=0.35, linewidth=0)


def long_run_pyramid(timeline: Timeline, pixels: int) -> TimelinePyramid | None:
    """The run's pyramid when its keyframes are too many to draw one by one ``pixels``
    wide (more than two a pixel, as :func:`draw_series` decides), else None."""
    if timeline.n_keyframes <= 2 * pixels:
        return None
    from ..timeline_pyramid import pyramid_of

    pyramid = pyramid_of(timeline)
    lines = pyramid.lines
    if lines.level_for(lines.start, lines.start + lines.n / lines.rate, pixels) < 0:
        return None
    return pyramid


def padded_limits(*values: _np.ndarray, pad: float = 0.05) -> tuple[float, float]:
    """Limits holding every finite value of ``values`` with ``pad`` of their span each side
    (as matplotlib's default margins); (-1, 1) when there is none."""
    finite = _np.concatenate([_np.asarray(v, dtype=_np.float64).ravel() for v in values])
    finite = finite[_np.isfinite(finite)]
    if not finite.size:
        return (-1.0, 1.0)
    a, b = float(finite.min()), float(finite.max())
    margin = (b - a) * pad or max(abs(a), 1.0) * pad
    return a - margin, b + margin


def pyramid_band(track: Track, bins: int) -> tuple[_np.ndarray, _np.ndarray, _np.ndarray] | None:
    """``(bucket centres, mins, maxs)`` of a timeline's line column over the whole run (or
    ``window``), from the pyramid level whose buckets are one or two pixels wide (of
    ``bins``: the fewest vertices for Agg to fill); None when the run is too short to have one."""
    from ..timeline_pyramid import LINE_COLUMNS, pyramid_of

    timeline, column, scale, window = track
    lines = pyramid_of(timeline).lines
    t0, t1 = window if window is not None else (lines.start, lines.start + lines.n / lines.rate)
    view = lines.window(t0, t1, bins)  # buckets of one or two pixels
    if view.level < 0:
        return None
    c = LINE_COLUMNS.index(column)
    centers = view.times + view.bucket / lines.rate / 2.0
    return centers, view.mins[:, c].astype(_np.float64) * scale, view.maxs[:, c].astype(_np.float64) * scale


def mark_utterances(ax: Axes, tl: Timeline) -> None:
    """Dotted lines where each utterance after the first starts, as one collection:
    an hour of short utterances would otherwise cost a Line2D (~0.4 ms) per boundary."""
    starts = tl.utterance_start[1:]
    if starts.size:
        ax.vlines(starts, 0, 1, transform=ax.get_xaxis_transform(), colors="0.4", linestyles=":",
                  linewidths=0.8, label="utterance start")


def lateness_applies(tl: Timeline) -> bool:
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


def new_figure(width: float, height: float, *, constrained: bool = True) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def set_margins(fig: Figure, *, left: float = 0.85, right: float = 0.15, top: float = 0.45, bottom: float = 0.5,
             hspace: float = 0.12) -> None:
    """Fixed margins in inches. The figures of long data use these instead of the
    constrained layout engine, whose text measuring would cost more than the data."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h, hspace=hspace)


def ms_if_seconds(name: str) -> tuple[float, str]:
    """Scale and unit for a table column on an axis: times (s) are shown in ms."""
    timed = ("latency", "lateness", "jitter", "first_frame", "inter_arrival", "delay", "offset", "lag")
    if any(word in name for word in timed) and not name.endswith("_ms"):
        return 1000.0, f"{name} (ms)"
    return 1.0, name


def svg_document(width: int, height: int, body: Sequence[str], view_box: str | None = None) -> str:
    box = f' viewBox="{view_box}"' if view_box else ""
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"{box}>' + "".join(body) + "</svg>"


def register_ipython_png() -> None:
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
        # by name: importing avatar_nb.plots does not import matplotlib (0.4 s), the first Figure does
        formatter.for_type_by_name("matplotlib.figure", "Figure", lambda fig: to_png(fig))
