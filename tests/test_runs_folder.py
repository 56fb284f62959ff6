"""Output folders used again, interrupted and filled: ``avatar-nb run`` and ``sweep``.

Ctrl-C is a real SIGINT to the process group of a subprocess (as a terminal sends it),
sent once its first run has finished (its output line or progress is waited for with a
bounded poll loop, never a sleep); re-runs are the same command again.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from avatar_nb import cli as cli_module
from avatar_nb import load_results, speech_like, sweep, write_wav
from avatar_nb.dataset import LOCK_FILE

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("AVATAR_NB_")},
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
}
RATE = 16000
PATIENCE = 300.0  # a bound for a broken run to fail the test, not a timing expectation


def _clips(folder: Path, seconds: dict[str, float]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, length) in enumerate(seconds.items()):
        write_wav(folder / f"{name}.wav", speech_like(length, RATE, seed=i), RATE)
    return folder


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=ENV,
        start_new_session=True,  # its own process group: SIGINT reaches it as Ctrl-C would
    )


def _wait_for(process: subprocess.Popen, stream: str, needle: bytes) -> bytes:
    """Read ``stream`` of ``process`` until ``needle`` shows (bounded poll loop)."""
    pipe = getattr(process, stream)
    seen = b""
    deadline = time.monotonic() + PATIENCE
    with selectors.DefaultSelector() as selector:
        selector.register(pipe, selectors.EVENT_READ)
        while needle not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            if selector.select(timeout=1.0):
                chunk = os.read(pipe.fileno(), 65536)
                assert chunk, f"ended before {needle!r}: {seen.decode(errors='replace')}"
                seen += chunk
    return seen


def _interrupt(process: subprocess.Popen, sig: int = signal.SIGINT) -> tuple[int, str, str]:
    os.killpg(process.pid, sig)
    out, err = process.communicate(timeout=PATIENCE)
    return process.returncode, out.decode(), err.decode()


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "avatar_nb", *args],
        capture_output=True, text=True, cwd=cwd, env=ENV, timeout=PATIENCE, check=False,
    )


def _summary(folder: Path) -> list[dict[str, str]]:
    with open(folder / "summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------------------- sweep


SWEEP_SCRIPT = textwrap.dedent(
    """
    import asyncio
    import sys
    import avatar_nb as an
    from avatar_nb.audio import speech_like

    clips = {f"c{i}": (speech_like(0.8, 16000, seed=i), 16000) for i in range(4)}

    def study():
        return an.sweep(clips, grid={"chunk_ms": [40]}, concurrency=1, out=sys.argv[1])

    async def cell():  # a notebook cell: the sweep runs on a loop of its own in a thread
        return study()

    try:
        if sys.argv[2] == "kernel":  # a loop as a kernel runs it: Ctrl-C is KeyboardInterrupt
            loop = asyncio.new_event_loop()
            try:
                result = loop.run_until_complete(cell())
            finally:
                loop.close()
        else:
            result = study()
    except KeyboardInterrupt:
        print("caller got KeyboardInterrupt", flush=True)
        sys.exit(130)
    print(repr(result), flush=True)
    """
)


@pytest.mark.parametrize("where", ["script", "kernel"])
def test_sweep_ctrl_c_saves_finished_runs_says_so_in_one_line_and_the_same_call_resumes(tmp_path, where):
    script = tmp_path / "study.py"
    script.write_text(SWEEP_SCRIPT)
    process = _start(["-X", "dev", str(script), "out", where], tmp_path)
    seen = _wait_for(process, "stderr", b"1/4")  # the progress bar after the first finished run
    code, out, err = _interrupt(process)
    err = seen.decode() + err
    assert code == 130 and out.strip() == "caller got KeyboardInterrupt", (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "ResourceWarning" not in err, err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1, err
    saved = len(load_results(tmp_path / "out").runs)
    assert saved >= 1
    assert lines[0] == (
        f"sweep interrupted: {saved} of 4 runs saved in out; the same sweep call resumes the other {4 - saved}"
    )
    # the same call again runs the others only, and says so
    again = subprocess.run(
        [sys.executable, "-X", "dev", str(script), "out", where],
        capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=PATIENCE, check=False,
    )
    assert again.returncode == 0, again.stderr
    assert f"{saved} of 4 runs already in out; running {4 - saved}" in again.stderr
    assert f"<SweepResult 4 runs, 4 ok, {saved} reused from an earlier call in 'out'>" in again.stdout
    assert "ResourceWarning" not in again.stderr, again.stderr
    runs = load_results(tmp_path / "out").runs
    assert len(runs) == 4 and set(runs["status"]) == {"ok"}


def clips(n: int) -> dict:
    return {f"s{i}": (speech_like(0.4, RATE, seed=i), RATE) for i in range(n)}


def test_a_sweep_of_another_grid_into_a_used_folder_returns_its_own_runs_and_keeps_both(tmp_path):
    out = tmp_path / "study"
    first = sweep(clips(2), grid={"chunk_ms": [20, 40, 80]}, pacing="fast", out=out, progress=False)
    assert len(first.runs) == 6
    second = sweep(clips(1), grid={"chunk_ms": [60, 100]}, pacing="fast", out=out, progress=False)
    # the result holds the runs asked for, the folder every run written into it
    assert len(second.runs) == 2 and sorted(second.runs["chunk_ms"]) == [60.0, 100.0]
    assert second.reused == 0 and "reused" not in repr(second)
    assert len(load_results(out).runs) == 8
    # the folder's description keeps both sweeps; the top level is the latest (older readers)
    info = json.loads((out / "sweep.json").read_text())
    assert [s["grid"] for s in info["sweeps"]] == [{"chunk_ms": [20, 40, 80]}, {"chunk_ms": [60, 100]}]
    assert info["grid"] == {"chunk_ms": [60, 100]}
    assert load_results(out).info["sweeps"] == info["sweeps"]
    # a part of the first sweep asked again: all reused, said so, still its own runs only
    third = sweep(clips(1), grid={"chunk_ms": [20]}, pacing="fast", out=out, progress=False)
    assert len(third.runs) == 1 and third.reused == 1
    assert repr(third) == f"<SweepResult 1 runs, 1 ok, 1 reused from an earlier call in {str(out)!r}>"
    assert len(json.loads((out / "sweep.json").read_text())["sweeps"]) == 3


def test_a_folder_of_the_old_sweep_json_gains_the_list(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    old = {"clips": [], "grid": {"chunk_ms": [20]}, "repeats": 1, "seed": 0, "written": "x"}
    (out / "sweep.json").write_text(json.dumps(old))
    sweep(clips(1), grid={"chunk_ms": [40]}, pacing="fast", out=out, progress=True)
    info = json.loads((out / "sweep.json").read_text())
    assert info["sweeps"][0] == old and info["sweeps"][1]["grid"] == {"chunk_ms": [40]}
    again = sweep(clips(1), grid={"chunk_ms": [40]}, pacing="fast", out=out, progress=True)
    assert "1 of 1 runs already in" in capsys.readouterr().err
    assert again.reused == 1 and len(json.loads((out / "sweep.json").read_text())["sweeps"]) == 2


def test_started_at_is_a_utc_timestamp_and_each_value_has_one_column(tmp_path):
    res = sweep(clips(1), grid={"latency_ms": [0, 40]}, pacing="fast", out=tmp_path / "s", progress=False)
    for runs in (res.runs, load_results(tmp_path / "s").runs):
        assert str(runs["started_at"].dtype) == "datetime64[us, UTC]"
        assert "run" not in runs and "service_latency_ms" not in runs and "service_jitter_ms" not in runs
        assert sorted(runs["latency_ms"]) == [0.0, 40.0]
    import pyarrow.parquet as pq

    schema = pq.read_schema(tmp_path / "s" / "runs.parquet")
    assert str(schema.field("started_at").type) == "timestamp[us, tz=UTC]"


def test_an_older_runs_table_is_read_with_the_new_columns():
    from avatar_nb.dataset import runs_frame

    runs = runs_frame([
        {"run": 1, "run_id": "b", "started_at": 1_700_000_001.5, "service_latency_ms": 80.0},
        {"run": 0, "run_id": "a", "started_at": 1_700_000_000.0, "service_latency_ms": 40.0},
    ])
    assert list(runs["run_id"]) == ["a", "b"]
    assert list(runs["latency_ms"]) == [40.0, 80.0] and "service_latency_ms" not in runs
    assert runs["started_at"][1].isoformat() == "2023-11-14T22:13:21.500000+00:00"


# ----------------------------------------------------------------------------- avatar-nb run


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_run_ctrl_c_keeps_finished_clips_says_what_was_interrupted_and_resumes(tmp_path, sig):
    """Ctrl-C, or SIGTERM as ``kill`` or a job scheduler sends it: the same ending."""
    _clips(tmp_path / "clips", {"c1": 0.6, "c2": 0.6, "c3": 0.6})
    args = ["-m", "avatar_nb", "run", "clips", "--concurrency", "1", "--out", "o", "--quiet", "--no-plot"]
    process = _start(args, tmp_path)
    first = _wait_for(process, "stdout", b"\n")
    assert first.startswith(b"clips/c1.wav: ")
    code, _, err = _interrupt(process, sig)
    assert code == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    (line,) = [x for x in err.splitlines() if "interrupted" in x]
    done = [r for r in _summary(tmp_path / "o")]
    kept = len(done)
    assert kept >= 1 and {r["status"] for r in done} == {"ok"}
    left = ["c1", "c2", "c3"][kept:]
    assert line == (
        f"avatar-nb: interrupted: {kept} of 3 clips finished and kept in o; "
        f"not animated: {', '.join(left)}; the same command resumes"
    )
    assert (tmp_path / "o" / "c1.npz").exists() and len(load_results(tmp_path / "o").runs) == kept
    # the same command again: the finished clips are skipped, the others run
    again = _run(*args[2:], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"{kept} of 3 clips already animated in o (same settings); running {3 - kept}" in again.stderr
    rows = _summary(tmp_path / "o")
    assert [r["clip"] for r in rows] == ["c1", "c2", "c3"] and {r["status"] for r in rows} == {"ok"}
    runs = load_results(tmp_path / "o").runs
    assert sorted(runs["clip"]) == ["c1", "c2", "c3"]
    kept_rows = {r["clip"]: r for r in done}
    assert rows[0]["started_at"] == kept_rows["c1"]["started_at"]  # not run again


def test_run_again_into_a_used_folder_skips_finished_runs_and_replaces_files_together(tmp_path):
    _clips(tmp_path / "clips", {"c1": 0.4, "c2": 0.4, "c3": 0.4})
    first = _run("run", "clips", "--out", "results", "--fast", "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "results"
    assert {p.name for p in out.glob("c*")} == {f"c{i}.{k}" for i in (1, 2, 3) for k in ("npz", "png")}
    # the same clip again, asking for less: finished, skipped; the summary still has every run
    again = _run("run", "clips/c1.wav", "--out", "results", "--fast", "--quiet", "--no-plot", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "1 of 1 clips already animated in results" in again.stderr
    assert "0 of 0 clips animated, 1 already animated in results" in again.stdout
    rows = _summary(out)
    assert [r["clip"] for r in rows] == ["c1", "c2", "c3"]
    assert len(load_results(out).runs) == 3
    # under other settings: run again, its files replaced together (no figure left from before)
    other = _run("run", "clips/c1.wav", "--out", "results", "--fast", "--chunk-ms", "80", "--quiet",
                 "--no-plot", cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    assert not (out / "c1.png").exists() and (out / "c1.npz").exists()
    rows = {r["clip"]: r for r in _summary(out)}
    assert len(rows) == 3 and float(rows["c1"]["chunk_ms"]) == 80.0 and rows["c1"]["png"] == ""
    runs = load_results(out).runs.set_index("clip")
    assert len(runs) == 3 and runs.loc["c1", "chunk_ms"] == 80.0 and runs.loc["c2", "chunk_ms"] == 40.0
    # a CLI dataset has the columns a sweep's has
    for column in ("started_at", "worker", "wall_seconds"):
        assert runs[column].notna().all(), column
    assert str(runs["started_at"].dtype) == "datetime64[us, UTC]"
    assert not [p for p in out.glob(".*") if p.name != LOCK_FILE]  # no temporary left (the dataset lock stays)


def test_lines_come_in_input_order(tmp_path):
    # the first clip is the longest: it finishes last, and its line still comes first
    _clips(tmp_path / "clips", {"a": 1.6, "b": 0.3, "c": 0.3})
    out = _run("run", "clips", "--out", "o", "--concurrency", "3", "--quiet", "--no-plot", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    names = [line.split(":")[0] for line in out.stdout.splitlines()[:3]]
    assert names == ["clips/a.wav", "clips/b.wav", "clips/c.wav"]
    runs = load_results(tmp_path / "o").runs.set_index("clip")
    assert runs.loc["a", "started_at"] <= runs.loc["b", "started_at"]


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "A", "a", "x" * 200])
def test_clip_names_never_reach_outside_the_folder(tmp_path, name):
    from avatar_nb.experiments.outputs import safe_stem

    stem = safe_stem(name)
    assert "/" not in stem and not stem.startswith(".") and len(stem) <= 90
    assert (tmp_path / stem).resolve().parent == tmp_path.resolve()


def test_a_clip_named_dot_dot_wav_and_names_differing_in_case_stay_inside_out(tmp_path):
    clips = _clips(tmp_path / "in", {".": 0.3, "A": 0.3, "a": 0.3, "n" * 120: 0.3})
    assert (clips / "..wav").exists()
    out = _run("run", "in/", "--out", "out/", "--fast", "--quiet", "--no-plot", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # nothing beside out/
    npz = sorted(p.name for p in (tmp_path / "out").glob("*.npz"))
    assert len(npz) == 4 and len({n.casefold() for n in npz}) == 4
    rows = {r["clip"]: r for r in _summary(tmp_path / "out")}
    assert set(rows) == {".", "A", "a", "n" * 120}
    for row in rows.values():
        assert (tmp_path / row["npz"]).resolve().parent == (tmp_path / "out").resolve()
    # again: every run found under the name it was given the first time
    again = _run("run", "in/", "--out", "out/", "--fast", "--quiet", "--no-plot", cwd=tmp_path)
    assert "4 of 4 clips already animated" in again.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.npz")) == npz


def test_version_and_help_for_people():
    version = _run("--version", cwd=ROOT)
    assert version.returncode == 0 and version.stdout.startswith("avatar-nb ")
    for args in (["--help"], ["run", "--help"]):
        text = _run(*args, cwd=ROOT).stdout
        assert "``" not in text and ":func:" not in text and ":mod:" not in text, text
    assert "the same command then resumes" in _run("run", "--help", cwd=ROOT).stdout.replace("\n", " ")


# ----------------------------------------------------------------------------- a full disk


def test_a_full_disk_leaves_whole_files_and_a_summary_that_says_what_failed(tmp_path, monkeypatch, capsys):
    """Writes that fail with ENOSPC (a figure, a dataset segment, the consolidation): every
    file there is whole, the summary and the --json lines say what failed and why."""
    from matplotlib.figure import Figure

    from avatar_nb.dataset import writer as dataset_writer

    _clips(tmp_path / "clips", {"c1": 0.4, "c2": 0.4, "c3": 0.4, "c4": 0.4})
    real_savefig = Figure.savefig
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def savefig(self, path, *args, **kwargs):
        # the hidden temporary of c2.png; "c2" in str(path) would also match a random tail
        if Path(path).name.startswith(".c2."):
            Path(path).write_bytes(b"\x89PNG partial")  # part of the file, then the disk is full
            raise full
        return real_savefig(self, path, *args, **kwargs)

    real_add = dataset_writer.DatasetWriter.add

    def add(self, row, keyframes=None):
        if row.get("clip") == "c3":
            raise full
        return real_add(self, row, keyframes)

    def consolidate(root, **kwargs):
        raise dataset_writer.DatasetWriteError("consolidating: [Errno 28] No space left on device", [])

    monkeypatch.setattr(Figure, "savefig", savefig)
    monkeypatch.setattr(dataset_writer.DatasetWriter, "add", add)
    monkeypatch.setattr("avatar_nb.dataset.consolidate", consolidate)
    monkeypatch.chdir(tmp_path)
    code = cli_module.main(["run", "clips", "--out", "o", "--fast", "--quiet", "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    records = {r["clip"]: r for r in map(json.loads, out.splitlines())}
    assert records["c1"]["status"] == "ok" and records["c4"]["status"] == "ok"
    assert records["c2"]["status"] == "failed" and "No space left on device" in records["c2"]["error"]
    assert "writing png" in records["c2"]["error"]
    assert records["c3"]["status"] == "failed" and "No space left on device" in records["c3"]["error"]
    assert "could not be consolidated" in err and "c2.wav" in err and "c3.wav" in err
    rows = {r["clip"]: r for r in _summary(tmp_path / "o")}
    assert set(rows) == {"c1", "c2", "c3", "c4"}
    assert rows["c2"]["status"] == "failed" and "No space left" in rows["c2"]["error"]
    # whole files or none: no partial figure, no temporary left behind
    folder = tmp_path / "o"
    assert not (folder / "c2.png").exists() and not [p for p in folder.glob(".*") if p.name != LOCK_FILE]
    for name in ("c1", "c4"):
        assert (folder / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_an_unwritable_out_is_found_before_any_session(tmp_path, monkeypatch, capsys):
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    async def never(*args, **kwargs):  # pragma: no cover - reached only if the check failed
        raise AssertionError("streamed into a folder it cannot write")

    _clips(tmp_path / "clips", {"c1": 0.3})
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(cli_module, "run_batch", never)
    code = cli_module.main(["run", str(tmp_path / "clips"), "--out", str(tmp_path / "o"), "--fast"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write in this folder (Read-only file system)" in err
    with pytest.raises(ValueError, match="cannot write in this folder"):
        sweep(clips(1), out=tmp_path / "s", pacing="fast", progress=False)


def test_files_over_a_size_limit_are_not_left_in_part(tmp_path):
    """A real write limit (RLIMIT_FSIZE in the subprocess, as a nearly full disk): the long
    clip's files cannot be written whole, so they are not there at all; the short clips'
    are whole, and the summary says which failed and why."""
    import resource

    _clips(tmp_path / "clips", {"short": 0.4, "long": 8.0})
    limit = 120_000  # bytes: a 0.4 s run's files fit, an 8 s run's timeline does not

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(
        [sys.executable, "-m", "avatar_nb", "run", "clips", "--out", "o", "--fast", "--quiet", "--no-plot"],
        capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=PATIENCE, check=False,
        preexec_fn=small_files,
    )
    assert done.returncode == 1, done.stderr
    assert "long.wav: writing npz: [Errno 27] File too large" in done.stderr
    rows = {r["clip"]: r for r in _summary(tmp_path / "o")}
    assert rows["short"]["status"] == "ok" and rows["long"]["status"] == "failed"
    assert "File too large" in rows["long"]["error"]
    folder = tmp_path / "o"
    assert not (folder / "long.npz").exists() and not [p for p in folder.glob(".*") if p.name != LOCK_FILE]
    from avatar_nb import Timeline

    assert Timeline.load(folder / "short.npz").n_keyframes == 10
