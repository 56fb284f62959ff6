"""Audio and animation channels over media time: the waveform, jaw, eyelids, head and the
expression heatmap, into given Axes and as figures."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as _np

from .. import _pcm
from ..timeline import Timeline as _Timeline
from ._base import (audio_samples, draw_series, long_run_pyramid, mark_utterances, new_figure, padded_limits,
                    pixel_width, set_margins)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

    from ..timeline import Timeline
    from ..timeline_pyramid import TimelinePyramid


def draw_waveform(ax: Axes, samples: _np.ndarray, sample_rate: int, t0: float = 0.0) -> None:
    """Draw ``samples`` (int16 or float, starting ``t0`` seconds into the audio) into ``ax``
    as a min/max envelope per pixel column, with the x limits set to their time span."""
    n = samples.shape[0]
    bins = min(pixel_width(ax), max(1, n))
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

    # long series come from the run's pyramid: the whole run, or the span's media time
    window = None if span is None or not t.size else (float(t[0]), float(t[-1]) + 1.0 / tl.fps)

    def track(name: str) -> tuple[Timeline, str, float, tuple[float, float] | None]:
        return (tl, name, 1.0, window)

    draw_series(jaw_ax, t, tl.channel("jaw_open")[sel].astype(_np.float64), label="jaw open", color="C3",
                track=track("jaw_open"))
    jaw_ax.set_ylabel("jaw (rad)")
    draw_series(lid_ax, t, tl.channel("eyelid_left")[sel].astype(_np.float64), label="left", color="C1",
                track=track("eyelid_left"))
    draw_series(lid_ax, t, tl.channel("eyelid_right")[sel].astype(_np.float64), label="right", color="C2",
                 linestyle="--", track=track("eyelid_right"))
    lid_ax.set_ylabel("eyelids")
    lid_ax.set_ylim(-0.05, 1.05)
    lid_ax.legend(loc="upper right", fontsize="small", ncols=2)
    for name, color in (("head_pitch", "C0"), ("head_yaw", "C4"), ("head_roll", "C5")):
        draw_series(head_ax, t, tl.channel(name)[sel].astype(_np.float64), label=name.split("_")[1], color=color,
                    track=track(name))
    head_ax.set_ylabel("head (rad)")
    head_ax.legend(loc="upper right", fontsize="small", ncols=3)
    expr = tl.channel("expression")[sel]
    image = None
    if expr.shape[0] and expr.shape[1]:
        bins = pixel_width(expr_ax)
        t0, t1 = (float(t[0]), float(t[-1]) + 1.0 / tl.fps) if t.size else (0.0, 1.0)
        if expr.shape[0] > bins:  # a mean per pixel column (from the pyramid) keeps it honest and small
            from ..timeline_pyramid import pyramid_of

            pyramid = pyramid_of(tl)
            whole = (pyramid.slot_start, pyramid.slot_start + pyramid.n_slots / tl.fps)
            start, step, expr = pyramid.heat_means(*(window or whole), bins)
            t0, t1 = start, start + expr.shape[0] * step
        lim = float(_np.nanmax(_np.abs(expr))) if _np.isfinite(expr).any() else 1.0
        lim = lim or 1.0
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
        mark_utterances(ax, tl)
    return image


def _colorbar(fig: Figure, image: AxesImage | None, ax: Axes, *, light: bool = False) -> None:
    """A slim colour bar just right of ``ax`` (an inset: the panel keeps its width, so the
    time axes of all panels stay aligned). ``light``: its ticks drawn by
    :class:`._light.Ticks` and its label placed without measuring them (long runs' figures)."""
    if image is None:
        return
    cax = ax.inset_axes((1.01, 0.0, 0.015, 1.0))
    bar = fig.colorbar(image, cax=cax)
    bar.set_label("coefficient", fontsize="small")
    if not light:
        bar.ax.tick_params(labelsize="small")
        return
    from matplotlib.ticker import NullLocator

    from ._light import Ticks

    bar.locator = NullLocator()
    bar.minorticks_off()
    bar.ax.add_artist(Ticks("y", side="right", nbins=3, fontsize="small"))
    width = 0.015 * ax.get_position().width * fig.get_size_inches()[0]  # inches
    bar.ax.yaxis.set_label_coords(1.0 + 0.42 / width, 0.5)


def has_audio(timeline: Timeline) -> bool:
    return timeline.audio is not None and bool(timeline.sample_rate)


def draw_animation(fig: Figure, axes: Sequence[Axes], timeline: Timeline, with_audio: bool) -> None:
    """The column of :func:`animation_timeline` and of :func:`report`'s left side: the
    waveform (``with_audio``, in ``axes[0]``) above the four channel panels."""
    if with_audio:
        if not _waveform_from_pyramid(axes[0], timeline):
            draw_waveform(axes[0], timeline.audio, int(timeline.sample_rate))
        mark_utterances(axes[0], timeline)
    image = draw_channels(axes[-4:], timeline)
    _colorbar(fig, image, axes[-1])
    axes[-1].set_xlabel("media time (s)")


def _waveform_from_pyramid(ax: Axes, timeline: Timeline) -> bool:
    """A long run's waveform drawn from its audio pyramid (as :func:`draw_waveform` draws
    it, from buckets of at least a pixel); False for audio short enough to reduce at once."""
    from ..timeline_pyramid import pyramid_of

    audio = timeline.audio
    if audio is None or audio.shape[0] < 1024 * pixel_width(ax):  # a minute or more at 16 kHz
        return False
    pyramid = pyramid_of(timeline).audio
    view = pyramid.window(0.0, pyramid.duration, pixel_width(ax))  # buckets of one or two pixels
    if view.level < 0:
        return False
    t = view.times + view.bucket / pyramid.rate / 2.0
    ax.fill_between(t, view.mins, view.maxs, color="C0", linewidth=0, step="mid")
    ax.set_xlim(0.0, pyramid.duration)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("amplitude")
    return True


def waveform(audio: Any, sample_rate: int | None = None, *, title: str | None = None, width: float = 10.0) -> Figure:
    """The waveform of ``audio`` (s16le bytes, int16 or float samples, or a Timeline's audio)."""
    if isinstance(audio, _Timeline):
        sample_rate = sample_rate or audio.sample_rate
    if not sample_rate:
        raise ValueError("waveform() needs the sample_rate of the audio")
    samples = audio_samples(audio)
    fig = new_figure(width, 2.6, constrained=False)
    set_margins(fig, top=0.35)
    ax = fig.add_subplot()
    draw_waveform(ax, samples, int(sample_rate))
    ax.set_xlabel("time (s)")
    ax.set_title(title or f"waveform ({samples.shape[0] / sample_rate:.2f} s @ {sample_rate} Hz)")
    return fig


def animation_timeline(timeline: Timeline, *, audio: bool = True, width: float = 11.0) -> Figure:
    """Animation channels over media time: waveform (if any), jaw, eyelids, head, expression
    heatmap (with its colour bar). All panels share the time axis; dotted lines mark where
    each utterance starts.

    A run of more keyframes than two a pixel is drawn from its pyramid: each series as the
    min/max band of its keyframes per pixel column and the band's midline, the heatmap as
    the mean per column, with light ticks (placed when drawn) and the lines of a panel
    named beside it in their colour instead of in a legend."""
    with_audio = audio and has_audio(timeline)
    n = 5 if with_audio else 4
    fig = new_figure(width, 1.55 * n + 0.6, constrained=False)
    set_margins(fig, right=0.85)
    ratios = [1.0] * (n - 1) + [1.6]
    axes = fig.subplots(n, 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    pyramid = long_run_pyramid(timeline, pixel_width(axes[0]))
    if pyramid is None:
        draw_animation(fig, axes, timeline, with_audio)
    else:
        _draw_long_animation(fig, axes, timeline, pyramid, with_audio)
    fig.suptitle(f"animation timeline: {timeline.n_keyframes} keyframes @ {timeline.fps:g} fps")
    return fig


def _draw_long_animation(fig: Figure, axes: Sequence[Axes], timeline: Timeline, pyramid: TimelinePyramid,
                         with_audio: bool) -> None:
    """The panels of :func:`animation_timeline` for a run too long to draw keyframe by
    keyframe, from its pyramid and with the cheaper parts of :mod:`._light` (see there
    why): the panels, labels and data the short-run path draws from the pyramid (a
    min/max band and its midline per series, the heatmap's mean per pixel column), with
    coloured names beside a panel instead of legends."""
    from ..timeline_pyramid import LINE_COLUMNS
    from ._light import Verticals, bands, label_room, light_axes, place_labels, side_labels

    pixels = pixel_width(axes[0])
    for ax in axes:
        light_axes(ax, x=ax is axes[-1])
    lines = pyramid.lines
    t0 = min(0.0, pyramid.slot_start)
    t1 = max(pyramid.duration, t0 + 1.0 / pyramid.fps)
    view = lines.window(lines.start, lines.start + lines.n / lines.rate, pixels)  # buckets of one or two pixels
    centres = view.times + view.bucket / lines.rate / 2.0

    def series(name: str, color: str, style: str = "-") -> tuple:
        c = LINE_COLUMNS.index(name)
        return (centres, view.mins[:, c].astype(_np.float64), view.maxs[:, c].astype(_np.float64), color, style)

    panels = list(axes)
    if with_audio:
        wave_ax = panels.pop(0)
        audio = pyramid.audio
        if audio is None:  # a Timeline with an empty audio array
            wave_ax.text(0.5, 0.5, "no audio", transform=wave_ax.transAxes, ha="center", va="center")
        else:
            aview = audio.window(0.0, audio.duration, pixels)
            at = aview.times + aview.bucket / audio.rate / 2.0
            bands(wave_ax, [(at, aview.mins.astype(_np.float64), aview.maxs.astype(_np.float64), "C0", "-")],
                  alpha=1.0, midlines=False, label="waveform")
        wave_ax.set_ylim(-1.05, 1.05)
        wave_ax.set_ylabel("amplitude")
    jaw_ax, lid_ax, head_ax, expr_ax = panels
    jaw = series("jaw_open", "C3")
    bands(jaw_ax, [jaw], label="jaw open")
    jaw_ax.set_ylim(*padded_limits(jaw[1], jaw[2]))
    jaw_ax.set_ylabel("jaw (rad)")
    bands(lid_ax, [series("eyelid_left", "C1"), series("eyelid_right", "C2", "--")], label="eyelids")
    lid_ax.set_ylim(-0.05, 1.05)
    lid_ax.set_ylabel("eyelids")
    side_labels(lid_ax, [("left", "C1"), ("right", "C2")])
    head = [series(name, color) for name, color in (("head_pitch", "C0"), ("head_yaw", "C4"), ("head_roll", "C5"))]
    bands(head_ax, head, label="head")
    head_ax.set_ylim(*padded_limits(*[s[1] for s in head], *[s[2] for s in head]))
    head_ax.set_ylabel("head (rad)")
    side_labels(head_ax, [("pitch", "C0"), ("yaw", "C4"), ("roll", "C5")])
    expr_ax.set_ylabel("expression")
    if pyramid.n_expression:
        start, step, expr = pyramid.heat_means(pyramid.slot_start, pyramid.slot_start + pyramid.n_slots / pyramid.fps,
                                               pixels)
        lim = float(_np.nanmax(_np.abs(expr))) if _np.isfinite(expr).any() else 1.0
        lim = lim or 1.0
        image = expr_ax.imshow(expr.T, aspect="auto", origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim,
                               extent=(start, start + expr.shape[0] * step, -0.5, expr.shape[1] - 0.5),
                               interpolation="none")  # as "nearest" here (a column a pixel at most), and cheaper
        _colorbar(fig, image, expr_ax, light=True)
    axes[-1].set_xlim(t0, t1)
    axes[-1].set_xlabel("media time (s)")
    room = max(label_room(ax) for ax in axes)  # the y labels in one column, as the panels are
    for ax in axes:
        place_labels(ax, ylabel=room)
    starts = timeline.utterance_start[1:]
    if starts.size:
        fig.add_artist(Verticals(axes, starts, label="utterance start"))
