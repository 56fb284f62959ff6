"""Rendering speed of avatar_nb.plots on hour-long data, and the live panel during a stream.

    python benchmarks/bench_render.py [--quick] [--no-live]

Static views (each figure drawn to an Agg canvas, draw time included, best of several
repetitions because the machines are shared and noisy). Baseline, measured in the same
run: the same figure layout with matplotlib plotting every sample or keyframe (path
simplification on, as by default; ``agg.path.chunksize`` set so Agg accepts the long
paths at all).
- waveform: 1 hour of 16 kHz speech-like audio (57.6 M samples);
- animation timeline: 1 hour at 25 fps (90,000 keyframes, E = 50; the local service's
  animator output for a minute of speech, repeated): jaw, eyelids, head rotation,
  expression heatmap;
- frame timing: the same 90,000 keyframes' arrival, lateness and inter-arrival figure.
Target: >= 10x. Under each of these two rows: the same figure's texts alone (tick and axis
labels, titles, line names, recorded while it is drawn) drawn into an empty figure, what
matplotlib's text costs whatever else a figure holds, so a floor of the row above. On a
shared 2-core machine it is most of a tenth of the baseline for the timeline (whose five
Axes cost ~4 ms more each, ticks or not) and a fifth of it for the frame timing (whose
title alone is a hundred characters): neither figure reaches 10x with its labels.

Live panel (in a real ipykernel driven by nbclient, so widget updates go through the
kernel's comm channel as in Jupyter): a SessionPanel streaming speech at real-time pace
(25 fps) against a LocalService in its own thread, alternated with the same stream
through ``animate`` and no panel. Printed: keyframe lateness (median, p99, and its
growth over the run) with and without the panel, and the panel's own counters
(:mod:`avatar_nb.widgets.live`, the same as bench_microphone.py prints): refresher
wake-ups and redraws per second, and ms per redraw (time inside the drawing code of the
redraws, over their number; a wake-up that finds nothing new is not a redraw).
Reported, not a pass/fail threshold.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from avatar_nb import plots, speech_like
from avatar_nb.timeline import Timeline

FPS = 25.0
RATE = 16000


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def row(name: str, ours: float, base: float, target: float = 10.0) -> None:
    ratio = base / ours
    mark = "ok" if ratio >= target else "BELOW TARGET"
    print(f"{name:28s} avatar_nb {ours * 1000:9.1f} ms   every point {base * 1000:10.1f} ms   "
          f"ratio {ratio:7.1f}x  (target {target:g}x: {mark})")


# ----------------------------------------------------------------------------- data


def hour_of_audio(seconds: float) -> np.ndarray:
    """Speech-like int16 audio: a 30 s generated clip repeated (generation is not measured)."""
    clip = (speech_like(30.0, RATE, seed=7) * 32767).astype(np.int16)
    reps = int(np.ceil(seconds * RATE / clip.size))
    return np.tile(clip, reps)[: int(seconds * RATE)]


_MINUTE: np.ndarray | None = None


def animated_minute() -> np.ndarray:
    """Keyframes the local service's animator makes from 60 s of speech-like audio (E = 50)."""
    global _MINUTE
    if _MINUTE is None:
        from avatar_nb import animate_sync

        _MINUTE = animate_sync(speech_like(60.0, RATE, seed=7), RATE, pacing="fast").keyframes
    return _MINUTE


def long_timeline(seconds: float) -> Timeline:
    """``seconds`` of 25 fps keyframes: the animator's minute of speech repeated, one
    utterance a minute, in 1 s messages arriving 80-100 ms after their media time."""
    minute = animated_minute()
    n = int(seconds * FPS)
    kf = np.tile(minute, (int(np.ceil(n / minute.shape[0])), 1))[:n]
    rng = np.random.default_rng(3)
    tl = Timeline(FPS)
    per_msg, per_utt = int(FPS), minute.shape[0]
    for start in range(0, n, per_msg):
        req = f"r{start // per_utt}"
        end = min(n, start + per_msg)
        if start % per_utt == 0:
            tl.add_audio_chunk(req, start / FPS, int(RATE * min(per_utt, n - start) / FPS))
        arrival = end / FPS + 0.08 + 0.02 * rng.random()
        tl.add_animation(kf[start:end], req_id=req, arrival=arrival, end=end % per_utt == 0 or end == n)
    return tl


# ----------------------------------------------------------------------------- drawing


def draw(fig: Figure) -> None:
    fig.canvas.draw()


def baseline_figure(rows: int, cols: int = 1, *, width: float = 11.0, height: float = 8.0) -> tuple[Figure, np.ndarray]:
    # fixed margins, as avatar_nb's long-data figures use: the comparison is about the data
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.95, bottom=0.07)
    axes = fig.subplots(rows, cols, sharex=cols == 1, squeeze=False)
    return fig, axes.ravel()


