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
import os
import sys
import traceback
from collections.abc import Callable, Sequence
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
    "write_summary_csv",
]


@dataclass(frozen=True)
class Output:
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
    from .. import plots

    assert result.timeline is not None
    fig = plots.report(result.timeline)
    title = fig.get_suptitle()
    if result.clip.name not in title:  # the figure names its clip
        fig.suptitle(
            f"{result.clip.name} ({result.settings.pacing} pacing)"
            + (f" — {title}" if title else "")
        )
    path = stem.parent / f"{stem.name}.png"
    fig.savefig(path, dpi=100)
    return path


NPZ = Output("npz", _write_npz)
"""Writes the Timeline (:meth:`~avatar_nb.Timeline.save`)."""

FIGURE = Output("png", _write_figure)
"""Writes :func:`avatar_nb.plots.report` of the Timeline, titled with the clip's name."""


def _write_video(result: ClipResult, stem: Path) -> Path:
    assert result.timeline is not None
    return result.timeline.to_video(stem.parent / f"{stem.name}.mp4").path


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
) -> None:
    """Write each result's files with ``writers`` (default :func:`default_outputs`).

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
    stems = _stems(results)
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
    columns: list[str] = (
        list(dict.fromkeys(k for row in rows for k in row))
        if rows
        else list(ClipResult(Clip("", ""), RunSettings()).row(writer_kinds))
    )
    path = Path(path)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return path


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
