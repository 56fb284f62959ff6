"""Batches: many clips, under one or more settings, through one service, as data.

A batch runs in three phases, so that the tool never disturbs what it measures:

1. **prepare** (:func:`prepare_clip`): every clip is read, mixed to mono and resampled
   to each session rate it is needed at, before any session starts (decoding and
   resampling are heavy work);
2. **stream** (:func:`run_clip`, the unit a sweep maps over): at most ``concurrency``
   sessions at once over one service chosen by :func:`avatar_nb.endpoints.open_service`;
   a clip that fails is a result with its error, never the end of the batch;
3. **render** (:func:`render`): once every session of the batch has ended, each
   result's files are written by a list of :class:`Writer` (the timeline's ``.npz``,
   its figure, and whatever else a caller adds, such as a video).

Results come back in input order (clip by clip, each clip's settings in the order given)
as :class:`ClipResult`; :meth:`ClipResult.row` is one flat record with every setting of
the run and every summary figure, in seconds (settings keep their own units, named in
them: ``chunk_ms``, ``service_latency_ms``).

In a notebook: ``results = await avatar_nb.batch.run_batch(["a.wav", (samples, 44100)])``.
"""

from __future__ import annotations

import asyncio
import csv
import glob
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .pacing import DEFAULT_CHUNK_MS, DEFAULT_PACING, Pacing, check_chunk_ms, check_pacing
from .pipeline import service_meta, stream_clip
from .protocol import DEFAULT_SAMPLE_RATE, check_sample_rate
from .timeline import ms_text

if TYPE_CHECKING:
    from .endpoints import ServiceHandle
    from .server import LocalService
    from .timeline import Timeline

__all__ = [
    "FIGURE",
    "NPZ",
    "RAW_SUFFIXES",
    "VIDEO",
    "BadInput",
    "Clip",
    "ClipResult",
    "PreparedClip",
    "RunSettings",
    "Writer",
    "as_clips",
    "default_writers",
    "find_audio_files",
    "prepare_clip",
    "render",
    "run_batch",
    "run_clip",
    "write_summary_csv",
]

RAW_SUFFIXES: tuple[str, ...] = (".pcm", ".raw", ".s16le")
"""Suffixes of headerless mono s16le files (read only when their rate is given)."""


class BadInput(ValueError):
    """Input the user must fix (a missing file, a folder without audio, unreadable audio)."""


# ----------------------------------------------------------------------------- inputs


def find_audio_files(items: Iterable[str | os.PathLike[str]], *, raw: bool = False) -> list[Path]:
    """Expand files, folders and glob patterns into a de-duplicated list of audio files.

    Folders are scanned recursively for the suffixes of :data:`avatar_nb.audio.AUDIO_SUFFIXES`
    (and :data:`RAW_SUFFIXES` with ``raw``), sorted; a folder without any, a pattern
    matching nothing or a missing path is a :class:`BadInput`.
    """
    from .audio import AUDIO_SUFFIXES

    suffixes = tuple(AUDIO_SUFFIXES) + (RAW_SUFFIXES if raw else ())
    found: list[Path] = []
    for item in items:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            if not files:
                raise BadInput(f"{text}: directory contains no audio files ({', '.join(suffixes)})")
            found.extend(files)
        elif path.exists():
            found.append(path)
        elif any(ch in text for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            if not matches:
                raise BadInput(f"{text}: no files match this pattern")
            found.extend(matches)
        else:
            raise BadInput(f"{text}: no such file or directory")
    unique: list[Path] = []
    seen: set[Path] = set()
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


@dataclass(frozen=True)
class Clip:
    """One input of a batch: a file (``path``; ``rate`` for raw s16le) or an array with its ``rate``.

    ``name`` is unique within a batch (the file's stem, numbered on collisions) and names
    the clip's output files; ``source`` is what the user gave (the path, or ``<array i>``).
    """

    name: str
    source: str
    path: Path | None = None
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)
    rate: int | None = None


def as_clips(items: Iterable[Any], *, raw_rate: int | None = None) -> list[Clip]:
    """Clips from paths (files, folders, globs), ``(array, rate)`` pairs and :class:`Clip` objects.

    ``raw_rate`` is the sample rate of raw s16le files (``.pcm``, ``.raw``, ``.s16le``);
    without it they are not picked up by folder scans. Names are made unique.
    """
    clips: list[Clip] = []
    for position, item in enumerate(items):
        if isinstance(item, Clip):
            clips.append(item)
        elif isinstance(item, (str, os.PathLike)):
            for path in find_audio_files([item], raw=raw_rate is not None):
                raw = path.suffix.lower() in RAW_SUFFIXES
                clips.append(Clip(path.stem or "clip", str(path), path, None, raw_rate if raw else None))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], np.ndarray):
            samples, rate = item
            clips.append(Clip(f"clip_{position}", f"<array {position}>", None, samples, int(rate)))
        else:
            raise TypeError(
                f"cannot make a clip of {type(item).__name__}; accepted: a path, a folder, a glob pattern, "
                "an (array, sample_rate) pair or a Clip"
            )
    return _unique_names(clips)


