"""Every track of a run as multi-resolution pyramids: what the explorer and long figures read.

A :class:`TimelinePyramid` is built once per run (:func:`pyramid_of` caches it per
Timeline, rebuilt only when the Timeline changed) by the compiled core
(:mod:`avatar_nb._pyramid`), on one time axis: media time in seconds.

Tracks
    ``audio``: min/max envelope of the run's audio (:class:`~avatar_nb.pyramid.SeriesPyramid`,
    finest bucket 32 samples). The keyframe tracks share one 2-D pyramid over a grid of one
    slot per frame (``round(media_time * fps)``; a slot without a keyframe is NaN and
    left out of its bucket): :data:`LINE_COLUMNS` (jaw, eyelids, head pose, latency,
    lateness and the inter-arrival gap of each keyframe's message, times in ms). The
    expression heatmap is a mean pyramid (sums and counts by ``bucket_sum``, kept as
    float32 means from four frames a bucket up). Request spans by status, playback
    states and anomalies are short lists of marks.

Tiles
    A view asks for tiles: tile ``(z, i)`` covers ``[i * D, (i + 1) * D)`` seconds with
    ``D = TILE_SECONDS * 2**z``, drawn :data:`TILE_COLUMNS` columns wide. :meth:`TimelinePyramid.tile`
    answers each track from the pyramid level whose buckets are the finest still at least
    a column wide (or the samples themselves when there are fewer than two per column),
    so a tile holds at most a min and a max per column per track, one bucket more at
    each end (lines join across tiles), whatever the run's length. The heatmap holds at
    most :data:`HEAT_COLUMNS` columns of E cells a tile, quantised to bytes.

Runs come from a :class:`~avatar_nb.timeline.Timeline` (:meth:`RunSeries.from_timeline`,
public attributes only) or from a dataset's keyframe table (:meth:`RunSeries.from_keyframes`).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _pyramid
from .flame import FIXED_COLUMNS, SCALAR_CHANNELS, column_names
from .pyramid import SeriesPyramid

if TYPE_CHECKING:
    import pandas as pd

    from .timeline import Timeline

__all__ = [
    "HEAT_COLUMNS",
    "LINE_COLUMNS",
    "STATUS_CODES",
    "TILE_COLUMNS",
    "TILE_LINES",
    "TILE_SECONDS",
    "RunSeries",
    "Tile",
    "TimelinePyramid",
    "pyramid_of",
]

TILE_COLUMNS = 512
"""Columns a tile is drawn in: a tile holds at most a min and a max per column per track."""
TILE_SECONDS = 1.0 / 32.0
"""Seconds a tile of level 0 covers (512 columns of 1/16384 s: finer than a 16 kHz sample)."""
HEAT_COLUMNS = 128
"""Most heatmap columns (of E cells each) a tile holds."""

LINE_COLUMNS: tuple[str, ...] = (
    "jaw_open", "eyelid_left", "eyelid_right", "head_pitch", "head_yaw", "head_roll",
    "latency_ms", "lateness_ms", "gap_ms", "arrival",
)
"""The keyframe series of the line tracks, in the column order of their pyramid (``arrival``
in s, for the static frame-timing figure)."""
TILE_LINES = LINE_COLUMNS.index("arrival")
"""A tile's line tracks: the first columns of :data:`LINE_COLUMNS` (the explorer's)."""

STATUS_CODES: tuple[str, ...] = ("complete", "open", "interrupted", "preempted", "failed")
"""Request statuses, coded by position in the span marks (anything else is coded last + 1)."""

_AUDIO_BASE = 32
_LINE_BASE = 2
_HEAT_BASE = 4


@dataclass
class RunSeries:
    """What the explorer needs of one run, every time in seconds of media time.

    ``keyframes`` (n, 20 + E) float32 with ``media_time``, ``arrival``, ``latency``,
    ``lateness`` (n,) each; ``audio`` (int16) at ``sample_rate`` or None; ``requests``:
    ``(req_id, start, end, status)`` spans; ``playback``: ``(time, state, req_id)``;
    ``anomalies``: ``(time, kind, req_id)``; ``keyframe_req``: each keyframe's request, an
    index into ``req_ids`` (for the cursor's read-out)."""

    fps: float
    keyframes: np.ndarray
    media_time: np.ndarray
    arrival: np.ndarray
    latency: np.ndarray
    lateness: np.ndarray
    keyframe_req: np.ndarray | None = None
    req_ids: list[str] = field(default_factory=list)
    audio: np.ndarray | None = None
    sample_rate: int | None = None
    requests: list[tuple[str, float, float, str]] = field(default_factory=list)
    playback: list[tuple[float, str, str]] = field(default_factory=list)
    anomalies: list[tuple[float, str, str]] = field(default_factory=list)
    label: str = "run"

    @property
    def n_expression(self) -> int:
        return int(self.keyframes.shape[1]) - FIXED_COLUMNS

    @property
    def gaps(self) -> np.ndarray:
        """(n,) the gap (s) between the arrival of each keyframe's message and the message
        before it (NaN for the first): keyframes of one message share one arrival time."""
        arrival = np.asarray(self.arrival, dtype=np.float64)
        out = np.full(arrival.shape[0], np.nan)
        if arrival.shape[0] < 2:
            return out
        new = np.concatenate(([True], arrival[1:] != arrival[:-1]))
        starts = np.flatnonzero(new)
        message_gap = np.concatenate(([np.nan], np.diff(arrival[starts])))
        return message_gap[np.cumsum(new) - 1]

    @classmethod
    def from_timeline(cls, tl: Timeline, label: str | None = None) -> RunSeries:
        """The series of a Timeline, read through its public attributes."""
        media = np.asarray(tl.media_time, dtype=np.float64)
        arrival = np.asarray(tl.arrival, dtype=np.float64)
        req_ids = list(tl.req_ids)
        starts = np.asarray(tl.utterance_start, dtype=np.float64)
        counts = np.bincount(tl.keyframe_req, minlength=len(req_ids)) if req_ids else np.zeros(0)
        seconds = counts / tl.fps
        if tl.sample_rate and tl.chunk_samples.size:
            sent = np.bincount(tl.chunk_req, weights=tl.chunk_samples, minlength=len(req_ids)) / tl.sample_rate
            seconds = np.where(sent > 0, sent, seconds)
        requests = [(r, float(starts[i]), float(starts[i] + seconds[i]), tl.request_status(r))
                    for i, r in enumerate(req_ids)]
        to_media = _arrival_to_media(arrival, media)
        record = tl.snapshot()  # the histories as tuples (no pandas needed)
        anomalies = [(to_media(at), str(kind), str(req)) for req, kind, _, at in record.anomalies]
        playback = [(to_media(at), str(state), str(req)) for req, state, _, _, at in record.playback]
        return cls(
            fps=float(tl.fps),
            keyframes=np.asarray(tl.keyframes, dtype=np.float32),
            media_time=media,
            arrival=arrival,
            latency=np.asarray(tl.latency, dtype=np.float64),
            lateness=np.asarray(tl.lateness, dtype=np.float64),
            keyframe_req=np.asarray(tl.keyframe_req, dtype=np.int32),
            req_ids=req_ids,
            audio=tl.audio,
            sample_rate=tl.sample_rate,
            requests=requests,
            playback=playback,
            anomalies=anomalies,
            label=label or str(tl.meta.get("label") or tl.meta.get("source") or "run"),
        )

    @classmethod
    def from_keyframes(cls, frame: pd.DataFrame, *, fps: float, label: str = "run") -> RunSeries:
        """The series of one run's per-keyframe table (the columns of ``Timeline.to_pandas()``,
        as a dataset stores them): no audio, request spans from each request's keyframes."""
        names = [c for c in frame.columns if c.startswith("expression_")]
        keyframes = frame[column_names(len(names))].to_numpy(dtype=np.float32)
        media = frame["media_time"].to_numpy(dtype=np.float64)
        if "req_id" in frame:
            names, codes = np.unique(frame["req_id"].astype(str).to_numpy(), return_inverse=True)
        else:
            names, codes = np.array(["run"]), np.zeros(len(frame), dtype=np.int64)
        requests: list[tuple[str, float, float, str]] = []
        for k, name in enumerate(names.tolist()):
            mine = media[codes == k]
            if mine.size:
                requests.append((str(name), float(mine.min()), float(mine.max()) + 1.0 / fps, "complete"))
        requests.sort(key=lambda span: span[1])
        return cls(
            fps=float(fps),
            keyframes=keyframes,
            media_time=media,
            arrival=frame["arrival"].to_numpy(dtype=np.float64),
            latency=frame["latency"].to_numpy(dtype=np.float64),
            lateness=frame["lateness"].to_numpy(dtype=np.float64),
            keyframe_req=codes.astype(np.int32),
            req_ids=[str(n) for n in names.tolist()],
            requests=requests,
            label=label,
        )


def _arrival_to_media(arrival: np.ndarray, media: np.ndarray) -> Any:
    """A function from a time on the session's clock to the media time then arriving."""
    if not arrival.size:
        return lambda at: float(at)
    order = np.argsort(arrival, kind="stable")
    a, m = arrival[order], media[order]

    def convert(at: float) -> float:
        return float(np.interp(float(at), a, m)) if math.isfinite(float(at)) else float(m[-1])

    return convert


@dataclass(frozen=True)
class Tile:
    """One tile of one run: per track ``(t0, dt, raw, mins, maxs)`` (``maxs`` is ``mins``
    when ``raw``: the samples themselves), and the heatmap as ``(t0, dt, bytes)`` with
    ``E`` cells a column (0: no data; 1..255 the mean from ``-heat_limit`` to ``+heat_limit``).
    ``means``: the mean of each bucket of the keyframe tracks (None when they are raw), the
    line drawn inside a min/max band, which alone cannot tell a blink from a closed eye."""

    z: int
    index: int
    t0: float
    t1: float
    audio: tuple[float, float, bool, np.ndarray, np.ndarray] | None
    lines: tuple[float, float, bool, np.ndarray, np.ndarray]
    heat: tuple[float, float, np.ndarray] | None
    means: np.ndarray | None = None

    def buffers(self) -> tuple[dict[str, Any], list[bytes]]:
        """The tile as a widget message: its description (JSON) and its binary buffers,
        float32 little-endian for the tracks, uint8 for the heatmap."""
        meta: dict[str, Any] = {"z": self.z, "i": self.index, "t0": self.t0, "t1": self.t1}
        buffers: list[bytes] = []

        def put(arr: np.ndarray, dtype: str) -> int:
            buffers.append(np.ascontiguousarray(arr, dtype=dtype).tobytes())
            return len(buffers) - 1

        for name, track in (("audio", self.audio), ("lines", self.lines)):
            if track is None:
                continue
            t0, dt, raw, lo, hi = track
            meta[name] = {"t0": t0, "dt": dt, "raw": raw, "n": int(lo.shape[0]), "min": put(lo, "<f4"),
                          "max": put(lo, "<f4") if raw else put(hi, "<f4")}
            if raw:
                meta[name]["max"] = meta[name]["min"]
                buffers.pop()
        if self.means is not None:
            meta["lines"]["mean"] = put(self.means, "<f4")
        if self.heat is not None:
            t0, dt, cells = self.heat
            meta["heat"] = {"t0": t0, "dt": dt, "n": int(cells.shape[0]), "buffer": put(cells, "u1")}
        return meta, buffers

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self.buffers()[1])


