"""How audio is paced onto the wire: the one definition of the pacing modes and defaults.

- ``"capture"``: a chunk leaves when the last sample in it would have been captured, as
  from a microphone (chunk ``i`` of ``d`` seconds leaves at ``(i + 1) * d`` after the
  stream started). The timing a live user sees; the default for timing studies.
- ``"playback"``: a chunk leaves when its audio starts (chunk ``i`` at ``i * d``), so
  each chunk carries audio from the future: keyframes can arrive before a live
  capture could have produced them.
- ``"fast"``: as fast as the connection takes them. Throughput, not timing: lateness
  and real-time figures do not apply.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal, get_args

__all__ = [
    "DEFAULT_CHUNK_MS",
    "DEFAULT_PACING",
    "PACING_MODES",
    "Pacing",
    "check_chunk_ms",
    "check_pacing",
    "chunk_bytes",
    "pacing_from_realtime",
    "send_offset",
]

Pacing = Literal["capture", "playback", "fast"]

PACING_MODES: tuple[str, ...] = get_args(Pacing)
"""The accepted pacing modes (those of :data:`Pacing`)."""

DEFAULT_PACING: Pacing = "capture"
"""Pacing of ``stream()``, ``animate()``, batches and the command line unless told otherwise."""

DEFAULT_CHUNK_MS = 40.0
"""Audio chunk length (ms) of ``stream()``, ``animate()``, batches and the command line."""


def check_pacing(pacing: object) -> Pacing:
    """``pacing`` if it is a known mode, else a ``ValueError`` naming the accepted ones."""
    if pacing not in PACING_MODES:
        raise ValueError(f"unknown pacing {pacing!r}; accepted: {', '.join(map(repr, PACING_MODES))}")
    return pacing  # type: ignore[return-value]


def pacing_from_realtime(realtime: bool | None, pacing: str | None) -> Pacing:
    """The pacing of a call that may still pass the older ``realtime`` flag.

    ``pacing`` wins when given; ``realtime=False`` means ``"fast"``; ``realtime=True`` or
    nothing means :data:`DEFAULT_PACING`.
    """
    if pacing is not None:
        return check_pacing(pacing)
    if realtime is not None and not realtime:
        return "fast"
    return DEFAULT_PACING


def send_offset(pacing: Pacing, first_sample: int, n_samples: int, sample_rate: int) -> float | None:
    """Seconds after the stream started at which the chunk of ``n_samples`` samples from
    sample ``first_sample`` leaves under ``pacing``; None for ``"fast"`` (at once)."""
    if pacing == "capture":
        return (first_sample + n_samples) / sample_rate
    if pacing == "playback":
        return first_sample / sample_rate
    return None


def _checked_ms(chunk_ms: Any) -> float:
    if isinstance(chunk_ms, bool) or not isinstance(chunk_ms, numbers.Real) or not (
        math.isfinite(chunk_ms) and chunk_ms > 0
    ):
        raise ValueError(f"chunk_ms must be a finite positive number of milliseconds, got {chunk_ms!r}")
    return float(chunk_ms)


def chunk_bytes(chunk_ms: Any, sample_rate: int) -> int:
    """Bytes of one ``chunk_ms`` chunk of mono s16le at ``sample_rate`` (at least one sample).

    ``ValueError`` naming the value for anything but a finite, positive number of
    milliseconds (``True`` included), or a chunk too large for one message
    (``avatar_nb.protocol.MAX_AUDIO_CHUNK_BYTES``).
    """
    from .protocol import MAX_AUDIO_CHUNK_BYTES

    _checked_ms(chunk_ms)
    size = max(2, int(round(sample_rate * chunk_ms / 1000.0)) * 2)
    if size > MAX_AUDIO_CHUNK_BYTES:
        longest = MAX_AUDIO_CHUNK_BYTES // 2 * 1000 // sample_rate
        raise ValueError(
            f"chunk_ms={chunk_ms!r} makes chunks of {size} bytes, above the {MAX_AUDIO_CHUNK_BYTES} "
            f"one message can carry; at {sample_rate} Hz use at most {longest} ms"
        )
    return size


def check_chunk_ms(chunk_ms: Any, sample_rate: int | None = None) -> float:
    """``chunk_ms`` as a float if it is a finite, positive number of milliseconds and, with
    ``sample_rate``, its chunks fit in one message (see :func:`chunk_bytes`); else a
    ``ValueError`` naming the value. Runs call it before any session is opened."""
    if sample_rate:
        chunk_bytes(chunk_ms, sample_rate)
    return _checked_ms(chunk_ms)
