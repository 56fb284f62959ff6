"""Figures checked for what they show, on synthetic timelines."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.image import AxesImage
from matplotlib.patches import Ellipse

from avatar_nb import plots
from avatar_nb.plots._base import pixel_width
from avatar_nb.timeline import Timeline


def synthetic(n_per_req=(50, 30), fps=25.0, e=10, rate=16000, latency=0.08, with_audio=True) -> Timeline:
    total = sum(n_per_req)
    audio = (0.5 * np.sin(np.arange(int(total / fps * rate)) * 0.05) * 32767).astype(np.int16) if with_audio else None
    tl = Timeline(fps, sample_rate=rate, audio=audio)
    t = 0.0
    k = 0
    for r, n in enumerate(n_per_req):
        for i in range(n):
            tl.add_audio_chunk(f"r{r}", t, int(rate / fps))
            kf = np.zeros((1, 20 + e), np.float32)
            kf[0, 9] = 0.3 * abs(np.sin(k / 5))
            kf[0, 18:20] = 1.0 if k % 40 == 0 else 0.05
            kf[0, 3:6] = 0.01 * k / total
            kf[0, 20:] = np.linspace(-1, 1, e) * np.sin(k / 7)
            tl.add_animation(kf, req_id=f"r{r}", arrival=t + latency, end=i == n - 1)
            t += 1 / fps
            k += 1
    return tl


def test_envelope_matches_a_naive_min_max():
    x = np.random.default_rng(0).standard_normal(10007)
    centers, mins, maxs = plots.envelope(x, 100)
    edges = (np.arange(101) * x.size) // 100
    for i in range(100):
        seg = x[edges[i] : edges[i + 1]]
        assert mins[i] == seg.min() and maxs[i] == seg.max()
    assert centers.shape == (100,)
    same = plots.envelope(x[:50], 100)
    np.testing.assert_array_equal(same[1], x[:50])


def test_waveform_content():
    tl = synthetic()
    fig = plots.waveform(tl)
    (ax,) = fig.axes
    assert ax.get_xlim() == pytest.approx((0, tl.audio.shape[0] / 16000))
    (poly,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = poly.get_paths()[0].vertices[:, 1]
    assert ys.max() == pytest.approx(0.5, abs=0.01) and ys.min() == pytest.approx(-0.5, abs=0.01)
    assert "waveform (3.20 s @ 16000 Hz)" in ax.get_title()
    with pytest.raises(ValueError, match="sample_rate"):
        plots.waveform(np.zeros(10, np.float32))


def test_waveform_of_an_hour_is_reduced_to_pixels():
    hour = np.zeros(16000 * 3600, dtype=np.int16)
    hour[::7] = 1000
    fig = plots.waveform(hour, 16000)
    poly = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)][0]
    assert len(poly.get_paths()[0].vertices) < 4 * 1000  # one min/max per pixel column, not 57.6 M points
    assert fig.axes[0].get_xlim()[1] == pytest.approx(3600.0)


def test_animation_timeline_content():
    tl = synthetic()
    fig = plots.animation_timeline(tl)
    axes = fig.axes
    assert len(axes) == 5
    assert [a.get_ylabel() for a in axes] == ["amplitude", "jaw (rad)", "eyelids", "head (rad)", "expression"]
    jaw_line = axes[1].get_lines()[0]
    np.testing.assert_allclose(jaw_line.get_xdata(), tl.media_time)
    np.testing.assert_allclose(jaw_line.get_ydata(), tl.jaw_open, rtol=1e-6)
    (image,) = [c for c in axes[4].get_children() if isinstance(c, AxesImage)]
    assert image.get_array().shape == (10, 80)
    # the second utterance starts at 2.0 s: a dotted boundary on every panel
    for ax in axes:
        (boundaries,) = [c for c in ax.collections if c.get_label() == "utterance start"]
        assert [seg[0, 0] for seg in boundaries.get_segments()] == [pytest.approx(2.0)]
    assert "80 keyframes @ 25 fps" in fig._suptitle.get_text()
    assert len(plots.animation_timeline(synthetic(with_audio=False)).axes) == 4


def test_long_timelines_are_decimated():
    tl = synthetic((90000,), e=100, with_audio=False)
    fig = plots.animation_timeline(tl)
    jaw_ax = fig.axes[0]
    (midline,) = [c for c in jaw_ax.collections if isinstance(c, LineCollection)]
    assert len(midline.get_segments()[0]) <= 2000  # a point per pixel column
    (band,) = [c for c in jaw_ax.collections if isinstance(c, PolyCollection)]  # the min/max band keeps peaks visible
    ys = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
    assert ys.max() == pytest.approx(tl.jaw_open.max(), abs=1e-6)
    image = [c for c in fig.axes[3].get_children() if isinstance(c, AxesImage)][0]
    assert image.get_array().shape[1] <= 2000


def _bucket_minmax(values: np.ndarray, size: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of ``values`` over buckets of ``size``, by numpy (the last may be short)."""
    edges = np.arange(count) * size
    return np.minimum.reduceat(values, edges), np.maximum.reduceat(values, edges)


