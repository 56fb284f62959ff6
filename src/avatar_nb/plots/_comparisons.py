"""Several runs side by side: Timelines (:func:`compare_runs`), and from tidy tables a grouped
comparison with bootstrap intervals (:func:`compare`) and per-condition distributions (:func:`ecdf`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as _np

from ._base import lateness_applies, ms_if_seconds, new_figure, run_label

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    import pandas as pd
    from matplotlib.figure import Figure

    from ..timeline import Timeline


def compare_runs(timelines: Sequence[Timeline], labels: Sequence[str] | None = None, *, width: float = 12.0) -> Figure:
    """Side-by-side timing of several runs: first-frame latency, lateness spread, jitter, speed.

    Runs are labelled from their metadata (pacing, chunk, sample rate; see :func:`run_label`)
    unless ``labels`` are given. A panel appears only when it means something for at
    least one run:

    - first-frame latency and inter-arrival jitter: always;
    - lateness (a box per run): for runs paced against a playback clock, so not when
      every run was streamed under ``"fast"`` pacing;
    - real-time factor: for paced runs (about 1, above by the final latency);
    - processing speed as a multiple of real time (``"310x"``): for ``"fast"`` runs,
      where the real-time factor is the service's speed and reads as 0.003.

    In a panel that does not apply to a run, the run's place says ``n/a``.
    """
    from ..timeline_text import times_real_time

    if not timelines:
        raise ValueError("compare_runs() needs at least one Timeline")
    if labels is None:
        labels = [run_label(t) for t in timelines]
        if len(set(labels)) < len(labels):  # the same settings: number the repeats
            labels = [f"{label} #{i + 1}" for i, label in enumerate(labels)]
    labels = list(labels)
    if len(labels) != len(timelines):
        raise ValueError(f"got {len(labels)} labels for {len(timelines)} timelines")
    x = _np.arange(len(timelines))
    fast = [i for i, t in enumerate(timelines) if t.pacing == "fast"]
    paced = [i for i, t in enumerate(timelines) if t.pacing != "fast"]
    timed = [i for i, t in enumerate(timelines) if lateness_applies(t)]
    panels = ["latency", *(["lateness"] if timed else []), "jitter", *(["rtf"] if paced else []),
              *(["speed"] if fast else [])]
    fig = new_figure(width, 3.8)
    axes = dict(zip(panels, _np.atleast_1d(fig.subplots(1, len(panels)))))

    def values(attr: str) -> _np.ndarray:
        return _np.array([getattr(t, attr) for t in timelines], dtype=_np.float64)

    def not_applicable(ax: Any, where: Sequence[int], why: str) -> None:
        for i in where:
            ax.text(x[i], 0.5, f"n/a\n({why})", transform=ax.get_xaxis_transform(), ha="center", va="center",
                    color="0.4", fontsize="small")

    lat_ax = axes["latency"]
    lat_ax.bar(x, values("first_frame_latency") * 1000.0, color="C0")
    lat_ax.set_ylabel("first-frame latency (ms)")
    if "lateness" in axes:
        late_ax = axes["lateness"]
        late_ax.boxplot([timelines[i].lateness[_np.isfinite(timelines[i].lateness)] * 1000.0 for i in timed],
                        positions=x[timed], widths=0.6, showfliers=False)
        for i in sorted(set(range(len(timelines))) - set(timed)):
            not_applicable(late_ax, [i], "fast" if i in fast else "no data")
        late_ax.set_ylabel("lateness (ms)")
    jit_ax = axes["jitter"]
    jit_ax.bar(x, values("jitter") * 1000.0, color="C2")
    jit_ax.set_ylabel("inter-arrival jitter (ms)")
    rtf = values("real_time_factor")
    if "rtf" in axes:
        rtf_ax = axes["rtf"]
        rtf_ax.bar(x[paced], rtf[paced], color="C4")
        rtf_ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="real time")
        not_applicable(rtf_ax, fast, "fast")
        rtf_ax.set_ylabel("real-time factor")
    if "speed" in axes:
        speed_ax = axes["speed"]
        with _np.errstate(divide="ignore", invalid="ignore"):
            speed = _np.where(rtf[fast] > 0, 1.0 / rtf[fast], _np.nan)
        bars = speed_ax.bar(x[fast], speed, color="C5")
        speed_ax.bar_label(bars, labels=[times_real_time(r) for r in rtf[fast]], fontsize="small")
        speed_ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="real time")
        speed_ax.margins(y=0.12)  # room for the labels above the bars
        not_applicable(speed_ax, paced, "paced")
        speed_ax.set_ylabel("processing speed (x real time)")
    for ax in axes.values():
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize="small")
        ax.set_xlim(-0.6, len(timelines) - 0.4)
    title = f"comparison of {len(timelines)} runs"
    if not timed and fast:
        title += " (fast pacing: no lateness)"
    fig.suptitle(title)
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
    from ..analysis import summarize

    by = [x] if hue is None else [x, hue]
    stats = summarize(runs, by=by, value=y, ci=ci, n_boot=n_boot, seed=seed)
    table = runs[runs["status"] == "ok"] if "status" in runs.columns else runs
    scale, ylabel = ms_if_seconds(y)
    xs = list(dict.fromkeys(sorted(stats[x].dropna().unique().tolist())))
    hues = [None] if hue is None else sorted(stats[hue].dropna().unique().tolist())
    fig = new_figure(width, 4.0)
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
    scale, xlabel = ms_if_seconds(value)
    fig = new_figure(width, 4.0)
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
