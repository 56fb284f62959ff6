"""Batches: many clips, under one or more settings, through one service, as data.

A batch runs in three phases, so that the tool never disturbs what it measures:

1. **prepare** (:func:`prepare_clip`): every clip is read, mixed to mono and resampled
   to each session rate it is needed at, before any session starts (decoding and
   resampling are heavy work);
2. **stream** (:func:`run_clip`, the unit a sweep maps over): at most ``concurrency``
   sessions at once over one service chosen by :func:`avatar_nb.endpoints.open_service`;
   a clip that fails is a result with its error, never the end of the batch;
3. **render** (:func:`render`): once every session of the batch has ended, each
   result's files are written by a list of :class:`~avatar_nb.experiments.Output` (the
   timeline's ``.npz``, its figure, and whatever else a caller adds, such as a video or
   :func:`~avatar_nb.experiments.dataset_output`).

The clips, the run engine and the outputs are the experiment layer's
(:mod:`avatar_nb.experiments`), shared with sweeps: this module is the batch's entry
point and keeps their old names importable (``Writer`` and ``default_writers`` are the
deprecated spellings of ``Output`` and ``default_outputs``).

Results come back in input order (clip by clip, each clip's settings in the order given)
as :class:`ClipResult`; :meth:`ClipResult.row` is one flat record with every setting of
the run and every summary figure, in seconds (settings keep their own units, named in
them: ``chunk_ms``, ``latency_ms``).

In a notebook: ``results = await avatar_nb.batch.run_batch(["a.wav", (samples, 44100)])``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .experiments.clips import (
    RAW_SUFFIXES,
    BadInput,
    Clip,
    PreparedClip,
    collect_clips,
    find_audio_files,
    prepare_clip,
)
from .experiments.engine import ClipResult, RunSettings, run_clip
from .experiments.outputs import (
    FIGURE,
    NPZ,
    VIDEO,
    Output,
    default_outputs,
    make_out_dir,
    render,
    write_summary_csv,
)

if TYPE_CHECKING:
    from .endpoints import ServiceHandle
    from .server import LocalService

__all__ = [
    "FIGURE",
    "NPZ",
    "RAW_SUFFIXES",
    "VIDEO",
    "BadInput",
    "Clip",
    "ClipResult",
    "Output",
    "PreparedClip",
    "RunSettings",
    "as_clips",
    "default_outputs",
    "find_audio_files",
    "prepare_clip",
    "render",
    "run_batch",
    "run_clip",
    "write_summary_csv",
]

# names kept importable from here (they live in avatar_nb.experiments)
_KEPT = (RAW_SUFFIXES, FIGURE, NPZ, VIDEO, PreparedClip, find_audio_files, prepare_clip, render, run_clip, write_summary_csv)


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
    writers: Sequence[Output] | None = None,
    raw_rate: int | None = None,
    recursive: bool = True,
    local_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    on_result: Callable[[ClipResult], None] | None = None,
    **session_kwargs: Any,
) -> list[ClipResult]:
    """Run every clip under every settings with at most ``concurrency`` sessions at once.

    ``clips`` as :func:`~avatar_nb.experiments.collect_clips` takes them (folders
    recursively unless ``recursive=False``; ``raw_rate`` for raw s16le files);
    ``settings`` one :class:`RunSettings` or several (each clip runs under each). The service is chosen by
    :func:`avatar_nb.endpoints.open_service` (``service``, endpoints in
    ``session_kwargs``, the ``AVATAR_NB_*`` variables, else an embedded LocalService
    with ``local_options``, real time unless every run is ``"fast"``). Clips are
    prepared before any session starts; with ``out`` the files of ``writers`` (default
    :func:`default_outputs`) are written by :func:`render` after the last session ended.
    ``on_result(result)`` is called as each run finishes streaming (keep it light: other
    sessions are still running). Returns the results in input order; a failed run is a
    result, never an exception. Interrupted (Ctrl-C), the runs that finished have their
    files written before the interruption goes on. ``progress`` shows a bar counting the
    runs and a line per clip streaming (:class:`avatar_nb.progress.BatchProgress`, drawn by a
    thread of its own).
    """
    from .endpoints import open_service
    from .progress import BatchProgress, bars_wanted

    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
    all_settings = _as_settings(settings)
    clip_list = collect_clips(clips, recursive=recursive, raw_rate=raw_rate)
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
    # a bar counting runs, and a line per clip streaming (unless the caller's streaming_bars
    # already gives each clip a bar), all drawn by a thread from counters the loop bumps
    bars = BatchProgress(len(runs), enabled=progress, clip_bars=not bars_wanted(), file=sys.stderr,
                         label_width=max((len(c.name) for c in clip_list), default=0))

    async def one(position: int, index: int, clip: Clip, run_settings: RunSettings, handle: ServiceHandle) -> None:
        ready = prepared[index, run_settings.sample_rate]
        if isinstance(ready, BadInput):
            result = ClipResult(clip, run_settings, "failed", str(ready), True)
            result.traceback = "".join(traceback.format_exception(ready))
        else:
            async with semaphore:
                with bars.clip(clip.name):
                    result = await run_clip(handle, clip, run_settings, prepared=ready)
        results[position] = result
        bars.run_done(result.summary.get("audio_seconds") or 0.0)
        if on_result is not None:
            on_result(result)

    try:
        with bars:
            async with open_service(service, local_options=options, **session_kwargs) as handle:
                await asyncio.gather(*(one(p, i, c, s, handle) for p, (i, c, s) in enumerate(runs)))
    except asyncio.CancelledError:  # Ctrl-C: the runs that finished keep their files
        if out is not None:
            render([r for r in results if r is not None], out, writers, progress=False)
        raise
    done = [r for r in results if r is not None]

    # phase 3: files, once nothing streams any more
    if out is not None:
        render(done, out, writers, progress=progress)
    return done


def as_clips(items: Iterable[Any], *, raw_rate: int | None = None) -> list[Clip]:
    """Clips from paths (files, folders, globs), ``(array, rate)`` pairs and :class:`Clip` objects:
    :func:`avatar_nb.experiments.collect_clips` (the one collector), folders recursively."""
    return collect_clips(list(items), raw_rate=raw_rate)


_DEPRECATED = {"Writer": ("Output", Output), "default_writers": ("default_outputs", default_outputs)}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        new, value = _DEPRECATED[name]
        warnings.warn(
            f"avatar_nb.batch.{name} is deprecated and goes in the next release; "
            f"use avatar_nb.experiments.{new} (a batch output, not a dataset writer)",
            DeprecationWarning,
            stacklevel=2,
        )
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
