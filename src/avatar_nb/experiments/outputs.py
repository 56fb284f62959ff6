"""Files a batch writes per result once streaming is over: :class:`Output` and the standard ones.

An :class:`Output` (``batch.Writer`` before; renamed so that it is not confused with the
dataset's :class:`~avatar_nb.dataset.DatasetWriter` or a sweep's
:class:`~avatar_nb.experiments.writer_process.WriterProcess`) writes one file or folder for
a result: :data:`NPZ`, :data:`FIGURE`, :data:`VIDEO`, and :func:`dataset_output`, which
adds each result to a Parquet dataset (what ``avatar-nb run`` does, so that
``load_results(out)`` reads a batch's results as it reads a sweep's). :func:`render`
writes them all after every session whose timing is recorded has ended.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
import sys
import tempfile
import traceback
import unicodedata
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .clips import BadInput, Clip
from .engine import ClipResult, RunSettings

__all__ = [
    "FIGURE",
    "NPZ",
    "VIDEO",
    "Output",
    "dataset_output",
    "default_outputs",
    "make_out_dir",
    "render",
    "safe_stem",
    "unique_stems",
    "write_summary_csv",
]


@dataclass(frozen=True)
class Output:
    """A post-run output: ``write(result, stem)`` writes a file for a result whose
    ``timeline`` is set and returns its path; ``stem`` is ``out / <clip name>`` made safe
    (:func:`safe_stem`, :func:`unique_stems`; plus the settings' index when a batch has
    several). A writer of a file writes it whole or not at all (:func:`write_whole`). ``kind`` names the output (``"npz"``,
    ``"png"``, ``"mp4"`` ...): the key in :attr:`ClipResult.outputs` and a column of the rows."""

    kind: str
    write: Callable[[ClipResult, Path], Path]


def write_whole(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(temporary)`` to a hidden temporary beside ``path`` (same suffix), renamed onto
    ``path`` once whole: a full disk or a failed writer leaves the old file or none, never
    part of one."""
    temporary = path.parent / f".{path.stem[:40]}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}"
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _write_npz(result: ClipResult, stem: Path) -> Path:
    assert result.timeline is not None
    timeline = result.timeline
    return write_whole(stem.parent / f"{stem.name}.npz", timeline.save)


def _write_figure(result: ClipResult, stem: Path) -> Path:
    from .. import plots

    assert result.timeline is not None
    fig = plots.report(result.timeline)
    title = fig.get_suptitle()
    if result.clip.name not in title:  # the figure names its clip
        fig.suptitle(
            f"{result.clip.name} ({result.settings.pacing} pacing)"
            + (f" — {title}" if title else "")
        )
    try:
        return write_whole(stem.parent / f"{stem.name}.png", lambda p: fig.savefig(p, dpi=100))
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


NPZ = Output("npz", _write_npz)
"""Writes the Timeline (:meth:`~avatar_nb.Timeline.save`)."""

FIGURE = Output("png", _write_figure)
"""Writes :func:`avatar_nb.plots.report` of the Timeline, titled with the clip's name."""


def _write_video(result: ClipResult, stem: Path) -> Path:
    assert result.timeline is not None
    timeline = result.timeline
    return write_whole(stem.parent / f"{stem.name}.mp4", timeline.to_video)


VIDEO = Output("mp4", _write_video)
"""Writes the run as an MP4 with its audio (:meth:`~avatar_nb.Timeline.to_video`)."""


def default_outputs(*, plot: bool = True) -> list[Output]:
    """The outputs of ``avatar-nb run``: the ``.npz`` and, with ``plot``, the figure."""
    return [NPZ, FIGURE] if plot else [NPZ]


def render(
    results: Sequence[ClipResult],
    out_dir: str | os.PathLike[str],
    writers: Sequence[Output] | None = None,
    *,
    progress: bool = True,
    stems: Mapping[int, str] | None = None,
) -> None:
    """Write each result's files with ``writers`` (default :func:`default_outputs`).

    Files are named by :func:`unique_stems` (``stems``: ``id(result) -> stem`` chosen by
    the caller instead); each file is written whole or not at all (:func:`write_whole`).
    Call it after every session whose timing is recorded has ended (figures and files
    made beside a streaming session disturb its timing). Results without a Timeline are
    skipped; a writer that fails marks its result failed with the reason, and the
    other results and writers go on.
    """
    from tqdm.auto import tqdm

    writers = default_outputs() if writers is None else list(writers)
    out = Path(out_dir)
    make_out_dir(out)
    todo = [r for r in results if r.timeline is not None]
    stems = dict(stems) if stems is not None else _stems(results)
    bar = tqdm(
        total=len(todo) * len(writers),
        unit="file",
        desc="writing",
        disable=not progress or not todo,
        file=sys.stderr,
        dynamic_ncols=True,
    )
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
    names: dict[int, str] = {}
    for r in results:
        n = seen.get(r.clip.name, 0)
        seen[r.clip.name] = n + 1
        names[id(r)] = r.clip.name if per_clip[r.clip.name] == 1 else f"{r.clip.name}_s{n}"
    made = unique_stems(names.values())
    return {key: made[name] for key, name in names.items()}


