"""Explorer: one run (or two) on a zoomable, linked time axis, answered from pyramids.

``avatar_nb.explore(timeline)`` (or ``explore(tl_a, tl_b)``, or ``Results.explore(run_id)``)
shows the waveform's min/max envelope, jaw, eyelids, head pose, the expression heatmap,
per-keyframe latency and lateness, inter-arrival gaps, request spans coloured by status,
playback states and anomalies, all on one axis of media time, drawn on canvas in the
browser (``static/explorer.js``, shipped in the package: no CDN). Wheel or pinch zooms,
drag pans, a click places the cursor (the face at that keyframe, every track's value,
and Play plays the audio from there); arrows step one keyframe, ``+``/``-`` zoom, ``0``
shows all.

What travels: the browser asks for tiles (:meth:`avatar_nb.timeline_pyramid.TimelinePyramid.tile`),
the kernel answers each from the run's pyramid with at most a min and a max per column
per track, as binary buffers (float32 little-endian; the heatmap as bytes), never JSON
lists. The browser keeps the tiles it has and prefetches the neighbours of the view, so
pans and zooms within them redraw without asking the kernel.

Messages (``content["type"]``), browser to kernel: ``tiles`` (``req``, ``tiles``: a list
of ``[run, z, i]``), ```cursor`` (``req``, ``t`` or ``index`` and ``step``), ``audio``
(``req``, ``t``, ``seconds``). The kernel answers with the same type and ``req``: tiles
as ``{"tiles": [meta...]}`` with their buffers in order (each meta names its buffers by
position in the message), the cursor as each run's values and face SVG at the cursor's keyframe and its
neighbours (so arrow steps among them need no round trip), the audio as one
int16 buffer.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..plots import face_svg  # imported with the view, not at the first click (a fifth of a second)
from ..timeline import Timeline
from ..timeline_pyramid import (
    HEAT_COLUMNS,
    LINE_COLUMNS,
    STATUS_CODES,
    TILE_COLUMNS,
    TILE_LINES,
    TILE_SECONDS,
    RunSeries,
    TimelinePyramid,
    pyramid_of,
)
from ._util import finite_number

__all__ = ["Explorer", "explore"]

_STATIC = Path(__file__).resolve().parent / "static"
_MAX_AUDIO_SECONDS = 30.0
_FACE_SIZE = 150
CURSOR_NEIGHBOURS = 8
"""Keyframes either side of the cursor sent with it: arrow steps within them need no round trip."""

# the tracks drawn, top to bottom: (name, label, unit, columns of LINE_COLUMNS or a kind)
TRACKS: tuple[dict[str, Any], ...] = (
    {"name": "audio", "label": "audio", "unit": "", "kind": "audio"},
    {"name": "jaw", "label": "jaw open", "unit": "rad", "kind": "lines", "columns": [0], "names": ["jaw"]},
    {"name": "eyelids", "label": "eyelids", "unit": "", "kind": "lines", "columns": [1, 2], "names": ["left", "right"]},
    {"name": "head", "label": "head", "unit": "rad", "kind": "lines", "columns": [3, 4, 5],
     "names": ["pitch", "yaw", "roll"]},
    {"name": "expression", "label": "expression", "unit": "", "kind": "heat"},
    {"name": "latency", "label": "latency", "unit": "ms", "kind": "lines", "columns": [6], "names": ["latency"]},
    {"name": "lateness", "label": "lateness", "unit": "ms", "kind": "lines", "columns": [7], "names": ["lateness"]},
    {"name": "gaps", "label": "inter-arrival", "unit": "ms", "kind": "lines", "columns": [8], "names": ["gap"]},
    {"name": "requests", "label": "requests", "unit": "", "kind": "spans"},
    {"name": "marks", "label": "events", "unit": "", "kind": "points"},
)


class Explorer(anywidget.AnyWidget):
    """The explorer of one or two runs (see the module docstring). ``runs``: the
    :class:`~avatar_nb.timeline_pyramid.TimelinePyramid` of each; ``height`` in pixels.

    Kernel side, testable without a browser: :meth:`handle` answers one browser message
    (what ``on_msg`` does) and returns the reply and its buffers."""

    _esm = (_STATIC / "explorer.js").read_text(encoding="utf-8")
    _css = (_STATIC / "explorer.css").read_text(encoding="utf-8")

    spec = traitlets.Dict().tag(sync=True)
    marks = traitlets.Bytes(b"").tag(sync=True)
    height = traitlets.Int(560).tag(sync=True)

    def __init__(self, runs: list[TimelinePyramid], *, labels: list[str] | None = None, height: int = 560) -> None:
        if not 1 <= len(runs) <= 2:
            raise ValueError(f"the explorer shows one or two runs, got {len(runs)}")
        self.runs = list(runs)
        names = list(labels) if labels is not None else [p.run.label for p in self.runs]
        if len(names) != len(self.runs):
            raise ValueError(f"{len(names)} labels for {len(self.runs)} runs")
        duration = max([p.duration for p in self.runs] + [TILE_SECONDS])
        marks, mark_meta = [], []
        offset = 0
        for p in self.runs:
            spans, points = p.marks()
            blob = spans.astype("<f4").tobytes() + points.astype("<f4").tobytes()
            mark_meta.append({"offset": offset, "spans": int(spans.shape[0]), "points": int(points.shape[0])})
            marks.append(blob)
            offset += len(blob)
        spec = {
            "duration": duration,
            "tile_seconds": TILE_SECONDS,
            "tile_columns": TILE_COLUMNS,
            "heat_columns": HEAT_COLUMNS,
            "z_max": TimelinePyramid.levels_for(duration),
            "tracks": [dict(t) for t in TRACKS],
            "lines": list(LINE_COLUMNS[:TILE_LINES]),
            "statuses": list(STATUS_CODES),
            "runs": [
                {
                    "label": str(names[k]),
                    "fps": p.fps,
                    "sample_rate": p.run.sample_rate if p.audio is not None else None,
                    "has_audio": p.audio is not None,
                    "n_expression": p.n_expression,
                    "heat_limit": p.heat_limit,
                    "keyframes": int(p.run.keyframes.shape[0]),
                    "ranges": [_finite_pair(lo, hi) for lo, hi in p.ranges()],
                    "audio_range": _finite_pair(*p.audio_range()),
                    "marks": mark_meta[k],
                }
                for k, p in enumerate(self.runs)
            ],
        }
        super().__init__(spec=spec, marks=b"".join(marks), height=int(height))
        self.bytes_sent = 0
        self.messages = 0
        self.on_msg(self._on_browser_msg)

    # ------------------------------------------------------------------ messages

    def _on_browser_msg(self, _widget: Any, content: Any, buffers: list[Any] | None) -> None:
        reply, out = self.handle(content)
        if reply is not None:
            self.bytes_sent += sum(len(b) for b in out)
            self.messages += 1
            self.send(reply, buffers=out)

    def handle(self, content: Any) -> tuple[dict[str, Any] | None, list[bytes]]:
        """The reply to one browser message and its binary buffers; ``(None, [])`` for a
        message it does not know or whose numbers are not what the browser sends (checked
        here: a garbled message is ignored, never an exception in the kernel)."""
        if not isinstance(content, dict):
            return None, []
        kind = content.get("type")
        req = content.get("req") if finite_number(content.get("req")) is not None else None
        if kind == "tiles":
            entries = content.get("tiles")
            if not isinstance(entries, list):
                return None, []
            metas, buffers = [], []
            for entry in entries[:64]:
                tile = self._tile_address(entry)
                if tile is None:
                    continue
                run, z, i = tile
                meta, bufs = self.runs[run].tile(z, i).buffers()
                for part in ("audio", "lines"):
                    for key in ("min", "max", "mean"):
                        if key in meta.get(part, ()):
                            meta[part][key] += len(buffers)
                if "heat" in meta:
                    meta["heat"]["buffer"] += len(buffers)
                meta["run"] = run
                metas.append(meta)
                buffers.extend(bufs)
            return {"type": "tiles", "req": req, "tiles": metas}, buffers
        if kind == "cursor":
            asked = self._cursor_request(content)
            if asked is None:
                return None, []
            return {"type": "cursor", "req": req, **self.cursor(asked)}, []
        if kind == "audio":
            t = finite_number(content.get("t", 0.0))
            seconds = finite_number(content.get("seconds", 10.0))
            run = _whole(content.get("run", 0), 0, len(self.runs) - 1)
            if t is None or seconds is None or seconds <= 0 or run is None:
                return None, []
            p = self.runs[run]
            pcm = p.audio_from(max(0.0, t), min(seconds, _MAX_AUDIO_SECONDS))
            return ({"type": "audio", "req": req, "t": t, "sample_rate": p.run.sample_rate, "n": int(pcm.shape[0])},
                    [pcm.astype("<i2").tobytes()])
        return None, []

    def _tile_address(self, entry: Any) -> tuple[int, int, int] | None:
        """``[run, z, i]`` of a tile the runs have, else None."""
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            return None
        run = _whole(entry[0], 0, len(self.runs) - 1)
        z = _whole(entry[1], 0, self.spec["z_max"])
        if run is None or z is None:
            return None
        last = max(0, math.ceil(self.spec["duration"] / (TILE_SECONDS * 2**z)) - 1)
        i = _whole(entry[2], 0, last)
        return None if i is None else (run, z, i)

    def _cursor_request(self, content: dict[str, Any]) -> dict[str, Any] | None:
        """The cursor message's numbers, checked: ``t``, or ``index`` and ``step``, and
        ``neighbours``; None when one is not a number in its range."""
        n = int(self.runs[0].run.keyframes.shape[0])
        asked: dict[str, Any] = {}
        if content.get("index") is not None and content.get("step") is not None:
            asked["index"] = _whole(content["index"], 0, max(0, n - 1))
            asked["step"] = _whole(content["step"], -n, n)
            if asked["index"] is None or asked["step"] is None:
                return None
        else:
            asked["t"] = finite_number(content.get("t", 0.0))
            if asked["t"] is None:
                return None
        if content.get("neighbours") is not None:
            asked["neighbours"] = _whole(content["neighbours"], 0, 4 * CURSOR_NEIGHBOURS)
            if asked["neighbours"] is None:
                return None
        return asked

    def cursor(self, content: dict[str, Any]) -> dict[str, Any]:
        """The cursor's keyframe and its neighbours: nearest to ``t``, or ``step`` keyframes
        from run 0's keyframe ``index``; then ``neighbours`` (default :data:`CURSOR_NEIGHBOURS`) keyframes either side
        (run 0's media-time order; another run takes its keyframe nearest the same time). ``frames``: a
        list of each run's values and face SVG per keyframe, ``at`` the cursor's position in it."""
        first = self.runs[0]
        if content.get("index") is not None and content.get("step") is not None:
            center = first.step(int(content["index"]), int(content["step"]))
            t = float(first.run.media_time[center]) if center >= 0 else 0.0
        else:
            t = float(content.get("t", 0.0))
            center = first.keyframe_at(t)
        if center < 0:
            return {"at": 0, "frames": [[self._cursor_entry(p, p.keyframe_at(t)) for p in self.runs]]}
        span = min(max(int(content.get("neighbours", CURSOR_NEIGHBOURS)), 0), 4 * CURSOR_NEIGHBOURS)
        indices = list(dict.fromkeys(first.step(center, k) for k in range(-span, span + 1)))
        frames = []
        for index in indices:
            # another run: the keyframe as far from the cursor's time as run 0's is from its own
            at = t + float(first.run.media_time[index] - first.run.media_time[center])
            frames.append([self._cursor_entry(first, index)] +
                          [self._cursor_entry(p, p.keyframe_at(at)) for p in self.runs[1:]])
        return {"at": indices.index(center), "frames": frames}

    @staticmethod
    def _cursor_entry(p: TimelinePyramid, index: int) -> dict[str, Any]:
        entry = p.cursor(index)
        entry["svg"] = face_svg(p.run.keyframes[index], size=_FACE_SIZE) if index >= 0 else ""
        return entry


def _whole(value: Any, lo: int, hi: int) -> int | None:
    """``value`` as an int if it is a whole number in ``[lo, hi]``, else None."""
    number = finite_number(value)
    if number is None or number != int(number) or not lo <= number <= hi:
        return None
    return int(number)


def _finite_pair(lo: float, hi: float) -> list[float]:
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi - lo < 1e-9:
        pad = abs(hi) * 0.1 or 0.5
        return [lo - pad, hi + pad]
    pad = (hi - lo) * 0.06
    return [lo - pad, hi + pad]


def _pyramid(run: Any) -> TimelinePyramid:
    if isinstance(run, TimelinePyramid):
        return run
    if isinstance(run, RunSeries):
        return TimelinePyramid(run)
    if isinstance(run, Timeline):
        return pyramid_of(run)
    raise TypeError(f"explore() takes Timelines (or RunSeries), got {type(run).__name__}")


def explore(*runs: Any, labels: Any = None, height: int = 560) -> Explorer:
    """One run, or two on one time axis, in the explorer (see :mod:`avatar_nb.widgets.explorer`).

    ``runs``: one or two :class:`~avatar_nb.timeline.Timeline` (or
    :class:`~avatar_nb.timeline_pyramid.RunSeries`); ``labels``: a name for each run
    (default: ``meta["label"]``, ``"A"``/``"B"`` for two). The pyramid of a Timeline is
    built once (well under a second for an hour) and kept with it while it does not change.
    """
    if not runs:
        raise TypeError("explore() needs a Timeline to show")
    pyramids = [_pyramid(r) for r in runs]
    if labels is None:
        labels = [p.run.label for p in pyramids]
        if len(pyramids) == 2 and labels[0] == labels[1]:
            labels = [f"A ({labels[0]})", f"B ({labels[1]})"]
    return Explorer(pyramids, labels=[str(x) for x in labels], height=height)
