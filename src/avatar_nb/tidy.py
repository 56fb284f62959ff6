"""Tidy tables of a :class:`~avatar_nb.Timeline`: one row per keyframe, message, chunk or request.

The column layout comes from the one FLAME definition (:func:`avatar_nb.flame.column_names`,
:data:`avatar_nb.flame.SCALAR_CHANNELS`); times are seconds (float64), FLAME values
float32, ``req_id`` a categorical whose categories are the timeline's requests in the
order it first saw them. The tables round-trip through Parquet exactly
(``df.to_parquet(path)`` / ``pd.read_parquet(path)``).

``per="keyframe"`` columns:
    ``req_id``, ``keyframe`` (index over the run, in arrival order), ``frame`` (index
    within its request), ``media_time``, ``arrival``, ``latency``, ``lateness`` (see
    :class:`~avatar_nb.Timeline` for their definitions; ``lateness`` is NaN under
    ``"fast"`` pacing), then ``translation_0`` .. ``eye_lid_1``, ``expression_0`` ..
    ``expression_<E-1>``, then the derived ``jaw_open``, ``eyelid_left`` ...
``per="message"``: ``message``, ``req_id``, ``arrival``, ``keyframes``, ``end``.
``per="chunk"``: ``chunk``, ``req_id``, ``sent_at``, ``samples``.

pandas (and, for :func:`to_xarray`, xarray) load only when a table is asked for.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from .flame import SCALAR_CHANNELS, column_names
from .timeline_record import REQUEST_STATUSES

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

    from .timeline import Timeline

__all__ = ["PER", "to_pandas", "to_xarray"]

PER: tuple[str, ...] = ("keyframe", "message", "chunk")
"""The row units :func:`to_pandas` accepts."""


def _req_column(timeline: Timeline, codes: np.ndarray) -> pd.Categorical:
    import pandas as pd

    return pd.Categorical.from_codes(np.asarray(codes, dtype=np.int32), categories=list(timeline.req_ids))


def _req_strings(timeline: Timeline, req_ids: list[str]) -> pd.Categorical:
    import pandas as pd

    known = list(timeline.req_ids)
    seen = set(known)
    extra = [r for r in dict.fromkeys(req_ids) if r not in seen]
    return pd.Categorical(req_ids, categories=known + extra)


def keyframe_time_columns(timeline: Timeline) -> dict[str, np.ndarray]:
    """The per-keyframe index and time columns, in table order (after ``req_id``):
    ``keyframe``, ``frame``, ``media_time``, ``arrival``, ``latency``, ``lateness``."""
    return {
        "keyframe": np.arange(timeline.n_keyframes, dtype=np.int64),
        "frame": np.asarray(timeline.keyframe_index, dtype=np.int64),
        "media_time": np.asarray(timeline.media_time, dtype=np.float64),
        "arrival": np.asarray(timeline.arrival, dtype=np.float64),
        "latency": np.asarray(timeline.latency, dtype=np.float64),
        "lateness": np.asarray(timeline.lateness, dtype=np.float64),
    }


def flame_columns(n_expression: int) -> list[tuple[str, int]]:
    """(column name, keyframe column) of every FLAME column in table order: the layout's
    columns (:func:`avatar_nb.flame.column_names`), then the derived scalar channels."""
    return [*((name, i) for i, name in enumerate(column_names(n_expression))), *SCALAR_CHANNELS.items()]


def keyframe_frame(timeline: Timeline) -> pd.DataFrame:
    """One row per keyframe (see the module docstring for the columns)."""
    import pandas as pd

    keyframes = np.asarray(timeline.keyframes, dtype=np.float32)
    columns: dict[str, Any] = {"req_id": _req_column(timeline, timeline.keyframe_req)}
    columns.update(keyframe_time_columns(timeline))
    for name, position in flame_columns(timeline.n_expression):
        columns[name] = keyframes[:, position].copy()
    return pd.DataFrame(columns)


def message_frame(timeline: Timeline) -> pd.DataFrame:
    """One row per animation message: ``message``, ``req_id``, ``arrival``, ``keyframes``, ``end``."""
    import pandas as pd

    count = timeline.message_arrival.shape[0]
    return pd.DataFrame(
        {
            "message": np.arange(count, dtype=np.int64),
            "req_id": _req_column(timeline, timeline.message_req),
            "arrival": np.asarray(timeline.message_arrival, dtype=np.float64),
            "keyframes": np.asarray(timeline.message_keyframes, dtype=np.int32),
            "end": np.asarray(timeline.message_end, dtype=bool),
        }
    )


def chunk_frame(timeline: Timeline) -> pd.DataFrame:
    """One row per audio chunk sent: ``chunk``, ``req_id``, ``sent_at``, ``samples``."""
    import pandas as pd

    count = timeline.chunk_sent_at.shape[0]
    return pd.DataFrame(
        {
            "chunk": np.arange(count, dtype=np.int64),
            "req_id": _req_column(timeline, timeline.chunk_req),
            "sent_at": np.asarray(timeline.chunk_sent_at, dtype=np.float64),
            "samples": np.asarray(timeline.chunk_samples, dtype=np.int64),
        }
    )


def to_pandas(timeline: Timeline, per: str = "keyframe") -> pd.DataFrame:
    """The timeline as a tidy table, one row per ``per`` (``"keyframe"``, ``"message"``, ``"chunk"``)."""
    builders = {"keyframe": keyframe_frame, "message": message_frame, "chunk": chunk_frame}
    build = builders.get(per)
    if build is None:
        raise ValueError(f"unknown per={per!r}; accepted: {', '.join(map(repr, PER))}")
    return build(timeline)


def to_xarray(timeline: Timeline) -> xr.DataArray:
    """The keyframes as a DataArray named ``"flame"`` with dims ``time`` x ``channel``.

    ``time`` is the keyframes' media time (s); ``arrival``, ``latency``, ``lateness``,
    ``req_id`` and ``frame`` are further coordinates along it; ``channel`` holds the
    column names of :func:`avatar_nb.flame.column_names`. ``attrs`` carry ``fps``,
    ``sample_rate`` and ``pacing``. Needs xarray (``pip install avatar_nb[xarray]``).
    """
    try:
        import xarray as xr
    except ImportError as exc:
        raise ImportError(
            "Timeline.to_xarray() needs xarray, which is not installed; install it with "
            "`pip install avatar_nb[xarray]`"
        ) from exc
    keyframes = np.asarray(timeline.keyframes, dtype=np.float32)
    attrs: dict[str, Any] = {"fps": timeline.fps, "pacing": timeline.pacing}
    if timeline.sample_rate:
        attrs["sample_rate"] = int(timeline.sample_rate)
    req_ids = np.asarray(timeline.req_ids, dtype=object)
    times = keyframe_time_columns(timeline)
    return xr.DataArray(
        keyframes.copy(),
        dims=("time", "channel"),
        coords={
            "time": times["media_time"],
            "channel": column_names(timeline.n_expression),
            "arrival": ("time", times["arrival"]),
            "latency": ("time", times["latency"]),
            "lateness": ("time", times["lateness"]),
            "req_id": ("time", req_ids[timeline.keyframe_req] if req_ids.size else np.zeros(0, dtype=object)),
            "frame": ("time", times["frame"]),
        },
        name="flame",
        attrs=attrs,
    )


# ----------------------------------------------------------------------------- requests


def requests_frame(timeline: Timeline) -> pd.DataFrame:
    """One row per request (the table behind :attr:`Timeline.requests`)."""
    import pandas as pd

    req_ids = list(timeline.req_ids)
    n_req = len(req_ids)
    rate = timeline.sample_rate

    chunk_req = timeline.chunk_req
    samples = timeline.chunk_samples
    sent = timeline.chunk_sent_at
    msg_req = timeline.message_req
    msg_arrival = timeline.message_arrival
    msg_count = timeline.message_keyframes

    # every owner index is below n_req, so each count has exactly one entry per request
    chunks = np.bincount(chunk_req, minlength=n_req)
    total_samples = np.bincount(chunk_req, weights=samples, minlength=n_req)
    messages = np.bincount(msg_req, minlength=n_req)
    keyframes = np.bincount(msg_req, weights=msg_count, minlength=n_req)

    def first_last(values: np.ndarray, owners: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        first = np.full(n_req, np.nan)
        last = np.full(n_req, np.nan)
        if mask is not None:
            values, owners = values[mask], owners[mask]
        if owners.size:
            # fmin/fmax skip the NaN the arrays start with
            np.fmin.at(first, owners, values)
            np.fmax.at(last, owners, values)
        return first, last

    first_sent, last_sent = first_last(sent, chunk_req)
    first_arrival, last_arrival = first_last(msg_arrival, msg_req, msg_count > 0)

    record = timeline.snapshot()
    status_at = {r: at for r, _, at in record.status_log}
    anomaly_counts = Counter(r for r, *_ in record.anomalies)
    state_counts = Counter(r for r, *_ in record.playback)
    last_state = {r: state for r, state, *_ in record.playback}

    ended = np.zeros(n_req, dtype=bool)
    if record.ended:
        ended[list(record.ended)] = True
    return pd.DataFrame(
        {
            "req_id": pd.Categorical(req_ids, categories=req_ids),
            "status": pd.Categorical(
                [timeline.request_status(r) for r in req_ids], categories=list(REQUEST_STATUSES)
            ),
            "status_at": np.asarray([status_at.get(r, np.nan) for r in req_ids], dtype=np.float64),
            "ended": ended,
            "chunks": np.asarray(chunks, dtype=np.int64),
            "audio_seconds": (
                np.asarray(total_samples, dtype=np.float64) / rate if rate else np.full(n_req, np.nan)
            ),
            "first_sent": first_sent,
            "last_sent": last_sent,
            "messages": np.asarray(messages, dtype=np.int64),
            "keyframes": np.asarray(keyframes, dtype=np.int64),
            "first_arrival": first_arrival,
            "last_arrival": last_arrival,
            "anomalies": np.asarray([anomaly_counts.get(r, 0) for r in req_ids], dtype=np.int64),
            "playback_state": pd.Series([last_state.get(r) for r in req_ids], dtype=object),
            "playback_states": np.asarray([state_counts.get(r, 0) for r in req_ids], dtype=np.int64),
        }
    )


def request_history_frame(timeline: Timeline) -> pd.DataFrame:
    """Every request status set, in order: ``req_id``, ``status``, ``at``."""
    import pandas as pd

    log = timeline.snapshot().status_log
    return pd.DataFrame(
        {
            "req_id": _req_strings(timeline, [r for r, _, _ in log]),
            "status": pd.Categorical([s for _, s, _ in log], categories=list(REQUEST_STATUSES)),
            "at": np.asarray([at for *_, at in log], dtype=np.float64),
        }
    )


def playback_frame(timeline: Timeline) -> pd.DataFrame:
    """Every playback state received: ``req_id``, ``state``, ``played`` (s), ``reason``, ``at``."""
    import pandas as pd

    log = timeline.snapshot().playback
    return pd.DataFrame(
        {
            "req_id": _req_strings(timeline, [e[0] for e in log]),
            "state": pd.Series([e[1] for e in log], dtype=object),
            "played": np.asarray([e[2] for e in log], dtype=np.float64),
            "reason": pd.Series([e[3] for e in log], dtype=object),
            "at": np.asarray([e[4] for e in log], dtype=np.float64),
        }
    )


def anomalies_frame(timeline: Timeline) -> pd.DataFrame:
    """Every anomaly recorded: ``req_id``, ``kind``, ``detail``, ``at``."""
    import pandas as pd

    log = timeline.snapshot().anomalies
    return pd.DataFrame(
        {
            "req_id": _req_strings(timeline, [e[0] for e in log]),
            "kind": pd.Series([e[1] for e in log], dtype=object),
            "detail": pd.Series([e[2] for e in log], dtype=object),
            "at": np.asarray([e[3] for e in log], dtype=np.float64),
        }
    )