def _band(ax, label: str):
    """(centres, mins, maxs, midline) of the band series named ``label`` in ``ax``, read
    back from the drawn artists: one polygon per series (lower edge forwards, upper edge
    backwards) and one midline per series."""
    lines = [c for c in ax.collections if isinstance(c, LineCollection) and c.get_label() == label]
    band = f"{label} (min-max)" if lines else label
    polys = [c for c in ax.collections if isinstance(c, PolyCollection) and c.get_label() == band]
    out = []
    for k, path in enumerate(polys[0].get_paths()):
        v = path.vertices[:-1] if len(path.vertices) % 2 else path.vertices  # a closing vertex, if any
        half = len(v) // 2
        mid = lines[0].get_segments()[k] if lines else None
        out.append((v[:half, 0], v[:half, 1], v[half:, 1][::-1], mid))
    return out


def test_long_run_figures_carry_what_the_short_ones_do():
    """A run too long to draw keyframe by keyframe is drawn from its pyramid with cheaper
    artists: the same panels and labels, over the whole run, each series' band the exact
    min and max of its keyframes per bucket (of one or two pixels), the heatmap the mean."""
    from avatar_nb.plots._light import Ticks, Verticals
    from avatar_nb.timeline_pyramid import synthetic_timeline

    tl = synthetic_timeline(200.0, n_expression=12, utterance=40.0, seed=1)  # 5000 keyframes, 5 utterances
    fig = plots.animation_timeline(tl)
    wave_ax, jaw_ax, lid_ax, head_ax, expr_ax = fig.axes
    assert [a.get_ylabel() for a in fig.axes] == ["amplitude", "jaw (rad)", "eyelids", "head (rad)", "expression"]
    assert expr_ax.get_xlabel() == "media time (s)"
    assert "5000 keyframes @ 25 fps" in fig._suptitle.get_text()
    for ax in fig.axes:  # the whole run on one time axis
        assert ax.get_xlim() == pytest.approx((0.0, 200.0))
    # each series: the exact min and max of its keyframes per bucket, the midline between them
    expected = {"jaw open": [tl.jaw_open], "eyelids": [tl.eyelid_left, tl.eyelid_right],
                "head": [tl["head_pitch"], tl["head_yaw"], tl["head_roll"]]}
    for ax, label in ((jaw_ax, "jaw open"), (lid_ax, "eyelids"), (head_ax, "head")):
        drawn = _band(ax, label)
        assert len(drawn) == len(expected[label])
        for (t, lo, hi, mid), values in zip(drawn, expected[label]):
            size = round((t[1] - t[0]) * tl.fps)
            assert 930 / 2 <= t.size <= 930 + 2 and size >= 2  # buckets of one or two pixels, not 5000 points
            np.testing.assert_allclose(t, (np.arange(t.size) + 0.5) * size / tl.fps)
            want_lo, want_hi = _bucket_minmax(np.asarray(values, np.float32), size, t.size)
            np.testing.assert_array_equal(lo, want_lo)
            np.testing.assert_array_equal(hi, want_hi)
            np.testing.assert_allclose(mid[:, 1], (lo + hi) / 2)
        lo_all = min(d[1].min() for d in drawn)
        hi_all = max(d[2].max() for d in drawn)
        assert ax.get_ylim()[0] <= lo_all and ax.get_ylim()[1] >= hi_all  # nothing cut off
    assert [t.get_text() for t in lid_ax.texts] == ["left", "right"]
    assert [t.get_text() for t in head_ax.texts] == ["pitch", "yaw", "roll"]
    colours = [c.tolist() for c in [c for c in head_ax.collections if isinstance(c, LineCollection)][0].get_colors()]
    assert colours == [list(to_rgba(t.get_color())) for t in head_ax.texts]  # each name in its line's colour
    # the waveform: the exact peaks of the audio per bucket
    ((t, lo, hi, _),) = _band(wave_ax, "waveform")
    size = round((t[1] - t[0]) * tl.sample_rate)
    want_lo, want_hi = _bucket_minmax(tl.audio, size, t.size)
    np.testing.assert_allclose(lo, want_lo / 32768.0, atol=1e-6)
    np.testing.assert_allclose(hi, want_hi / 32768.0, atol=1e-6)
    # the heatmap: each column the mean of its frames; the colour bar says what the colours are
    (image,) = [c for c in expr_ax.get_children() if isinstance(c, AxesImage)]
    cells = image.get_array()
    assert cells.shape[0] == 12 and cells.shape[1] <= 930
    frames = round(200.0 * tl.fps / cells.shape[1])
    np.testing.assert_allclose(cells[:, 3], tl.expression[3 * frames : 4 * frames].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert image.get_extent()[:2] == pytest.approx((0.0, 200.0))
    assert image.colorbar is not None and image.colorbar.ax.get_ylabel() == "coefficient"
    # utterance starts dotted across every panel
    (marks,) = [a for a in fig.artists if isinstance(a, Verticals)]
    assert marks.get_label() == "utterance start" and marks.panels == list(fig.axes)
    np.testing.assert_allclose(marks.xs, [40.0, 80.0, 120.0, 160.0])
    # ticks in seconds on the time axis, values on each panel
    (xticks,) = [a for a in expr_ax.artists if isinstance(a, Ticks) and a.axis_name == "x"]
    values, labels = xticks.values()
    assert labels == ["0", "50", "100", "150", "200"] and [float(s) for s in labels] == values.tolist()
    jaw_ax.set_xlim(100.0, 160.0)  # placed when drawn: they follow the limits (all panels share them)
    assert xticks.values()[1] == ["100", "120", "140", "160"]
    jaw_ax.set_xlim(0.0, 200.0)
    for ax in fig.axes:
        (yticks,) = [a for a in ax.artists if isinstance(a, Ticks) and a.axis_name == "y"]
        assert len(yticks.values()[1]) >= 2
    assert plots.to_png(fig)[:4] == b"\x89PNG"
    # ticks asked of matplotlib take the light ones' place, never both
    (jaw_yticks,) = [a for a in jaw_ax.artists if isinstance(a, Ticks) and a.axis_name == "y"]
    assert not xticks.handed_over() and len(jaw_ax.get_xticks()) == 0
    expr_ax.set_xticks([0, 60, 120, 180])
    assert xticks.handed_over() and not jaw_yticks.handed_over()
    assert xticks.get_window_extent(fig.canvas.get_renderer()).width < 0  # Bbox.null(): nothing to lay out
    assert expr_ax.get_xticks().tolist() == [0, 60, 120, 180]
    assert plots.to_png(fig)[:4] == b"\x89PNG"

    timing = plots.frame_timing(tl)
    arr_ax, late_ax, hist_ax = timing.axes
    assert [a.get_xlabel() for a in timing.axes] == ["media time (s)", "media time (s)", "inter-arrival (ms)"]
    assert [a.get_ylabel() for a in timing.axes] == ["arrival (s)", "lateness (ms)", "messages"]
    short = plots.frame_timing(synthetic())  # the same headline figures as the short run's title has
    assert timing._suptitle.get_text().split(":")[0] == short._suptitle.get_text().split(":")[0] == "frame timing"
    assert "first-frame latency" in timing._suptitle.get_text() and "pacing playback" in timing._suptitle.get_text()
    for ax, label, values in ((arr_ax, "arrival", tl.arrival), (late_ax, "lateness", tl.lateness * 1000.0)):
        ((t, lo, hi, mid),) = _band(ax, label)
        size = round((t[1] - t[0]) * tl.fps)
        want_lo, want_hi = _bucket_minmax(np.asarray(values, np.float32), size, t.size)
        np.testing.assert_array_equal(lo, want_lo)
        np.testing.assert_array_equal(hi, want_hi)
        assert t.size <= 2 * pixel_width(ax) and ax.get_xlim()[0] <= 0.0 and ax.get_xlim()[1] >= 200.0
    (ideal,) = [ln for ln in arr_ax.get_lines() if ln.get_label() == "real time"]
    assert ideal.get_xdata()[-1] == pytest.approx(max(tl.media_time[-1], tl.arrival.max()))
    assert [t.get_text() for t in arr_ax.texts] == ["arrival", "real time (dashed)"]
    (budget,) = [ln for ln in late_ax.get_lines() if ln.get_label() == "one frame (40 ms)"]
    assert budget.get_ydata()[0] == pytest.approx(40.0)
    assert [t.get_text() for t in late_ax.texts] == ["one frame (40 ms)"]
    (bars,) = hist_ax.patches
    counts, edges = bars.get_data()[:2]
    assert counts.sum() == tl.inter_arrival.size
    assert edges[0] == pytest.approx(tl.inter_arrival.min() * 1000) and edges[-1] == pytest.approx(tl.inter_arrival.max() * 1000)
    assert plots.to_png(timing)[:4] == b"\x89PNG"

    tl.meta["pacing"] = "fast"  # no playback clock: no lateness panel, no real-time line
    fast = plots.frame_timing(tl)
    assert [a.get_ylabel() for a in fast.axes] == ["arrival (s)", "messages"]
    assert [ln.get_label() for ln in fast.axes[0].get_lines()] == [] and [t.get_text() for t in fast.axes[0].texts] == ["arrival"]


def test_frame_timing_content():
    tl = synthetic()
    fig = plots.frame_timing(tl)
    arr_ax, late_ax, hist_ax = fig.axes
    arrival_line, ideal = arr_ax.get_lines()[:2]
    np.testing.assert_allclose(arrival_line.get_ydata(), tl.arrival)
    assert ideal.get_label() == "real time"
    np.testing.assert_allclose(late_ax.get_lines()[0].get_ydata(), tl.lateness * 1000)
    assert sum(p.get_height() for p in hist_ax.patches) == tl.inter_arrival.size
    title = fig._suptitle.get_text()
    assert "first-frame latency 80.0 ms" in title and "real-time factor" in title
    assert hist_ax.get_xlabel() == "inter-arrival (ms)"


def test_report_has_both_halves():
    fig = plots.report(synthetic())
    labels = [a.get_ylabel() for a in fig.axes]
    assert "jaw (rad)" in labels and "lateness (ms)" in labels and "arrival (s)" in labels
    assert plots.to_png(fig)[:4] == b"\x89PNG"


def test_compare_runs():
    a, b = synthetic(latency=0.05), synthetic(latency=0.2)
    fig = plots.compare_runs([a, b], ["fast", "slow"])
    lat_ax = fig.axes[0]
    heights = [p.get_height() for p in lat_ax.patches]
    assert heights == pytest.approx([50.0, 200.0])
    assert [t.get_text() for t in lat_ax.get_xticklabels()] == ["fast", "slow"]
    with pytest.raises(ValueError, match="2 labels for 1 timelines"):
        plots.compare_runs([a], ["x", "y"])
    with pytest.raises(ValueError, match="at least one"):
        plots.compare_runs([])


def _mouth_and_eyes(fig):
    ellipses = [p for p in fig.axes[0].patches if isinstance(p, Ellipse)]
    mouth = ellipses[-1]
    eyes = [e for e in ellipses if e.get_facecolor()[:3] == (1.0, 1.0, 1.0)]
    return mouth, eyes


def test_face_follows_the_keyframe():
    row = np.zeros(70, np.float32)
    closed_mouth, open_eyes = _mouth_and_eyes(plots.face(row))
    row[9] = 0.3
    row[18:20] = 1.0
    open_mouth, shut_eyes = _mouth_and_eyes(plots.face(row))
    assert open_mouth.height > 5 * closed_mouth.height
    assert all(s.height < 0.1 * o.height for s, o in zip(shut_eyes, open_eyes))
    tl = synthetic()
    assert plots.face(tl, 3).axes
    with pytest.raises(ValueError, match="which keyframe"):
        plots.face(tl)
    with pytest.raises(IndexError, match="out of range"):
        plots.face(tl, 999)
    with pytest.raises(ValueError, match="at least 20 values"):
        plots.face(np.zeros(5))


def test_svg_views():
    row = np.zeros(30, np.float32)
    row[9] = 0.3
    svg = plots.face_svg(row)
    assert svg.startswith("<svg") and svg.count("<ellipse") == 4 and 'ry="21.' in svg  # mouth 3 + 130*0.3 high / 2
    tl = synthetic()
    live = plots.live_svg(tl, window=2.0)
    assert live.count("<polyline") == 3 and "lateness 80 ms" in live
    # the last 2 s of 3.2 s, labelled every half second; the one-frame budget labelled in ms
    assert ">1.5 s<" in live and ">3 s<" in live and ">1 s<" not in live
    assert ">40<" in live
    assert "waiting for keyframes" in plots.live_svg(Timeline())


# ----------------------------------------------------------------------------- timing meaning and labels


def test_budget_line_has_a_legend_entry_and_heatmap_a_colour_bar():
    tl = synthetic()
    late_ax = plots.frame_timing(tl).axes[1]
    labels = [t.get_text() for t in late_ax.get_legend().get_texts()]
    assert labels == ["lateness", "one frame (40 ms)"]
    fig = plots.animation_timeline(tl)
    expr_ax = fig.axes[-1]
    (image,) = [c for c in expr_ax.get_children() if isinstance(c, AxesImage)]
    assert image.colorbar is not None and image.colorbar.ax.get_ylabel() == "coefficient"
    report = plots.report(tl)
    assert any(isinstance(c, AxesImage) and c.colorbar is not None for ax in report.axes for c in ax.get_children())


def test_fast_pacing_says_lateness_does_not_apply():
    tl = synthetic()
    tl.meta["pacing"] = "fast"
    assert np.isnan(tl.lateness).all()
    fig = plots.frame_timing(tl)
    arr_ax, _hist_ax = fig.axes  # no lateness panel
    assert [line.get_label() for line in arr_ax.get_lines()] == ["arrival"]  # no real-time line
    assert "pacing fast (lateness n/a)" in fig._suptitle.get_text()
    # a caller that draws the three panels itself gets the lateness panel saying why it is empty
    from matplotlib.figure import Figure

    axes = Figure().subplots(1, 3)
    plots.draw_timing(axes, tl)
    late_ax = axes[1]
    assert late_ax.get_lines() == [] and "n/a: fast pacing" in late_ax.get_ylabel()
    assert any("no playback clock" in t.get_text() for t in late_ax.texts)
    assert "fast pacing: lateness n/a" in plots.live_svg(tl)
    late_ax = plots.compare_runs([synthetic(), tl]).axes[1]
    assert any(t.get_text() == "n/a\n(fast)" for t in late_ax.texts)


def fast_run(n=80, fps=25.0, rate=16000, speed=200.0) -> Timeline:
    """A run streamed under fast pacing: 3.2 s of audio animated ``speed`` times faster than real time."""
    tl = Timeline(fps, sample_rate=rate)
    tl.meta["pacing"] = "fast"
    step = 1 / fps / speed
    for k in range(n):
        tl.add_audio_chunk("r0", k * step, int(rate / fps))
        kf = np.zeros((1, 30), np.float32)
        tl.add_animation(kf, req_id="r0", arrival=(k + 1) * step, end=k == n - 1)
    return tl


def test_fast_runs_compared_without_empty_panels():
    runs = [fast_run(speed=200.0), fast_run(speed=310.0)]
    assert runs[0].real_time_factor == pytest.approx(1 / 200)
    fig = plots.compare_runs(runs, ["8 kHz", "16 kHz"])
    # no lateness panel, no real-time factor bars of 0.005: latency, jitter and speed
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "first-frame latency (ms)", "inter-arrival jitter (ms)", "processing speed (x real time)"]
    speed_ax = fig.axes[2]
    assert [p.get_height() for p in speed_ax.patches] == pytest.approx([200.0, 310.0])
    assert [t.get_text() for t in speed_ax.texts] == ["200x", "310x"]
    assert "no lateness" in fig._suptitle.get_text()


