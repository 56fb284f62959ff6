"""The writer process of an in-process sweep, seen from the sweep: :class:`WriterProcess`.

Finished runs are written into the dataset from a separate process (never beside
streaming): :func:`avatar_nb.dataset.serve_writes` runs there, and this class is its client
(``sweeps._Writer`` before; named for what it is, unlike the dataset's
:class:`~avatar_nb.dataset.DatasetWriter` that does the writing inside that process).
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..timeline import Timeline

__all__ = ["WriterProcess"]


class WriterProcess:
    """Writes finished runs into the dataset from a separate process (never beside streaming).

    The event loop only queues (row, Timeline); a sender thread pickles them into the
    writer process's stdin and a reader thread collects its replies, so neither a full
    pipe nor a slow disk ever blocks the loop that runs the sessions.
    """

    def __init__(self, root: Path, commit_seconds: float | None = None) -> None:
        from ..dataset import COMMIT_SECONDS

        seconds = COMMIT_SECONDS if commit_seconds is None else float(commit_seconds)
        package_parent = str(Path(__file__).resolve().parent.parent.parent)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [package_parent, os.environ.get("PYTHONPATH")])
            ),
        }
        self.root = root
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                # Ctrl-C reaches the whole process group: the writer ignores it and is told
                # by the sweep to commit what it holds and stop (close), so it exits quietly
                (
                    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                    "from avatar_nb.dataset import serve_writes; "
                    f"serve_writes(commit_seconds={seconds!r})"
                ),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._rows: dict[str, dict[str, Any]] = {}
        self._errors: dict[str, str | None] = {}
        self._sender = threading.Thread(
            target=self._send, name="avatar_nb-sweep-writer-send", daemon=True
        )
        self._reader = threading.Thread(
            target=self._read, name="avatar_nb-sweep-writer-read", daemon=True
        )
        self._sender.start()
        self._reader.start()

    def _send(self) -> None:
        from ..dataset import send_frame

        pipe = self._process.stdin
        assert pipe is not None
        try:
            while True:
                job = self._queue.get()
                send_frame(pipe, job)
                if job is None:
                    break
        except OSError:  # the writer died; its missing replies mark the runs failed
            pass
        finally:
            with contextlib.suppress(OSError):
                pipe.close()

    def _read(self) -> None:
        from ..dataset import END_OF_STREAM, read_frame

        pipe = self._process.stdout
        assert pipe is not None
        while True:
            reply = read_frame(pipe)
            if reply is END_OF_STREAM:
                return
            run_id, error = reply
            self._errors[run_id] = error

    def submit(self, row: dict[str, Any], timeline: Timeline | None) -> None:
        if timeline is not None:
            # merge the Timeline's appended blocks (a millisecond) so that pickling it for the
            # writer is one copy of a few arrays, not thousands of small objects holding the
            # interpreter lock for tens of milliseconds while other sessions stream
            timeline.keyframes  # noqa: B018 - building the array merges the blocks in place
            timeline.audio  # noqa: B018
        self._rows[row["run_id"]] = row
        self._queue.put((str(self.root), row, timeline))

    def close(self, timeout: float = 600.0) -> list[dict[str, Any]]:
        """Wait for every write; rows whose files could not be written, marked failed."""
        self._queue.put(None)
        self._sender.join(timeout)
        self._reader.join(timeout)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if not self._reader.is_alive() and self._process.stdout is not None:
            self._process.stdout.close()  # the reader is done with it (no ResourceWarning)
        failed = []
        for run_id, row in self._rows.items():
            error = self._errors.get(run_id, "the writer process ended before writing it")
            if error is not None:
                failed.append({**row, "status": "failed", "error": f"writing the run: {error}"})
        return failed
