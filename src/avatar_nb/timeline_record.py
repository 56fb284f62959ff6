"""The state of a :class:`~avatar_nb.Timeline` as plain values: :class:`TimelineRecord`.

:meth:`Timeline.snapshot` gives one, :meth:`Timeline.restore` builds a timeline from one
that equals the original and goes on growing like a fresh one. The timeline's file
(:mod:`avatar_nb.timeline_file`) and its tidy tables (:mod:`avatar_nb.tidy`) work from
a record, so nothing outside :mod:`avatar_nb.timeline` knows how a timeline stores its
state. This module imports neither of them nor the timeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .protocol import RequestStatus

__all__ = ["REQUEST_STATUSES", "TimelineRecord"]

REQUEST_STATUSES: tuple[str, ...] = tuple(status.value for status in RequestStatus)
"""What can become of a request (the values of :class:`avatar_nb.protocol.RequestStatus`):
still ``open``, ended normally (``complete``: its end frame arrived), ``interrupted``,
``preempted`` by a newer request, or ``failed`` (a server error or a dropped connection)."""

StatusEntry = tuple[str, str, float]
"""``(req_id, status, at)``: one request status set."""
AnomalyEntry = tuple[str, str, str, float]
"""``(req_id, kind, detail, at)``: one anomaly recorded."""
PlaybackEntry = tuple[str, str, float, str, float]
"""``(req_id, state, played seconds, reason, at)``: one playback state received."""


@dataclass(frozen=True, eq=False)
class TimelineRecord:
    """Everything a :class:`~avatar_nb.Timeline` holds, as arrays, tuples and a dict.

    Rates and annotations: ``fps``, ``sample_rate`` (None when unknown), ``meta``,
    ``errors``. Requests: ``req_ids`` in the order the timeline first saw them,
    ``ended`` (sorted indices into ``req_ids`` of the requests whose end frame arrived),
    ``status_log``, ``anomalies`` and ``playback`` (the histories, in order; see
    :data:`StatusEntry`, :data:`AnomalyEntry`, :data:`PlaybackEntry`). Keyframes:
    ``keyframes`` (n, 20 + E) float32 in arrival order and ``width`` (20 + E, None
    before the first keyframe). Per animation message: ``message_arrival`` (float64),
    ``message_keyframes`` (int32), ``message_req`` (int32 index into ``req_ids``),
    ``message_end`` (bool). Per audio chunk sent: ``chunk_sent_at`` (float64),
    ``chunk_samples`` (int64), ``chunk_req`` (int32). Audio: ``audio`` (mono int16 or
    None) and ``audio_set`` (True when it was set on the timeline, False when it is the
    audio the session sent, which later chunks extend).

    The arrays of a snapshot are read-only and may share memory with the timeline;
    :meth:`Timeline.restore` copies what it keeps. Two records compare equal when every
    field does (arrays by value and dtype, NaN equal to NaN).
    """

    fps: float
    sample_rate: int | None
    meta: dict[str, Any]
    errors: tuple[str, ...]
    req_ids: tuple[str, ...]
    width: int | None
    ended: tuple[int, ...]
    status_log: tuple[StatusEntry, ...]
    anomalies: tuple[AnomalyEntry, ...]
    playback: tuple[PlaybackEntry, ...]
    keyframes: np.ndarray
    message_arrival: np.ndarray
    message_keyframes: np.ndarray
    message_req: np.ndarray
    message_end: np.ndarray
    chunk_sent_at: np.ndarray
    chunk_samples: np.ndarray
    chunk_req: np.ndarray
    audio: np.ndarray | None
    audio_set: bool

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TimelineRecord):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    __hash__ = None  # type: ignore[assignment]  # holds arrays and a dict


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)
