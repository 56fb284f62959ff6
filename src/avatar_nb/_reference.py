"""Slow, obviously-correct twins of every function of the compiled core
(:mod:`avatar_nb._pcm`, :mod:`avatar_nb._wire`, :mod:`avatar_nb._flame`).

They are written with numpy and the protobuf library only, follow the same contracts
(and the same arithmetic, where floating point makes the order matter), and serve as
the oracle of the property tests and as the baselines of ``benchmarks/bench_pcm.py``.
Nothing in avatar_nb calls them at run time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .flame import EXPRESSION, FIELDS, FIXED_COLUMNS as _FIXED
from .proto import message_pb2 as pb

FLAME_LAYOUT = tuple((name, width) for name, _, width in FIELDS)
"""(Flame field name, width) of the fixed-width fields, in column order (from avatar_nb.flame)."""


# ----------------------------------------------------------------------------- PCM


def to_s16le(samples: Any, *, clip: bool = True) -> bytes:
    arr = np.asarray(samples)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    ch = arr.shape[1]
    if arr.dtype in (np.float32, np.float64):
        x = arr.astype(np.float64)
        bad = ~np.isfinite(x)
        if bad.any():
            i, c = np.argwhere(bad)[0]
            raise ValueError(f"sample {i} is not finite")
        if not clip and (np.abs(x) > 1).any():
            i, c = np.argwhere(np.abs(x) > 1)[0]
            raise ValueError(f"sample {i} is out of range")
        x = np.clip(x, -1.0, 1.0)
        acc = x[:, 0].copy()
        for c in range(1, ch):  # channel by channel, in the order the compiled loop adds them
            acc = acc + x[:, c]
        if ch > 1:
            acc = acc / ch
        scaled = acc * 32768.0
        q = np.where(scaled >= 0, np.floor(scaled + 0.5), -np.floor(0.5 - scaled))
        return np.minimum(q, 32767).astype("<i2").tobytes()
    total = arr.astype(np.int64).sum(axis=1)
    if arr.dtype == np.int16:
        q = np.floor_divide(total, ch)
    elif arr.dtype == np.int32:
        q = np.floor_divide(total, ch * 65536)
    elif arr.dtype == np.uint8:
        q = np.floor_divide((total - 128 * ch) * 256, ch)
    else:
        raise TypeError(f"unsupported dtype {arr.dtype}")
    return q.astype("<i2").tobytes()


def from_s16le(data: bytes) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype="<i2").astype(np.float32) / np.float32(32768.0)


def numpy_to_s16le(x: np.ndarray) -> bytes:
    """The usual numpy one-liner (truncating), the benchmark baseline of :func:`to_s16le`."""
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def _float_samples(x: Any) -> np.ndarray:
    if isinstance(x, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(x), dtype="<i2").astype(np.float64) / 32768.0
    arr = np.asarray(x)
    if arr.dtype == np.int16:
        return arr.astype(np.float64) / 32768.0
    return arr.astype(np.float64)


def peak_envelope(samples: Any, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    x = _float_samples(samples)
    n = x.shape[0]
    bins = min(n_bins, n)
    edges = (np.arange(bins + 1) * n) // bins if bins else np.zeros(1, int)
    mins = np.array([x[edges[i] : edges[i + 1]].min() for i in range(bins)], dtype=np.float32)
    maxs = np.array([x[edges[i] : edges[i + 1]].max() for i in range(bins)], dtype=np.float32)
    return mins, maxs


def numpy_peak_envelope(x: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Reshape to (bins, n // bins) and take min and max: the benchmark baseline."""
    usable = (x.shape[0] // n_bins) * n_bins
    blocks = x[:usable].reshape(n_bins, -1)
    return blocks.min(axis=1), blocks.max(axis=1)


def frame_count(n_samples: int, sample_rate: int, fps: float) -> int:
    return int(math.ceil(n_samples * fps / sample_rate - 1e-9)) if n_samples > 0 else 0


def frame_features(pcm_or_samples: Any, sample_rate: int, fps: float) -> dict[str, np.ndarray]:
    x = _float_samples(pcm_or_samples)
    n = x.shape[0]
    k = frame_count(n, sample_rate, fps)
    out = {name: np.zeros(k, dtype=np.float32) for name in ("rms", "peak", "zcr", "brightness")}
    for i in range(k):
        a = int(math.floor(i * sample_rate / fps))
        b = min(n, int(math.floor((i + 1) * sample_rate / fps)))
        seg = x[a:b]
        if seg.size == 0:
            continue
        r = math.sqrt(float(np.mean(seg * seg)))
        out["rms"][i] = r
        out["peak"][i] = float(np.max(np.abs(seg)))
        if seg.size > 1:
            out["zcr"][i] = np.count_nonzero(np.signbit(seg[1:]) != np.signbit(seg[:-1])) / seg.size
            d = math.sqrt(float(np.mean(np.diff(seg) ** 2)))
            out["brightness"][i] = d / r if r > 1e-9 else 0.0
    return out


# ----------------------------------------------------------------------------- messages


def encode_audio_messages(pcm: bytes, req_id: str, chunk_bytes: int, *, end: bool = True) -> list[bytes]:
    pcm = bytes(pcm)
    if not pcm:
        if not end:
            return []
        chunks = [b""]
    else:
        chunks = [pcm[i : i + chunk_bytes] for i in range(0, len(pcm), chunk_bytes)]
    out = []
    for i, chunk in enumerate(chunks):
        msg = pb.Message(type=pb.MESSAGE_CLIENT_AUDIO_INPUT)
        msg.client_audio_input.req_id = req_id
        msg.client_audio_input.audio = chunk
        msg.client_audio_input.end = end and i == len(chunks) - 1
        out.append(msg.SerializeToString())
    return out


def flame_animation(keyframes: np.ndarray) -> pb.FlameAnimation:
    anim = pb.FlameAnimation()
    for row in np.asarray(keyframes, dtype=np.float32):
        flame = anim.keyframes.add()
        start = 0
        for name, count in FLAME_LAYOUT:
            getattr(flame, name).extend(row[start : start + count].tolist())
            start += count
        getattr(flame, EXPRESSION).extend(row[_FIXED:].tolist())
    return anim


def encode_animation(keyframes: np.ndarray) -> bytes:
    return flame_animation(keyframes).SerializeToString()


def encode_animation_message(
    keyframes: np.ndarray, *, connection_id: str = "", req_id: str = "", end: bool = False, avatar_id: str = ""
) -> bytes:
    msg = pb.Message(type=pb.MESSAGE_SERVER_RESPONSE_ANIMATION)
    anim = msg.server_response_animation
    anim.connection_id = connection_id
    anim.req_id = req_id
    anim.end = end
    anim.animation = encode_animation(keyframes)
    anim.avatar_id = avatar_id
    return msg.SerializeToString()


def flame_rows(anim: pb.FlameAnimation) -> np.ndarray:
    """The keyframes of a parsed FlameAnimation as (n, 20 + E) float32, or ValueError."""
    rows = []
    width = None
    for i, flame in enumerate(anim.keyframes):
        parts = []
        for name, count in FLAME_LAYOUT:
            values = list(getattr(flame, name))
            if len(values) != count:
                raise ValueError(f"keyframe {i}: field {name} has {len(values)} values, expected {count}")
            parts.extend(values)
        parts.extend(getattr(flame, EXPRESSION))
        if width is None:
            width = len(parts)
        elif len(parts) != width:
            raise ValueError(f"keyframe {i}: expression length differs")
        rows.append(parts)
    if not rows:
        return np.zeros((0, _FIXED), dtype=np.float32)
    return np.asarray(rows, dtype=np.float32)


def decode_animation(payload: bytes) -> np.ndarray:
    anim = pb.FlameAnimation()
    anim.ParseFromString(bytes(payload))
    return flame_rows(anim)


def decode_animation_batch(messages: Iterable[bytes]) -> np.ndarray:
    """Parse each envelope and payload with protobuf, then stack: the benchmark baseline."""
    blocks = []
    for data in messages:
        msg = pb.Message()
        msg.ParseFromString(bytes(data))
        if msg.WhichOneof("data") != "server_response_animation":
            continue
        kf = decode_animation(msg.server_response_animation.animation)
        if kf.shape[0]:
            blocks.append(kf)
    if not blocks:
        return np.zeros((0, _FIXED), dtype=np.float32)
    return np.concatenate(blocks, axis=0)


def decode_message(data: bytes) -> dict[str, Any]:
    """The fields of a Message, flattened like :class:`avatar_nb._wire.DecodedMessage`."""
    msg = pb.Message()
    msg.ParseFromString(bytes(data))
    which = msg.WhichOneof("data")
    out: dict[str, Any] = {
        "type": msg.type,
        "data_field": msg.DESCRIPTOR.fields_by_name[which].number if which else 0,
        "connection_id": "",
        "req_id": "",
        "end": False,
        "avatar_id": "",
        "error_code": 0,
        "error_message": "",
        "capabilities": (),
        "audio": b"",
        "sample_rate": 0,
        "bitrate": 0,
        "audio_format": 0,
        "transport_compression": 0,
        "egress_type": 0,
        "playback_state": 0,
        "played_ms": 0,
        "reason": "",
        "animation": b"",
    }
    if which == "client_configure_session":
        c = msg.client_configure_session
        out.update(sample_rate=c.sample_rate, bitrate=c.bitrate, audio_format=c.audio_format,
                   transport_compression=c.transport_compression, egress_type=c.egress_type)
    elif which == "server_confirm_session":
        c = msg.server_confirm_session
        out.update(connection_id=c.connection_id, capabilities=tuple(c.capabilities))
    elif which == "client_audio_input":
        c = msg.client_audio_input
        out.update(req_id=c.req_id, end=c.end, audio=c.audio)
    elif which == "server_error":
        c = msg.server_error
        out.update(connection_id=c.connection_id, req_id=c.req_id, error_code=c.code, error_message=c.message)
    elif which == "server_response_animation":
        c = msg.server_response_animation
        out.update(connection_id=c.connection_id, req_id=c.req_id, end=c.end, avatar_id=c.avatar_id,
                   animation=c.animation)
    elif which in ("client_interrupt", "client_pause", "client_resume"):
        out.update(req_id=getattr(msg, which).req_id)
    elif which == "server_playback_state":
        c = msg.server_playback_state
        out.update(connection_id=c.connection_id, req_id=c.req_id, playback_state=c.state,
                   played_ms=c.played_ms, reason=c.reason)
    return out


# ----------------------------------------------------------------------------- pyramids


def _series_2d(values: Any) -> np.ndarray:
    x = np.asarray(values)
    x = x.reshape(-1, 1) if x.ndim == 1 else x
    return x.astype(np.float64) / 32768.0 if x.dtype == np.int16 else x.astype(np.float64)


def bucket_minmax(values: Any, bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """Twin of ``_pyramid.bucket_minmax``: NaN-ignoring min/max per ``bucket`` samples."""
    x = _series_2d(values)
    mins, maxs = [], []
    for start in range(0, x.shape[0], bucket):
        part = x[start : start + bucket]
        finite = ~np.isnan(part)
        lo = np.where(finite.any(axis=0), np.where(finite, part, np.inf).min(axis=0), np.nan)
        hi = np.where(finite.any(axis=0), np.where(finite, part, -np.inf).max(axis=0), np.nan)
        mins.append(lo)
        maxs.append(hi)
    shape = (len(mins), x.shape[1])
    lo = np.array(mins, dtype=np.float32).reshape(shape)
    hi = np.array(maxs, dtype=np.float32).reshape(shape)
    return (lo[:, 0], hi[:, 0]) if np.ndim(values) == 1 else (lo, hi)


def bucket_sum(values: Any, bucket: int) -> np.ndarray:
    """Twin of ``_pyramid.bucket_sum``: the sum of each ``bucket`` samples (NaN propagates)."""
    x = _series_2d(values)
    sums = np.array([x[s : s + bucket].sum(axis=0) for s in range(0, x.shape[0], bucket)]).reshape(-1, x.shape[1])
    return sums[:, 0] if np.ndim(values) == 1 else sums
