"""The Dask executor of sweeps: ``sweep(..., client=dask_client)`` (:class:`OnDask`).

The runs of a sweep go to the workers in batches of ``concurrency`` runs, one Dask task
per batch. On a worker:

- the sessions run on one event loop per worker process (a thread of its own, started
  on first use and kept), so sessions of one batch share it as they do in process;
- a local service is started once per worker process and configuration, and reused by
  every later task (:func:`worker_service`, from the worker's
  :class:`~avatar_nb.endpoints.LocalServices` cache, which a worker plugin closes when the
  worker shuts down); a remote service is reached with the
  endpoints and credentials of a :class:`~avatar_nb.endpoints.ServiceSpec`, whose ``repr``
  hides them (task arguments can show up in logs; task keys are ``avatar_nb-sweep-...``
  names chosen here, never derived from the arguments);
- a batch's sessions stream together (``concurrency`` at once: paced sessions mostly
  wait on the audio clock, so a handful per worker keeps it busy without their own CPU
  delaying each other's arrivals); once all have ended, the worker writes their
  per-keyframe tables and rows straight into the dataset, a path every worker shares.
  A per-process gate keeps writing and streaming apart when a worker runs several
  tasks at once (``threads_per_worker > 1``);
- only the small run rows go back through the scheduler.

Interrupted (Ctrl-C: the sweep's task cancelled), the sweep cancels the batches it
submitted that have not finished: queued ones never start; one a worker is already
running finishes (Dask cannot stop a running task) and writes its runs as usual. The
runs already committed stay; the interrupted line says how many runs were cancelled.

A worker lost mid-sweep loses no finished run: its rows and keyframes are already on
disk, Dask reschedules its unfinished batch on another worker, a batch that still
cannot run is recorded as failed rows, and a re-run with the same ``out=`` completes them.

Dask is imported only here, and only when ``client=`` is given.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clips import Clip
from .executors import Executor, Job, Outcome
from .planning import RunSpec
from .runs import error_text, prepare_all, run_row, stream_run, where
from .worker_services import close_worker_services, services, worker_service

if TYPE_CHECKING:
    from ..endpoints import ServiceSpec

__all__ = ["OnDask", "close_worker_services", "run_batch_on_worker", "worker_service"]

INSTALL_HINT = "pip install avatar_nb[dask]"


def _require_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            f"sweep(client=...) runs on Dask, which is not installed; install it with `{INSTALL_HINT}`"
        ) from exc
    return distributed


# ----------------------------------------------------------------------------- worker side

_state_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


class _Gate:
    """Streaming batches share the process; a write waits until none streams, and holds new ones off."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._streaming = 0
        self._writing = 0
        self._waiting_writers = 0

    def start_streaming(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._waiting_writers)
            self._streaming += 1

    def stop_streaming(self) -> None:
        with self._cond:
            self._streaming -= 1
            self._cond.notify_all()

    def start_writing(self) -> None:
        with self._cond:
            self._waiting_writers += 1
            self._cond.wait_for(lambda: not self._streaming and not self._writing)
            self._waiting_writers -= 1
            self._writing += 1

    def stop_writing(self) -> None:
        with self._cond:
            self._writing -= 1
            self._cond.notify_all()


_gate = _Gate()


def _worker_loop() -> asyncio.AbstractEventLoop:
    """This process's event loop for sessions, in a daemon thread, started on first use."""
    global _loop
    with _state_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="avatar_nb-worker-loop", daemon=True
            )
            thread.start()
            _loop = loop
        return _loop


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return where()


async def _stream_batch(
    specs: Sequence[RunSpec],
    clips: Mapping[str, Clip],
    service: ServiceSpec,
    prepared: Mapping[tuple[str, int], Any],
    timeout: float | None,
    seed: int,
    worker: str,
) -> list[tuple[dict[str, Any], Any]]:
    async def one(spec: RunSpec) -> tuple[dict[str, Any], Any]:
        return await stream_run(
            spec,
            clips[spec.clip],
            service,
            services=services,
            timeout=timeout,
            seed=seed,
            worker=worker,
            prepared=prepared.get((spec.clip, spec.sample_rate)),
        )

    return list(await asyncio.gather(*(one(spec) for spec in specs)))


