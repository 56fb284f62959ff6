"""The experiment layer: one clip collector for the CLI and sweep, declared conditions,
run ids as the first datasets have them, executors without import circles."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import avatar_nb
from avatar_nb import sweep
from avatar_nb.audio import speech_like, write_wav
from avatar_nb.experiments import CONDITIONS, BadInput, Clip, classify, collect_clips, plan

RATE = 16000
SRC = Path(avatar_nb.__file__).resolve().parent


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    write_wav(folder / "a.wav", speech_like(0.3, RATE, seed=1), RATE)
    write_wav(folder / "sub" / "a.wav", speech_like(0.3, RATE, seed=2), RATE)  # a repeated name
    write_wav(folder / "sub" / "b.wav", speech_like(0.3, RATE, seed=3), RATE)
    (folder / "notes.txt").write_text("not audio")
    return folder


def test_the_cli_and_sweep_collect_the_same_clips_from_one_folder(tmp_path):
    folder = _folder(tmp_path)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "avatar_nb",
            "run",
            str(folder),
            "--out",
            str(tmp_path / "cli"),
            "--fast",
            "--json",
            "--no-plot",
            "--quiet",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    res = sweep(folder, pacing="fast", out=tmp_path / "sweep", progress=False)
    by_cli = [(r["clip"], Path(r["source"]).resolve()) for r in records]
    by_sweep = [(r["clip"], Path(r["source"]).resolve()) for r in res.runs.to_dict("records")]
    assert (
        by_cli
        == by_sweep
        == [
            ("a", folder / "a.wav"),
            ("a_2", folder / "sub" / "a.wav"),
            ("b", folder / "sub" / "b.wav"),
        ]
    )
    assert set(res.runs["status"]) == {"ok"}
    # not recursive, by an explicit argument, the same way for both
    assert [c.name for c in collect_clips(folder, recursive=False)] == ["a"]


def test_duplicates_are_handled_one_way():
    pair = (np.zeros(160, dtype=np.int16), RATE)
    # different clips sharing a name are numbered; unnamed pairs are clip_{i}
    found = collect_clips([pair, Clip("x", "x"), Clip("x", "y")])
    assert [c.name for c in found] == ["clip_0", "x", "x_2"]
    # a numbered name never meets a given one
    found = collect_clips([Clip("a", "1"), Clip("a_2", "2"), Clip("a", "3"), Clip("a", "4")])
    assert [c.name for c in found] == ["a", "a_2", "a_3", "a_4"]


def test_the_same_file_twice_is_refused(tmp_path):
    write_wav(tmp_path / "c.wav", speech_like(0.2, RATE), RATE)
    with pytest.raises(BadInput, match="unique"):
        collect_clips([tmp_path / "c.wav", tmp_path / "c.wav"])
    with pytest.raises(BadInput, match="unique"):
        collect_clips([tmp_path, str(tmp_path / "*.wav")])


def test_missing_and_empty_inputs_say_what_they_are(tmp_path, monkeypatch):
    """sweep("nofolder/") names a missing path as missing (not "is not a file"); a 0-byte
    clip is "empty", with no error number of the decoder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInput, match=r"^nofolder/: no such file or directory$"):
        sweep("nofolder/", out=tmp_path / "study")
    assert not (tmp_path / "study").exists()
    (tmp_path / "empty.wav").write_bytes(b"")
    from avatar_nb.experiments import prepare_clip

    (clip,) = collect_clips(tmp_path / "empty.wav")
    with pytest.raises(BadInput, match=r"empty\.wav: the file is empty \(0 bytes\)") as info:
        prepare_clip(clip, RATE)
    assert "Errno" not in str(info.value)


def test_a_clipped_clip_is_named_in_the_warning():
    from avatar_nb.audio import AudioWarning
    from avatar_nb.experiments import prepare_clip

    (clip,) = collect_clips({"loud": (np.full(1600, 2.0, np.float32), RATE)})
    with pytest.warns(AudioWarning, match=r"^<array loud>: 1600 of 1600 sample values \(100%\)"):
        prepare_clip(clip, RATE)