def test_paced_and_fast_runs_compared_each_where_it_means_something():
    fig = plots.compare_runs([synthetic(), fast_run(speed=310.0)], ["paced", "fast"])
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == ["first-frame latency (ms)", "lateness (ms)", "inter-arrival jitter (ms)", "real-time factor",
                      "processing speed (x real time)"]
    late_ax, rtf_ax, speed_ax = fig.axes[1], fig.axes[3], fig.axes[4]
    assert [t.get_text() for t in late_ax.texts] == ["n/a\n(fast)"]
    assert len(rtf_ax.patches) == 1 and rtf_ax.patches[0].get_height() == pytest.approx(1.0, abs=0.05)
    assert "n/a\n(fast)" in [t.get_text() for t in rtf_ax.texts]
    assert [p.get_height() for p in speed_ax.patches] == pytest.approx([310.0])
    assert "n/a\n(paced)" in [t.get_text() for t in speed_ax.texts]
    # paced runs alone: the four panels as before
    assert len(plots.compare_runs([synthetic(), synthetic(latency=0.2)]).axes) == 4


def test_fast_timing_figures_leave_lateness_out_and_give_speed():
    tl = fast_run(speed=310.0)
    fig = plots.frame_timing(tl)
    assert [ax.get_xlabel() for ax in fig.axes] == ["media time (s)", "inter-arrival (ms)"]
    title = fig._suptitle.get_text()
    assert "processing speed 310x real time" in title and "real-time factor" not in title
    report = plots.report(tl)
    labels = [a.get_ylabel() for a in report.axes]
    assert "arrival (s)" in labels and not any("lateness" in label for label in labels)
    assert "310x real time" in report._suptitle.get_text()


