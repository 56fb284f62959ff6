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

A file is treated as untrusted input. Before anything is inflated, the zip's declared
sizes and every array's ``.npy`` header are read (:mod:`avatar_nb._npz_read`): only
plain numeric arrays whose headers match their declared sizes, at most
:data:`MAX_FILE_BYTES` (1 GiB) in all unless ``max_bytes`` says otherwise; the JSON
header's fields are then checked, and the arrays' shapes against the header and each
other, before any array is read. Anything else, a file that is not an ``.npz`` among it,
is a ``ValueError`` naming the file. Saving writes a temporary file in the same folder
and renames it over the target, so a full disk or a crash never leaves a partial file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._npz_read import NpzMember, open_npz
from .flame import FIXED_COLUMNS
from .timeline_record import TimelineRecord

if TYPE_CHECKING:
    from .timeline import Timeline

__all__ = [
    "FORMAT_VERSION",
    "MAX_FILE_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_WIDTH",
    "READABLE_VERSIONS",
    "load",
    "read_record",
    "save",
    "write_record",
]

FORMAT_VERSION = 2
"""The format :func:`save` writes."""

READABLE_VERSIONS: tuple[int, ...] = (1, 2)
"""The formats :func:`load` reads."""

MAX_FILE_BYTES = 1 << 30
"""The arrays' total uncompressed size :func:`read_record` reads by default: 1 GiB, about
three hours of 48 kHz audio with its keyframes. Larger files need ``max_bytes``."""

MAX_HEADER_BYTES = 16 << 20
"""The largest JSON header read (16 MiB)."""

# What a loaded timeline holds beyond the arrays, counted against ``max_bytes``: its
# per-message and per-chunk values become Python lists (a float or int object and a
# pointer each), and a JSON header's values objects (up to ~24x its text for "[],").
_BYTES_PER_MESSAGE = 112
_BYTES_PER_CHUNK = 104
_JSON_EXPANSION = 24

MAX_WIDTH = 4096
"""The most keyframe columns (20 + expressions) a file may declare."""


def save(timeline: Timeline, path: str | Path) -> Path:
    """Write ``timeline`` to ``path`` (``.npz`` appended when missing), atomically (a
    temporary file in the same folder, renamed); the path written."""
    return write_record(timeline.snapshot(), path)


