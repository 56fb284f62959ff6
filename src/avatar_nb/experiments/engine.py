"""One run of one clip: its settings (:class:`RunSettings`), its result (:class:`ClipResult`)
and the engine that streams it (:func:`run_clip`), shared by batches and sweeps.

The run goes through :func:`avatar_nb.pipeline.stream_clip` against a service opened by
:func:`avatar_nb.endpoints.open_service`; a clip that fails is a result with its error,
never an exception.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..pacing import DEFAULT_CHUNK_MS, DEFAULT_PACING, Pacing, check_chunk_ms, check_pacing
from ..pipeline import service_meta, stream_clip
from ..protocol import DEFAULT_SAMPLE_RATE, check_sample_rate
from ..timeline import ms_text
from ..timeline_text import times_real_time
from .clips import BadInput, Clip, PreparedClip, prepare_clip

if TYPE_CHECKING:
    from ..endpoints import ServiceHandle
    from ..timeline import Timeline

__all__ = ["ClipResult", "RunSettings", "run_clip"]


@dataclass(frozen=True)
class RunSettings:
    """How one clip is streamed: ``pacing`` (:mod:`avatar_nb.pacing`), ``chunk_ms``, the
    session ``sample_rate``, ``timeout`` for the end frame (s; default 30 s plus the
    clip), and further session options (``fps`` ...) in ``session``. Checked when made."""

    pacing: Pacing = DEFAULT_PACING
    chunk_ms: float = DEFAULT_CHUNK_MS
    sample_rate: int = DEFAULT_SAMPLE_RATE
    timeout: float | None = None
    session: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_pacing(self.pacing)
        check_sample_rate(self.sample_rate)
        object.__setattr__(self, "chunk_ms", check_chunk_ms(self.chunk_ms, self.sample_rate))
        if self.timeout is not None and not (
            isinstance(self.timeout, (int, float)) and self.timeout > 0
        ):
            raise ValueError(
                f"timeout must be a positive number of seconds or None, got {self.timeout!r}"
            )
        object.__setattr__(self, "session", dict(self.session))

    def row(self) -> dict[str, Any]:
        """The settings as columns of a result row."""
        return {
            "pacing": self.pacing,
            "chunk_ms": self.chunk_ms,
            "sample_rate": self.sample_rate,
            **self.session,
        }


_SUMMARY_COLUMNS = (
    "audio_seconds",
    "keyframes",
    "requests",
    "first_frame_latency",
    "latency_p50",
    "latency_p90",
    "latency_p99",
    "lateness_p50",
    "lateness_p90",
    "lateness_p99",
    "jitter",
    "real_time_factor",
    "complete",
    "interrupted",
    "preempted",
    "failed",
    "anomalies",
    "errors",
)


@dataclass
class ClipResult:
    """One run of one clip under one :class:`RunSettings`: status, Timeline, figures, files.

    ``status`` is ``"ok"`` or ``"failed"`` (``error`` says why; ``bad_input`` when the
    clip itself could not be read). ``timeline`` holds what arrived, also for a failed run
    when a session was opened. ``outputs`` maps a writer's kind (``"npz"``, ``"png"`` ...)
    to the file it wrote.
    """

    clip: Clip
    settings: RunSettings
    status: str = "pending"
    error: str = ""
    bad_input: bool = False
    timeline: Timeline | None = field(default=None, repr=False)
    prepared: PreparedClip | None = field(default=None, repr=False)
    service: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    traceback: str = field(default="", repr=False)
    started_at: dt.datetime | None = field(default=None, repr=False)
    wall_seconds: float | None = field(default=None, repr=False)
    worker: str = field(default="", repr=False)

    @property
    def name(self) -> str:
        return self.clip.name

    @property
    def source(self) -> str:
        return self.clip.source

    @property
    def summary(self) -> dict[str, Any]:
        return self.timeline.summary() if self.timeline is not None else {}

    def row(self, writer_kinds: Sequence[str] = ()) -> dict[str, Any]:
        """One flat record: the clip, every run setting, the source, every summary figure
        (seconds), status, error and the files written (one column per writer kind)."""
        s = self.summary
        prepared = self.prepared
        record: dict[str, Any] = {
            "clip": self.clip.name,
            "source": self.clip.source,
            "status": self.status,
            "error": self.error,
            **self.settings.row(),
            "service": self.service.get("service"),
            # the local service's simulated processing latency and jitter (ms); a sweep's
            # grid names them so too (older datasets: service_latency_ms, service_jitter_ms)
            "latency_ms": self.service.get("service_latency_ms"),
            "jitter_ms": self.service.get("service_jitter_ms"),
            "source_rate": prepared.source_rate if prepared else None,
            "source_channels": prepared.source_channels if prepared else None,
            "clip_seconds": round(prepared.clip_seconds, 6) if prepared else None,
        }
        record.update({key: s.get(key) for key in _SUMMARY_COLUMNS})
        record.update(
            started_at=self.started_at, wall_seconds=self.wall_seconds, worker=self.worker or None
        )
        for kind in dict.fromkeys([*writer_kinds, *self.outputs]):
            record[kind] = self.outputs.get(kind, "")
        return record

    def line(self) -> str:
        """One line for people (milliseconds here only)."""
        if self.status != "ok":
            return f"{self.clip.source}: FAILED: {self.error}"
        s = self.summary
        rtf = "n/a" if s.get("real_time_factor") is None else f"{s['real_time_factor']:.3f}"
        speed = (f"processing {times_real_time(s.get('real_time_factor'))} real time"  # RTF 0.003 says little
                 if self.settings.pacing == "fast" else f"RTF {rtf}")
        outputs = ", ".join(self.outputs.values())
        late = "n/a (fast)" if self.settings.pacing == "fast" else ms_text(s.get("lateness_p99"))
        return (
            f"{self.clip.source}: {s.get('audio_seconds') or 0:.2f} s audio, {s.get('keyframes')} keyframes, "
            f"{self.settings.pacing} pacing, first frame {ms_text(s.get('first_frame_latency'))}, "
            f"latency p99 {ms_text(s.get('latency_p99'))}, lateness p99 {late}, {speed}"
            + (f" -> {outputs}" if outputs else "")
        )


# ----------------------------------------------------------------------------- one run


async def run_clip(
    handle: ServiceHandle,
    clip: Clip,
    settings: RunSettings | None = None,
    *,
    prepared: PreparedClip | None = None,
) -> ClipResult:
    """Run ONE clip under ``settings`` against an opened service; never raises for the clip's
    own failures (they are the result's ``status``/``error``).

    ``prepared`` is the clip's audio from :func:`prepare_clip` at ``settings.sample_rate``;
    without it the clip is prepared here, in a worker thread (heavy work beside any other
    session running in this process: batches prepare first). The result carries the
    Timeline (``result.timeline``) and the flat record (``result.row()``).
    """
    settings = settings or RunSettings()
    result = ClipResult(clip, settings, worker=f"{socket.gethostname()}:{os.getpid()}")
    result.started_at = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    try:
        if prepared is None:
            prepared = await asyncio.to_thread(prepare_clip, clip, settings.sample_rate)
        result.prepared = prepared
        overrides = {**settings.session, "sample_rate": settings.sample_rate}
        result.service = service_meta(handle)
        tl = await stream_clip(
            handle,
            prepared.pcm,
            chunk_ms=settings.chunk_ms,
            pacing=settings.pacing,
            timeout=settings.timeout,
            **overrides,
        )
        tl.meta.update(
            clip=clip.name,
            source=clip.source,
            source_rate=prepared.source_rate,
            source_channels=prepared.source_channels,
            clip_seconds=prepared.clip_seconds,
        )
        result.timeline = tl
        result.status = "ok"
    except BadInput as exc:
        result.status, result.error, result.bad_input = "failed", str(exc), True
        result.traceback = traceback.format_exc()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported per clip; the batch goes on
        result.status, result.error = "failed", str(exc) or type(exc).__name__
        result.timeline = getattr(exc, "timeline", None)
        result.traceback = traceback.format_exc()
    result.wall_seconds = time.perf_counter() - t0
    return result