def test_conditions_are_declared_and_fps_is_a_session_option():
    assert classify(["fps", "latency_ms", "chunk_ms", "sample_rate"]) == {
        "fps": "session",
        "latency_ms": "service",
        "chunk_ms": "pacing",
        "sample_rate": "rate",
    }
    assert CONDITIONS["fps"].local_service
    # the table covers the settings of the service and the session (a new one is added on purpose)
    from avatar_nb.config import SessionConfig
    from avatar_nb.server import LocalService

    identity = {"self", "host", "port", "api_key", "app_id", "avatar_ids", "other_app_ids"}
    service = set(inspect.signature(LocalService.__init__).parameters) - identity
    private = {
        "api_key",
        "transport_frames",
        "on_error",
        "on_close",
        "console_endpoint_url",
        "ingress_endpoint_url",
    }
    session = {f.name for f in dataclasses.fields(SessionConfig)} - private
    assert service | session <= set(CONDITIONS)
    with pytest.raises(ValueError, match="unknown sweep option 'chunk_size'"):
        classify(["chunk_size"])


def test_run_ids_are_those_of_the_first_datasets():
    # computed by the sweep code before the experiment layer existed: existing datasets resume
    sources = collect_clips({"named": (np.arange(1600, dtype=np.int16), 16000)})
    sources += collect_clips([(np.arange(800, dtype=np.int16), 8000)])
    assert [c.key for c in sources] == [
        "named:3079ccec60c265b0@16000",
        "clip0:bfece25e25f197ad@8000",
    ]
    grid = {"latency_ms": [40], "fps": [25, 50], "chunk_ms": [20]}
    assert [r.run_id for r in plan(sources, grid, 2, pacing="capture", seed=0, local=True)] == [
        "47a6e6ea17065f23",
        "c895afa5b0c4209d",
        "ab2b214e25129f7b",
        "837d14650ea5afac",
        "0b4623c54d691992",
        "3f2c02e512ecfbc9",
        "b00e334e5ef3e99a",
        "9b87d198745751a6",
    ]
    grid = {"sample_rate": [16000, 24000]}
    assert [r.run_id for r in plan(sources, grid, 1, pacing="fast", seed=3, local=False)] == [
        "a88f2487a62401cf",
        "493f6af021b2ce4e",
        "007ec35ea306362f",
        "81fc0fcf75970588",
    ]


def test_a_sweep_over_fps_works_locally_and_remotely():
    clip = {"speech": (speech_like(0.6, RATE, seed=1), RATE)}
    local = sweep(clip, grid={"fps": [25, 50]}, pacing="fast", progress=False)
    assert set(local.runs["status"]) == {"ok"}
    # a local service is started at the fps the session reads keyframes at
    assert list(local.runs["keyframes"]) == [15, 30]
    with avatar_nb.LocalService(realtime=False, fps=50) as service:
        remote = sweep(clip, grid={"fps": [50]}, pacing="fast", service=service, progress=False)
    assert set(remote.runs["status"]) == {"ok"} and list(remote.runs["keyframes"]) == [30]
    assert remote.timelines[remote.runs["run_id"][0]].fps == 50


