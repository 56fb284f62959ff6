"""Audio and animation channels over media time: the waveform, jaw, eyelids, head and the
expression heatmap, into given Axes and as figures."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as _np

from .. import _pcm
from ..timeline import Timeline as _Timeline
from ._base import audio_samples, draw_series, mark_utterances, new_figure, pixel_width, set_margins

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

    from ..timeline import Timeline


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


def _colorbar(fig: Figure, image: AxesImage | None, ax: Axes) -> None:
    """A slim colour bar just right of ``ax`` (an inset: the panel keeps its width, so the
    time axes of all panels stay aligned)."""
    if image is None:
        return
    cax = ax.inset_axes((1.01, 0.0, 0.015, 1.0))
    bar = fig.colorbar(image, cax=cax)
    bar.set_label("coefficient", fontsize="small")
    bar.ax.tick_params(labelsize="small")


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
    each utterance starts."""
    with_audio = audio and has_audio(timeline)
    n = 5 if with_audio else 4
    fig = new_figure(width, 1.55 * n + 0.6, constrained=False)
    set_margins(fig, right=0.85)
    ratios = [1.0] * (n - 1) + [1.6]
    axes = fig.subplots(n, 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    draw_animation(fig, axes, timeline, with_audio)
    fig.suptitle(f"animation timeline: {timeline.n_keyframes} keyframes @ {timeline.fps:g} fps")
    return fig
