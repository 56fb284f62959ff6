"""The file of a :class:`~avatar_nb.Timeline`: :meth:`Timeline.save` and :meth:`Timeline.load`.

One compressed ``.npz``: the per-message and per-chunk arrays, the keyframes, the run's
audio, and a ``header`` (UTF-8 JSON as bytes, so the file loads without pickle) with
everything else: rates, ``meta``, errors, requests and their statuses, anomalies and
playback states. A loaded timeline equals the saved one and goes on growing like a
fresh one.

Format 2 is written; format 1 (before request statuses, anomalies and playback states,
keeping only an audio set on the timeline) is read too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .timeline import Timeline

__all__ = ["FORMAT_VERSION", "READABLE_VERSIONS", "load", "save"]

FORMAT_VERSION = 2
"""The format :func:`save` writes."""

READABLE_VERSIONS: tuple[int, ...] = (1, 2)
"""The formats :func:`load` reads."""


def save(timeline: Timeline, path: str | Path) -> Path:
    """Write ``timeline`` to ``path`` (``.npz`` appended when missing); the path written."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
    header = {
        "format": FORMAT_VERSION,
        "fps": timeline.fps,
        "sample_rate": timeline.sample_rate,
        "meta": timeline.meta,
        "errors": timeline.errors,
        "req_ids": timeline.req_ids,
        "width": timeline._width,
        "ended": sorted(timeline._ended),
        "status_log": [list(e) for e in timeline._status_log],
        "anomalies": [list(e) for e in timeline._anomalies],
        "playback": [list(e) for e in timeline._playback],
        "audio_set": timeline._audio_set is not None,
    }
    arrays = {
        "header": np.frombuffer(json.dumps(header, allow_nan=True).encode("utf-8"), dtype=np.uint8),
        "keyframes": np.asarray(timeline.keyframes),
        "message_arrival": timeline.message_arrival,
        "message_keyframes": timeline.message_keyframes,
        "message_req": timeline.message_req,
        "message_end": timeline.message_end,
        "chunk_sent_at": timeline.chunk_sent_at,
        "chunk_samples": timeline.chunk_samples,
        "chunk_req": timeline.chunk_req,
    }
    audio = timeline.audio
    if audio is not None:
        arrays["audio"] = audio
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def load(cls: type[Timeline], path: str | Path) -> Timeline:
    """A ``cls`` read from a file written by :func:`save` (any of :data:`READABLE_VERSIONS`);
    ``ValueError`` for a file that is not a timeline or has a format this version cannot read."""
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
        tl = cls(header["fps"], sample_rate=header["sample_rate"], meta=header["meta"])
        if "audio" in data.files:
            audio = data["audio"].copy()
            # format 1 kept only an audio set on the timeline
            if header.get("audio_set", True):
                tl._audio_set = audio
            elif audio.shape[0]:
                tl._sent_audio = [audio]
        tl.errors = list(header["errors"])
        tl.req_ids = list(header["req_ids"])
        tl._req_index = {r: i for i, r in enumerate(tl.req_ids)}
        tl._width = header["width"]
        tl._ended = set(header["ended"])
        tl._status_log = [(str(r), str(s), float(at)) for r, s, at in header.get("status_log", [])]
        tl._status = {r: s for r, s, _ in tl._status_log}
        tl._anomalies = [(str(r), str(k), str(d), float(at)) for r, k, d, at in header.get("anomalies", [])]
        tl._playback = [
            (str(r), str(s), float(p), str(why), float(at)) for r, s, p, why, at in header.get("playback", [])
        ]
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
