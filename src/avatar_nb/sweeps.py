"""sweep(): many runs (clips x conditions x repeats) into one runs table and a Parquet dataset.

``avatar_nb.sweep`` is this module's :func:`sweep` (the module is named ``sweeps`` so that
importing it never replaces the function on the package). A sweep is the product of its
clips, the values of its ``grid`` and its repeats. Every run is one clip streamed as one utterance through one session, with bounded
concurrency, against one service per distinct service configuration (a grid over
``latency_ms`` gets one :class:`~avatar_nb.LocalService` per value, each opened with
:func:`avatar_nb.open_service` and kept for the sweep).

Timing rules (nothing of the tool's own runs beside a session whose timing is recorded):
the per-keyframe tables are written by a separate writer process, never in the
process that streams; a run's audio is prepared before its session opens, and its
summary is taken after its session closed. On a Dask cluster (``client=``) each run's
files are written by the worker after its batch of sessions finished streaming
(:mod:`avatar_nb.scaleout`).

Resume: a run's id is a hash of its clip, settings and repeat, so the same sweep
asked again with the same ``out=`` finds the runs already finished there and runs only
the others (failed ones included). A run that fails is a row with ``status="failed"``
and its error text; the sweep goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import html
import inspect
import itertools
import json
import math
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .pacing import DEFAULT_PACING, check_pacing

if TYPE_CHECKING:
    import pandas as pd

    from .endpoints import ServiceHandle
    from .server import LocalService
    from .timeline import Timeline

__all__ = ["ClipSource", "RunSpec", "ServiceSpec", "SweepResult", "plan", "sweep", "sweep_async"]

PACING_OPTIONS = ("pacing", "chunk_ms")
"""Grid keys that choose how audio is paced onto the wire."""

# LocalService arguments that identify or place a service rather than condition it
_SERVICE_IDENTITY = ("self", "host", "port", "api_key", "app_id", "avatar_ids", "other_app_ids")
# Session options that are credentials or callbacks: never in a grid or a runs table
_SESSION_PRIVATE = (
    "api_key",
    "transport_frames",
    "on_error",
    "on_close",
    "console_endpoint_url",
    "ingress_endpoint_url",
)


# ----------------------------------------------------------------------------- clips


@dataclass(frozen=True)
class ClipSource:
    """One clip of a sweep: a ``name`` for the runs table and where its audio comes from.

    ``path`` (an audio file) or ``samples`` with ``sample_rate`` (an array). ``key``
    identifies the audio for run ids: the resolved path, or a hash of the samples.
    """

    name: str
    path: str | None = None
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)
    sample_rate: int | None = None
    key: str = ""

    def as_clip(self) -> Any:
        """The batch engine's :class:`avatar_nb.batch.Clip` of this clip."""
        from .batch import Clip

        if self.path is not None:
            return Clip(self.name, self.path, Path(self.path))
        return Clip(self.name, f"<array {self.name}>", None, self.samples, self.sample_rate)


def _clip_from_pair(name: str, pair: Any) -> ClipSource:
    samples, rate = pair
    samples = np.asarray(samples)
    digest = hashlib.sha1(np.ascontiguousarray(samples).tobytes()).hexdigest()[:16]
    return ClipSource(name, None, samples, int(rate), f"{name}:{digest}@{int(rate)}")


def _clip_from_path(path: Path, name: str | None = None) -> ClipSource:
    if not path.is_file():
        raise FileNotFoundError(f"clip {str(path)!r} is not a file")
    resolved = str(path.resolve())
    return ClipSource(name or path.stem, resolved, None, None, resolved)