def run_batch_on_worker(
    specs: Sequence[RunSpec],
    clips: Mapping[str, Clip],
    service: ServiceSpec,
    root: str,
    timeout: float | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One Dask task: stream ``specs`` together on this process's loop, then write them under ``root``.

    Returns the run rows (small); the keyframes stay on disk.
    """
    from ..dataset import DatasetWriter

    worker = _worker_name()
    # heavy work first: the batch's audio is prepared before any of its sessions starts
    prepared = prepare_all(specs, clips)
    _gate.start_streaming()
    try:
        future = asyncio.run_coroutine_threadsafe(
            _stream_batch(specs, clips, service, prepared, timeout, seed, worker), _worker_loop()
        )
        # each run bounds its own waits (end-frame timeout, token request); this bound only
        # catches a loop that stopped answering: every run's allowance, one after another
        audio = sum(len(p.pcm) / 2 / p.sample_rate for p in prepared.values())
        per_run = 60.0 if timeout is None else timeout + 30.0
        results = future.result(timeout=per_run * len(specs) + 2 * audio + 60.0)
    finally:
        _gate.stop_streaming()
    failed: dict[str, Exception] = {}
    _gate.start_writing()
    try:
        # the batch's runs go into one segment of the dataset, committed when all are in;
        # a run not on disk is a failed row (a resume runs it again)
        writer = DatasetWriter(root, commit_seconds=float("inf"))
        for row, timeline in results:
            failed.update(writer.add_reporting(row, timeline))
        failed.update(writer.commit_reporting()[1])
    finally:
        _gate.stop_writing()
    return [
        {
            **row,
            "status": "failed",
            "error": f"writing the run: {error_text(failed[row['run_id']])}",
        }
        if row["run_id"] in failed
        else row
        for row, _ in results
    ]


# ----------------------------------------------------------------------------- client side


def _clip(clip: Clip) -> Clip:
    """A clip as a task result, so the run tasks on a worker share one copy of its audio."""
    return clip


_PLUGIN_NAME = "avatar_nb-local-services"
_plugged: weakref.WeakSet[Any] = weakref.WeakSet()  # clients whose workers have the plugin


def _plug(client: Any) -> None:
    """Give ``client``'s workers the plugin that stops their local services at teardown (once:
    registering it again would tear down, and so stop, the services a warm-up started)."""
    if client in _plugged:
        return
    from ._worker_plugin import LocalServicesPlugin

    client.register_plugin(LocalServicesPlugin(), name=_PLUGIN_NAME)
    _plugged.add(client)


class _Submitted:
    """The batches a sweep submitted, shared by the thread that waits on them and the
    sweep's task, which stops them when it is interrupted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.futures: dict[Any, Sequence[RunSpec]] = {}  # not yet taken back by the thread
        self.stopped = False

    def take(self, future: Any) -> Sequence[RunSpec]:
        with self.lock:
            return self.futures.pop(future)

    def stop(self, client: Any) -> int:
        """Cancel every batch not finished (queued ones never start; Dask cannot stop one
        a worker is already running: it finishes and its runs are written as usual); the
        number of runs in them."""
        with self.lock:
            self.stopped = True
            pending = [f for f in self.futures if not f.done()]
            runs = sum(len(self.futures[f]) for f in pending)
        if pending:
            client.cancel(pending)
        return runs


class OnDask(Executor):
    """Runs a sweep's runs on ``client``'s workers in batches of ``concurrency``; they write
    into ``out`` (a path every worker shares) and send back only the run rows.

    Interrupted (the sweep's task cancelled, or ``KeyboardInterrupt``), it cancels the
    batches it submitted that had not finished, so the workers start no new run;
    :attr:`cancelled` is then the number of runs in them (the sweep's interrupted line
    says it). Runs already committed stay in the dataset."""

    label = "sweep (dask)"
    info = {"cluster": True}  # noqa: RUF012

    def __init__(self, client: Any, retries: int = 1) -> None:
        self.client = client
        self.retries = retries
        self.cancelled = 0

    def check(self, root: Path | None) -> Path:
        _require_distributed()
        if root is None:
            raise ValueError(
                "a sweep on a Dask cluster needs out=: a directory every worker can write to "
                "(the workers write the keyframes there; only run rows come back)"
            )
        return root.resolve()

    async def run(self, job: Job) -> Outcome:
        assert job.root is not None
        submitted = _Submitted()
        self.cancelled = 0
        try:
            return await asyncio.to_thread(self._run, job, submitted)
        except BaseException:  # CancelledError, KeyboardInterrupt: stop what still waits
            # here, not in the thread: it is blocked waiting for the next batch to finish
            self.cancelled = submitted.stop(self.client)
            raise

    def _run(self, job: Job, submitted: _Submitted) -> Outcome:
        todo, clips, service, root = job.todo, job.clips, job.service, job.root
        concurrency, seed, timeout, done = job.concurrency, job.seed, job.timeout, job.done
        distributed = _require_distributed()
        client = self.client
        if todo:
            _plug(client)
        batches = [todo[i : i + concurrency] for i in range(0, len(todo), concurrency)]
        token = uuid.uuid4().hex[:8]
        # a clip given as an array that several batches need travels once, as a small task of
        # its own whose result those batches share (and that Dask recomputes if the worker
        # holding it is lost); one that a single batch needs rides in that batch's arguments;
        # clips given as paths are read where they run
        uses: dict[str, int] = {}
        for batch in batches:
            for name in {spec.clip for spec in batch}:
                uses[name] = uses.get(name, 0) + 1
        by_name: dict[str, Any] = dict(clips)
        shared = [
            clips[name] for name in sorted(uses) if uses[name] > 1 and clips[name].path is None
        ]
        for index, clip in enumerate(shared):
            by_name[clip.name] = client.submit(
                _clip, clip, key=f"avatar_nb-clip-{token}-{index:05d}", pure=False
            )
        outcome = Outcome()
        with submitted.lock:  # the sweep's interruption, if it comes now, waits for all of them
            for index, batch in enumerate(batches):
                if submitted.stopped:
                    return outcome
                needed = {spec.clip: by_name[spec.clip] for spec in batch}
                future = client.submit(
                    run_batch_on_worker,
                    batch,
                    needed,
                    service,
                    str(root),
                    timeout,
                    seed,
                    key=f"avatar_nb-sweep-{token}-{index:05d}",
                    pure=False,
                    retries=self.retries,
                )
                submitted.futures[future] = batch
            waiting = list(submitted.futures)
        try:
            for future in distributed.as_completed(waiting):
                batch = submitted.take(future)
                if submitted.stopped and future.cancelled():  # the sweep was interrupted (see run)
                    continue
                try:
                    rows = future.result()
                except Exception as exc:  # noqa: BLE001 - the batch could not run anywhere
                    rows = [
                        run_row(
                            s,
                            None,
                            status="failed",
                            error=f"on the cluster: {error_text(exc)}",
                            seed=seed,
                        )
                        for s in batch
                    ]
                    outcome.lost.extend(rows)
                future.release()
                if submitted.stopped:  # interrupted: the sweep reports nothing more
                    continue
                outcome.rows.extend(rows)
                done(rows)
        finally:
            with submitted.lock:
                rest = list(submitted.futures)
            for future in rest:
                future.cancel()
        return outcome