def drawn_texts(fig: Figure) -> list[tuple[str, object, float]]:
    """``(text, font properties, rotation)`` of every non-empty text drawing ``fig`` draws
    (tick labels, axis labels, titles, names), recorded while it is drawn once."""
    from matplotlib.text import Text

    seen: list[tuple[str, object, float]] = []
    original = Text.draw

    def record(self: Text, renderer: object) -> None:
        if self.get_visible() and self.get_text():
            seen.append((self.get_text(), self.get_fontproperties().copy(), self.get_rotation()))
        original(self, renderer)

    Text.draw = record
    try:
        draw(fig)
    finally:
        Text.draw = original
    return seen


def draw_texts(texts: list[tuple[str, object, float]], width: float = 11.0, height: float = 6.8) -> None:
    """A figure of just ``texts`` (nothing else), created and drawn: what the text of a
    figure costs matplotlib, whatever else the figure holds."""
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    for i, (text, font, rotation) in enumerate(texts):
        fig.text(0.02 + 0.03 * (i % 30), 0.05 + 0.03 * (i % 30), text, fontproperties=font, rotation=rotation)
    draw(fig)


def naive_waveform(samples: np.ndarray) -> None:
    fig, (ax,) = baseline_figure(1, height=2.6, width=10.0)
    ax.plot(np.arange(samples.size) / RATE, samples / 32768.0, linewidth=0.5)
    ax.set_xlabel("time (s)")
    draw(fig)


def naive_timeline(tl: Timeline) -> None:
    fig, (jaw, lids, head, expr) = baseline_figure(4, height=6.8)
    t = tl.media_time
    jaw.plot(t, tl.jaw_open)
    lids.plot(t, tl.eyelid_left)
    lids.plot(t, tl.eyelid_right)
    for name in ("head_pitch", "head_yaw", "head_roll"):
        head.plot(t, tl[name])
    expr.imshow(tl.expression.T, aspect="auto", origin="lower", extent=(t[0], t[-1], 0, tl.n_expression),
                cmap="RdBu_r", interpolation="nearest")
    for ax in (jaw, lids, head, expr):  # utterance boundaries drawn as avatar_nb draws them
        ax.vlines(tl.utterance_start[1:], 0, 1, transform=ax.get_xaxis_transform(), linestyles=":")
    draw(fig)


def naive_timing(tl: Timeline) -> None:
    fig, (arr, late, hist) = baseline_figure(1, 3, height=3.6)
    arr.plot(tl.media_time, tl.arrival)
    arr.plot([0, tl.media_time[-1]], [0, tl.media_time[-1]], "--")
    late.plot(tl.media_time, tl.lateness * 1000)
    hist.hist(tl.inter_arrival * 1000, bins=60)
    draw(fig)


