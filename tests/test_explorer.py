"""The explorer's kernel side without a browser: a run's pyramids, tiles as binary buffers
(right sizes, exact values against numpy), the cursor and the audio, and the ways in
(a Timeline, two, a dataset's run)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import avatar_nb as an
from avatar_nb.flame import FIXED_COLUMNS, SCALAR_CHANNELS
from avatar_nb.timeline import Timeline
from avatar_nb.timeline_pyramid import (
    HEAT_COLUMNS,
    LINE_COLUMNS,
    TILE_COLUMNS,
    TILE_LINES,
    RunSeries,
    TimelinePyramid,
    pyramid_of,
    synthetic_timeline,
)
from avatar_nb.widgets.explorer import CURSOR_NEIGHBOURS, Explorer, explore


@pytest.fixture(scope="module")
def run() -> Timeline:
    return synthetic_timeline(150.0, n_expression=12, utterance=40.0, seed=3)


def _line_grid(tl: Timeline, p: TimelinePyramid) -> np.ndarray:
    """The line tracks on the one-slot-per-frame grid, by numpy (NaN where no keyframe)."""
    slots = np.rint(tl.media_time * tl.fps).astype(np.int64) - p.first_slot
    gaps = RunSeries.from_timeline(tl).gaps
    values = np.stack([tl.keyframes[:, SCALAR_CHANNELS[n]] for n in LINE_COLUMNS[:6]]
                      + [tl.latency * 1000, tl.lateness * 1000, gaps * 1000, tl.arrival], axis=1).astype(np.float32)
    grid = np.full((p.n_slots, len(LINE_COLUMNS)), np.nan, dtype=np.float32)
    grid[slots] = values
    return grid[:, :TILE_LINES]


def _decode(meta: dict, buffers: list[bytes], part: str) -> tuple[np.ndarray, np.ndarray]:
    m = meta[part]
    lo = np.frombuffer(buffers[m["min"]], dtype="<f4")
    hi = np.frombuffer(buffers[m["max"]], dtype="<f4")
    return lo, hi


class _quiet:
    def __enter__(self):
        import warnings

        self.ctx = warnings.catch_warnings()
        self.ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self.ctx.__exit__(*exc)


@pytest.mark.parametrize("z", [0, 3, 6, 9, 12, 13])
def test_tiles_are_exact_at_every_level(run, z):
    p = pyramid_of(run)
    grid = _line_grid(run, p)
    audio = run.audio.astype(np.float32) / np.float32(32768.0)
    widget = Explorer([p])
    width = p.tile_span(z, 1)[0]
    last = max(0, math.ceil(p.duration / width) - 1)
    for i in sorted({0, last // 2, last}):
        reply, buffers = widget.handle({"type": "tiles", "req": 7, "tiles": [[0, z, i]]})
        assert reply["type"] == "tiles" and reply["req"] == 7
        (meta,) = reply["tiles"]
        assert (meta["z"], meta["i"], meta["run"]) == (z, i, 0)
        t0, t1 = meta["t0"], meta["t1"]
        assert (t0, t1) == p.tile_span(z, i)
        for part, series, rate, start in (("lines", grid, run.fps, p.slot_start), ("audio", audio, run.sample_rate, 0.0)):
            m = meta[part]
            lo, hi = _decode(meta, buffers, part)
            cols = series.shape[1] if series.ndim == 2 else 1
            assert lo.size == hi.size == m["n"] * cols
            # at most a min and a max per column (one more bucket at each end)
            values = m["n"] * (1 if m["raw"] else 2)
            assert values <= 2 * TILE_COLUMNS + 4
            size = round(m["dt"] * rate)
            assert math.isclose(size / rate, m["dt"])
            first = round((m["t0"] - start) * rate / size)
            assert m["t0"] <= t0 + 1e-9 and m["t0"] + m["n"] * m["dt"] >= min(t1, start + series.shape[0] / rate) - 1e-9
            lo, hi = lo.reshape(m["n"], cols), hi.reshape(m["n"], cols)
            means = None
            if part == "lines" and not m["raw"]:  # the line inside the band: each bucket's mean
                means = np.frombuffer(buffers[m["mean"]], dtype="<f4").reshape(m["n"], cols)
            for k in range(m["n"]):
                block = series[(first + k) * size : (first + k + 1) * size].reshape(-1, cols)
                with _quiet():
                    np.testing.assert_array_equal(lo[k], np.nanmin(block, axis=0))
                    np.testing.assert_array_equal(hi[k], np.nanmax(block, axis=0))
                    if means is not None:
                        np.testing.assert_allclose(means[k], np.nanmean(block.astype(np.float64), axis=0), rtol=1e-5,
                                                   atol=1e-6)
            if m["raw"]:
                assert m["min"] == m["max"] and size == 1 and "mean" not in m
        # the heatmap: at most HEAT_COLUMNS columns of E cells, the mean of each bucket
        h = meta["heat"]
        cells = np.frombuffer(buffers[h["buffer"]], dtype=np.uint8).reshape(h["n"], run.n_expression)
        assert h["n"] <= max(HEAT_COLUMNS, 1)
        size = round(h["dt"] * run.fps)
        first = round((h["t0"] - p.slot_start) * run.fps / size)
        expr = run.keyframes[:, FIXED_COLUMNS:]
        for k in {0, h["n"] // 2, h["n"] - 1}:
            mean = expr[(first + k) * size : (first + k + 1) * size].astype(np.float64).mean(axis=0)
            expected = 1 + np.rint((np.clip(mean / p.heat_limit, -1, 1) + 1) * 127)
            assert np.abs(cells[k].astype(int) - expected).max() <= 1


def test_pyramid_is_built_once_per_timeline_and_rebuilt_when_it_changes():
    tl = synthetic_timeline(30.0, n_expression=4)
    first = pyramid_of(tl)
    assert pyramid_of(tl) is first
    tl.add_anomaly("r0", "after_end", "a frame after the end", at=5.0)
    second = pyramid_of(tl)
    assert second is not first and second.marks()[1].shape[0] == first.marks()[1].shape[0] + 1


def test_pyramid_memory_and_marks(run):
    p = pyramid_of(run)
    own = run.keyframes.nbytes + run.audio.nbytes + run.media_time.nbytes + run.arrival.nbytes
    assert p.nbytes < own / 2
    spans, points = p.marks()
    assert spans.shape == (len(run.req_ids), 3) and spans.dtype == np.float32
    assert set(spans[:, 2].astype(int)) == {0, 2}  # complete, and the fourth interrupted
    assert points.shape[1] == 2 and (points[:, 1] == 0).sum() == len(run.playback_states)


def test_cursor_sends_values_faces_and_neighbours(run):
    widget = explore(run)
    reply, buffers = widget.handle({"type": "cursor", "req": 3, "t": 12.34})
    assert buffers == [] and reply["req"] == 3
    frames, at = reply["frames"], reply["at"]
    assert len(frames) == 2 * CURSOR_NEIGHBOURS + 1 and at == CURSOR_NEIGHBOURS
    (entry,) = frames[at]
    k = entry["index"]
    assert abs(run.media_time[k] - 12.34) <= 0.5 / run.fps + 1e-9
    assert entry["values"]["jaw_open"] == pytest.approx(float(run.jaw_open[k]), abs=1e-6)
    assert entry["values"]["latency_ms"] == pytest.approx(float(run.latency[k] * 1000), abs=1e-3)
    assert entry["svg"].startswith("<svg") and entry["req_id"] == run.req_ids[run.keyframe_req[k]]
    times = [f[0]["time"] for f in frames]
    assert times == sorted(times) and np.allclose(np.diff(times), 1 / run.fps)
    # a step from the first keyframe stays at the edge
    reply, _ = widget.handle({"type": "cursor", "req": 4, "index": 0, "step": -1})
    assert reply["frames"][reply["at"]][0]["index"] == 0 and reply["at"] == 0


def test_audio_from_the_cursor_is_int16(run):
    widget = explore(run)
    reply, (pcm,) = widget.handle({"type": "audio", "req": 5, "t": 10.0, "seconds": 0.5})
    assert reply["sample_rate"] == run.sample_rate and reply["n"] == run.sample_rate // 2
    np.testing.assert_array_equal(np.frombuffer(pcm, dtype="<i2"), run.audio[160000:168000])
    assert widget.handle({"type": "nonsense"}) == (None, [])


@pytest.mark.parametrize(
    "message",
    [
        {"type": "tiles", "req": 1, "tiles": "0,0,0"},
        {"type": "tiles", "req": 1, "tiles": None},
        {"type": "cursor", "req": 1, "t": "12"},
        {"type": "cursor", "req": 1, "t": float("nan")},
        {"type": "cursor", "req": 1, "t": True},
        {"type": "cursor", "req": 1, "index": 10**12, "step": 1},
        {"type": "cursor", "req": 1, "index": 3, "step": 0.5},
        {"type": "cursor", "req": 1, "t": 1.0, "neighbours": 10**9},
        {"type": "cursor", "req": 1, "t": 1.0, "neighbours": -1},
        {"type": "audio", "req": 1, "t": "x"},
        {"type": "audio", "req": 1, "t": 1.0, "seconds": float("inf")},
        {"type": "audio", "req": 1, "t": 1.0, "seconds": -2},
        {"type": "audio", "req": 1, "t": 1.0, "run": 7},
        {"type": "audio", "req": 1, "t": 1.0, "run": [0]},
        "tiles",
        ["tiles"],
    ],
)
def test_garbled_browser_messages_are_ignored(run, message):
    """A message whose numbers are not what the browser sends gets no reply and raises
    nothing in the kernel (the widget's handler runs there)."""
    assert explore(run).handle(message) == (None, [])


def test_tiles_outside_the_run_are_left_out(run):
    widget = explore(run)
    z_max = widget.spec["z_max"]
    reply, buffers = widget.handle({"type": "tiles", "req": 2, "tiles": [
        [0, z_max + 1, 0], [0, 0, 10**9], [1, 0, 0], [0, -1, 0], [0, 0, 0.5], ["0", 0, 0], [0, 0], [0, z_max, 0],
    ]})
    assert [(m["z"], m["i"]) for m in reply["tiles"]] == [(z_max, 0)] and reply["req"] == 2
    assert widget.handle({"type": "tiles", "req": "x", "tiles": []})[0]["req"] is None


def test_two_runs_share_one_axis():
    a, b = synthetic_timeline(20.0, n_expression=3, seed=1), synthetic_timeline(35.0, n_expression=3, seed=2)
    widget = an.explore(a, b)
    spec = widget.spec
    assert [r["label"] for r in spec["runs"]] == ["A (synthetic)", "B (synthetic)"]
    assert spec["duration"] == pytest.approx(35.0)
    reply, buffers = widget.handle({"type": "tiles", "req": 1, "tiles": [[0, spec["z_max"], 0], [1, spec["z_max"], 0]]})
    assert [m["run"] for m in reply["tiles"]] == [0, 1]
    last = reply["tiles"][-1]
    assert max(last["lines"]["min"], last["lines"]["max"], last["heat"]["buffer"]) == len(buffers) - 1
    reply, _ = widget.handle({"type": "cursor", "req": 2, "t": 30.0})
    first, second = reply["frames"][reply["at"]]
    assert first["index"] == a.n_keyframes - 1 and second["time"] == pytest.approx(30.0)
    assert len(widget.marks) == sum(4 * (3 * r["marks"]["spans"] + 2 * r["marks"]["points"]) for r in spec["runs"])
    with pytest.raises(ValueError, match="one or two runs"):
        Explorer([pyramid_of(a)] * 3)
    with pytest.raises(TypeError, match="explore\\(\\) takes Timelines"):
        explore(np.zeros(3))


def test_keyframe_table_gives_the_same_tracks(run):
    from_table = TimelinePyramid(RunSeries.from_keyframes(run.to_pandas(), fps=run.fps))
    from_timeline = pyramid_of(run)
    assert from_table.audio is None
    for (lo, hi), (lo2, hi2) in zip(from_table.lines.levels, from_timeline.lines.levels):
        np.testing.assert_array_equal(lo, lo2)
        np.testing.assert_array_equal(hi, hi2)
    assert [s[:3] for s in from_table.run.requests][:2] == [
        (r, s, pytest.approx(e, abs=1.0 / run.fps)) for r, s, e, _ in from_timeline.run.requests[:2]
    ]


def test_results_explore_reads_the_run_from_the_dataset(tmp_path, run):
    from avatar_nb.dataset import write_result

    write_result(tmp_path, {"run": 0, "run_id": "long", "status": "ok"}, run)
    widget = an.load_results(tmp_path).explore("long")
    assert isinstance(widget, Explorer)
    (spec,) = widget.spec["runs"]
    assert spec["label"] == "long" and spec["fps"] == pytest.approx(run.fps) and not spec["has_audio"]
    assert spec["keyframes"] == run.n_keyframes
    with pytest.raises(KeyError, match="nope"):
        an.load_results(tmp_path).explore("nope")


def test_empty_and_short_timelines_still_open():
    empty = Timeline(25.0)
    widget = explore(empty)
    reply, _ = widget.handle({"type": "tiles", "req": 1, "tiles": [[0, 0, 0]]})
    assert reply["tiles"][0]["lines"]["n"] == 0
    assert widget.handle({"type": "cursor", "req": 2, "t": 0.0})[0]["frames"][0][0]["index"] == -1
    short = Timeline(25.0)
    short.add_animation(np.zeros((3, 20), dtype=np.float32), req_id="r", arrival=0.1, end=True)
    reply, _ = explore(short).handle({"type": "tiles", "req": 1, "tiles": [[0, 0, 0]]})
    assert reply["tiles"][0]["lines"]["raw"] and "heat" not in reply["tiles"][0]


def test_static_figures_of_long_runs_read_the_pyramid(run):
    from avatar_nb import plots
    from avatar_nb.plots._base import pixel_width, pyramid_band

    from matplotlib.collections import LineCollection

    fig = plots.animation_timeline(run)
    jaw_ax = fig.axes[1]  # below the waveform
    (line,) = [c for c in jaw_ax.collections if isinstance(c, LineCollection) and c.get_label() == "jaw open"]
    centres, lo, hi = pyramid_band((run, "jaw_open", 1.0, None), pixel_width(jaw_ax))
    np.testing.assert_array_equal(line.get_segments()[0][:, 0], centres)
    np.testing.assert_allclose(line.get_segments()[0][:, 1], (lo + hi) / 2)
    # buckets of one or two pixels, each the exact min and max of its frames
    assert pixel_width(jaw_ax) / 2 <= centres.size <= pixel_width(jaw_ax) + 2
    size = round((centres[1] - centres[0]) * run.fps)
    np.testing.assert_array_equal(hi[:3], [run.jaw_open[k * size : (k + 1) * size].max() for k in range(3)])
    timing = plots.frame_timing(run)
    (late,) = [c for c in timing.axes[1].collections if isinstance(c, LineCollection) and c.get_label() == "lateness"]
    assert late.get_segments()[0].shape[0] <= pixel_width(timing.axes[1]) + 2