def _unique_names(clips: list[Clip]) -> list[Clip]:
    used: dict[str, int] = {}
    out: list[Clip] = []
    for clip in clips:
        count = used.get(clip.name, 0)
        used[clip.name] = count + 1
        if count:
            clip = Clip(f"{clip.name}_{count + 1}", clip.source, clip.path, clip.samples, clip.rate)
        out.append(clip)
    return out


@dataclass(frozen=True)
class PreparedClip:
    """A clip's audio as sent: mono s16le ``pcm`` at ``sample_rate``, with what the source was."""

    pcm: bytes = field(repr=False)
    sample_rate: int
    source_rate: int
    source_channels: int
    clip_seconds: float


def prepare_clip(clip: Clip, sample_rate: int) -> PreparedClip:
    """Read, mix down and resample ``clip`` for a session at ``sample_rate`` (heavy work:
    done before streaming starts). Unreadable or invalid audio is a :class:`BadInput`
    naming the clip."""
    from .audio import load_audio, prepare_audio

    try:
        if clip.path is not None and clip.path.suffix.lower() in RAW_SUFFIXES:
            if clip.rate is None:
                raise BadInput(f"{clip.source}: raw PCM needs its sample rate (--raw-rate HZ)")
            data = clip.path.read_bytes()
            if not data:
                raise BadInput(f"{clip.source}: contains no audio samples")
            if len(data) % 2:
                raise BadInput(f"{clip.source}: raw s16le has an odd number of bytes ({len(data)})")
            samples: Any = data
            rate, channels, frames = int(clip.rate), 1, len(data) // 2
        elif clip.path is not None:
            samples, rate = load_audio(clip.path)
            channels = samples.shape[1] if samples.ndim == 2 else 1
            frames = samples.shape[0]
        else:
            samples, rate = np.asarray(clip.samples), int(clip.rate or 0)
            channels = samples.shape[1] if samples.ndim == 2 else 1
            frames = samples.shape[0] if samples.ndim else 0
        pcm = prepare_audio(samples, rate, target_rate=sample_rate)
    except BadInput:
        raise
    except OSError as exc:
        raise BadInput(f"{clip.source}: cannot be read ({exc.strerror or type(exc).__name__})") from exc
    except ValueError as exc:  # AudioFormatError included; name the clip once
        text = str(exc)
        for generic in ("source: ", "sample_rate: "):
            text = text.removeprefix(generic)
        raise BadInput(text if text.startswith(clip.source) else f"{clip.source}: {text}") from exc
    return PreparedClip(pcm, int(sample_rate), int(rate), int(channels), frames / rate if rate else 0.0)