def load(cls: type[Timeline], path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> Timeline:
    """A ``cls`` read from a file written by :func:`save` (any of :data:`READABLE_VERSIONS`);
    ``ValueError`` naming the file for a file that is not a timeline, has a format this
    version cannot read, is malformed or holds more than ``max_bytes`` of arrays (see
    :func:`read_record`)."""
    return cls.restore(read_record(path, max_bytes=max_bytes))


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
    _write_atomically(path, lambda fh: np.savez_compressed(fh, **arrays))
    return path


def _write_atomically(path: Path, write: Callable[[Any], None]) -> None:
    """Call ``write`` with a file in ``path``'s folder, then rename it to ``path``: the
    file is written whole or not at all (a full disk or a crash leaves the old file, or
    none, and no partial one; the temporary file is removed on an error)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free temporary name beside {path}")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_record(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> TimelineRecord:
    """The record in a file written by :func:`save` or :func:`write_record` (any of
    :data:`READABLE_VERSIONS`); ``ValueError`` naming the file for a file that is not a
    timeline, has a format this version cannot read, or is malformed.

    Nothing is decompressed before its size is known: the zip's declared sizes and each
    array's ``.npy`` header are read first and must agree with each other, with the
    header's fields and with ``max_bytes`` (default :data:`MAX_FILE_BYTES`), which bounds
    the arrays' total uncompressed size and also what the loaded timeline takes in
    memory (its per-message and per-chunk lists, about 112 and 104 bytes an entry, and
    the parsed header); a load peaks at about twice that. The header's fields are
    checked before use, the arrays' shapes against the header and each other (one
    length per message, per chunk; as many keyframe rows as the messages carried,
    ``width`` columns, at most :data:`MAX_WIDTH`), and the indices into ``req_ids``
    against its length.
    """
    path = Path(path)
    with open_npz(path, max_bytes=max_bytes) as archive:
        fail = archive.error
        members = archive.members
        if "header" not in members:
            raise ValueError(f"{path} is not an avatar_nb timeline file: it has no header member")
        head = members["header"]
        if len(head.shape) != 1 or head.dtype != np.uint8 or head.nbytes > MAX_HEADER_BYTES:
            raise fail(
                f"its header is {head.shape} of {head.dtype.str}; a UTF-8 JSON of at most "
                f"{MAX_HEADER_BYTES} bytes is read"
            )
        if head.nbytes * _JSON_EXPANSION > max_bytes:
            raise ValueError(f"{path}'s header of {head.nbytes} bytes is more than max_bytes={max_bytes} allows")
        try:
            header = json.loads(bytes(archive.read("header")).decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{path} is not an avatar_nb timeline file: its header is not JSON ({exc})") from None
        if not isinstance(header, dict):
            raise fail("its header is not a JSON object")
        version = header.get("format")
        if isinstance(version, bool) or version not in READABLE_VERSIONS:
            accepted = ", ".join(map(str, READABLE_VERSIONS))
            raise ValueError(f"{path} has timeline format {version!r:.40}; this version reads {accepted}")
        fields = _header_fields(header, fail)
        n_req = len(fields["req_ids"])

        missing = [m for m in _ARRAYS if m not in members]
        if missing:
            raise fail(f"it has no {', '.join(missing)} member")

        def declared(name: str, kind: str, itemsize: int, ndim: int) -> NpzMember:
            member = members[name]
            if member.dtype.kind != kind or member.dtype.itemsize != itemsize or len(member.shape) != ndim:
                want = np.dtype(f"{kind}{itemsize}").str
                raise fail(
                    f"member {name!r} is {member.shape} of {member.dtype.str}; "
                    f"a {ndim}-D array of {want} is read"
                )
            return member

        counts = []
        for group in (_MESSAGE_ARRAYS, _CHUNK_ARRAYS):
            lengths = {name: declared(name, *spec, 1).shape[0] for name, spec in group.items()}
            if len(set(lengths.values())) > 1:
                raise fail(f"its arrays {', '.join(lengths)} differ in length: {lengths}")
            counts.append(next(iter(lengths.values())))
        n_messages, n_chunks = counts
        in_memory = (
            sum(m.nbytes for m in members.values())
            + head.nbytes * _JSON_EXPANSION
            + n_messages * _BYTES_PER_MESSAGE
            + n_chunks * _BYTES_PER_CHUNK
        )
        if in_memory > max_bytes:
            raise ValueError(
                f"{path} would take about {in_memory} bytes in memory ({n_messages} messages, "
                f"{n_chunks} chunks), more than the {max_bytes} read (pass a larger max_bytes to read it)"
            )
        keyframes = declared("keyframes", "f", 4, 2)
        rows, columns = keyframes.shape
        width = fields["width"]
        if width is not None and columns != width:
            raise fail(f"its header declares width {width} but its keyframes have {columns} columns")
        if width is None and (rows or columns > MAX_WIDTH):
            raise fail(f"its header declares no width but its keyframes are {keyframes.shape}")
        if "audio" in members:
            declared("audio", "i", 2, 1)

        arrays = {name: _native(archive.read(name)) for name in (*_MESSAGE_ARRAYS, *_CHUNK_ARRAYS)}
        per_message = arrays["message_keyframes"]
        if per_message.size and int(per_message.min()) < 0:
            raise fail("a message carries a negative number of keyframes")
        carried = int(per_message.sum(dtype=np.int64))
        if carried != rows:
            raise fail(f"its messages carry {carried} keyframes but it holds {rows}")
        if arrays["chunk_samples"].size and int(arrays["chunk_samples"].min()) < 0:
            raise fail("a chunk has a negative number of samples")
        for name in ("message_req", "chunk_req"):
            index = arrays[name]
            if index.size and (int(index.min()) < 0 or int(index.max()) >= n_req):
                raise fail(f"its {name} holds an index outside its {n_req} req_ids")
        audio = _native(archive.read("audio")) if "audio" in members else None
        return TimelineRecord(
            **fields,
            keyframes=_native(archive.read("keyframes")),
            **arrays,
            # format 1 kept only an audio set on the timeline
            audio=audio,
        )


_MESSAGE_ARRAYS = {"message_arrival": ("f", 8), "message_keyframes": ("i", 4), "message_req": ("i", 4), "message_end": ("b", 1)}
_CHUNK_ARRAYS = {"chunk_sent_at": ("f", 8), "chunk_samples": ("i", 8), "chunk_req": ("i", 4)}
_ARRAYS = ("keyframes", *_MESSAGE_ARRAYS, *_CHUNK_ARRAYS)


def _native(array: np.ndarray) -> np.ndarray:
    """``array`` in the machine's byte order (a file may hold big-endian arrays)."""
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _entries(header: dict[str, Any], key: str, kinds: str, fail: Callable[[str], ValueError]) -> tuple[tuple[Any, ...], ...]:
    """``header[key]``: a list of lists, each of ``len(kinds)`` values, ``s`` a string and
    ``n`` a number (JSON null, NaN and infinities allowed for numbers)."""
    value = header.get(key, [])
    if not isinstance(value, list):
        raise fail(f"its header's {key!r} is not a list")
    out = []
    for i, entry in enumerate(value):
        ok = isinstance(entry, list) and len(entry) == len(kinds)
        if ok:
            for item, kind in zip(entry, kinds):
                if kind == "s" and not isinstance(item, str) or kind == "n" and not (_is_number(item) or item is None):
                    ok = False
        if not ok:
            raise fail(f"its header's {key!r} entry {i} is {str(entry)[:80]}")
        out.append(tuple(str(v) if k == "s" else (math.nan if v is None else float(v)) for v, k in zip(entry, kinds)))
    return tuple(out)


