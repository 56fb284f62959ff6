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

from typing import Literal

__all__ = ["DEFAULT_CHUNK_MS", "DEFAULT_PACING", "PACING_MODES", "Pacing", "check_pacing", "pacing_from_realtime"]

Pacing = Literal["capture", "playback", "fast"]

PACING_MODES: tuple[str, ...] = ("capture", "playback", "fast")
"""The accepted pacing modes."""

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
