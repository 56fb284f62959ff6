"""The file of a :class:`~avatar_nb.Timeline`: :meth:`Timeline.save` and :meth:`Timeline.load`.

One compressed ``.npz``: the per-message and per-chunk arrays, the keyframes, the run's
audio, and a ``header`` (UTF-8 JSON as bytes, so the file loads without pickle) with
everything else: rates, ``meta``, errors, requests and their statuses, anomalies and
playback states. A loaded timeline equals the saved one and goes on growing like a
fresh one.

The file holds a :class:`~avatar_nb.timeline_record.TimelineRecord`
(:func:`write_record`, :func:`read_record`); :func:`save` and :func:`load` go through
:meth:`Timeline.snapshot` and :meth:`Timeline.restore`, so this module never sees how a
timeline stores its state (and does not import it).

Format 2 is written; format 1 (before request statuses, anomalies and playback states,
keeping only an audio set on the timeline) is read too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .timeline_record import TimelineRecord

if TYPE_CHECKING:
    from .timeline import Timeline

__all__ = ["FORMAT_VERSION", "READABLE_VERSIONS", "load", "read_record", "save", "write_record"]

FORMAT_VERSION = 2
"""The format :func:`save` writes."""

READABLE_VERSIONS: tuple[int, ...] = (1, 2)
"""The formats :func:`load` reads."""


def save(timeline: Timeline, path: str | Path) -> Path:
    """Write ``timeline`` to ``path`` (``.npz`` appended when missing); the path written."""
    return write_record(timeline.snapshot(), path)


def load(cls: type[Timeline], path: str | Path) -> Timeline:
    """A ``cls`` read from a file written by :func:`save` (any of :data:`READABLE_VERSIONS`);
    ``ValueError`` for a file that is not a timeline or has a format this version cannot read."""
    return cls.restore(read_record(path))


def write_record(record: TimelineRecord, path: str | Path) -> Path:
    """Write ``record`` to ``path`` (``.npz`` appended when missing) in format
    :data:`FORMAT_VERSION`; the path written."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
    header = {
        "format": FORMAT_VERSION,
        "fps": record.fps,
        "sample_rate": record.sample_rate,
        "meta": record.meta,
        "errors": list(record.errors),
        "req_ids": list(record.req_ids),
        "width": record.width,
        "ended": list(record.ended),
        "status_log": [list(e) for e in record.status_log],
        "anomalies": [list(e) for e in record.anomalies],
        "playback": [list(e) for e in record.playback],
        "audio_set": record.audio_set,
    }
    arrays = {
        "header": np.frombuffer(json.dumps(header, allow_nan=True).encode("utf-8"), dtype=np.uint8),
        "keyframes": np.asarray(record.keyframes),
        "message_arrival": record.message_arrival,
        "message_keyframes": record.message_keyframes,
        "message_req": record.message_req,
        "message_end": record.message_end,
        "chunk_sent_at": record.chunk_sent_at,
        "chunk_samples": record.chunk_samples,
        "chunk_req": record.chunk_req,
    }
    if record.audio is not None:
        arrays["audio"] = record.audio
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def read_record(path: str | Path) -> TimelineRecord:
    """The record in a file written by :func:`save` or :func:`write_record` (any of
    :data:`READABLE_VERSIONS`); ``ValueError`` for a file that is not a timeline or has a
    format this version cannot read."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        try:
            header = json.loads(bytes(data["header"]).decode("utf-8"))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path} is not an avatar_nb timeline file: {exc}") from None
        version = header.get("format")
        if version not in READABLE_VERSIONS:
            accepted = ", ".join(map(str, READABLE_VERSIONS))
            raise ValueError(f"{path} has timeline format {version!r}; this version reads {accepted}")
        audio = data["audio"] if "audio" in data.files else None
        return TimelineRecord(
            fps=header["fps"],
            sample_rate=header["sample_rate"],
            meta=header["meta"],
            errors=tuple(header["errors"]),
            req_ids=tuple(header["req_ids"]),
            width=header["width"],
            ended=tuple(sorted(header["ended"])),
            status_log=tuple((str(r), str(s), float(at)) for r, s, at in header.get("status_log", [])),
            anomalies=tuple((str(r), str(k), str(d), float(at)) for r, k, d, at in header.get("anomalies", [])),
            playback=tuple(
                (str(r), str(s), float(p), str(why), float(at)) for r, s, p, why, at in header.get("playback", [])
            ),
            keyframes=data["keyframes"],
            message_arrival=data["message_arrival"],
            message_keyframes=data["message_keyframes"],
            message_req=data["message_req"],
            message_end=data["message_end"],
            chunk_sent_at=data["chunk_sent_at"],
            chunk_samples=data["chunk_samples"],
            chunk_req=data["chunk_req"],
            # format 1 kept only an audio set on the timeline
            audio=audio,
            audio_set=bool(header.get("audio_set", True)),
        )