def collect_clips(clips: Any) -> list[ClipSource]:
    """Clips as a sweep takes them: a folder, a path, an ``(array, rate)`` pair, a list of
    those, or a mapping ``name -> path or (array, rate)``. Names must be unique."""
    from .audio import AUDIO_SUFFIXES

    out: list[ClipSource] = []

    def one(item: Any, name: str | None, index: int) -> None:
        if isinstance(item, ClipSource):
            out.append(item)
        elif isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if path.is_dir():
                files = sorted(
                    p for p in path.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                )
                if not files:
                    raise ValueError(
                        f"folder {str(path)!r} holds no audio files ({', '.join(AUDIO_SUFFIXES)})"
                    )
                out.extend(_clip_from_path(p) for p in files)
            else:
                out.append(_clip_from_path(path, name))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], (int, np.integer)):
            out.append(_clip_from_pair(name or f"clip{index}", item))
        else:
            raise TypeError(
                f"clip {index} is a {type(item).__name__}; accepted: a path, a folder, "
                "an (array, sample_rate) pair, or a mapping of names to those"
            )

    if isinstance(clips, Mapping):
        for index, (name, item) in enumerate(clips.items()):
            one(item, str(name), index)
    elif isinstance(clips, (str, os.PathLike, tuple)) and not (
        isinstance(clips, tuple) and len(clips) != 2
    ):
        one(clips, None, 0)
    elif isinstance(clips, Iterable):
        for index, item in enumerate(clips):
            one(item, None, index)
    else:
        raise TypeError(
            f"clips must be paths, a folder, (array, rate) pairs or a mapping, got {type(clips).__name__}"
        )
    if not out:
        raise ValueError("a sweep needs at least one clip")
    names = [c.name for c in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"clip names must be unique, these repeat: {duplicates}; pass a mapping name -> clip"
        )
    return out


# ----------------------------------------------------------------------------- options


def _service_options() -> tuple[str, ...]:
    """The conditions a local service can simulate: its constructor's settings."""
    from .server import LocalService

    params = inspect.signature(LocalService.__init__).parameters
    return tuple(name for name in params if name not in _SERVICE_IDENTITY)


def _session_options() -> tuple[str, ...]:
    from .config import SessionConfig

    return tuple(
        f.name for f in dataclasses.fields(SessionConfig) if f.name not in _SESSION_PRIVATE
    )


def classify(keys: Iterable[str]) -> dict[str, str]:
    """Which part of a run each option sets: ``"service"``, ``"pacing"``, ``"rate"`` or ``"session"``.

    ``ValueError`` names an unknown option and lists the accepted ones.
    """
    service, session = _service_options(), _session_options()
    kinds: dict[str, str] = {}
    for key in keys:
        if key in PACING_OPTIONS:
            kinds[key] = "pacing"
        elif key == "sample_rate":
            kinds[key] = "rate"
        elif key in service:
            kinds[key] = "service"
        elif key in session:
            kinds[key] = "session"
        else:
            accepted = sorted({*PACING_OPTIONS, "sample_rate", *service, *session})
            raise ValueError(f"unknown sweep option {key!r}; accepted: {', '.join(accepted)}")
    return kinds


