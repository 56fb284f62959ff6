"""The capture protocol's kernel side, without I/O: the browser's numbered chunks in, the
chunks to send to the session out.

The browser sends the microphone as numbered s16le chunks of a fixed length (the last
one may be shorter); :class:`CaptureSequencer` decides, for each arrival, what goes to
the session at once: gaps filled with silence, late and repeated chunks dropped, chunks
of the wrong size replaced by silence, each case counted and explained. A gap longer
than ``max_gap`` chunks (a sequence number far ahead: a broken or hostile page) is not
filled: it ends the capture with :class:`CaptureGapError`, before any silence is made,
so one message cannot make the kernel allocate more than ``max_gap`` chunks. The widget
(:mod:`avatar_nb.widgets.microphone`) does the I/O around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_GAP_CHUNKS", "CaptureGapError", "CaptureSequencer", "OutgoingChunk"]

_MAX_ERRORS = 20  # error messages kept per run; further ones are only counted

MAX_GAP_CHUNKS = 250
"""The longest gap :class:`CaptureSequencer` fills with silence by default, in chunks
(10 s of 40 ms chunks: as many as the microphone panel queues for its session)."""


class CaptureGapError(ValueError):
    """A chunk's sequence number is further ahead than the sequencer fills with silence;
    the capture has ended (``CaptureSequencer.ended`` and ``failure`` are set)."""


@dataclass(frozen=True)
class OutgoingChunk:
    """A chunk to send to the session: its sequence slot, PCM, end flag and what it is
    (``"audio"`` as captured, or ``"silence"`` filling a gap or a rejected chunk)."""

    seq: int
    pcm: bytes
    end: bool
    kind: str


@dataclass
class CaptureSequencer:
    """Sans-I/O ordering of the browser's chunks: what to send, in order, for each arrival.

    ``accept(seq, data, end)`` returns the chunks to send now (gap fillers first), never
    holding a chunk back. Counters say what happened; ``errors`` keeps the first
    :data:`_MAX_ERRORS` messages, ``n_errors`` counts them all. A gap of more than
    ``max_gap`` chunks raises :class:`CaptureGapError` and ends the capture (``failure``
    says why); nothing is allocated for it. All silence fillers share one bytes object.
    """

    chunk_samples: int
    max_gap: int = MAX_GAP_CHUNKS
    next_seq: int = 0
    ended: bool = False
    gaps: int = 0
    gap_samples: int = 0
    late: int = 0
    duplicates: int = 0
    rejected: int = 0
    after_end: int = 0
    n_errors: int = 0
    errors: list[str] = field(default_factory=list)
    failure: str | None = None
    _filled: set[int] = field(default_factory=set)
    _zeros: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if (
            isinstance(self.chunk_samples, bool)
            or not isinstance(self.chunk_samples, int)
            or self.chunk_samples <= 0
        ):
            raise ValueError(f"chunk_samples must be a positive int, got {self.chunk_samples!r}")
        if isinstance(self.max_gap, bool) or not isinstance(self.max_gap, int) or self.max_gap < 0:
            raise ValueError(f"max_gap must be an int >= 0 (chunks), got {self.max_gap!r}")
        self._zeros = bytes(self.chunk_bytes)

    @property
    def chunk_bytes(self) -> int:
        return 2 * self.chunk_samples

    def error(self, text: str) -> None:
        self.n_errors += 1
        if len(self.errors) < _MAX_ERRORS:
            self.errors.append(text)

    def _silence(self, seq: int, end: bool = False) -> OutgoingChunk:
        self._filled.add(seq)
        return OutgoingChunk(seq, self._zeros, end, "silence")

    def accept(self, seq: Any, data: bytes, end: bool = False) -> list[OutgoingChunk]:
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            self.error(f"chunk with sequence number {seq!r} dropped: expected an int >= 0")
            return []
        if self.ended:
            self.after_end += 1
            self.error(f"chunk {seq} dropped: it arrived after the end of the capture")
            return []
        if seq < self.next_seq:
            if seq in self._filled:
                self.late += 1
                self.error(
                    f"chunk {seq} arrived after chunk {self.next_seq - 1}; its slot was already "
                    "filled with silence, so it was dropped"
                )
            else:
                self.duplicates += 1
                self.error(f"chunk {seq} arrived twice; the repeat was dropped")
            return []
        out: list[OutgoingChunk] = []
        if seq - self.next_seq > self.max_gap:
            missing = seq - self.next_seq
            self.ended = True
            self.failure = (
                f"chunk {seq} arrived when chunk {self.next_seq} was expected: a gap of {missing} "
                f"chunks ({missing * self.chunk_samples} samples), more than the {self.max_gap} "
                "filled with silence; capture stopped"
            )
            self.error(self.failure)
            raise CaptureGapError(self.failure)
        if seq > self.next_seq:
            missing = seq - self.next_seq
            self.gaps += missing
            self.gap_samples += missing * self.chunk_samples
            self.error(
                f"chunks {self.next_seq}..{seq - 1} never arrived: filled with "
                f"{missing * self.chunk_samples} samples of silence"
            )
            out.extend(self._silence(s) for s in range(self.next_seq, seq))
        self.next_seq = seq + 1
        size = len(data)
        bad = None
        if size % 2:
            bad = f"{size} bytes, an odd number (s16le has 2 bytes per sample)"
        elif size != self.chunk_bytes and not (end and size < self.chunk_bytes):
            bad = f"{size} bytes ({size // 2} samples)"
        if bad is not None:
            self.rejected += 1
            accepted = f"{self.chunk_bytes} bytes ({self.chunk_samples} samples)"
            if end:
                accepted += " or, for the last chunk, an even number up to that"
            self.error(
                f"chunk {seq} rejected: {bad}; accepted: {accepted}. Its slot was filled with silence"
            )
            out.append(self._silence(seq, end))
        else:
            out.append(OutgoingChunk(seq, bytes(data), bool(end), "audio"))
        self.ended = bool(end)
        return out

    def counts(self) -> dict[str, int]:
        return {
            "gaps": self.gaps,
            "gap_samples": self.gap_samples,
            "late": self.late,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "after_end": self.after_end,
            "errors": self.n_errors,
        }
