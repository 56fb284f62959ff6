"""Timeline: everything a run produced, as numpy arrays with their timing.

A :class:`Timeline` is filled while a session streams (``add_audio_chunk`` when a chunk
is sent, ``add_animation`` when keyframes arrive, ``set_request_status``,
``add_playback_state`` and ``add_anomaly`` as the session learns about its requests)
and is then the object every view, metric, table and file works on. Appends are cheap
(lists of blocks); the arrays are built on first access and cached until the next
append, so a live view can poll ``version`` and re-read them at 10 Hz without slowing
the stream.

Times
    Every time is in seconds on the monotonic clock, relative to the session's origin:
    the moment it started streaming (under ``"capture"`` pacing the first chunk leaves
    one chunk after it, when its audio would have been captured). Milliseconds appear
    only in text for people (``repr``, HTML).

Media time
    Where a keyframe sits in the audio: the start of its request's audio (the audio of
    successive requests laid end to end) plus its index within the request over ``fps``.

Timing figures (see :attr:`Timeline.latency`, :attr:`Timeline.lateness`, :meth:`Timeline.summary`)
    ``latency``: a keyframe's arrival minus the moment the audio of its whole frame had
    been sent (the service's processing delay; meaningful under every pacing).
    ``lateness``: a keyframe's arrival minus its media time, i.e. when a player started
    with the stream would show it (``NaN`` under ``"fast"`` pacing, where it means nothing).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import flame as _flame
from . import tidy, timeline_file, timeline_text
from .flame import DEFAULT_FPS, EXPRESSION, FIXED_COLUMNS, channel_names
from .timeline_record import REQUEST_STATUSES, TimelineRecord
from .timeline_text import ms_text

if TYPE_CHECKING:  # pandas and xarray load only when a table is asked for
    import pandas as pd
    import xarray as xr

__all__ = ["REQUEST_STATUSES", "Timeline", "TimelineRecord", "ms_text"]

_CHANNELS = _flame.CHANNELS
_SCALAR_CHANNELS = _flame.SCALAR_CHANNELS
# names this module re-exported from avatar_nb.flame, their home: still readable here,
# with a DeprecationWarning, for one release
_MOVED_TO_FLAME = ("CHANNELS", "SCALAR_CHANNELS")

_PERCENTILES = (50, 90, 99)


class Timeline:
    """FLAME keyframes of a run with their media and arrival times, per request.

    Parameters: ``fps`` (keyframe rate, for media time), ``sample_rate`` and ``audio``
    (the mono s16le audio of the run, as bytes or an int16 array; optional: a session
    attaches the audio it sends), ``meta`` (a JSON-serialisable dict saved with the
    timeline; ``meta["pacing"]`` says how the audio was paced, see :mod:`avatar_nb.pacing`).
    """

    def __init__(
        self,
        fps: float = DEFAULT_FPS,
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
        self._audio_set: np.ndarray | None = None if audio is None else _as_int16(audio)
        self._sent_audio: list[np.ndarray] = []
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
        # per-request history: (req_id, status, at), (req_id, kind, detail, at),
        # (req_id, state, played seconds, reason, at)
        self._status_log: list[tuple[str, str, float]] = []
        self._status: dict[str, str] = {}
        self._anomalies: list[tuple[str, str, str, float]] = []
        self._playback: list[tuple[str, str, float, str, float]] = []

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

    @property
    def pacing(self) -> str:
        """How the audio was paced (``meta["pacing"]``); ``"playback"`` when not recorded
        (files written before pacing was a choice streamed that way)."""
        return str(self.meta.get("pacing") or "playback")

    @property
    def audio(self) -> np.ndarray | None:
        """The run's mono int16 audio: the array set on the timeline, else the audio the
        session sent (its chunks concatenated), else ``None``."""
        if self._audio_set is not None:
            return self._audio_set
        if not self._sent_audio:
            return None
        return self._cached("audio", lambda: _merged(self._sent_audio))

    @audio.setter
    def audio(self, value: bytes | np.ndarray | None) -> None:
        self._audio_set = None if value is None else _as_int16(value)
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

    def add_audio_chunk(
        self, req_id: str, sent_at: float, n_samples: int, pcm: bytes | np.ndarray | None = None
    ) -> None:
        """Record that ``n_samples`` of audio for ``req_id`` were sent at ``sent_at``.

        ``pcm``, the s16le bytes sent (or an int16 array), is appended to the run's audio.
        """
        if pcm is not None:
            samples = _as_int16(pcm)
            count = len(samples)
            if count != n_samples:
                raise ValueError(f"pcm holds {count} samples, n_samples says {int(n_samples)}")
            if count:
                self._sent_audio.append(samples)
        self._chunk_req.append(self._req(req_id))
        self._chunk_sent.append(float(sent_at))
        self._chunk_samples.append(int(n_samples))
        self._changed()

    def add_animation(self, keyframes: np.ndarray, *, req_id: str, arrival: float, end: bool) -> None:
        """Record one animation message: its keyframes (k, 20 + E), request, arrival, end flag.

        Raises ``ValueError`` when E differs from earlier keyframes (nothing is added then).
        """
        kf = np.asarray(keyframes, dtype=np.float32)
        if kf.ndim != 2 or kf.shape[1] < FIXED_COLUMNS:
            raise ValueError(f"keyframes must have shape (k, {FIXED_COLUMNS} + E), got {kf.shape}")
        if kf.shape[0]:
            if self._width is None:
                self._width = kf.shape[1]
            elif kf.shape[1] != self._width:
                raise ValueError(
                    f"keyframes have {kf.shape[1] - FIXED_COLUMNS} expression coefficients, "
                    f"earlier ones have {self._width - FIXED_COLUMNS}"
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

    def set_request_status(self, req_id: str, status: str, at: float | None = None) -> None:
        """Record what became of request ``req_id`` (one of :data:`REQUEST_STATUSES`) at ``at``.

        A request whose end frame arrived and that was given no other status counts as
        ``"complete"``; every status set is kept in :attr:`request_history`.
        """
        status = getattr(status, "value", status)  # a RequestStatus or its value
        if status not in REQUEST_STATUSES:
            raise ValueError(f"unknown request status {status!r}; accepted: {', '.join(map(repr, REQUEST_STATUSES))}")
        self._req(req_id)
        self._status[req_id] = status
        self._status_log.append((req_id, status, _time(at)))
        self._changed()

    def saw_end(self, req_id: str) -> bool:
        """Whether a message with ``end=True`` arrived for ``req_id``."""
        index = self._req_index.get(req_id)
        return index is not None and index in self._ended

    def add_anomaly(self, req_id: str, kind: str, detail: str, at: float | None = None) -> None:
        """Record something the service sent that a well-behaved run does not contain.

        ``kind`` is a short tag (for example ``"unknown_request"`` for frames of a request
        never sent, ``"after_end"`` for frames after a request's end frame,
        ``"width_change"`` for keyframes whose expression width changed). Counted per
        request in :attr:`requests`, listed in :attr:`anomalies`; an anomaly does not
        create a request row.
        """
        self._anomalies.append((str(req_id), str(kind), str(detail), _time(at)))
        self._changed()

    def add_playback_state(
        self, req_id: str, state: str, played_ms: float, reason: str = "", at: float | None = None
    ) -> None:
        """Record a playback state message (``"PLAYING"``, ``"PAUSED"`` ...) of ``req_id``.

        ``played_ms`` is the wire's figure (milliseconds played); it is kept in seconds
        (column ``played`` of :attr:`playback_states`).
        """
        self._playback.append((str(req_id), str(state), float(played_ms) / 1000.0, str(reason or ""), _time(at)))
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
            if not self._blocks:
                return np.zeros((0, self._width or FIXED_COLUMNS), dtype=np.float32)
            return _merged(self._blocks)

        return self._cached("keyframes", build)

    @property
    def n_keyframes(self) -> int:
        return int(sum(self._msg_count))

    @property
    def n_expression(self) -> int:
        return (self._width or FIXED_COLUMNS) - FIXED_COLUMNS

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
    def keyframe_index(self) -> np.ndarray:
        """(n,) index of each keyframe within its request (0 for its first frame)."""

        def build() -> np.ndarray:
            reqs = self.keyframe_req
            n = reqs.shape[0]
            order = np.argsort(reqs, kind="stable")
            sorted_reqs = reqs[order]
            first = np.searchsorted(sorted_reqs, sorted_reqs, side="left")
            within = np.empty(n, dtype=np.int64)
            within[order] = np.arange(n) - first
            return within

        return self._cached("keyframe_index", build)

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
                first_chunk = np.full(n_req, -1, dtype=np.int64)
                # the first chunk of each request: iterate backwards so the earliest wins
                first_chunk[reqs[::-1]] = np.arange(reqs.shape[0])[::-1]
                has = first_chunk >= 0
                starts[has] = before[first_chunk[has]] / self.sample_rate
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
            if reqs.shape[0] == 0:
                return np.zeros(0)
            return self.utterance_start[reqs] + self.keyframe_index / self.fps

        return self._cached("media_time", build)

    @property
    def audio_complete_at(self) -> np.ndarray:
        """(n,) when the audio of each keyframe's whole frame had been sent (s); NaN if never.

        Frame ``k`` of a request covers samples ``[floor(k*sr/fps), floor((k+1)*sr/fps))``
        of that request's audio, clipped to the request's end; the moment is the send time
        of the chunk that completed it. NaN without a sample rate, for a request with no
        audio recorded, or for a frame whose audio was never all sent (an interrupted request).
        """

        def build() -> np.ndarray:
            n = self.keyframe_req.shape[0]
            out = np.full(n, np.nan)
            rate = self.sample_rate
            if not n or not rate or not self._chunk_samples:
                return out
            chunk_req, samples, sent = self.chunk_req, self.chunk_samples, self.chunk_sent_at
            kf_req = self.keyframe_req.astype(np.int64)
            # chunks grouped by request (send order kept within each), with the
            # request-relative sample each one reaches
            order = np.argsort(chunk_req, kind="stable")
            group = chunk_req[order].astype(np.int64)
            reached = np.cumsum(samples[order])
            starts = np.searchsorted(group, group, side="left")
            reached -= np.concatenate(([0], reached))[starts]
            total = np.bincount(chunk_req, weights=samples, minlength=len(self.req_ids)).astype(np.int64)
            frame_end = np.minimum(_frame_end_sample(self.keyframe_index, rate, self.fps), total[kf_req])
            # one sorted key over (request, sample): a search finds the first chunk of the
            # keyframe's request that reached the end of its frame
            stride = int(total.max(initial=0)) + 1
            hit = np.searchsorted(group * stride + reached, kf_req * stride + frame_end, side="left")
            known = frame_end > 0  # requests without audio (or nothing sent) stay NaN
            out[known] = sent[order[hit[known]]]
            return out

        return self._cached("audio_complete_at", build)

    @property
    def latency(self) -> np.ndarray:
        """(n,) per keyframe: arrival minus :attr:`audio_complete_at`, the moment the audio
        of its whole frame had been sent. The service's processing delay as the client
        sees it; meaningful under every pacing. NaN where that moment is unknown."""
        return self._cached("latency", lambda: self.arrival - self.audio_complete_at)

    @property
    def lateness(self) -> np.ndarray:
        """(n,) per keyframe: arrival minus :attr:`media_time`, i.e. minus when the frame is
        due on a playback clock started when streaming started. Positive: it came after a
        player would have shown it. All NaN under ``"fast"`` pacing (no playback clock)."""

        def build() -> np.ndarray:
            if self.pacing == "fast":
                return np.full(self.n_keyframes, np.nan)
            return self.arrival - self.media_time

        return self._cached("lateness", build)

    @property
    def inter_arrival(self) -> np.ndarray:
        """Gaps between successive animation messages that carried keyframes (s)."""

        def build() -> np.ndarray:
            arr = self.message_arrival[self.message_keyframes > 0]
            return np.diff(arr)

        return self._cached("inter_arrival", build)

    @property
    def jitter(self) -> float:
        """Inter-arrival jitter: standard deviation of :attr:`inter_arrival` (s); NaN with
        fewer than two gaps. Under ``"fast"`` pacing it reflects the service's batching,
        not a live stream."""
        gaps = self.inter_arrival
        return float(np.std(gaps)) if gaps.size >= 2 else math.nan

    @property
    def first_frame_latency(self) -> float:
        """Seconds from the first audio chunk's send time to the first keyframe's arrival
        (NaN if either is missing): how long the service took to answer at all."""
        arrival = self.arrival
        if not arrival.size:
            return math.nan
        sent = self.chunk_sent_at
        return float(arrival[0] - sent[0]) if sent.size else float(arrival[0])

    @property
    def audio_duration(self) -> float:
        """Seconds of audio sent (from the chunk log, else from ``audio``), 0 when unknown."""
        if self.sample_rate:
            if self._chunk_samples:
                return float(sum(self._chunk_samples)) / self.sample_rate
            audio = self.audio
            if audio is not None:
                return audio.shape[0] / self.sample_rate
        return 0.0

    @property
    def duration(self) -> float:
        """Seconds of animation (keyframes / fps)."""
        return self.n_keyframes / self.fps

    @property
    def real_time_factor(self) -> float:
        """Last arrival divided by the audio duration (NaN when either is missing).

        Under ``"capture"``/``"playback"`` pacing it is about 1 (slightly above by the
        final latency); under ``"fast"`` pacing it reads as processing speed: 0.1 means
        the service animated the clip ten times faster than real time.
        """
        arrival = self.arrival
        audio = self.audio_duration or self.duration
        if not arrival.size or audio <= 0:
            return math.nan
        return float(arrival[-1]) / audio

    # ------------------------------------------------------------------ requests

    def request_status(self, req_id: str) -> str:
        """Status of ``req_id``: the one set, else ``"complete"`` once its end frame arrived,
        else ``"open"``. ``KeyError`` for a request the timeline never saw."""
        index = self._req_index[req_id]
        status = self._status.get(req_id)
        if status is not None and status != "open":
            return status
        return "complete" if index in self._ended else "open"

    @property
    def complete(self) -> bool:
        """True when there was at least one request and every request ended normally
        (status ``"complete"``): not interrupted, preempted, failed or still open."""
        return bool(self.req_ids) and all(self.request_status(r) == "complete" for r in self.req_ids)

    @property
    def requests(self) -> pd.DataFrame:
        """One row per request, in the order the timeline first saw them.

        Columns: ``req_id``, ``status`` (see :data:`REQUEST_STATUSES`), ``status_at``
        (when the last status was set; NaN if none was), ``ended`` (its end frame
        arrived), ``chunks``, ``audio_seconds``, ``first_sent``, ``last_sent``,
        ``messages``, ``keyframes``, ``first_arrival``, ``last_arrival``,
        ``anomalies`` (count), ``playback_state`` (the last one, or None),
        ``playback_states`` (count). The full histories are :attr:`request_history`,
        :attr:`playback_states` and :attr:`anomalies`.
        """
        return tidy.requests_frame(self)

    @property
    def request_history(self) -> pd.DataFrame:
        """Every status set, in order: ``req_id``, ``status``, ``at``."""
        return tidy.request_history_frame(self)

    @property
    def playback_states(self) -> pd.DataFrame:
        """Every playback state received, in order: ``req_id``, ``state``, ``played``, ``reason``, ``at``."""
        return tidy.playback_frame(self)

    @property
    def anomalies(self) -> pd.DataFrame:
        """Every anomaly recorded, in order: ``req_id``, ``kind``, ``detail``, ``at``."""
        return tidy.anomalies_frame(self)

    # ------------------------------------------------------------------ tables

    def to_pandas(self, per: str = "keyframe") -> pd.DataFrame:
        """The run as a tidy table: ``per="keyframe"`` (one row per keyframe with its timing
        and every FLAME channel), ``"message"`` or ``"chunk"``. See :mod:`avatar_nb.tidy`."""
        return tidy.to_pandas(self, per)

    def to_xarray(self) -> xr.DataArray:
        """The keyframes as an ``xarray.DataArray`` (dims ``time`` x ``channel``); needs
        ``pip install avatar_nb[xarray]``. See :func:`avatar_nb.tidy.to_xarray`."""
        return tidy.to_xarray(self)

    # ------------------------------------------------------------------ channels

    @property
    def channel_names(self) -> list[str]:
        return channel_names()

    def channel(self, name: str) -> np.ndarray:
        """A named FLAME channel: 2-D for ``translation`` .. ``expression``, 1-D for scalars."""
        kf = self.keyframes
        if name in _CHANNELS:
            return kf[:, _CHANNELS[name]]
        if name == EXPRESSION:
            return kf[:, FIXED_COLUMNS:]
        if name in _SCALAR_CHANNELS:
            return kf[:, _SCALAR_CHANNELS[name]]
        raise KeyError(f"unknown channel {name!r}; known: {', '.join(self.channel_names)}")

    def __getitem__(self, name: str) -> np.ndarray:
        return self.channel(name)

    def __getattr__(self, name: str) -> np.ndarray:
        # scalar channels read as attributes: tl.jaw_open, tl.head_yaw, ...
        if name in _SCALAR_CHANNELS or name in _CHANNELS or name == EXPRESSION:
            return self.channel(name)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __len__(self) -> int:
        return self.n_keyframes

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.keyframes)

    def audio_samples(self) -> np.ndarray | None:
        """The run's audio as float32 in [-1, 1), or None."""
        audio = self.audio
        return None if audio is None else audio.astype(np.float32) / 32768.0

    # ------------------------------------------------------------------ summary and display

    def summary(self) -> dict[str, Any]:
        """The headline figures as a dict (JSON-serialisable), every time in seconds.

        ``first_frame_latency``, ``jitter`` and ``real_time_factor`` as defined on their
        properties; ``latency_p50/p90/p99`` and ``lateness_p50/p90/p99`` percentiles of
        the per-keyframe figures (NaN ones left out). A figure that has no meaning under
        the run's pacing (lateness under ``"fast"``) or no data is ``None``.
        """

        def f(value: float | None) -> float | None:
            return None if value is None or not math.isfinite(value) else round(float(value), 6)

        def percentiles(name: str, values: np.ndarray) -> dict[str, float | None]:
            finite = values[np.isfinite(values)]
            return {
                f"{name}_p{q}": f(float(np.percentile(finite, q))) if finite.size else None for q in _PERCENTILES
            }

        statuses = [self.request_status(r) for r in self.req_ids]
        return {
            "pacing": self.pacing,
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
            **percentiles("latency", self.latency),
            **percentiles("lateness", self.lateness),
            "complete": self.complete,
            "interrupted": statuses.count("interrupted"),
            "preempted": statuses.count("preempted"),
            "failed": statuses.count("failed"),
            "anomalies": len(self._anomalies),
            "errors": len(self.errors),
        }

    def __repr__(self) -> str:
        return timeline_text.summary_repr(self.summary())

    def _repr_html_(self) -> str:
        return timeline_text.summary_html(self.summary(), self.errors)

    # ------------------------------------------------------------------ state

    def snapshot(self) -> TimelineRecord:
        """The timeline's whole state as a :class:`~avatar_nb.timeline_record.TimelineRecord`
        (read-only arrays, tuples and a copy of ``meta``); :meth:`restore` gives the
        timeline back. The file (:mod:`avatar_nb.timeline_file`) and the request tables
        (:mod:`avatar_nb.tidy`) are written from it."""
        audio = self.audio
        return TimelineRecord(
            fps=self.fps,
            sample_rate=self.sample_rate,
            meta=dict(self.meta),
            errors=tuple(self.errors),
            req_ids=tuple(self.req_ids),
            width=self._width,
            ended=tuple(sorted(self._ended)),
            status_log=tuple(self._status_log),
            anomalies=tuple(self._anomalies),
            playback=tuple(self._playback),
            keyframes=_read_only(self.keyframes),
            message_arrival=self.message_arrival,
            message_keyframes=self.message_keyframes,
            message_req=self.message_req,
            message_end=self.message_end,
            chunk_sent_at=self.chunk_sent_at,
            chunk_samples=self.chunk_samples,
            chunk_req=self.chunk_req,
            audio=None if audio is None else _read_only(audio),
            audio_set=self._audio_set is not None,
        )

    @classmethod
    def restore(cls, record: TimelineRecord) -> Timeline:
        """A new timeline holding ``record``'s state (copied): it equals the timeline the
        record was taken from (``restore(tl.snapshot()).snapshot() == tl.snapshot()``) and
        goes on growing like a fresh one."""
        tl = cls(record.fps, sample_rate=record.sample_rate, meta=dict(record.meta))
        if record.audio is not None:
            audio = np.array(record.audio)
            if record.audio_set:
                tl._audio_set = audio
            elif audio.shape[0]:
                tl._sent_audio = [audio]
        tl.errors = [str(e) for e in record.errors]
        tl.req_ids = [str(r) for r in record.req_ids]
        tl._req_index = {r: i for i, r in enumerate(tl.req_ids)}
        tl._width = None if record.width is None else int(record.width)
        tl._ended = {int(i) for i in record.ended}
        tl._status_log = [(str(r), str(s), float(at)) for r, s, at in record.status_log]
        tl._status = {r: s for r, s, _ in tl._status_log}
        tl._anomalies = [(str(r), str(k), str(d), float(at)) for r, k, d, at in record.anomalies]
        tl._playback = [(str(r), str(s), float(p), str(why), float(at)) for r, s, p, why, at in record.playback]
        keyframes = record.keyframes
        tl._blocks = [np.array(keyframes)] if keyframes.shape[0] else []
        tl._msg_arrival = np.asarray(record.message_arrival).tolist()
        tl._msg_count = np.asarray(record.message_keyframes).tolist()
        tl._msg_req = np.asarray(record.message_req).tolist()
        tl._msg_end = np.asarray(record.message_end).tolist()
        tl._chunk_sent = np.asarray(record.chunk_sent_at).tolist()
        tl._chunk_samples = np.asarray(record.chunk_samples).tolist()
        tl._chunk_req = np.asarray(record.chunk_req).tolist()
        tl._changed()
        return tl

    # ------------------------------------------------------------------ files

    def to_video(self, path: str | Path, **options: Any) -> Any:
        """Write the run as an MP4 (H.264 video, AAC audio) and return a :class:`avatar_nb.video.Video`,
        which plays inline in a notebook. ``options``: ``size=(w, h)`` (default 640x480),
        ``panels`` (``"face"``, ``"waveform"``; default both) and the encoder settings of
        :func:`avatar_nb.video.write_video`, which holds their defaults."""
        from .video import write_video

        return write_video(self, path, **options)

    def save(self, path: str | Path) -> Path:
        """Write the timeline to ``path`` (``.npz``); :meth:`load` gives it back exactly.
        See :mod:`avatar_nb.timeline_file`."""
        return timeline_file.save(self, path)

    @classmethod
    def load(cls, path: str | Path, *, max_bytes: int = timeline_file.MAX_FILE_BYTES) -> Timeline:
        """Read a timeline written by :meth:`save` (this format or the first one).

        A file that is not a timeline, is malformed, or holds more than ``max_bytes`` of
        arrays (1 GiB by default; checked from its declared sizes before anything is
        decompressed) is a ``ValueError`` naming the file."""
        return timeline_file.load(cls, path, max_bytes=max_bytes)


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_FLAME:
        warnings.warn(
            f"avatar_nb.timeline.{name} is deprecated; import it from avatar_nb.flame, its home",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_flame, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _merged(blocks: list[np.ndarray]) -> np.ndarray:
    """The blocks (at least one) as one array, which then replaces them in the list.

    Merged in place through a slice assignment, so that a block another thread appends
    meanwhile (a session filling the timeline while a view reads it) stays after it.
    """
    count = len(blocks)
    if count > 1:
        blocks[:count] = [np.concatenate(blocks[:count])]
    return blocks[0]


def _frame_end_sample(index: np.ndarray, sample_rate: int, fps: float) -> np.ndarray:
    """``floor((k + 1) * sample_rate / fps)`` for frame indices ``k``, exact for whole fps."""
    following = index.astype(np.int64) + 1
    if float(fps).is_integer():
        return following * int(sample_rate) // int(fps)
    return np.floor(following * (sample_rate / fps)).astype(np.int64)


def _read_only(array: np.ndarray) -> np.ndarray:
    """``array`` itself when already read-only, else a read-only view of it (no copy)."""
    if not array.flags.writeable:
        return array
    view = array.view()
    view.setflags(write=False)
    return view


def _time(at: float | None) -> float:
    return math.nan if at is None else float(at)


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


_S16LE = np.dtype("<i2")
_S16LE_NATIVE = _S16LE == np.dtype(np.int16)


def _as_int16(audio: bytes | np.ndarray) -> np.ndarray:
    if isinstance(audio, (bytes, bytearray, memoryview)):
        view = memoryview(audio).cast("B") if isinstance(audio, memoryview) else audio
        if len(view) % 2:
            raise ValueError(f"audio has {len(view)} bytes, an odd number; expected mono s16le")
        samples = np.frombuffer(view, _S16LE)  # a dtype object, not a string: parsed once
        if _S16LE_NATIVE and type(getattr(audio, "obj", audio)) is bytes:
            return samples  # over immutable bytes: a read-only view needs no copy of its own
        return samples.astype(np.int16)  # one copy, owned by the timeline
    arr = np.asarray(audio)
    if arr.dtype != np.int16 or arr.ndim != 1:
        raise ValueError(f"audio must be s16le bytes or a 1-D int16 array, got {arr.dtype} {arr.shape}")
    return arr.copy()