def _check_grid(grid: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for key, values in (grid or {}).items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise TypeError(f"grid[{key!r}] must be a list of values, got {values!r}")
        values = list(values)
        if not values:
            raise ValueError(f"grid[{key!r}] is empty; give at least one value")
        out[str(key)] = values
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep, fully resolved: what to stream, how, against what."""

    run: int  # position in the sweep (the runs table's order)
    run_id: str
    clip: str
    repeat: int
    settings: dict[str, Any]  # every setting that defines the run, grid values included
    pacing: str
    chunk_ms: float
    sample_rate: int
    service_options: dict[str, Any]
    session_options: dict[str, Any]

    @property
    def service_key(self) -> str:
        """The distinct service configuration this run needs (runs sharing it share a service)."""
        return service_key(self.service_options)


def service_key(options: Mapping[str, Any]) -> str:
    """A local service configuration as a key: equal options, equal keys."""
    return json.dumps(dict(options), sort_keys=True, default=str)


def _run_id(clip: ClipSource, settings: Mapping[str, Any], repeat: int) -> str:
    text = json.dumps([clip.key, sorted(settings.items()), repeat], sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def plan(
    clips: Sequence[ClipSource],
    grid: Mapping[str, list[Any]],
    repeats: int,
    *,
    pacing: str | None,
    seed: int,
    local: bool,
) -> list[RunSpec]:
    """The runs of a sweep, in order: clips outermost, then the grid's product, then repeats."""
    if not (isinstance(repeats, int) and not isinstance(repeats, bool) and repeats >= 1):
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    kinds = classify(grid)
    service_keys = [k for k, kind in kinds.items() if kind == "service"]
    if service_keys and not local:
        raise ValueError(
            f"grid options {service_keys} are conditions of the local service, but this sweep runs "
            "against a given or remote service; pass service=None to let the sweep start local services"
        )
    from .batch import RunSettings

    defaults = RunSettings(pacing=check_pacing(pacing if pacing is not None else DEFAULT_PACING))
    keys = list(grid)
    # every combination checked as its runs will be (pacing, a chunk that fits the
    # rate, a supported rate) before any run starts
    conditions = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = {k: _plain(v) for k, v in zip(keys, combo)}
        conditions.append(
            (
                values,
                RunSettings(
                    pacing=values.get("pacing", defaults.pacing),
                    chunk_ms=values.get("chunk_ms", defaults.chunk_ms),
                    sample_rate=values.get("sample_rate", defaults.sample_rate),
                ),
            )
        )
    specs: list[RunSpec] = []
    for clip in clips:
        for values, checked in conditions:
            run_pacing = str(checked.pacing)
            chunk_ms = float(checked.chunk_ms)
            rate = int(checked.sample_rate)
            service_options = {k: values[k] for k in service_keys}
            if local:
                # a fast sweep needs a service that answers as fast; paced ones a paced one
                service_options.setdefault("realtime", run_pacing != "fast")
                service_options.setdefault("seed", seed)
            session_options = {k: values[k] for k, kind in kinds.items() if kind == "session"}
            settings = {**values, "pacing": run_pacing, "chunk_ms": chunk_ms, "sample_rate": rate}
            for repeat in range(repeats):
                key_settings = {
                    **settings,
                    **{f"service.{k}": v for k, v in service_options.items()},
                }
                specs.append(
                    RunSpec(
                        run=len(specs),
                        run_id=_run_id(clip, key_settings, repeat),
                        clip=clip.name,
                        repeat=repeat,
                        settings=settings,
                        pacing=run_pacing,
                        chunk_ms=chunk_ms,
                        sample_rate=rate,
                        service_options=service_options,
                        session_options=session_options,
                    )
                )
    return specs


def where() -> str:
    """Where this process runs, for the runs table: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def run_row(spec: RunSpec, result: Any = None, **extra: Any) -> dict[str, Any]:
    """The runs-table row of one run: identity, every setting, every summary figure, status.

    ``result`` is the batch engine's :class:`~avatar_nb.batch.ClipResult` (its flat
    record, then any further summary figure of its Timeline), or ``None`` for a run
    that never reached the engine (``extra`` then carries ``status`` and ``error``).
    """
    row: dict[str, Any] = {
        "run": spec.run,
        "run_id": spec.run_id,
        "clip": spec.clip,
        "repeat": spec.repeat,
    }
    row.update(spec.settings)
    row.update({k: v for k, v in spec.service_options.items() if k not in row and k != "seed"})
    row.update({"status": "failed", "error": ""})
    if result is not None:
        record = result.row()
        record.pop("clip", None)
        row.update(record)
        if result.timeline is not None:
            for key, value in result.timeline.summary().items():
                row.setdefault(key, _finite_or_none(value))
    row.update(extra)
    return row


async def run_one(
    spec: RunSpec,
    clip: ClipSource,
    handle: ServiceHandle,
    *,
    timeout: float | None = None,
    seed: int = 0,
    worker: str | None = None,
    prepared: Any = None,
) -> tuple[dict[str, Any], Timeline | None]:
    """Stream one run's clip through one session; its row and Timeline (``None`` if nothing arrived).

    The run itself is the batch engine's (:func:`avatar_nb.batch.run_clip`); ``prepared``
    is the clip's audio at the run's rate when it was prepared before streaming began.
    Never raises for a failed run: the row says ``status="failed"`` with the error text,
    and a partial Timeline (what arrived before the failure) is returned with it.
    """
    from .batch import RunSettings, run_clip

    started = time.time()
    t0 = time.perf_counter()
    settings = RunSettings(
        pacing=spec.pacing,  # type: ignore[arg-type]
        chunk_ms=spec.chunk_ms,
        sample_rate=spec.sample_rate,
        timeout=timeout,
        session=spec.session_options,
    )
    result = await run_clip(handle, clip.as_clip(), settings, prepared=prepared)
    row = run_row(
        spec,
        result,
        seed=seed,
        worker=worker or where(),
        started_at=started,
        wall_seconds=time.perf_counter() - t0,
    )
    return row, result.timeline


# ----------------------------------------------------------------------------- services


class ServiceSpec:
    """How runs reach their service, in a form that can travel to cluster workers.

    ``kind`` is ``"local"`` (a local service per configuration, started where the runs
    run) or ``"remote"`` (endpoints and credentials as session options). The options are
    kept out of ``repr`` and ``str``: task arguments show up in logs and dashboards.
    """

    def __init__(self, kind: str, options: Mapping[str, Any] | None = None) -> None:
        if kind not in ("local", "remote"):
            raise ValueError(f"unknown service kind {kind!r}; accepted: 'local', 'remote'")
        self.kind = kind
        self._options = dict(options or {})

    def __repr__(self) -> str:
        return f"<ServiceSpec {self.kind} (endpoints and credentials redacted)>"

    __str__ = __repr__

    @property
    def options(self) -> dict[str, Any]:
        return dict(self._options)


def service_spec(service: Any) -> ServiceSpec:
    """The :class:`ServiceSpec` of a sweep's ``service`` argument.

    ``None``: the ``AVATAR_NB_*`` environment variables if they name endpoints, else
    local services; a mapping: session options with endpoints and credentials; a
    running :class:`~avatar_nb.LocalService`: its endpoints and credentials (reachable
    from wherever its port is, e.g. the workers of a cluster on this machine).
    """
    from .endpoints import _ENDPOINT_KEYS, endpoints_from_env

    if service is None:
        env = endpoints_from_env()
        if any(env.get(k) for k in _ENDPOINT_KEYS):
            return ServiceSpec("remote", env)
        return ServiceSpec("local")
    if isinstance(service, Mapping):
        options = dict(service)
        if not any(options.get(k) for k in _ENDPOINT_KEYS):
            raise ValueError(
                "service options must name the endpoints (console_endpoint_url, ingress_endpoint_url); "
                f"got options {sorted(options)}"
            )
        return ServiceSpec("remote", options)
    if hasattr(service, "session_kwargs") and hasattr(service, "running"):
        if not service.running:
            raise ValueError(
                "the given LocalService is not running: start it (service.start()) before the sweep"
            )
        return ServiceSpec("remote", service.session_kwargs())
    raise TypeError(
        f"service must be None, a LocalService or a mapping of session options, got {type(service).__name__}"
    )


class ServicePool:
    """Services of one sweep by configuration, opened on first use and closed at the end."""

    def __init__(self, spec: ServiceSpec, given: LocalService | None = None) -> None:
        self.spec = spec
        self.given = given
        self._stack = contextlib.AsyncExitStack()
        self._handles: dict[str, ServiceHandle] = {}
        self._lock = asyncio.Lock()

    async def handle(self, run: RunSpec) -> ServiceHandle:
        from .endpoints import open_service

        key = run.service_key if self.spec.kind == "local" and self.given is None else ""
        async with self._lock:
            handle = self._handles.get(key)
            if handle is None:
                if self.given is not None:
                    context = open_service(self.given)
                elif self.spec.kind == "local":
                    context = open_service(local_options=run.service_options, environ={})
                else:
                    context = open_service(**self.spec.options)
                handle = self._handles[key] = await self._stack.enter_async_context(context)
        return handle

    async def aclose(self) -> None:
        await self._stack.aclose()


# ----------------------------------------------------------------------------- results


class SweepResult:
    """What a sweep produced: ``.runs`` (one row per run) and ``.keyframes()`` (read on demand).

    With ``out=`` the keyframes are in the dataset at ``.path`` (``avatar_nb.load_results``
    reads the same); without it, the Timelines are kept in memory (``.timelines``, by
    run id) and ``.keyframes()`` builds the table from them when asked.
    """

    def __init__(
        self, runs: pd.DataFrame, path: Path | None, timelines: dict[str, Timeline] | None = None
    ) -> None:
        self.runs = runs
        self.path = path
        self.timelines: dict[str, Timeline] = dict(timelines or {})

    def __repr__(self) -> str:
        where = f" in {str(self.path)!r}" if self.path else ""
        return f"<SweepResult {self._counts()}{where}>"

    def _counts(self) -> str:
        runs = self.runs
        ok = int((runs["status"] == "ok").sum()) if "status" in runs else 0
        failed = len(runs) - ok
        return f"{len(runs)} runs, {ok} ok" + (f", {failed} failed" if failed else "")

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
            from .dataset import load_results

            return load_results(self.path).keyframes(columns, filters, with_runs=with_runs)
        return self._memory_keyframes(columns, filters, with_runs)

    def _memory_keyframes(
        self, columns: Sequence[str] | None, filters: Any, with_runs: Sequence[str]
    ) -> pd.DataFrame:
        import pandas as pd

        from .dataset import keyframe_table, keyframes_frame

        pieces = [
            (run_id, keyframe_table(self.timelines[run_id]))
            for run_id in self.runs["run_id"]
            if run_id in self.timelines
        ]
        if not pieces:
            return pd.DataFrame({"run_id": pd.Series([], dtype=str)})
        return keyframes_frame(pieces, columns, filters, runs=self.runs, with_runs=with_runs)


# ----------------------------------------------------------------------------- the sweep


class _Writer:
    """Writes finished runs into the dataset from a separate process (never beside streaming).

    The event loop only queues (row, Timeline); a sender thread pickles them into the
    writer process's stdin and a reader thread collects its replies, so neither a full
    pipe nor a slow disk ever blocks the loop that runs the sessions.
    """

    def __init__(self, root: Path, commit_seconds: float | None = None) -> None:
        from .dataset import COMMIT_SECONDS

        seconds = COMMIT_SECONDS if commit_seconds is None else float(commit_seconds)
        package_parent = str(Path(__file__).resolve().parent.parent)
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
                f"from avatar_nb.dataset import serve_writes; serve_writes(commit_seconds={seconds!r})",
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
        from .dataset import send_frame

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
        from .dataset import END_OF_STREAM, read_frame

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
        failed = []
        for run_id, row in self._rows.items():
            error = self._errors.get(run_id, "the writer process ended before writing it")
            if error is not None:
                failed.append({**row, "status": "failed", "error": f"writing the run: {error}"})
        return failed


PREPARE_BUDGET = 1 << 30
"""Bytes of prepared audio a sweep holds at most; clips beyond it are prepared when their run starts."""


def prepare_all(
    runs: Sequence[RunSpec], clips: Mapping[str, ClipSource], budget: int = PREPARE_BUDGET
) -> dict[tuple[str, int], Any]:
    """Each distinct (clip, rate) of ``runs`` prepared for sending, up to ``budget`` bytes.

    Runs whose audio is not here (over the budget, or unreadable: the engine then
    reports why in the run's row) are prepared by the engine when they start.
    """
    from .batch import BadInput, prepare_clip

    out: dict[tuple[str, int], Any] = {}
    held = 0
    for run in runs:
        key = (run.clip, run.sample_rate)
        if key in out or held >= budget:
            continue
        try:
            ready = prepare_clip(clips[run.clip].as_clip(), run.sample_rate)
        except BadInput:
            continue
        out[key] = ready
        held += len(ready.pcm)
    return out


def _progress(total: int, initial: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="run", dynamic_ncols=True)


async def sweep_async(
    clips: Any,
    grid: Mapping[str, Any] | None = None,
    *,
    repeats: int = 1,
    concurrency: int = 4,
    pacing: str | None = None,
    service: Any = None,
    out: str | Path | None = None,
    client: Any = None,
    seed: int = 0,
    progress: bool = True,
    timeout: float | None = None,
) -> SweepResult:
    """:func:`sweep` as a coroutine (for code already running an event loop)."""
    if not (
        isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency >= 1
    ):
        raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
    sources = collect_clips(clips)
    grid_values = _check_grid(grid)
    spec = service_spec(service)
    given = service if service is not None and not isinstance(service, Mapping) else None
    specs = plan(
        sources,
        grid_values,
        repeats,
        pacing=pacing,
        seed=seed,
        local=spec.kind == "local" and given is None,
    )
    root = Path(out) if out is not None else None
    if client is not None:
        from .scaleout import sweep_on_cluster

        return await asyncio.to_thread(
            sweep_on_cluster,
            client,
            specs,
            sources,
            spec,
            root,
            concurrency=concurrency,
            seed=seed,
            progress=progress,
            timeout=timeout,
            info=_info(sources, grid_values, repeats, seed),
        )

    from .dataset import consolidate, finished_runs, read_runs, runs_frame, write_sweep_info

    done: set[str] = set()
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
        done = finished_runs(root)
        write_sweep_info(root, _info(sources, grid_values, repeats, seed))
    todo = [s for s in specs if s.run_id not in done]
    clip_by_name = {c.name: c for c in sources}
    # heavy work first: the audio of every run is read and resampled before any session
    prepared = await asyncio.to_thread(prepare_all, todo, clip_by_name)
    bar = _progress(len(specs), len(specs) - len(todo), progress, "sweep")
    writer = _Writer(root) if root is not None and todo else None
    pool = ServicePool(spec, given)
    rows: list[dict[str, Any]] = []
    timelines: dict[str, Timeline] = {}
    gate = asyncio.Semaphore(concurrency)

    async def one(run: RunSpec) -> None:
        async with gate:
            try:
                handle = await pool.handle(run)
            except Exception as exc:  # noqa: BLE001 - the service could not be opened: the run fails
                row = run_row(
                    run, None, status="failed", error=_error_text(exc), seed=seed, worker=where()
                )
                timeline = None
            else:
                row, timeline = await run_one(
                    run,
                    clip_by_name[run.clip],
                    handle,
                    timeout=timeout,
                    seed=seed,
                    prepared=prepared.get((run.clip, run.sample_rate)),
                )
        rows.append(row)
        if writer is not None:
            writer.submit(row, timeline)
        elif timeline is not None:
            timelines[run.run_id] = timeline
        if bar is not None:
            bar.update(1)
            if row["status"] != "ok":
                bar.set_postfix_str(f"{sum(r['status'] != 'ok' for r in rows)} failed")

    try:
        await asyncio.gather(*(one(run) for run in todo))
    finally:
        await pool.aclose()
        failed_writes = await asyncio.to_thread(writer.close) if writer is not None else []
        if bar is not None:
            bar.close()
    if root is not None:
        if failed_writes:  # keep the error in the table the caller gets; the disk has no such run
            by_id = {r["run_id"]: r for r in failed_writes}
            rows = [by_id.get(r["run_id"], r) for r in rows]
        consolidate(root)  # every session has ended: nothing to disturb
        runs = read_runs(root)
        if failed_writes:
            runs = runs_frame([*runs.to_dict("records"), *failed_writes])
        return SweepResult(runs, root)
    return SweepResult(runs_frame(rows), None, timelines)


def _info(
    sources: Sequence[ClipSource], grid: Mapping[str, list[Any]], repeats: int, seed: int
) -> dict[str, Any]:
    return {
        "clips": [{"name": c.name, "path": c.path} for c in sources],
        "grid": {k: [_plain(v) for v in vs] for k, vs in grid.items()},
        "repeats": repeats,
        "seed": seed,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def sweep(
    clips: Any,
    grid: Mapping[str, Any] | None = None,
    *,
    repeats: int = 1,
    concurrency: int = 4,
    pacing: str | None = None,
    service: Any = None,
    out: str | Path | None = None,
    client: Any = None,
    seed: int = 0,
    progress: bool = True,
    timeout: float | None = None,
) -> SweepResult:
    """Run every clip under every combination of ``grid`` values, ``repeats`` times.

    ``clips``: audio file paths, a folder, ``(array, sample_rate)`` pairs, or a mapping of
    names to those. ``grid``: option -> list of values, for any pacing option
    (``pacing``, ``chunk_ms``), ``sample_rate``, session option (``fps`` ...) or local
    service condition (``latency_ms``, ``jitter_ms``, ``av_offset_ms`` ...: every
    :class:`~avatar_nb.LocalService` setting; one service per distinct configuration).
    ``concurrency``: sessions streaming at once. ``pacing``: the default pacing
    (:data:`avatar_nb.pacing.DEFAULT_PACING`). ``service``: ``None`` (the ``AVATAR_NB_*``
    environment, else local services), a running ``LocalService``, or a mapping of
    session options naming a remote service's endpoints and credentials. ``out``: a
    directory to write the dataset to (see :mod:`avatar_nb.dataset`); runs already
    finished there are skipped. ``client``: a ``dask.distributed.Client`` to run the
    runs on its workers (needs ``out=`` on a path they share; see
    :mod:`avatar_nb.scaleout`). ``seed`` seeds the local services (jitter, animation).
    ``timeout``: per run, the wait for its end frame (default 30 s plus the clip).

    Returns a :class:`SweepResult`. Works in scripts and in notebooks (inside a running
    event loop the sweep runs on its own loop in a worker thread; ``await
    sweep_async(...)`` is the same as a coroutine).
    """
    from .pipeline import run_sync

    return run_sync(
        lambda: sweep_async(
            clips,
            grid,
            repeats=repeats,
            concurrency=concurrency,
            pacing=pacing,
            service=service,
            out=out,
            client=client,
            seed=seed,
            progress=progress,
            timeout=timeout,
        ),
        service=service,
        name="sweep",
        async_name="sweep_async",
        thread_name="avatar_nb-sweep",
    )
