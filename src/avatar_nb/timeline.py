"""Timeline: everything a run produced, as numpy arrays with their timing.

A :class:`Timeline` is filled while a session streams (``add_audio_chunk`` when a chunk
is sent, ``add_animation`` when keyframes arrive) and is then the object every view,
metric and file works on. Appends are cheap (lists of blocks); the arrays are built on
first access and cached until the next append, so a live view can poll ``version`` and
re-read them at 10 Hz without slowing the stream.

Times are seconds on the monotonic clock, relative to ``t0`` = the moment the first
audio chunk was sent. Media time is where a keyframe sits in the audio: the start of
its utterance's audio plus its index within the utterance divided by ``fps``.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._pcm import FLAME_FIXED_COLUMNS

__all__ = ["Timeline", "CHANNELS", "SCALAR_CHANNELS"]

_FORMAT_VERSION = 1

CHANNELS: dict[str, slice] = {
    "translation": slice(0, 3),
    "rotation": slice(3, 6),
    "neck_pose": slice(6, 9),
    "jaw_pose": slice(9, 12),
    "eye_pose": slice(12, 18),
    "eye_lid": slice(18, 20),
}
"""Multi-column FLAME channels and their columns (``expression`` is 20 onward)."""

SCALAR_CHANNELS: dict[str, int] = {
    "jaw_open": 9,
    "eyelid_left": 18,
    "eyelid_right": 19,
    "head_pitch": 3,
    "head_yaw": 4,
    "head_roll": 5,
}
"""Single-column views with readable names."""


class Timeline:
    """FLAME keyframes of a run with their media and arrival times.

    Parameters: ``fps`` (keyframe rate, for media time), ``sample_rate`` and ``audio``
    (the mono s16le audio that was sent, as bytes or an int16 array; optional, used by
    the waveform views), ``meta`` (a JSON-serialisable dict saved with the timeline).
    """

    def __init__(
        self,
        fps: float = 25.0,
        *,
        sample_rate: int | None = None,
        audio: bytes | np.ndarray | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.version = 0
        self._cache: dict[str, Any] = {}
        self._fps = _check_fps(fps)
        self._sample_rate = _check_sample_rate(sample_rate)
        self.meta: dict[str, Any] = dict(meta or {})
        self.audio = None if audio is None else _as_int16(audio)
        self.errors: list[str] = []
        self.req_ids: list[str] = []
        self._req_index: dict[str, int] = {}
        # append-only storage
        self._blocks: list[np.ndarray] = []
        self._msg_arrival: list[float] = []
        self._msg_count: list[int] = []
        self._msg_req: list[int] = []
        self._msg_end: list[bool] = []
        self._chunk_sent: list[float] = []
        self._chunk_samples: list[int] = []
        self._chunk_req: list[int] = []
        self._width: int | None = None
        self._ended: set[int] = set()

    @property
    def fps(self) -> float:
        """Keyframe rate used for media time (setting it recomputes the derived arrays)."""
        return self._fps

    @fps.setter
    def fps(self, value: float) -> None:
        self._fps = _check_fps(value)
        self._changed()

    @property
    def sample_rate(self) -> int | None:
        """Sample rate (Hz) of the audio sent, for utterance start times and durations."""
        return self._sample_rate

    @sample_rate.setter
    def sample_rate(self, value: int | None) -> None:
        self._sample_rate = _check_sample_rate(value)
        self._changed()

    # ------------------------------------------------------------------ filling

    def _req(self, req_id: str) -> int:
        index = self._req_index.get(req_id)
        if index is None:
            index = self._req_index[req_id] = len(self.req_ids)
            self.req_ids.append(req_id)
        return index

    def _changed(self) -> None:
        self.version += 1
        self._cache.clear()

    def add_audio_chunk(self, req_id: str, sent_at: float, n_samples: int) -> None:
        """Record that ``n_samples`` of audio for ``req_id`` were sent at ``sent_at``."""
        self._chunk_req.append(self._req(req_id))
        self._chunk_sent.append(float(sent_at))
        self._chunk_samples.append(int(n_samples))
        self._changed()

    def add_animation(self, keyframes: np.ndarray, *, req_id: str, arrival: float, end: bool) -> None:
        """Record one animation message: its keyframes (k, 20 + E), request, arrival, end flag.

        Raises ``ValueError`` when E differs from earlier keyframes (nothing is added then).
        """
        kf = np.asarray(keyframes, dtype=np.float32)
        if kf.ndim != 2 or kf.shape[1] < FLAME_FIXED_COLUMNS:
            raise ValueError(f"keyframes must have shape (k, {FLAME_FIXED_COLUMNS} + E), got {kf.shape}")
        if kf.shape[0]:
            if self._width is None:
                self._width = kf.shape[1]
            elif kf.shape[1] != self._width:
                raise ValueError(
                    f"keyframes have {kf.shape[1] - FLAME_FIXED_COLUMNS} expression coefficients, "
                    f"earlier ones have {self._width - FLAME_FIXED_COLUMNS}"
                )
            self._blocks.append(kf)
        index = self._req(req_id)
        self._msg_arrival.append(float(arrival))
        self._msg_count.append(int(kf.shape[0]))
        self._msg_req.append(index)
        self._msg_end.append(bool(end))
        if end:
            self._ended.add(index)
        self._changed()

    def add_error(self, message: str) -> None:
        """Record an error that happened during the run (shown by views, saved to disk)."""
        self.errors.append(str(message))
        self._changed()

    # ------------------------------------------------------------------ arrays

    def _cached(self, key: str, build: Any) -> Any:
        # Each entry remembers the version it was built from, so a value built while
        # another thread appended (a session filling the timeline from animate_sync's
        # worker while a view reads it) is never served as current afterwards.
        entry = self._cache.get(key)
        version = self.version
        if entry is not None and entry[0] == version:
            return entry[1]
        value = build()
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
        self._cache[key] = (version, value)
        return value

    @property
    def keyframes(self) -> np.ndarray:
        """(n, 20 + E) float32 keyframes in arrival order (read-only)."""

        def build() -> np.ndarray:
            blocks = self._blocks
            count = len(blocks)
            if not count:
                return np.zeros((0, self._width or FLAME_FIXED_COLUMNS), dtype=np.float32)
            if count > 1:
                # merge in place: a slice assignment keeps blocks appended meanwhile
                blocks[:count] = [np.concatenate(blocks[:count], axis=0)]
            return blocks[0]

        return self._cached("keyframes", build)

    @property
    def n_keyframes(self) -> int:
        return int(sum(self._msg_count))

    @property
    def n_expression(self) -> int:
        return (self._width or FLAME_FIXED_COLUMNS) - FLAME_FIXED_COLUMNS

    @property
    def message_arrival(self) -> np.ndarray:
        return self._cached("message_arrival", lambda: np.asarray(self._msg_arrival, dtype=np.float64))

    @property
    def message_keyframes(self) -> np.ndarray:
        return self._cached("message_keyframes", lambda: np.asarray(self._msg_count, dtype=np.int32))

    @property
    def message_req(self) -> np.ndarray:
        return self._cached("message_req", lambda: np.asarray(self._msg_req, dtype=np.int32))

    @property
    def message_end(self) -> np.ndarray:
        return self._cached("message_end", lambda: np.asarray(self._msg_end, dtype=bool))

    @property
    def chunk_sent_at(self) -> np.ndarray:
        return self._cached("chunk_sent_at", lambda: np.asarray(self._chunk_sent, dtype=np.float64))

    @property
    def chunk_samples(self) -> np.ndarray:
        return self._cached("chunk_samples", lambda: np.asarray(self._chunk_samples, dtype=np.int64))

    @property
    def chunk_req(self) -> np.ndarray:
        return self._cached("chunk_req", lambda: np.asarray(self._chunk_req, dtype=np.int32))

    @property
    def arrival(self) -> np.ndarray:
        """(n,) arrival time of the message that carried each keyframe."""
        return self._cached("arrival", lambda: np.repeat(self.message_arrival, self.message_keyframes))

    @property
    def keyframe_req(self) -> np.ndarray:
        """(n,) index into ``req_ids`` of each keyframe's request."""
        return self._cached("keyframe_req", lambda: np.repeat(self.message_req, self.message_keyframes))

    @property
    def utterance_start(self) -> np.ndarray:
        """(u,) media time (s) at which each request's audio starts, in ``req_ids`` order.

        Audio of successive requests is laid end to end: a request starts where the audio
        sent before its first chunk ends. Without a sample rate, or for a request with no
        recorded audio, the end of the previous request's keyframes is used instead.
        """

        def build() -> np.ndarray:
            n_req = len(self.req_ids)
            starts = np.full(n_req, np.nan)
            if self.sample_rate and self._chunk_samples:
                samples = self.chunk_samples
                before = np.concatenate(([0], np.cumsum(samples)[:-1]))
                reqs = self.chunk_req
                for index in range(n_req):
                    hits = np.flatnonzero(reqs == index)
                    if hits.size:
                        starts[index] = before[hits[0]] / self.sample_rate
            # fall back on keyframe counts where no audio was recorded
            counts = np.bincount(self.keyframe_req, minlength=n_req) if n_req else np.zeros(0)
            position = 0.0
            for index in range(n_req):
                if np.isnan(starts[index]):
                    starts[index] = position
                position = max(position, starts[index] + counts[index] / self.fps)
            return starts

        return self._cached("utterance_start", build)

    @property
    def media_time(self) -> np.ndarray:
        """(n,) seconds into the audio that each keyframe animates."""

        def build() -> np.ndarray:
            reqs = self.keyframe_req
            n = reqs.shape[0]
            if n == 0:
                return np.zeros(0)
            # index of each keyframe within its request
            order = np.argsort(reqs, kind="stable")
            sorted_reqs = reqs[order]
            first = np.searchsorted(sorted_reqs, sorted_reqs, side="left")
            within = np.empty(n, dtype=np.int64)
            within[order] = np.arange(n) - first
            return self.utterance_start[reqs] + within / self.fps

        return self._cached("media_time", build)

    @property
    def lateness(self) -> np.ndarray:
        """(n,) arrival minus media time: how far behind real-time playback each keyframe came."""
        return self._cached("lateness", lambda: self.arrival - self.media_time)

    @property
    def inter_arrival(self) -> np.ndarray:
        """Gaps between successive animation messages that carried keyframes (s)."""

        def build() -> np.ndarray:
            arr = self.message_arrival[self.message_keyframes > 0]
            return np.diff(arr)

        return self._cached("inter_arrival", build)

    @property
    def jitter(self) -> float:
        """Standard deviation of ``inter_arrival`` (s); nan with fewer than two gaps."""
        gaps = self.inter_arrival
        return float(np.std(gaps)) if gaps.size >= 2 else math.nan

    @property
    def first_frame_latency(self) -> float:
        """Seconds from the first audio sent to the first keyframe received (nan if none)."""
        arrival = self.arrival
        return float(arrival[0]) if arrival.size else math.nan

    @property
    def audio_duration(self) -> float:
        """Seconds of audio sent (from the chunk log, else from ``audio``), 0 when unknown."""
        if self.sample_rate:
            if self._chunk_samples:
                return float(sum(self._chunk_samples)) / self.sample_rate
            if self.audio is not None:
                return self.audio.shape[0] / self.sample_rate
        return 0.0

    @property
    def duration(self) -> float:
        """Seconds of animation (keyframes / fps)."""
        return self.n_keyframes / self.fps

    @property
    def real_time_factor(self) -> float:
        """Last arrival divided by the audio duration: ~1 when paced, < 1 when faster."""
        arrival = self.arrival
        audio = self.audio_duration or self.duration
        if not arrival.size or audio <= 0:
            return math.nan
        return float(arrival[-1]) / audio

    @property
    def complete(self) -> bool:
        """True when every request received a message with ``end=True``."""
        return bool(self.req_ids) and len(self._ended) == len(self.req_ids)

    # ------------------------------------------------------------------ channels

    @property
    def channel_names(self) -> list[str]:
        return [*CHANNELS, "expression", *SCALAR_CHANNELS]

    def channel(self, name: str) -> np.ndarray:
        """A named FLAME channel: 2-D for ``translation`` .. ``expression``, 1-D for scalars."""
        kf = self.keyframes
        if name in CHANNELS:
            return kf[:, CHANNELS[name]]
        if name == "expression":
            return kf[:, FLAME_FIXED_COLUMNS:]
        if name in SCALAR_CHANNELS:
            return kf[:, SCALAR_CHANNELS[name]]
        raise KeyError(f"unknown channel {name!r}; known: {', '.join(self.channel_names)}")

    def __getitem__(self, name: str) -> np.ndarray:
        return self.channel(name)

    def __getattr__(self, name: str) -> np.ndarray:
        # scalar channels read as attributes: tl.jaw_open, tl.head_yaw, ...
        if name in SCALAR_CHANNELS or name in CHANNELS or name == "expression":
            return self.channel(name)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __len__(self) -> int:
        return self.n_keyframes

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.keyframes)

    def audio_samples(self) -> np.ndarray | None:
        """The sent audio as float32 in [-1, 1), or None."""
        return None if self.audio is None else self.audio.astype(np.float32) / 32768.0

    # ------------------------------------------------------------------ summary and display

    def summary(self) -> dict[str, Any]:
        """The headline figures as a dict (JSON-serialisable)."""
        lateness = self.lateness

        def f(value: float) -> float | None:
            return None if value is None or not math.isfinite(value) else round(float(value), 6)

        return {
            "keyframes": self.n_keyframes,
            "messages": len(self._msg_arrival),
            "requests": len(self.req_ids),
            "expression_dims": self.n_expression,
            "fps": self.fps,
            "sample_rate": self.sample_rate,
            "audio_seconds": f(self.audio_duration),
            "animation_seconds": f(self.duration),
            "first_frame_latency": f(self.first_frame_latency),
            "jitter": f(self.jitter),
            "real_time_factor": f(self.real_time_factor),
            "lateness_p50": f(float(np.percentile(lateness, 50))) if lateness.size else None,
            "lateness_p99": f(float(np.percentile(lateness, 99))) if lateness.size else None,
            "complete": self.complete,
            "errors": len(self.errors),
        }

    @staticmethod
    def _ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value * 1000:.1f} ms"

    def __repr__(self) -> str:
        s = self.summary()
        audio = "n/a" if s["audio_seconds"] is None else f"{s['audio_seconds']:.2f} s audio"
        rtf = "n/a" if s["real_time_factor"] is None else f"{s['real_time_factor']:.2f}"
        state = "complete" if s["complete"] else "incomplete"
        errors = f", {s['errors']} error(s)" if s["errors"] else ""
        return (
            f"<Timeline {s['keyframes']} keyframes (E={s['expression_dims']}) @ {self.fps:g} fps, "
            f"{audio}, {s['requests']} request(s), first frame {self._ms(s['first_frame_latency'])}, "
            f"jitter {self._ms(s['jitter'])}, RTF {rtf}, {state}{errors}>"
        )

    def _repr_html_(self) -> str:
        s = self.summary()
        rows = [
            ("keyframes", f"{s['keyframes']} (E = {s['expression_dims']})"),
            ("frame rate", f"{self.fps:g} fps"),
            ("audio", "n/a" if s["audio_seconds"] is None else f"{s['audio_seconds']:.2f} s @ {self.sample_rate} Hz"),
            ("requests", str(s["requests"])),
            ("first-frame latency", self._ms(s["first_frame_latency"])),
            ("inter-arrival jitter", self._ms(s["jitter"])),
            ("lateness p50 / p99", f"{self._ms(s['lateness_p50'])} / {self._ms(s['lateness_p99'])}"),
            ("real-time factor", "n/a" if s["real_time_factor"] is None else f"{s['real_time_factor']:.3f}"),
            ("complete", "yes" if s["complete"] else "no"),
        ]
        body = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        errors = "".join(f"<li>{html.escape(e)}</li>" for e in self.errors[:10])
        if errors:
            errors = f"<div><b>errors</b><ul>{errors}</ul></div>"
        return f"<div><b>Timeline</b><table>{body}</table>{errors}</div>"

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path) -> Path:
        """Write the timeline to ``path`` (``.npz``); :meth:`load` gives it back exactly."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        header = {
            "format": _FORMAT_VERSION,
            "fps": self.fps,
            "sample_rate": self.sample_rate,
            "meta": self.meta,
            "errors": self.errors,
            "req_ids": self.req_ids,
            "width": self._width,
            "ended": sorted(self._ended),
        }
        arrays = {
            "header": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8),
            "keyframes": np.asarray(self.keyframes),
            "message_arrival": self.message_arrival,
            "message_keyframes": self.message_keyframes,
            "message_req": self.message_req,
            "message_end": self.message_end,
            "chunk_sent_at": self.chunk_sent_at,
            "chunk_samples": self.chunk_samples,
            "chunk_req": self.chunk_req,
        }
        if self.audio is not None:
            arrays["audio"] = self.audio
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Timeline:
        """Read a timeline written by :meth:`save`."""
        path = Path(path)
        with np.load(path, allow_pickle=False) as data:
            try:
                header = json.loads(bytes(data["header"]).decode("utf-8"))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{path} is not an avatar_nb timeline file: {exc}") from None
            if header.get("format") != _FORMAT_VERSION:
                raise ValueError(f"{path} has timeline format {header.get('format')!r}; this version reads {_FORMAT_VERSION}")
            tl = cls(header["fps"], sample_rate=header["sample_rate"], meta=header["meta"])
            tl.audio = data["audio"].copy() if "audio" in data.files else None
            tl.errors = list(header["errors"])
            tl.req_ids = list(header["req_ids"])
            tl._req_index = {r: i for i, r in enumerate(tl.req_ids)}
            tl._width = header["width"]
            tl._ended = set(header["ended"])
            keyframes = data["keyframes"]
            tl._blocks = [keyframes.copy()] if keyframes.shape[0] else []
            tl._msg_arrival = data["message_arrival"].tolist()
            tl._msg_count = data["message_keyframes"].tolist()
            tl._msg_req = data["message_req"].tolist()
            tl._msg_end = data["message_end"].tolist()
            tl._chunk_sent = data["chunk_sent_at"].tolist()
            tl._chunk_samples = data["chunk_samples"].tolist()
            tl._chunk_req = data["chunk_req"].tolist()
        tl._changed()
        return tl


def _check_fps(fps: Any) -> float:
    if isinstance(fps, bool) or not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return float(fps)


def _check_sample_rate(sample_rate: Any) -> int | None:
    if sample_rate is None:
        return None
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int or None, got {sample_rate!r}")
    return int(sample_rate)


def _as_int16(audio: bytes | np.ndarray) -> np.ndarray:
    if isinstance(audio, (bytes, bytearray, memoryview)):
        if len(audio) % 2:
            raise ValueError(f"audio has {len(audio)} bytes, an odd number; expected mono s16le")
        return np.frombuffer(bytes(audio), dtype="<i2").astype(np.int16)
    arr = np.asarray(audio)
    if arr.dtype != np.int16 or arr.ndim != 1:
        raise ValueError(f"audio must be s16le bytes or a 1-D int16 array, got {arr.dtype} {arr.shape}")
    return arr.copy()
