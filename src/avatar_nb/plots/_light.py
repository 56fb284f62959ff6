"""Cheaper figure parts for the static figures of long runs.

A long run's figure draws its data from the run's pyramid (a min and a max per pixel
column), so what it costs is matplotlib's own per-figure work: an Axis makes five artists
per tick and measures every label (about 1.7 ms a labelled tick on a shared 2-core
machine, against 0.6 ms for the text alone), a legend lays out a box of artists, and
``fill_between`` checks and splits its input (about 6 ms a band, against 1 ms for the
polygon). What those figures use instead:

- :class:`Ticks`: the tick marks and labels of one side of an Axes, placed from the view
  limits each time it is drawn (so they follow ``set_xlim``): one path for the marks and
  one Text drawn once per label; the Axes' own locators are set to none (``set_xticks``
  or a locator set on an axis brings matplotlib's ticks back in their place);
- :func:`bands`: the min/max bands and midlines of several series as one PolyCollection
  and one LineCollection;
- :class:`Verticals`: dotted vertical lines (utterance starts) over several Axes sharing a
  time axis, as one path;
- :func:`side_labels`: coloured names beside or in a panel instead of a legend.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import rcParams
from matplotlib.artist import Artist
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.path import Path
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator, NullLocator
from matplotlib.transforms import Bbox, IdentityTransform

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from matplotlib.axes import Axes


def tick_labels(locs: np.ndarray) -> list[str]:
    """Labels of tick values with as many decimals as their step needs (all alike, as
    matplotlib's default formatter writes them: ``0.00 0.25 0.50``; ``0 1000 2000``)."""
    locs = np.asarray(locs, dtype=np.float64)
    if not locs.size:
        return []
    step = float(np.min(np.diff(locs))) if locs.size > 1 else abs(float(locs[0]))
    step = step if step > 0 and math.isfinite(step) else 1.0
    decimals = 0
    while decimals < 8 and abs(round(step, decimals) - step) > step * 1e-6:
        decimals += 1
    minus = "\N{MINUS SIGN}" if rcParams["axes.unicode_minus"] else "-"
    out = []
    for v in locs.tolist():
        if abs(v) < step * 1e-9:
            v = 0.0
        out.append(f"{v:.{decimals}f}".replace("-", minus))
    return out


class Ticks(Artist):
    """Tick marks (and labels) along one side of an Axes, chosen when drawn.

    ``axis``: ``"x"`` or ``"y"``; ``side``: ``"bottom"``/``"top"`` or ``"left"``/``"right"``
    (default bottom, left). The ticks are at most ``nbins + 1`` values of
    :class:`~matplotlib.ticker.MaxNLocator` (with :class:`~matplotlib.ticker.AutoLocator`'s
    steps) inside the current view limits, labelled by :func:`tick_labels`; marks point
    outwards; sizes, pad and colours are the rcParams' major ticks'. The Axes' own ticks
    are left to the caller (:func:`light_axes` sets them to none).
    """

    def __init__(self, axis: str = "x", *, side: str | None = None, nbins: int = 4, labels: bool = True,
                 fontsize: Any = None) -> None:
        super().__init__()
        if axis not in ("x", "y"):
            raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
        self.axis_name = axis
        self.side = side or ("bottom" if axis == "x" else "left")
        self.locator = MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10])  # as matplotlib's AutoLocator
        self.labels = labels
        rc = "xtick" if axis == "x" else "ytick"
        self._length = float(rcParams[f"{rc}.major.size"])
        self._width = float(rcParams[f"{rc}.major.width"])
        self._pad = float(rcParams[f"{rc}.major.pad"])
        self._color = rcParams[f"{rc}.color"]
        if axis == "x":
            ha, va = "center", ("top" if self.side == "bottom" else "baseline")
        else:
            ha, va = ("right" if self.side == "left" else "left"), "center_baseline"
        self._text = Text(0, 0, "", transform=IdentityTransform(), ha=ha, va=va,
                          fontsize=fontsize or rcParams[f"{rc}.labelsize"], color=rcParams[f"{rc}.labelcolor"]
                          if rcParams[f"{rc}.labelcolor"] != "inherit" else self._color)
        self.set_clip_on(False)
        self.set_zorder(2.5)

    def values(self) -> tuple[np.ndarray, list[str]]:
        """The tick values inside the Axes' current view limits and their labels."""
        ax = self.axes
        lo, hi = ax.get_xlim() if self.axis_name == "x" else ax.get_ylim()
        lo, hi = min(lo, hi), max(lo, hi)
        eps = (hi - lo) * 1e-9
        locs = np.asarray(self.locator.tick_values(lo, hi), dtype=np.float64)
        locs = locs[(locs >= lo - eps) & (locs <= hi + eps)]
        return locs, tick_labels(locs)

    def _place(self, renderer: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(mark segments (n, 2, 2), label anchors (n, 2), labels), in display pixels."""
        ax = self.axes
        locs, texts = self.values()
        length = renderer.points_to_pixels(self._length)
        pad = renderer.points_to_pixels(self._pad)
        if self.axis_name == "x":
            edge = 0.0 if self.side == "bottom" else 1.0
            base = ax.get_xaxis_transform().transform(np.column_stack([locs, np.full(locs.shape, edge)]))
            out = np.array([0.0, -1.0 if self.side == "bottom" else 1.0])
        else:
            edge = 0.0 if self.side == "left" else 1.0
            base = ax.get_yaxis_transform().transform(np.column_stack([np.full(locs.shape, edge), locs]))
            out = np.array([-1.0 if self.side == "left" else 1.0, 0.0])
        base = base.reshape(-1, 2)
        segments = np.stack([base, base + out * length], axis=1)
        return segments, base + out * (length + pad), texts

    def _label_text(self) -> Text:
        if self._text.figure is None:
            self._text.set_figure(self.figure)
        return self._text

    def handed_over(self) -> bool:
        """True once the Axes' own ticks were asked for (``set_xticks``, a locator set on the
        axis): matplotlib's ticks then show instead of these, never both."""
        axis = self.axes.xaxis if self.axis_name == "x" else self.axes.yaxis
        return not isinstance(axis.get_major_locator(), NullLocator)

    def draw(self, renderer: Any) -> None:
        if not self.get_visible() or self.axes is None or self.handed_over():
            return
        segments, anchors, texts = self._place(renderer)
        if not segments.shape[0]:
            return
        renderer.open_group("ticks", gid=self.get_gid())
        gc = renderer.new_gc()
        gc.set_foreground(self._color)
        gc.set_linewidth(self._width)
        gc.set_capstyle("butt")
        codes = np.tile([Path.MOVETO, Path.LINETO], segments.shape[0]).astype(Path.code_type)
        renderer.draw_path(gc, Path(segments.reshape(-1, 2), codes), IdentityTransform())
        gc.restore()
        if self.labels:
            text = self._label_text()
            for (x, y), s in zip(anchors.tolist(), texts):
                text.set_position((x, y))
                text.set_text(s)
                text.draw(renderer)
        renderer.close_group("ticks")
        self.stale = False

    def get_window_extent(self, renderer: Any = None) -> Bbox:
        if self.axes is None or self.handed_over():
            return Bbox.null()
        if renderer is None:
            renderer = self.figure._get_renderer()
        segments, anchors, texts = self._place(renderer)
        boxes = [Bbox(segments[i]) for i in range(segments.shape[0])]
        if self.labels:
            text = self._label_text()
            for (x, y), s in zip(anchors.tolist(), texts):
                text.set_position((x, y))
                text.set_text(s)
                boxes.append(text.get_window_extent(renderer))
        return Bbox.union(boxes) if boxes else Bbox.null()