def _imports(path: Path, package: str) -> set[str]:
    """Modules of avatar_nb imported by ``path`` (anywhere but under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    skip = {
        id(node)
        for top in ast.walk(tree)
        if isinstance(top, ast.If) and "TYPE_CHECKING" in ast.unparse(top.test)
        for node in ast.walk(top)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        parts = package.split(".")
        base = parts[: len(parts) - (node.level - 1)]
        module = ".".join([*base, *(node.module.split(".") if node.module else [])])
        names = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
        found.update(names)
    return found


def test_no_import_circle_in_the_experiment_layer():
    modules = {
        "avatar_nb.sweeps": SRC / "sweeps.py",
        "avatar_nb.scaleout": SRC / "scaleout.py",
        "avatar_nb.batch": SRC / "batch.py",
        "avatar_nb.cli": SRC / "cli.py",
        "avatar_nb.pipeline": SRC / "pipeline.py",
        "avatar_nb.endpoints": SRC / "endpoints.py",
        "avatar_nb.sync": SRC / "sync.py",
    }
    for path in (SRC / "experiments").glob("*.py"):
        name = "avatar_nb.experiments" + ("" if path.stem == "__init__" else f".{path.stem}")
        modules[name] = path
    graph = {
        name: {
            m
            for m in _imports(path, name if path.stem == "__init__" else name.rsplit(".", 1)[0])
            if m in modules and m != name
        }
        for name, path in modules.items()
    }
    assert "avatar_nb.experiments.executors" in graph["avatar_nb.experiments.cluster"]
    assert "avatar_nb.experiments.cluster" in graph["avatar_nb.scaleout"]
    # the layer never reaches up to its entry points
    for name, edges in graph.items():
        if name.startswith("avatar_nb.experiments"):
            assert not edges & {
                "avatar_nb.sweeps",
                "avatar_nb.scaleout",
                "avatar_nb.batch",
                "avatar_nb.cli",
            }, name
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, f"import circle: {' -> '.join([*trail, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_old_names_keep_working_with_a_warning(tmp_path):
    from avatar_nb import batch, pipeline, sweeps

    with pytest.warns(DeprecationWarning, match="experiments.Output"):
        assert batch.Writer is avatar_nb.experiments.Output
    with pytest.warns(DeprecationWarning, match="experiments.Clip"):
        clip = sweeps.ClipSource("x", None, np.zeros(10), 8000, "k")
    assert isinstance(clip, Clip) and clip.sample_rate == 8000
    with pytest.warns(DeprecationWarning, match="ServiceSpec.of"):
        assert sweeps.service_spec(None).kind in ("local", "remote")
    assert "ENV_VARS" not in pipeline.__all__ and pipeline.ENV_VARS is avatar_nb.endpoints.ENV_VARS
    from avatar_nb.sync import run_sync

    assert pipeline.run_sync is run_sync


def test_serve_speed_has_one_name_and_the_old_flags_warn():
    from avatar_nb.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["serve"]).service_speed == "realtime"
    assert parser.parse_args(["serve", "--service-speed", "fast"]).service_speed == "fast"
    with pytest.warns(DeprecationWarning, match="--service-speed fast"):
        assert parser.parse_args(["serve", "--fast"]).service_speed == "fast"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parser.parse_args(
            ["run", "x", "--out", "o", "--realtime"]
        ).pacing  # client pacing: no warning


def test_service_spec_redacts_and_open_service_takes_it():
    from avatar_nb.endpoints import ServiceSpec

    spec = ServiceSpec.of({"console_endpoint_url": "http://h/c", "api_key": "sk-secret"})
    assert spec.kind == "remote" and "sk-secret" not in repr(spec)
    assert ServiceSpec.of(None, environ={}).kind == "local"


async def test_one_cache_of_local_services_with_a_lifetime():
    from avatar_nb.endpoints import LocalServices, ServiceSpec, open_service

    async with LocalServices() as cache:
        a = await cache.get({"realtime": False})
        assert a is await cache.get({"realtime": False}) and a.running
        b = await cache.get({"realtime": False, "latency_ms": 5.0})
        assert b is not a and len(cache) == 2
        # open_service takes the spec and the cache: the block does not stop the service
        async with open_service(
            spec=ServiceSpec("local"), services=cache, local_options={"realtime": False}
        ) as handle:
            assert handle.local is a and handle.source == "embedded"
        assert a.running
    assert not a.running and not b.running
    threaded = LocalServices(threads=True)  # a Dask worker's, closed by its plugin's teardown
    service = threaded.get_started({"realtime": False})
    assert service.running and threaded.get_started({"realtime": False}) is service
    threaded.close()
    assert not service.running
    source = "".join(p.read_text() for p in (SRC / "experiments").glob("*.py"))
    assert "atexit" not in source