STEM_CHARS = 80
"""At most this many characters of a clip's name go into its file names."""

_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')


def safe_stem(name: str) -> str:
    """A file stem for the clip ``name`` that stays inside the output folder on any system.

    Path separators, control characters and the characters Windows refuses become ``_``;
    leading dots and spaces and trailing dots and spaces go (so ``.``, ``..`` and hidden
    names cannot be made); at most :data:`STEM_CHARS` characters are kept. A name changed by
    any of this gets ``-`` and 8 hex digits of its hash, so two names that differ only in
    what was removed still get two stems; an empty result is ``clip``. A plain name
    (letters, digits, ``._-+`` and spaces inside) is its own stem.
    """
    text = unicodedata.normalize("NFC", str(name))
    cleaned = _UNSAFE.sub("_", text).lstrip(". ").rstrip(". ")[:STEM_CHARS].rstrip(". ")
    if cleaned == text and cleaned:
        return cleaned
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned or 'clip'}-{digest}"


def unique_stems(names: Collection[str], taken: Collection[str] = ()) -> dict[str, str]:
    """``name -> stem``: :func:`safe_stem` of each name, unique ignoring case among
    themselves and ``taken`` (file systems that ignore case, as macOS's and Windows' do,
    would otherwise put two runs in one file): a later name that clashes gets ``-2``,
    ``-3`` ... in the order given."""
    used = {t.casefold() for t in taken}
    out: dict[str, str] = {}
    for name in names:
        if name in out:
            continue
        base = stem = safe_stem(name)
        number = 2
        while stem.casefold() in used:
            stem = f"{base}-{number}"
            number += 1
        used.add(stem.casefold())
        out[name] = stem
    return out


def make_out_dir(out_dir: Path) -> None:
    """Create the output folder; a path that cannot be one is a :class:`BadInput`."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"{out_dir}: exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{out_dir}: cannot create this folder ({exc.strerror or exc})") from exc
    # found before any session streams, not after every one did
    try:
        fd, probe = tempfile.mkstemp(prefix=".avatar_nb-write-check-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BadInput(f"{out_dir}: cannot write in this folder ({exc.strerror or exc})") from exc


def write_summary_csv(
    results: Sequence[ClipResult],
    path: str | os.PathLike[str],
    writer_kinds: Sequence[str] = (),
    *,
    rows: Sequence[Mapping[str, object]] | None = None,
) -> Path:
    """One row per result (:meth:`ClipResult.row`), seconds throughout; empty cells for None.

    ``rows``: the rows to write instead (``avatar-nb run``: every run of its folder).
    The file is written whole or not at all (:func:`write_whole`).
    """
    if rows is None:
        rows = [r.row(writer_kinds) for r in results]
    columns: list[str] = (
        list(dict.fromkeys(k for row in rows for k in row))
        if rows
        else list(ClipResult(Clip("", ""), RunSettings()).row(writer_kinds))
    )
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
    data = text.getvalue().encode("utf-8")
    return write_whole(Path(path), lambda p: Path(p).write_bytes(data))


def _csv_cell(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    try:
        import pandas as pd

        if value is pd.NaT:
            return ""
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    return value


def dataset_output(root: str | os.PathLike[str] | None = None) -> Output:
    """An :class:`Output` that adds each batch result to a dataset (``avatar-nb run`` uses it).

    Each result's per-keyframe table and row (:meth:`ClipResult.row`) go into the dataset
    at ``root`` (default: the batch's output folder itself, so ``load_results(out)`` reads
    a batch's results as it reads a sweep's), under the run id of the result's file stem,
    one segment per result (a failure is that result's alone; ``consolidate`` merges the
    small segments afterwards). Used in the render phase, after every session has ended.
    """

    def write(result: ClipResult, stem: Path) -> Path:
        from ..dataset import KEYFRAMES_DIR, write_result

        target = Path(root) if root is not None else stem.parent
        write_result(target, {"run_id": stem.name, **result.row()}, result.timeline)
        return target / KEYFRAMES_DIR

    return Output("dataset", write)
