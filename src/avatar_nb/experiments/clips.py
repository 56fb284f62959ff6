"""Clips: the one collector and the one clip type of batches, sweeps and ``avatar-nb run``.

:func:`collect_clips` takes files, folders, glob patterns, ``(array, sample_rate)`` pairs,
:class:`Clip` objects, or a mapping ``name -> any of those`` (one clip each), and gives
:class:`Clip` objects in the order given. The rules, the same for every entry point:

- a folder is scanned for the suffixes of :data:`avatar_nb.audio.AUDIO_SUFFIXES` (and
  :data:`RAW_SUFFIXES` when ``raw_rate`` is given), recursively unless
  ``recursive=False``, in sorted order; a folder without any is a :class:`BadInput`;
- a path that does not exist but holds ``*``, ``?`` or ``[`` is a glob pattern (``**``
  recursive); one that matches nothing, or a missing path, is a :class:`BadInput`;
- a pair is a 2-tuple whose rate is an integer (or whose samples are a numpy array);
- default names: a file's stem, ``clip_{i}`` for the i-th item when it is an unnamed pair;
- **duplicates**: the same file reached twice under the same name (given twice, or by a
  folder and a pattern) is a :class:`BadInput` saying so ("clip names must be unique");
  different clips that would share a name are numbered in the order found: ``a``,
  ``a_2``, ``a_3`` ..., skipping numbers a given name already holds (so a file ``a.wav``
  and a ``sub/a.wav`` are ``a`` and ``a_2``).

A clip's ``key`` identifies its audio for run ids: the resolved path, or for an array a
hash of its samples (with the name the sweep gave it before names were shared:
``clip{i}`` for an unnamed pair, so datasets written earlier keep their run ids).
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "RAW_SUFFIXES",
    "BadInput",
    "Clip",
    "PreparedClip",
    "collect_clips",
    "find_audio_files",
    "prepare_clip",
]

RAW_SUFFIXES: tuple[str, ...] = (".pcm", ".raw", ".s16le")
"""Suffixes of headerless mono s16le files (read only when their rate is given)."""


class BadInput(ValueError):
    """Input the user must fix (a missing file, a folder without audio, unreadable audio)."""


@dataclass(frozen=True)
class Clip:
    """One clip: a file (``path``; ``rate`` for raw s16le) or an array (``samples``) with its ``rate``.

    ``name`` is unique among the clips of a run (the runs table's ``clip``, the stem of a
    batch's output files); ``source`` is what the user gave (the path, or ``<array i>``);
    ``key`` identifies the audio for run ids (see the module's notes).
    """

    name: str
    source: str
    path: Path | None = None
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)
    rate: int | None = None
    key: str = ""

    @property
    def sample_rate(self) -> int | None:
        """The rate of the clip's samples (``rate``; the name a sweep's clips used)."""
        return self.rate

    def as_clip(self) -> Clip:
        """This clip (the sweep's clips had to be converted once; kept for old callers)."""
        return self


def find_audio_files(
    items: Iterable[str | os.PathLike[str]], *, raw: bool = False, recursive: bool = True
) -> list[Path]:
    """Expand files, folders and glob patterns into a list of audio files, in order.

    Folders are scanned (recursively unless ``recursive=False``) for the suffixes of
    :data:`avatar_nb.audio.AUDIO_SUFFIXES` (and :data:`RAW_SUFFIXES` with ``raw``),
    sorted; a folder without any, a pattern matching nothing or a missing path is a
    :class:`BadInput`. A file reached twice is listed once.
    """
    from ..audio import AUDIO_SUFFIXES

    suffixes = tuple(AUDIO_SUFFIXES) + (RAW_SUFFIXES if raw else ())
    found: list[Path] = []
    for item in items:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            scan = path.rglob("*") if recursive else path.iterdir()
            files = sorted(p for p in scan if p.is_file() and p.suffix.lower() in suffixes)
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


def _is_pair(item: Any) -> bool:
    return (
        isinstance(item, tuple)
        and len(item) == 2
        and (
            isinstance(item[0], np.ndarray)
            or (isinstance(item[1], (int, np.integer)) and not isinstance(item[1], bool))
        )
    )


def _pair(name: str | None, index: int, pair: Any) -> Clip:
    samples, rate = pair
    samples = np.asarray(samples)
    digest = hashlib.sha1(np.ascontiguousarray(samples).tobytes()).hexdigest()[:16]
    key_name = name or f"clip{index}"  # the sweep's default name before names were shared
    return Clip(
        name or f"clip_{index}",
        f"<array {name or index}>",
        None,
        samples,
        int(rate),
        f"{key_name}:{digest}@{int(rate)}",
    )


def _file(path: Path, name: str | None, raw_rate: int | None) -> Clip:
    resolved = path.resolve()
    raw = path.suffix.lower() in RAW_SUFFIXES
    key = str(resolved) + (f"@{raw_rate}" if raw and raw_rate is not None else "")
    return Clip(
        name or path.stem or "clip", str(path), resolved, None, raw_rate if raw else None, key
    )


def collect_clips(clips: Any, *, recursive: bool = True, raw_rate: int | None = None) -> list[Clip]:
    """The clips of a batch or a sweep, by the rules of this module (see its notes).

    ``clips``: a path (file, folder, glob pattern), an ``(array, rate)`` pair, a
    :class:`Clip`, a list of those, or a mapping ``name -> path or pair``. ``raw_rate``
    is the sample rate of raw s16le files; without it folders skip them.
    """
    out: list[Clip] = []

    def one(item: Any, name: str | None, index: int) -> None:
        if isinstance(item, Clip):
            out.append(item)
        elif isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if name is not None and path.is_file():
                out.append(_file(path, name, raw_rate))
                return
            files = find_audio_files([item], raw=raw_rate is not None, recursive=recursive)
            if name is not None and len(files) == 1:
                out.append(_file(files[0], name, raw_rate))
            else:
                out.extend(_file(p, None, raw_rate) for p in files)
        elif _is_pair(item):
            out.append(_pair(name, index, item))
        else:
            raise TypeError(
                f"cannot make a clip of {type(item).__name__}; accepted: a path, a folder, a glob pattern, "
                "an (array, sample_rate) pair, a Clip, or a mapping of names to those"
            )

    if isinstance(clips, Mapping):
        for index, (name, item) in enumerate(clips.items()):
            one(item, str(name), index)
    elif isinstance(clips, (str, os.PathLike, Clip)) or _is_pair(clips):
        one(clips, None, 0)
    elif isinstance(clips, Iterable):
        for index, item in enumerate(clips):
            one(item, None, index)
    else:
        raise TypeError(
            f"clips must be paths, a folder, (array, rate) pairs or a mapping, got {type(clips).__name__}"
        )
    return _unique_names(out)


def _unique_names(clips: list[Clip]) -> list[Clip]:
    """Number clips that share a name; the same clip twice under one name is a :class:`BadInput`."""
    seen: set[tuple[str, str]] = set()
    taken: set[str] = set()
    out: list[Clip] = []
    for clip in clips:
        identity = (clip.name, clip.key or clip.source)
        if clip.key and identity in seen:
            raise BadInput(
                f"clip names must be unique: {clip.source} is given twice as {clip.name!r}; "
                "give it once, or pass a mapping name -> clip"
            )
        seen.add(identity)
        if clip.name in taken:  # the first free number, so that a file named a_2 keeps apart
            number = 2
            while f"{clip.name}_{number}" in taken:
                number += 1
            clip = replace(clip, name=f"{clip.name}_{number}")
        taken.add(clip.name)
        out.append(clip)
    return out


# ----------------------------------------------------------------------------- preparing


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
    from ..audio import load_audio, prepare_audio

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
        pcm = prepare_audio(samples, rate, target_rate=sample_rate, label=clip.source)
    except BadInput:
        raise
    except OSError as exc:
        raise BadInput(
            f"{clip.source}: cannot be read ({exc.strerror or type(exc).__name__})"
        ) from exc
    except ValueError as exc:  # AudioFormatError included; name the clip once
        text = str(exc)
        for generic in ("source: ", "sample_rate: "):
            text = text.removeprefix(generic)
        raise BadInput(text if text.startswith(clip.source) else f"{clip.source}: {text}") from exc
    return PreparedClip(
        pcm, int(sample_rate), int(rate), int(channels), frames / rate if rate else 0.0
    )