# ----------------------------------------------------------------------------- settings and results


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
        if self.timeout is not None and not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds or None, got {self.timeout!r}")
        object.__setattr__(self, "session", dict(self.session))

    def row(self) -> dict[str, Any]:
        """The settings as columns of a result row."""
        return {"pacing": self.pacing, "chunk_ms": self.chunk_ms, "sample_rate": self.sample_rate, **self.session}


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
            "service_latency_ms": self.service.get("service_latency_ms"),
            "service_jitter_ms": self.service.get("service_jitter_ms"),
            "source_rate": prepared.source_rate if prepared else None,
            "source_channels": prepared.source_channels if prepared else None,
            "clip_seconds": round(prepared.clip_seconds, 6) if prepared else None,
        }
        record.update({key: s.get(key) for key in _SUMMARY_COLUMNS})
        for kind in dict.fromkeys([*writer_kinds, *self.outputs]):
            record[kind] = self.outputs.get(kind, "")
        return record

    def line(self) -> str:
        """One line for people (milliseconds here only)."""
        if self.status != "ok":
            return f"{self.clip.source}: FAILED: {self.error}"
        s = self.summary
        rtf = "n/a" if s.get("real_time_factor") is None else f"{s['real_time_factor']:.3f}"
        outputs = ", ".join(self.outputs.values())
        late = "n/a (fast)" if self.settings.pacing == "fast" else ms_text(s.get("lateness_p99"))
        return (
            f"{self.clip.source}: {s.get('audio_seconds') or 0:.2f} s audio, {s.get('keyframes')} keyframes, "
            f"{self.settings.pacing} pacing, first frame {ms_text(s.get('first_frame_latency'))}, "
            f"latency p99 {ms_text(s.get('latency_p99'))}, lateness p99 {late}, RTF {rtf}"
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
    result = ClipResult(clip, settings)
    try:
        if prepared is None:
            prepared = await asyncio.to_thread(prepare_clip, clip, settings.sample_rate)
        result.prepared = prepared
        overrides = {**settings.session, "sample_rate": settings.sample_rate}
        result.service = service_meta(handle)
        tl = await stream_clip(
            handle, prepared.pcm, chunk_ms=settings.chunk_ms, pacing=settings.pacing,
            timeout=settings.timeout, **overrides,
        )
        tl.meta.update(
            clip=clip.name, source=clip.source, source_rate=prepared.source_rate,
            source_channels=prepared.source_channels, clip_seconds=prepared.clip_seconds,
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
    return result


# ----------------------------------------------------------------------------- render phase


@dataclass(frozen=True)
class Writer:
    """A post-run output: ``write(result, stem)`` writes a file for a result whose
    ``timeline`` is set and returns its path; ``stem`` is ``out / <clip name>`` (plus the
    settings' index when a batch has several). ``kind`` names the output (``"npz"``,
    ``"png"``, ``"mp4"`` ...): the key in :attr:`ClipResult.outputs` and a column of the rows."""

    kind: str
    write: Callable[[ClipResult, Path], Path]


def _write_npz(result: ClipResult, stem: Path) -> Path:
    assert result.timeline is not None
    return result.timeline.save(stem.parent / f"{stem.name}.npz")


def _write_figure(result: ClipResult, stem: Path) -> Path:
    from . import plots

    assert result.timeline is not None
    fig = plots.report(result.timeline)
    title = fig.get_suptitle()
    if result.clip.name not in title:  # the figure names its clip
        fig.suptitle(f"{result.clip.name} ({result.settings.pacing} pacing)" + (f" — {title}" if title else ""))
    path = stem.parent / f"{stem.name}.png"
    fig.savefig(path, dpi=100)
    return path


NPZ = Writer("npz", _write_npz)
"""Writes the Timeline (:meth:`~avatar_nb.Timeline.save`)."""

FIGURE = Writer("png", _write_figure)
"""Writes :func:`avatar_nb.plots.report` of the Timeline, titled with the clip's name."""


def _write_video(result: ClipResult, stem: Path) -> Path:
    assert result.timeline is not None
    return result.timeline.to_video(stem.parent / f"{stem.name}.mp4").path


VIDEO = Writer("mp4", _write_video)
"""Writes the run as an MP4 with its audio (:meth:`~avatar_nb.Timeline.to_video`)."""


def default_writers(*, plot: bool = True) -> list[Writer]:
    """The outputs of ``avatar-nb run``: the ``.npz`` and, with ``plot``, the figure."""
    return [NPZ, FIGURE] if plot else [NPZ]


def render(
    results: Sequence[ClipResult],
    out_dir: str | os.PathLike[str],
    writers: Sequence[Writer] | None = None,
    *,
    progress: bool = True,
) -> None:
    """Write each result's files with ``writers`` (default :func:`default_writers`).

    Call it after every session whose timing is recorded has ended (figures and files
    made beside a streaming session disturb its timing). Results without a Timeline are
    skipped; a writer that fails marks its result failed with the reason, and the
    other results and writers go on.
    """
    from tqdm.auto import tqdm

    writers = default_writers() if writers is None else list(writers)
    out = Path(out_dir)
    make_out_dir(out)
    todo = [r for r in results if r.timeline is not None]
    stems = _stems(results)
    bar = tqdm(total=len(todo) * len(writers), unit="file", desc="writing", disable=not progress or not todo,
               file=sys.stderr, dynamic_ncols=True)
    try:
        for result in todo:
            for writer in writers:
                try:
                    result.outputs[writer.kind] = str(writer.write(result, out / stems[id(result)]))
                except Exception as exc:  # noqa: BLE001 - one bad file does not lose the others
                    result.status = "failed"
                    reason = f"writing {writer.kind}: {exc or type(exc).__name__}"
                    result.error = f"{result.error}; {reason}" if result.error else reason
                    result.traceback = traceback.format_exc()
                bar.update(1)
    finally:
        bar.close()


def _stems(results: Sequence[ClipResult]) -> dict[int, str]:
    # one settings per clip: the clip's name; several: name plus the settings' number
    per_clip: dict[str, int] = {}
    for r in results:
        per_clip[r.clip.name] = per_clip.get(r.clip.name, 0) + 1
    seen: dict[str, int] = {}
    stems: dict[int, str] = {}
    for r in results:
        n = seen.get(r.clip.name, 0)
        seen[r.clip.name] = n + 1
        stems[id(r)] = r.clip.name if per_clip[r.clip.name] == 1 else f"{r.clip.name}_s{n}"
    return stems


def make_out_dir(out_dir: Path) -> None:
    """Create the output folder; a path that cannot be one is a :class:`BadInput`."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"{out_dir}: exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{out_dir}: cannot create this folder ({exc.strerror or exc})") from exc


def write_summary_csv(
    results: Sequence[ClipResult], path: str | os.PathLike[str], writer_kinds: Sequence[str] = ()
) -> Path:
    """One row per result (:meth:`ClipResult.row`), seconds throughout; empty cells for None."""
    rows = [r.row(writer_kinds) for r in results]
    columns: list[str] = list(dict.fromkeys(k for row in rows for k in row)) if rows else list(
        ClipResult(Clip("", ""), RunSettings()).row(writer_kinds)
    )
    path = Path(path)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return path


# ----------------------------------------------------------------------------- the batch


def _as_settings(settings: RunSettings | Sequence[RunSettings] | None) -> list[RunSettings]:
    if settings is None:
        return [RunSettings()]
    if isinstance(settings, RunSettings):
        return [settings]
    out = list(settings)
    if not out or not all(isinstance(s, RunSettings) for s in out):
        raise TypeError("settings must be a RunSettings or a non-empty sequence of them")
    return out


async def run_batch(
    clips: Iterable[Any],
    settings: RunSettings | Sequence[RunSettings] | None = None,
    *,
    service: LocalService | None = None,
    concurrency: int = 4,
    out: str | os.PathLike[str] | None = None,
    writers: Sequence[Writer] | None = None,
    raw_rate: int | None = None,
    local_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    on_result: Callable[[ClipResult], None] | None = None,
    **session_kwargs: Any,
) -> list[ClipResult]:
    """Run every clip under every settings with at most ``concurrency`` sessions at once.

    ``clips`` as :func:`as_clips` takes them; ``settings`` one :class:`RunSettings` or
    several (each clip runs under each). The service is chosen by
    :func:`avatar_nb.endpoints.open_service` (``service``, endpoints in
    ``session_kwargs``, the ``AVATAR_NB_*`` variables, else an embedded LocalService
    with ``local_options``, real time unless every run is ``"fast"``). Clips are
    prepared before any session starts; with ``out`` the files of ``writers`` (default
    :func:`default_writers`) are written by :func:`render` after the last session ended.
    ``on_result(result)`` is called as each run finishes streaming (keep it light: other
    sessions are still running). Returns the results in input order; a failed run is a
    result, never an exception.
    """
    from tqdm.auto import tqdm

    from .endpoints import open_service

    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
    all_settings = _as_settings(settings)
    clip_list = as_clips(clips, raw_rate=raw_rate)
    if out is not None:
        make_out_dir(Path(out))

    # phase 1: prepare every clip at every rate it is needed at, before any session
    prepared: dict[tuple[int, int], PreparedClip | BadInput] = {}
    rates = sorted({s.sample_rate for s in all_settings})
    for index, clip in enumerate(clip_list):
        for rate in rates:
            try:
                prepared[index, rate] = await asyncio.to_thread(prepare_clip, clip, rate)
            except BadInput as exc:
                prepared[index, rate] = exc

    # phase 2: stream
    runs = [(i, clip, s) for i, clip in enumerate(clip_list) for s in all_settings]
    results: list[ClipResult | None] = [None] * len(runs)
    options = {"realtime": any(s.pacing != "fast" for s in all_settings), **dict(local_options or {})}
    semaphore = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(runs), unit="clip", desc="streaming", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    hours = 0.0

    async def one(position: int, index: int, clip: Clip, run_settings: RunSettings, handle: ServiceHandle) -> None:
        nonlocal hours
        ready = prepared[index, run_settings.sample_rate]
        if isinstance(ready, BadInput):
            result = ClipResult(clip, run_settings, "failed", str(ready), True)
            result.traceback = "".join(traceback.format_exception(ready))
        else:
            async with semaphore:
                result = await run_clip(handle, clip, run_settings, prepared=ready)
        results[position] = result
        hours += (result.summary.get("audio_seconds") or 0.0) / 3600.0
        bar.update(1)
        bar.set_postfix_str(f"{hours:.4f} h audio", refresh=False)
        if on_result is not None:
            on_result(result)

    try:
        async with open_service(service, local_options=options, **session_kwargs) as handle:
            await asyncio.gather(*(one(p, i, c, s, handle) for p, (i, c, s) in enumerate(runs)))
    finally:
        bar.close()
    done = [r for r in results if r is not None]

    # phase 3: files, once nothing streams any more
    if out is not None:
        render(done, out, writers, progress=progress)
    return done
