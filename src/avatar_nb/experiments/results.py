"""What a sweep produced: :class:`SweepResult`, the same for every executor."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ..timeline import Timeline

__all__ = ["SweepResult"]


class SweepResult:
    """What a sweep produced: ``.runs`` (one row per run) and ``.keyframes()`` (read on demand).

    With ``out=`` the keyframes are in the dataset at ``.path`` (``avatar_nb.load_results``
    reads the same); without it, the Timelines are kept in memory (``.timelines``, by
    run id) and ``.keyframes()`` builds the table from them when asked.
    """

    def __init__(
        self,
        runs: pd.DataFrame,
        path: Path | None,
        timelines: dict[str, Timeline] | None = None,
        *,
        reused: int = 0,
    ) -> None:
        self.runs = runs
        self.path = path
        self.reused = int(reused)  # runs found finished in ``path`` by an earlier call
        self.timelines: dict[str, Timeline] = dict(timelines or {})

    def __repr__(self) -> str:
        where = f" in {str(self.path)!r}" if self.path else ""
        return f"<SweepResult {self._counts()}{where}>"

    def _counts(self) -> str:
        runs = self.runs
        ok = int((runs["status"] == "ok").sum()) if "status" in runs else 0
        failed = len(runs) - ok
        text = f"{len(runs)} runs, {ok} ok" + (f", {failed} failed" if failed else "")
        return text + (f", {self.reused} reused from an earlier call" if self.reused else "")

    def _repr_html_(self) -> str:
        where = f" in <code>{html.escape(str(self.path))}</code>" if self.path else ""
        return f"<div><b>Sweep</b>: {html.escape(self._counts())}{where}</div>" + self.runs.to_html(
            max_rows=20
        )

    def keyframes(
        self,
        columns: Sequence[str] | None = None,
        filters: Any = None,
        *,
        with_runs: Sequence[str] = (),
    ) -> pd.DataFrame:
        """The per-keyframe table of every run (``run_id`` first); see :meth:`avatar_nb.dataset.Results.keyframes`."""
        if self.path is not None:
            from ..dataset import load_results

            return load_results(self.path).keyframes(columns, filters, with_runs=with_runs)
        return self._memory_keyframes(columns, filters, with_runs)

    def _memory_keyframes(
        self, columns: Sequence[str] | None, filters: Any, with_runs: Sequence[str]
    ) -> pd.DataFrame:
        import pandas as pd

        from ..dataset import keyframe_table, keyframes_frame

        pieces = [
            (run_id, keyframe_table(self.timelines[run_id]))
            for run_id in self.runs["run_id"]
            if run_id in self.timelines
        ]
        if not pieces:
            return pd.DataFrame({"run_id": pd.Series([], dtype=str)})
        return keyframes_frame(pieces, columns, filters, runs=self.runs, with_runs=with_runs)