def test_runs_are_labelled_from_their_metadata():
    a, b = synthetic(), synthetic(rate=24000)
    a.meta.update(pacing="capture", chunk_ms=40)
    b.meta.update(pacing="playback", chunk_ms=160, source="clips/hello.wav")
    assert plots.run_label(a) == "capture, 40 ms chunks, 16 kHz"
    assert plots.run_label(b) == "hello.wav, playback, 160 ms chunks, 24 kHz"
    ticks = [t.get_text() for t in plots.compare_runs([a, b]).axes[0].get_xticklabels()]
    assert ticks == ["capture, 40 ms chunks, 16 kHz", "hello.wav, playback, 160 ms chunks, 24 kHz"]
    same = [t.get_text() for t in plots.compare_runs([a, a]).axes[0].get_xticklabels()]
    assert same == ["capture, 40 ms chunks, 16 kHz #1", "capture, 40 ms chunks, 16 kHz #2"]
    assert plots.run_label(a) in plots.report(a)._suptitle.get_text()


# ----------------------------------------------------------------------------- figures from tables


def runs_table():
    import pandas as pd

    rows = []
    rng = np.random.default_rng(1)
    for chunk in (20, 40, 160):
        for rate in (16000, 24000):
            for rep in range(5):
                rows.append({"chunk_ms": chunk, "sample_rate": rate, "repeat": rep, "status": "ok",
                             "latency_p99": chunk / 1000 + rate / 1e6 + rng.normal(0, 0.002)})
    rows.append({"chunk_ms": 40, "sample_rate": 16000, "repeat": 9, "status": "failed", "latency_p99": 9.0})
    return pd.DataFrame(rows)