def static_views(args: argparse.Namespace) -> None:
    import matplotlib

    seconds = 600.0 if args.quick else 3600.0
    repeat, base_repeat = (3, 1) if args.quick else (5, 2)
    audio = hour_of_audio(seconds)
    tl = long_timeline(seconds)
    tl.keyframes, tl.media_time, tl.arrival  # materialise the cached arrays outside the timings
    print(f"static views of {seconds / 60:g} min: {audio.size:,} samples, {tl.n_keyframes:,} keyframes "
          f"(E = {tl.n_expression}); best of {repeat} (avatar_nb) / {base_repeat} (every point)")

    def ours_waveform() -> None:
        draw(plots.waveform(audio, RATE))

    ours_waveform(), draw(plots.animation_timeline(tl)), draw(plots.frame_timing(tl))  # warm up (imports, font cache)
    with matplotlib.rc_context({"agg.path.chunksize": 20000}):
        row("waveform", best(ours_waveform, repeat), best(lambda: naive_waveform(audio), base_repeat))
        for name, make, naive in (("animation timeline", plots.animation_timeline, naive_timeline),
                                  ("frame timing", plots.frame_timing, naive_timing)):
            base = best(lambda: naive(tl), base_repeat)
            row(name, best(lambda: draw(make(tl)), repeat), base)
            texts = drawn_texts(make(tl))
            alone = best(lambda: draw_texts(texts), repeat)
            print(f"{'  its text alone':28s} avatar_nb {alone * 1000:9.1f} ms   ({len(texts)} texts, "
                  f"{sum(len(s) for s, _, _ in texts)} characters; no axes, no data: the floor, "
                  f"ratio at most {base / alone:.1f}x)")

    # the point of the decimation: the time to draw hardly depends on the length of the data
    minute_audio, minute_tl = audio[: 60 * RATE], long_timeline(60.0)
    minute_tl.keyframes, minute_tl.media_time
    wave_minute = best(lambda: draw(plots.waveform(minute_audio, RATE)), repeat)
    tl_minute = best(lambda: draw(plots.animation_timeline(minute_tl)), repeat)
    print(f"{'avatar_nb, 1 min of data':28s} waveform {wave_minute * 1000:7.1f} ms   "
          f"animation timeline {tl_minute * 1000:7.1f} ms   (compare with the {seconds / 60:g} min rows above)")

    # what a live redraw costs: the panel's SVG against the same window as a matplotlib PNG
    recent = long_timeline(60.0)
    recent.keyframes, recent.lateness

    def live_png() -> None:
        fig = Figure(figsize=(7.0, 2.2), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        top, bottom = fig.subplots(2, 1)
        sel = recent.media_time >= recent.media_time[-1] - 8.0
        top.plot(recent.media_time[sel], recent.jaw_open[sel])
        top.plot(recent.media_time[sel], recent.eyelid_left[sel])
        bottom.plot(recent.media_time[sel], recent.lateness[sel] * 1000)
        plots.to_png(fig)

    svg = best(lambda: plots.live_svg(recent, window=8.0, width=700), 20)
    png = best(live_png, 5)
    print(f"{'live redraw (8 s window)':28s} SVG {svg * 1000:9.2f} ms   matplotlib PNG {png * 1000:8.1f} ms   "
          f"ratio {png / svg:7.1f}x")


# ----------------------------------------------------------------------------- live panel

_LIVE_CELLS = [
    """
import asyncio, json, time
import numpy as np
import avatar_nb as an
from avatar_nb import widgets
from IPython.display import display

svc = an.LocalService(latency_ms=80).start()
clip = an.speech_like({duration}, 16000, seed=11)

def lateness_stats(tl):
    late = tl.lateness * 1000.0
    slope = np.polyfit(tl.media_time, late, 1)[0] if late.size > 2 else float('nan')
    return dict(keyframes=int(tl.n_keyframes), median=float(np.median(late)),
                p99=float(np.percentile(late, 99)), max=float(late.max()), growth_ms_per_s=float(slope),
                complete=bool(tl.complete))
""",
    """
results = []
for rep in range({repeat}):
    for mode in ("panel", "none") if rep % 2 == 0 else ("none", "panel"):
        if mode == "none":
            tl = await an.animate(clip, 16000, service=svc, chunk_ms=40, pacing="capture", progress=False)
            results.append(dict(mode=mode, **lateness_stats(tl)))
        else:
            panel = widgets.SessionPanel(clip, 16000, service=svc, chunk_ms=40, pacing="capture")
            display(panel)
            tl = await panel.start()
            results.append(dict(mode=mode, wakeup_hz=panel.refresh_rate, redraw_hz=panel.redraw_rate,
                                wakeups=panel.wakeups, redraws=panel.redraws, render_ms=panel.redraw_ms,
                                render_max_ms=1000 * panel.redraw_max, **lateness_stats(tl)))
svc.stop()
print("RESULTS " + json.dumps(results))
""",
]


def refresher_line(runs: list[dict]) -> str:
    """The live view's work, worded as bench_microphone.py words it (avatar_nb.widgets.live):
    wake-ups and redraws per second, and ms per redraw = time inside the drawing code over
    the number of redraws."""
    wake = [r["wakeup_hz"] for r in runs]
    redraw = [r["redraw_hz"] for r in runs]
    return (f"refresher {min(wake):.1f}-{max(wake):.1f} wake-ups per second (target >= 10), "
            f"{min(redraw):.1f}-{max(redraw):.1f} redraws per second, "
            f"{np.mean([r['render_ms'] for r in runs]):.2f} ms per redraw (max {max(r['render_max_ms'] for r in runs):.1f} ms)")


def live_panel(args: argparse.Namespace) -> None:
    import os
    import sys
    import tempfile

    import nbformat
    from nbclient import NotebookClient

    duration, repeat = (6.0, 2) if args.quick else (20.0, 4)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c.format(duration=duration, repeat=repeat)) for c in _LIVE_CELLS]
    with tempfile.TemporaryDirectory() as root:
        spec = os.path.join(root, "kernels", "avatar-nb-bench")
        os.makedirs(spec)
        with open(os.path.join(spec, "kernel.json"), "w") as f:
            json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                       "display_name": "avatar_nb bench", "language": "python"}, f)
        os.environ["JUPYTER_PATH"] = root
        os.environ["MPLBACKEND"] = "agg"
        NotebookClient(nb, kernel_name="avatar-nb-bench", timeout=600, resources={"metadata": {"path": root}}).execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    results = json.loads(text.split("RESULTS ", 1)[1])
    print(f"\nlive panel in an ipykernel: {duration:g} s of speech at real-time pace, 40 ms chunks, 25 fps, "
          f"{repeat} runs each way (alternating)")
    for mode in ("none", "panel"):
        runs = [r for r in results if r["mode"] == mode]
        med = np.median([r["median"] for r in runs])
        p99 = np.median([r["p99"] for r in runs])
        worst = max(r["max"] for r in runs)
        growth = np.median([r["growth_ms_per_s"] for r in runs])
        line = (f"  {'with panel' if mode == 'panel' else 'no panel':11s} lateness median {med:6.1f} ms  p99 {p99:6.1f} ms  "
                f"max {worst:6.1f} ms  growth {growth:+.2f} ms per s of audio")
        if mode == "panel":
            line += "\n  " + " " * 11 + " " + refresher_line(runs)
        print(line)
    if not all(r["complete"] for r in results):
        print("  WARNING: a run did not complete")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 minutes instead of an hour; short live runs")
    parser.add_argument("--no-live", action="store_true", help="skip the live panel measurement")
    args = parser.parse_args()
    static_views(args)
    if not args.no_live:
        live_panel(args)


if __name__ == "__main__":
    main()