class TimelinePyramid:
    """The pyramids of one run (see the module docstring): ``audio`` (or None), ``lines``
    (:data:`LINE_COLUMNS`), the heatmap's mean levels, the marks, and the tiles of any view."""

    def __init__(self, run: RunSeries) -> None:
        self.run = run
        self.fps = float(run.fps)
        n = int(run.keyframes.shape[0])
        media = np.asarray(run.media_time, dtype=np.float64)
        slots = np.rint(media * self.fps).astype(np.int64) if n else np.zeros(0, dtype=np.int64)
        first = int(slots.min()) if n else 0
        self.first_slot = min(first, 0)
        slots = slots - self.first_slot
        self.n_slots = int(slots.max()) + 1 if n else 0
        self.slot_start = self.first_slot / self.fps
        kf = np.asarray(run.keyframes, dtype=np.float32)
        self.gaps = run.gaps  # computed once: the cursor reads it too
        values = np.stack(
            [kf[:, SCALAR_CHANNELS[name]] for name in LINE_COLUMNS[:6]]
            + [np.asarray(run.latency) * 1000.0, np.asarray(run.lateness) * 1000.0, self.gaps * 1000.0,
               np.asarray(run.arrival)],
            axis=1,
        ).astype(np.float32) if n else np.zeros((0, len(LINE_COLUMNS)), dtype=np.float32)
        grid = np.full((self.n_slots, len(LINE_COLUMNS)), np.nan, dtype=np.float32)
        grid[slots] = values
        self.lines = SeriesPyramid(grid, self.fps, start=self.slot_start, base=_LINE_BASE)
        # the expression heatmap: raw frames, then means of 4, 8, 16 ... frames
        self.n_expression = run.n_expression
        # (zeros where no keyframe is: ``valid`` tells them apart)
        expr = np.zeros((self.n_slots, self.n_expression), dtype=np.float32)
        expr[slots] = kf[:, FIXED_COLUMNS:]
        self.expression = expr
        self.valid = np.zeros(self.n_slots, dtype=np.float32)
        self.valid[slots] = 1.0
        self.heat_levels: list[np.ndarray] = []
        if self.n_expression and self.n_slots > _HEAT_BASE:
            valid = self.valid
            sums = _pyramid.bucket_sum(expr, _HEAT_BASE)
            counts = _pyramid.bucket_sum(valid, _HEAT_BASE)
            while True:
                with np.errstate(invalid="ignore", divide="ignore"):
                    self.heat_levels.append((sums / counts[:, None]).astype(np.float32))
                if sums.shape[0] <= 1:
                    break
                sums, counts = _pyramid.halve_sum(sums), _pyramid.halve_sum(counts)
        finite = np.abs(kf[:, FIXED_COLUMNS:])
        self.heat_limit = float(finite.max()) if finite.size else 1.0
        self.heat_limit = self.heat_limit if math.isfinite(self.heat_limit) and self.heat_limit > 0 else 1.0
        self.audio = None
        if run.audio is not None and run.sample_rate and run.audio.shape[0]:
            self.audio = SeriesPyramid(np.asarray(run.audio), float(run.sample_rate), base=_AUDIO_BASE)
        # the cursor: keyframes in media-time order, each request's status
        self._status = {r: status for r, _, _, status in run.requests}
        self._order = np.argsort(media, kind="stable")
        self._sorted_media = media[self._order]
        self._rank = np.empty_like(self._order)
        self._rank[self._order] = np.arange(self._order.size)

    # ------------------------------------------------------------------ the run

    @property
    def duration(self) -> float:
        """Seconds of media time the run covers (its audio or its last keyframe)."""
        ends = [self.slot_start + self.n_slots / self.fps]
        if self.audio is not None:
            ends.append(self.audio.duration)
        ends += [end for _, _, end, _ in self.run.requests if math.isfinite(end)]
        return max(ends)

    @property
    def nbytes(self) -> int:
        """Bytes the pyramids hold (the line grid and the expression grid included)."""
        total = self.lines.nbytes + self.lines.values.nbytes + self.expression.nbytes + self.valid.nbytes
        total += sum(level.nbytes for level in self.heat_levels)
        if self.audio is not None:
            total += self.audio.nbytes
        return int(total)

    def ranges(self) -> list[tuple[float, float]]:
        """(min, max) of each of :data:`LINE_COLUMNS` over the whole run (NaN when empty)."""
        if self.lines.levels:
            lo, hi = self.lines.levels[-1]  # the top level: one bucket, the whole run
            return list(zip(lo[0].tolist(), hi[0].tolist()))
        lo, hi = _pyramid.bucket_minmax(self.lines.values, max(1, self.lines.n))  # a few frames
        if not lo.shape[0]:
            return [(math.nan, math.nan)] * len(LINE_COLUMNS)
        return list(zip(lo[0].tolist(), hi[0].tolist()))

    def audio_range(self) -> tuple[float, float]:
        if self.audio is None or not self.audio.levels:
            return (-1.0, 1.0)
        lo, hi = self.audio.levels[-1]
        return float(lo[0]), float(hi[0])

    # ------------------------------------------------------------------ tiles

    @staticmethod
    def tile_span(z: int, index: int) -> tuple[float, float]:
        width = TILE_SECONDS * (1 << int(z))
        return index * width, (index + 1) * width

    @staticmethod
    def levels_for(duration: float) -> int:
        """The coarsest tile level: one tile covers the whole run."""
        return max(0, math.ceil(math.log2(max(duration, TILE_SECONDS) / TILE_SECONDS)))

    def tile(self, z: int, index: int) -> Tile:
        """The tracks of tile ``(z, index)``: see the module docstring."""
        if z < 0 or index < 0:
            raise ValueError(f"a tile has z >= 0 and index >= 0, got ({z}, {index})")
        t0, t1 = self.tile_span(z, index)
        audio = None
        if self.audio is not None:
            audio = _span(self.audio, t0, t1)
        t_first, dt, raw, lo, hi = _span(self.lines, t0, t1)
        lines = (t_first, dt, raw, lo[:, :TILE_LINES], lo[:, :TILE_LINES] if raw else hi[:, :TILE_LINES])
        means = None if raw else self._line_means(t_first, dt, lo.shape[0])
        heat = self._heat(t0, t1) if self.n_expression else None
        return Tile(int(z), int(index), t0, t1, audio, lines, heat, means)

    def _line_means(self, t_first: float, dt: float, n: int) -> np.ndarray:
        """The mean of each of ``n`` buckets of ``dt`` seconds from ``t_first`` of the
        keyframe tracks (NaN for a bucket without a keyframe), from the slots themselves
        (the compiled core's bucket sums: time linear in the tile's keyframes, no memory kept)."""
        size = max(1, round(dt * self.fps))
        a = max(0, round((t_first - self.slot_start) * self.fps))
        part = self.lines.values[a : a + n * size, :TILE_LINES]
        finite = np.isfinite(part)
        sums = _pyramid.bucket_sum(np.where(finite, part, np.float32(0.0)), size)
        counts = _pyramid.bucket_sum(finite.astype(np.float32), size)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (sums / counts).astype(np.float32)

    def heat_means(self, t0: float, t1: float, columns: int) -> tuple[float, float, np.ndarray]:
        """The expression heatmap over ``[t0, t1)`` in at most about ``columns`` columns:
        ``(first column's start, column seconds, (n, E) float32 means)``, each column the
        mean of its frames (the frames themselves when they fit; NaN where there are none)."""
        frames = (t1 - t0) * self.fps
        if frames <= columns or not self.heat_levels:
            size, cells = 1, None
        else:
            level = max(0, math.ceil(math.log2(frames / columns / _HEAT_BASE)))
            level = min(level, len(self.heat_levels) - 1)
            size, cells = _HEAT_BASE << level, self.heat_levels[level]
        dt = size / self.fps
        i0 = max(0, math.floor((t0 - self.slot_start) / dt))
        count = self.n_slots if cells is None else cells.shape[0]
        i1 = min(count, max(i0, math.ceil((t1 - self.slot_start) / dt)))
        if cells is None:  # the frames themselves; slots without a keyframe have no data
            part = np.where(self.valid[i0:i1, None] > 0, self.expression[i0:i1], np.float32(np.nan))
        else:
            part = cells[i0:i1]
        return self.slot_start + i0 * dt, dt, part

    def _heat(self, t0: float, t1: float) -> tuple[float, float, np.ndarray]:
        start, dt, part = self.heat_means(t0, t1, HEAT_COLUMNS)
        q = np.zeros(part.shape, dtype=np.uint8)
        ok = np.isfinite(part)
        scaled = np.clip(part[ok] / self.heat_limit, -1.0, 1.0)
        q[ok] = (1 + np.rint((scaled + 1.0) * 127.0)).astype(np.uint8)
        return start, dt, q

    # ------------------------------------------------------------------ the cursor

    def keyframe_at(self, t: float) -> int:
        """The index of the keyframe nearest to media time ``t`` (-1 when there is none)."""
        media = self._sorted_media
        if not media.size:
            return -1
        k = int(np.searchsorted(media, t))
        if k >= media.size or (k > 0 and t - media[k - 1] <= media[k] - t):
            k -= 1
        return int(self._order[k])

    def step(self, index: int, steps: int) -> int:
        """The keyframe ``steps`` away from ``index`` in media-time order."""
        if index < 0 or not self._order.size:
            return -1
        position = int(self._rank[index]) + int(steps)
        return int(self._order[min(max(position, 0), self._order.size - 1)])

    def cursor(self, index: int) -> dict[str, Any]:
        """The values of every track at keyframe ``index`` (JSON-ready; times in s, ms where named)."""
        run = self.run
        if index < 0:
            return {"index": -1}
        kf = run.keyframes[index]

        def num(v: Any) -> float | None:
            v = float(v)
            return round(v, 6) if math.isfinite(v) else None

        values = {name: num(kf[SCALAR_CHANNELS[name]]) for name in LINE_COLUMNS[:6]}
        values["latency_ms"] = num(run.latency[index] * 1000.0)
        values["lateness_ms"] = num(run.lateness[index] * 1000.0)
        values["gap_ms"] = num(self.gaps[index] * 1000.0)
        reqs = run.keyframe_req
        req = run.req_ids[int(reqs[index])] if reqs is not None and index < reqs.shape[0] else ""
        status = self._status.get(req, "")
        return {
            "index": int(index),
            "time": num(run.media_time[index]),
            "arrival": num(run.arrival[index]),
            "req_id": req,
            "status": status,
            "values": values,
        }

    def audio_from(self, t: float, seconds: float) -> np.ndarray:
        """The run's int16 audio from media time ``t`` for ``seconds`` (empty without audio)."""
        if self.audio is None:
            return np.zeros(0, dtype=np.int16)
        rate = self.audio.rate
        i0 = min(max(0, int(t * rate)), self.audio.n)
        return np.asarray(self.audio.values[i0 : i0 + int(seconds * rate)], dtype=np.int16)

    # ------------------------------------------------------------------ marks

    def marks(self) -> tuple[np.ndarray, np.ndarray]:
        """Request spans ``(start, end, status code)`` and point marks ``(time, kind)``
        (kind 0: a playback state, 1: an anomaly), float32 (n, 3) and (m, 2)."""
        codes = {s: i for i, s in enumerate(STATUS_CODES)}
        spans = np.array([(s, e, codes.get(st, len(STATUS_CODES))) for _, s, e, st in self.run.requests],
                         dtype=np.float32).reshape(-1, 3)
        points = [(t, 0.0) for t, _, _ in self.run.playback] + [(t, 1.0) for t, _, _ in self.run.anomalies]
        return spans, np.array(points, dtype=np.float32).reshape(-1, 2)