def test_compare_draws_means_with_bootstrap_intervals():
    from avatar_nb.analysis import summarize

    runs = runs_table()
    fig = plots.compare(runs, x="chunk_ms", y="latency_p99", hue="sample_rate")
    (ax,) = fig.axes
    stats = summarize(runs, by=["chunk_ms", "sample_rate"], value="latency_p99")
    bars = [p for p in ax.patches]
    assert len(bars) == 6
    heights = sorted(p.get_height() for p in bars)
    assert heights == pytest.approx(sorted(stats["mean"] * 1000))  # seconds drawn in ms; the failed run left out
    assert max(heights) < 1000
    assert ax.get_ylabel() == "latency_p99 (ms)" and ax.get_xlabel() == "chunk_ms"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["20", "40", "160"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["sample_rate=16000", "sample_rate=24000"]
    # error bars span the bootstrap CI
    segments = [seg for c in ax.collections for seg in getattr(c, "get_segments", lambda: [])()]
    spans = sorted(round(float(abs(s[1][1] - s[0][1])), 6) for s in segments if len(s) == 2 and s[0][0] == s[1][0])
    expected = sorted(round(float(v), 6) for v in (stats["ci_high"] - stats["ci_low"]) * 1000)
    assert spans == pytest.approx(expected, abs=1e-6)


def test_ecdf_per_condition():
    import pandas as pd

    frame = pd.DataFrame({
        "latency": np.concatenate([np.linspace(0.01, 0.05, 100), np.linspace(0.1, 0.2, 50)]),
        "lateness": np.concatenate([np.full(100, np.nan), np.linspace(0.1, 0.2, 50)]),
        "chunk_ms": [40] * 100 + [160] * 50,
    })
    fig = plots.ecdf(frame, value="latency", by="chunk_ms")
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["chunk_ms=40 (n=100)", "chunk_ms=160 (n=50)"]
    x, y = lines[0].get_xdata(), lines[0].get_ydata()
    assert x[0] == pytest.approx(10.0) and x[-1] == pytest.approx(50.0) and y[-1] == pytest.approx(1.0)
    assert ax.get_xlabel() == "latency (ms)"
    fast = plots.ecdf(frame, value="lateness", by=["chunk_ms"]).axes[0]
    assert "chunk_ms=40: n/a" in [t.get_text() for t in fast.get_legend().get_texts()]
    assert "n/a under fast pacing" in fast.get_title()
    big = pd.DataFrame({"latency": np.random.default_rng(0).random(100_000)})
    assert len(plots.ecdf(big).axes[0].get_lines()[0].get_xdata()) <= 2000
    with pytest.raises(KeyError, match="nope"):
        plots.ecdf(frame, value="nope")


def test_av_offset_draws_the_correlation_curve():
    from avatar_nb.analysis import AVOffset

    lags = np.linspace(-0.3, 0.3, 601)
    corr = np.exp(-(((lags - 0.04) / 0.05) ** 2))
    fig = plots.av_offset(AVOffset(lag=0.04, confidence=0.93, lags=lags, correlation=corr))
    (ax,) = fig.axes
    curve = ax.get_lines()[0]
    np.testing.assert_allclose(curve.get_xdata(), lags * 1000)
    np.testing.assert_allclose(curve.get_ydata(), corr)
    assert "mouth lags audio by 40.0 ms (confidence 0.93)" == ax.get_title()
    assert any(line.get_label() == "estimated lag +40.0 ms" for line in ax.get_lines())
    with pytest.raises(TypeError, match="takes a Timeline or an AVOffset"):
        plots.av_offset("x")


def test_av_offset_of_a_timeline_uses_the_analysis():
    from avatar_nb.analysis import av_offset

    tl = synthetic()
    expected = av_offset(tl)
    curve = plots.av_offset(tl).axes[0].get_lines()[0]
    np.testing.assert_allclose(curve.get_ydata(), expected.correlation)


def test_importing_plots_in_ipython_leaves_matplotlib_for_the_first_figure():
    """In a kernel, ``import avatar_nb.plots`` (the explorer imports it for its faces) does
    not import matplotlib; a bare Figure still displays as PNG once there is one."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "import avatar_nb.plots as plots\n"
        "print('before', 'matplotlib.figure' in sys.modules)\n"
        "from avatar_nb.timeline_pyramid import synthetic_timeline\n"
        "fig = plots.frame_timing(synthetic_timeline(5.0, n_expression=3))\n"
        "data, _ = ip.display_formatter.format(fig, include=['image/png'])\n"
        "print('png', data['image/png'][:4] == b'\\x89PNG')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.split() == ["before", "False", "png", "True"]
