"""The writer process of an in-process sweep: :func:`serve_writes` runs a
:class:`~.writer.DatasetWriter` on runs sent over its stdin and replies on its stdout, in
the framing of :func:`send_frame` and :func:`read_frame` (an 8-byte little-endian length,
then a pickle).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .layout import COMMIT_SECONDS
from .writer import DatasetWriteError, DatasetWriter

END_OF_STREAM = object()


def send_frame(pipe: Any, obj: Any) -> None:
    """Write ``obj`` to ``pipe`` as one message of the writer process's framing: an 8-byte
    little-endian length, then the pickle."""
    import pickle

    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    pipe.write(len(data).to_bytes(8, "little") + data)
    pipe.flush()


def _read_exactly(pipe: Any, size: int) -> bytes:
    parts, left = [], size
    while left:
        part = pipe.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read_frame(pipe: Any) -> Any:
    """The next message :func:`send_frame` wrote to ``pipe``, or ``END_OF_STREAM`` when the
    pipe ended (a buffered or a raw pipe)."""
    import pickle

    header = _read_exactly(pipe, 8)
    if len(header) < 8:
        return END_OF_STREAM
    size = int.from_bytes(header, "little")
    data = _read_exactly(pipe, size)
    if len(data) < size:
        return END_OF_STREAM
    return pickle.loads(data)


def serve_writes(commit_seconds: float = COMMIT_SECONDS) -> None:
    """The writer process of an in-process sweep: write runs sent over stdin, reply on stdout.

    Each message is an 8-byte little-endian length and a pickle of ``(root, row,
    timeline)``, or of ``None`` to stop. Runs go through one :class:`DatasetWriter` per
    root (committing every ``commit_seconds``); when a segment is committed (when due,
    even while no run arrives, and at the end) the reply for each of its runs is
    ``(run_id, None)``, and ``(run_id, error text)`` for a run that could not be written. A sweep streams in one process and
    writes in this one, so writing never competes with a session whose timing is
    recorded. Started as ``python -c`` (not through multiprocessing), so a script without
    a ``__main__`` guard is not run again.
    """
    import select
    import sys

    source, sink = sys.stdin.buffer.raw, sys.stdout.buffer
    writers: dict[str, DatasetWriter] = {}

    def reply(lost: Mapping[str, Exception], committed: Iterable[str] = ()) -> None:
        for run_id in committed:
            send_frame(sink, (run_id, None))
        for run_id, exc in lost.items():
            text = (
                str(exc) if isinstance(exc, DatasetWriteError) else f"{type(exc).__name__}: {exc}"
            )
            send_frame(sink, (run_id, text))

    def commit(writer: DatasetWriter) -> None:
        committed, lost = writer.commit_reporting()
        reply(lost, committed)

    try:
        while True:
            waits = [w.due() for w in writers.values()]
            wait = min((d for d in waits if d is not None), default=None)
            if wait is not None and not select.select([source], [], [], wait)[0]:
                for writer in writers.values():
                    if writer.due() == 0.0:
                        commit(writer)
                continue
            job = read_frame(source)
            if job is None or job is END_OF_STREAM:
                break
            root, row, timeline = job
            writer = writers.get(root)
            if writer is None:
                writer = writers[root] = DatasetWriter(root, commit_seconds=commit_seconds)
            reply(writer.add_reporting(row, timeline))  # the sweep marks lost runs failed
    finally:
        for writer in writers.values():
            commit(writer)