def light_axes(ax: Axes, *, x: bool | None = True, y: bool = True, xbins: int = 5, ybins: int = 3,
               yside: str = "left") -> None:
    """Replace ``ax``'s ticks by :class:`Ticks`: x ticks labelled (``x`` True), marks only
    (``x`` False) or none (None); y ticks labelled on ``yside`` (or none)."""
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(NullLocator())
        axis.set_minor_locator(NullLocator())
    if x is not None:
        ax.add_artist(Ticks("x", nbins=xbins, labels=x))
    if y:
        ax.add_artist(Ticks("y", side=yside, nbins=ybins))


def label_room(ax: Axes) -> float:
    """Inches left of ``ax`` its y label needs to clear its :class:`Ticks`' widest label now
    (the label's width estimated from its length, a digit's width a character): call it
    once the limits are set."""
    from matplotlib.font_manager import FontProperties

    room = 0.06  # a gap
    for ticks in ax.artists:
        if isinstance(ticks, Ticks) and ticks.axis_name == "y" and ticks.side == "left" and ticks.labels:
            widest = max((len(s) for s in ticks.values()[1]), default=0)
            size = FontProperties(size=ticks._text.get_fontsize()).get_size_in_points()
            room += (ticks._length + ticks._pad + 0.64 * widest * size) / 72.0
    return room


def place_labels(ax: Axes, *, ylabel: float | None = None, xlabel: float = 0.3) -> None:
    """Put ``ax``'s y label ``ylabel`` inches left of it (default :func:`label_room`) and its
    x label ``xlabel`` inches below it, instead of matplotlib measuring every tick label
    for every draw."""
    fig = ax.figure
    box = ax.get_position()
    w, h = fig.get_size_inches()
    ylabel = label_room(ax) if ylabel is None else ylabel
    ax.yaxis.set_label_coords(-ylabel / (box.width * w), 0.5)
    ax.xaxis.set_label_coords(0.5, -xlabel / (box.height * h))