def _span(pyramid: SeriesPyramid, t0: float, t1: float) -> tuple[float, float, bool, np.ndarray, np.ndarray]:
    """The buckets of ``pyramid`` over ``[t0, t1)`` drawn :data:`TILE_COLUMNS` wide, one more
    at each end: ``(first bucket's start, bucket seconds, raw, mins, maxs)``."""
    level = pyramid.level_for(t0, t1, TILE_COLUMNS)
    size = pyramid.bucket(level)
    dt = size / pyramid.rate
    count = pyramid.n if level < 0 else pyramid.levels[level][0].shape[0]
    i0 = min(count, max(0, math.floor((t0 - pyramid.start) / dt) - 1))
    i1 = min(count, max(i0, math.ceil((t1 - pyramid.start) / dt) + 1))
    if level < 0:
        raw = pyramid.values[i0:i1]
        if raw.dtype == np.int16:
            raw = raw.astype(np.float32) / np.float32(32768.0)
        raw = np.asarray(raw, dtype=np.float32)
        return pyramid.start + i0 * dt, dt, True, raw, raw
    lo, hi = pyramid.levels[level]
    return pyramid.start + i0 * dt, dt, False, lo[i0:i1], hi[i0:i1]


_CACHE: weakref.WeakKeyDictionary[Any, tuple[int, TimelinePyramid]] = weakref.WeakKeyDictionary()