def _header_fields(header: dict[str, Any], fail: Callable[[str], ValueError]) -> dict[str, Any]:
    """The record's fields that the JSON header holds, each checked: ``ValueError`` (via
    ``fail``) for a missing or ill-typed one."""

    def need(key: str) -> Any:
        if key not in header:
            raise fail(f"its header has no {key!r}")
        return header[key]

    fps = need("fps")
    if not _is_number(fps) or not math.isfinite(fps) or fps <= 0:
        raise fail(f"its header's fps {fps!r:.40} is not a positive number")
    sample_rate = need("sample_rate")
    if sample_rate is not None and (isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0):
        raise fail(f"its header's sample_rate {sample_rate!r:.40} is not a positive int")
    meta = need("meta")
    if not isinstance(meta, dict):
        raise fail("its header's meta is not an object")
    strings = {}
    for key in ("errors", "req_ids"):
        value = need(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(f"its header's {key!r} is not a list of strings")
        strings[key] = tuple(value)
    req_ids = strings["req_ids"]
    if len(set(req_ids)) != len(req_ids):
        raise fail("its header's req_ids repeat")
    width = need("width")
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or not FIXED_COLUMNS <= width <= MAX_WIDTH):
        raise fail(f"its header's width {width!r:.40} is not an int from {FIXED_COLUMNS} to {MAX_WIDTH}")
    ended = need("ended")
    if not isinstance(ended, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(req_ids) for i in ended
    ):
        raise fail(f"its header's 'ended' is not a list of indices into its {len(req_ids)} req_ids")
    audio_set = header.get("audio_set", True)
    if not isinstance(audio_set, bool):
        raise fail(f"its header's audio_set {audio_set!r:.40} is not true or false")
    return {
        "fps": fps,
        "sample_rate": sample_rate,
        "meta": meta,
        "errors": strings["errors"],
        "req_ids": req_ids,
        "width": width,
        "ended": tuple(sorted(set(ended))),
        "status_log": _entries(header, "status_log", "ssn", fail),
        "anomalies": _entries(header, "anomalies", "sssn", fail),
        "playback": _entries(header, "playback", "ssnsn", fail),
        "audio_set": audio_set,
    }