def _finite_runs(ok: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of True in ``ok``."""
    if ok.all():
        return [(0, int(ok.size))] if ok.size else []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], ok.view(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def bands(ax: Axes, series: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, Any, str]], *, alpha: float = 0.35,
          label: str | None = None, midlines: bool = True) -> tuple[PolyCollection, LineCollection | None]:
    """Min/max bands (translucent) and their midlines of several series ``(t, mins, maxs,
    colour, linestyle)`` into ``ax``, as one PolyCollection (a polygon per stretch of
    finite values) and one LineCollection (a line per series, in the order given; NaN
    breaks it; none without ``midlines``), labelled ``label`` (the lines) and ``"label
    (min-max)"`` (the bands; just ``label`` without midlines). Neither changes the data limits."""
    polygons, faces, lines, colors, styles = [], [], [], [], []
    for t, lo, hi, color, style in series:
        for a, b in _finite_runs(np.isfinite(lo) & np.isfinite(hi)):
            tt = t[a:b]
            polygons.append(np.concatenate([np.column_stack([tt, lo[a:b]]), np.column_stack([tt[::-1], hi[a:b][::-1]])]))
            faces.append(color)
        lines.append(np.column_stack([t, (lo + hi) / 2.0]))
        colors.append(color)
        styles.append(style)
    poly = PolyCollection(polygons, facecolors=faces, alpha=alpha, linewidths=0, zorder=1.5)
    ax.add_collection(poly, autolim=False)
    if not midlines:
        poly.set_label(label)
        return poly, None
    poly.set_label(f"{label} (min-max)" if label else None)
    mid = LineCollection(lines, colors=colors, linestyles=styles, linewidths=rcParams["lines.linewidth"], zorder=2,
                         label=label)
    ax.add_collection(mid, autolim=False)
    return poly, mid


class Verticals(Artist):
    """Dotted vertical lines at data x ``xs`` across each of ``axes`` (which share their x
    axis), as one path drawn in display space when the figure is drawn (so they follow the
    axes' positions and limits); each Axes' part clipped to its box."""

    def __init__(self, axes: Sequence[Axes], xs: np.ndarray, *, color: Any = "0.4", linewidth: float = 0.8,
                 label: str | None = None) -> None:
        super().__init__()
        self.panels = list(axes)
        self.xs = np.asarray(xs, dtype=np.float64)
        self._color = color
        self._linewidth = linewidth
        self.set_label(label)
        self.set_zorder(1.8)

    def segments(self) -> list[np.ndarray]:
        """(n, 2, 2) display segments per Axes, inside its box."""
        out = []
        for ax in self.panels:
            box = ax.bbox
            x = ax.transData.transform(np.column_stack([self.xs, np.zeros_like(self.xs)]))[:, 0]
            x = x[(x >= box.x0) & (x <= box.x1)]
            seg = np.empty((x.size, 2, 2))
            seg[:, :, 0] = x[:, None]
            seg[:, 0, 1], seg[:, 1, 1] = box.y0, box.y1
            out.append(seg)
        return out

    def draw(self, renderer: Any) -> None:
        if not self.get_visible() or not self.xs.size:
            return
        seg = np.concatenate(self.segments()) if self.panels else np.zeros((0, 2, 2))
        if not seg.shape[0]:
            return
        gc = renderer.new_gc()
        gc.set_foreground(self._color)
        gc.set_linewidth(self._linewidth)
        gc.set_dashes(0, [self._linewidth, 1.65 * self._linewidth])  # matplotlib's dotted, in points
        codes = np.tile([Path.MOVETO, Path.LINETO], seg.shape[0]).astype(Path.code_type)
        renderer.draw_path(gc, Path(seg.reshape(-1, 2), codes), IdentityTransform())
        gc.restore()
        self.stale = False


def side_labels(ax: Axes, names: Sequence[tuple[str, Any]], *, x: float = 1.008, y: float = 1.0,
                ha: str = "left", fontsize: Any = "small") -> list[Text]:
    """Coloured names stacked downwards from ``(x, y)`` in ``ax``'s axes coordinates
    (default: down its right edge from the top), a legend's job without a legend's box
    of artists: one Text per ``(name, colour)``, a line apart whatever the panel's height."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.transforms import offset_copy

    step = 1.25 * FontProperties(size=fontsize).get_size_in_points()
    out = []
    for i, (name, color) in enumerate(names):
        transform = offset_copy(ax.transAxes, fig=ax.figure, y=-step * i, units="points") if i else ax.transAxes
        out.append(ax.text(x, y, name, transform=transform, ha=ha, va="top", color=color, fontsize=fontsize,
                           clip_on=False))
    return out