def pyramid_of(timeline: Timeline) -> TimelinePyramid:
    """The :class:`TimelinePyramid` of ``timeline``, built on first use and kept while the
    Timeline lives and does not change (its ``version``)."""
    entry = _CACHE.get(timeline)
    if entry is not None and entry[0] == timeline.version:
        return entry[1]
    version = timeline.version
    built = TimelinePyramid(RunSeries.from_timeline(timeline))
    _CACHE[timeline] = (version, built)
    return built


def synthetic_timeline(seconds: float = 3600.0, *, fps: float = 25.0, sample_rate: int = 16000,
                       n_expression: int = 50, utterance: float = 60.0, seed: int = 0) -> Timeline:
    """A long run made up in a second or two, for trying the explorer and measuring it:
    speech-like audio (a 10 s clip repeated), keyframes that follow its loudness (jaw),
    blink (eyelids), sway (head) and move the expression (fast with the voice, slowly over minutes), one request per ``utterance``
    seconds streamed in 0.2 s chunks at real-time pace, a message per chunk arriving 80-120 ms
    after its audio (now and then 300 ms: a stall), the fourth request interrupted, and a
    few playback states and anomalies. Pacing ``"playback"``; ``meta["label"] == "synthetic"``."""
    from .audio import speech_like
    from .timeline import Timeline

    rng = np.random.default_rng(seed)
    total = int(seconds * sample_rate)
    clip = (speech_like(min(10.0, seconds), sample_rate, seed=seed + 7) * 32767).astype(np.int16)
    audio = np.tile(clip, total // clip.size + 1)[:total]
    n = round(seconds * fps)
    per = sample_rate / fps
    loud = _pyramid.bucket_minmax(audio[: int(n * per) // int(per) * int(per)], int(per))[1][:n]
    loud = np.pad(loud, (0, n - loud.shape[0]))
    t = np.arange(n) / fps
    kf = np.zeros((n, FIXED_COLUMNS + n_expression), dtype=np.float32)
    kf[:, SCALAR_CHANNELS["jaw_open"]] = 0.35 * np.clip(loud, 0, 1)
    blink = (np.sin(2 * np.pi * t / 3.7) > 0.985).astype(np.float32)
    kf[:, SCALAR_CHANNELS["eyelid_left"]] = 0.1 + 0.85 * blink
    kf[:, SCALAR_CHANNELS["eyelid_right"]] = 0.1 + 0.85 * blink
    kf[:, SCALAR_CHANNELS["head_pitch"]] = 0.05 * np.sin(2 * np.pi * t / 11.0)
    kf[:, SCALAR_CHANNELS["head_yaw"]] = 0.12 * np.sin(2 * np.pi * t / 17.0)
    kf[:, SCALAR_CHANNELS["head_roll"]] = 0.03 * np.sin(2 * np.pi * t / 23.0)
    phases = rng.uniform(0, 2 * np.pi, (2, n_expression))
    periods = rng.uniform(4.0, 40.0, n_expression)
    drift = rng.uniform(300.0, 1800.0, n_expression)  # slow moods, visible at the scale of the hour
    kf[:, FIXED_COLUMNS:] = (0.5 * np.sin(2 * np.pi * t[:, None] / periods + phases[0])
                             * np.clip(loud, 0.1, 1)[:, None]
                             + 0.4 * np.sin(2 * np.pi * t[:, None] / drift + phases[1])).astype(np.float32)
    tl = Timeline(fps, sample_rate=sample_rate, meta={"pacing": "playback", "label": "synthetic"})
    tl.audio = audio
    per_utt = round(utterance * fps)
    chunk = max(1, round(0.2 * fps))  # 0.2 s chunks, sent as their audio is captured
    for start in range(0, n, chunk):
        req = f"r{start // per_utt}"
        end = min(n, start + chunk)
        tl.add_audio_chunk(req, end / fps, int((end - start) * per))
    delays = 0.08 + 0.04 * rng.random(n // chunk + 1)
    delays[rng.random(delays.size) < 0.01] = 0.3
    starts = np.arange(0, n, chunk)
    ends = np.minimum(n, starts + chunk)
    # in order on one stream: a stalled message holds back the ones behind it
    arrivals = np.maximum.accumulate(ends / fps + delays[: starts.size])
    for k, start in enumerate(starts.tolist()):
        req = f"r{start // per_utt}"
        end = int(ends[k])
        last = end % per_utt == 0 or end == n
        tl.add_animation(kf[start:end], req_id=req, arrival=float(arrivals[k]), end=last)
        if start % per_utt == 0:
            tl.add_playback_state(req, "PLAYING", 0.0, at=start / fps + 0.1)
        if last:
            tl.add_playback_state(req, "IDLE", (end - start) / fps * 1000, at=end / fps + 0.15)
    if len(tl.req_ids) > 3:
        tl.set_request_status(tl.req_ids[3], "interrupted", at=3.5 * utterance)
    for k in range(1, int(seconds // 600) + 1):
        tl.add_anomaly("r?", "unknown_request", "a frame of a request never sent", at=k * 600.0 - 7.0)
    return tl
