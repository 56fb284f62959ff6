"""The avatar-nb command line, run as a real process."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avatar_nb import Timeline, pipeline, speech_like, write_wav
from avatar_nb import cli as cli_module

SCRIPT = Path(sys.executable).with_name("avatar-nb")
ENV = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_NB_")}


def cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "avatar_nb", *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or ENV,
        timeout=timeout,
    )


def wav_float_stereo(path: Path, seconds: float, rate: int) -> Path:
    x = speech_like(seconds, rate)
    stereo = np.stack([x, 0.5 * x], axis=1).astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 2, rate, rate * 8, 8, 32)
    body = b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(stereo)) + stereo
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
    return path


def test_installed_script_and_help(tmp_path):
    out = subprocess.run([str(SCRIPT), "--help"], check=False, capture_output=True, text=True, env=ENV, timeout=60)
    assert out.returncode == 0
    for command in ("run", "serve", "demo"):
        assert command in out.stdout
    assert "bench" not in out.stdout  # benchmarks are scripts of a checkout, not a verb
    write_wav(tmp_path / "x.wav", speech_like(0.4, 16000), 16000)
    out = subprocess.run(
        [str(SCRIPT), "run", str(tmp_path / "x.wav"), "--out", str(tmp_path / "o"), "--fast", "--quiet", "--no-plot"],
        check=False, capture_output=True, text=True, env=ENV, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert Timeline.load(tmp_path / "o" / "x.npz").n_keyframes == 10


def test_no_command_is_a_usage_error():
    out = cli()
    assert out.returncode == 2 and "usage: avatar-nb" in out.stderr and "Traceback" not in out.stderr


def test_demo_writes_timeline_and_figure(tmp_path):
    out = cli("demo", "--fast", "--seconds", "2", "--out", str(tmp_path / "demo"))
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "demo"
    tl = Timeline.load(folder / "demo.npz")
    assert tl.complete and tl.n_keyframes == 50 and tl.audio.shape[0] == 32000
    assert (folder / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "demo.wav").exists()
    assert f"open {folder / 'demo.png'}" in out.stdout
    assert "Timeline.load" in out.stdout


def test_run_batch_folder_glob_json_and_summary(tmp_path):
    clips = tmp_path / "clips"
    (clips / "sub").mkdir(parents=True)
    wav_float_stereo(clips / "a.wav", 1.0, 44100)
    write_wav(clips / "sub" / "b.wav", speech_like(0.6, 8000), 8000)
    write_wav(tmp_path / "c.wav", speech_like(0.4, 16000), 16000)
    raw = tmp_path / "d.pcm"
    raw.write_bytes(np.frombuffer((tmp_path / "c.wav").read_bytes()[44:], dtype="<i2").tobytes())
    out_dir = tmp_path / "out"
    out = cli(
        "run", str(clips), str(tmp_path / "c*.wav"), str(raw), "--raw-rate", "16000",
        "--out", str(out_dir), "--fast", "--json", "--concurrency", "2", "--no-plot",
    )
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["clip"] for r in records] == ["a", "b", "c", "d"]  # input order
    assert all(r["status"] == "ok" and r["complete"] for r in records)
    by_name = {r["clip"]: r for r in records}
    assert by_name["a"]["keyframes"] == 25 and by_name["b"]["keyframes"] == 15 and by_name["c"]["keyframes"] == 10
    assert by_name["d"]["keyframes"] == by_name["c"]["keyframes"]
    with open(out_dir / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["clip"] for r in rows] == ["a", "b", "c", "d"]
    for r in rows:
        tl = Timeline.load(r["npz"])
        assert tl.n_keyframes == int(r["keyframes"])
    # the output folder is also a dataset, read back as a sweep's is
    from avatar_nb import load_results

    results = load_results(out_dir)
    assert sorted(results.runs["run_id"]) == ["a", "b", "c", "d"]
    kf = results.keyframes(columns=["latency"])
    assert kf.groupby("run_id", observed=True).size().to_dict() == {"a": 25, "b": 15, "c": 10, "d": 10}


def test_run_human_output_and_png(tmp_path):
    write_wav(tmp_path / "x.wav", speech_like(0.8, 16000), 16000)
    out = cli("run", str(tmp_path / "x.wav"), "--out", str(tmp_path / "o"), "--fast", "--quiet")
    assert out.returncode == 0, out.stderr
    line = out.stdout.splitlines()[0]
    assert re.match(
        r".*x\.wav: 0\.80 s audio, 20 keyframes, fast pacing, first frame [\d.]+ ms, "
        r"latency p99 [\d.]+ ms, lateness p99 n/a \(fast\), processing [\d.]+x real time$",
        line,
    ), line
    assert (tmp_path / "o" / "x.png").read_bytes()[:4] == b"\x89PNG"
    assert "1 of 1 clips animated" in out.stdout


def _unreadable(path: Path) -> Path:
    """A file whose bytes cannot be read: no read permission, or (as root, who ignores
    permissions) a link to /proc/self/mem, whose first page is never mapped."""
    if os.geteuid() != 0:
        path.write_bytes(b"RIFF")
        path.chmod(0)
    else:
        path.symlink_to("/proc/self/mem")
    return path


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    (tmp_path / "garbage.wav").write_bytes(b"this is not audio")
    fmt_cut = b"fmt " + struct.pack("<I", 16) + b"\x01\x00\x01\x00"
    (tmp_path / "cut.wav").write_bytes(b"RIFF" + struct.pack("<I", 4 + len(fmt_cut)) + b"WAVE" + fmt_cut)
    _unreadable(tmp_path / "locked.wav")
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 8000 * 2, 2, 12)
    body = b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 4) + b"\x00" * 4
    (tmp_path / "w12.wav").write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
    write_wav(tmp_path / "empty.wav", b"", 16000)
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "notes.txt").write_text("no audio here")
    (tmp_path / "x.pcm").write_bytes(b"\x00\x00" * 100)
    (tmp_path / "odd.pcm").write_bytes(b"\x00\x01\x02")
    (tmp_path / "none.pcm").write_bytes(b"")
    return {
        "missing": ([str(tmp_path / "missing.wav")], "missing.wav: no such file or directory"),
        "corrupt": ([str(tmp_path / "garbage.wav")], "garbage.wav: not a WAV file"),
        "truncated": ([str(tmp_path / "cut.wav")], "cut.wav: chunk b'fmt ' claims 16 bytes but the file ends after 4"),
        "unreadable": ([str(tmp_path / "locked.wav")], "locked.wav: cannot be read ("),
        "width": ([str(tmp_path / "w12.wav")], "w12.wav: unsupported sample format: 12-bit integer PCM"),
        "empty": ([str(tmp_path / "empty.wav")], "empty.wav: contains no audio samples"),
        "no audio dir": ([str(tmp_path / "nothing")], "nothing: directory contains no audio files"),
        "no glob match": ([str(tmp_path / "*.flac")], "*.flac: no files match this pattern"),
        "odd raw": ([str(tmp_path / "odd.pcm"), "--raw-rate", "16000"], "odd.pcm: raw s16le has an odd number of bytes (3)"),
        "empty raw": ([str(tmp_path / "none.pcm"), "--raw-rate", "16000"], "none.pcm: contains no audio samples"),
    }


BAD_INPUTS = [
    "missing", "corrupt", "truncated", "unreadable", "width", "empty", "no audio dir", "no glob match",
    "odd raw", "empty raw",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(tmp_path, case):
    args, message = _bad_inputs(tmp_path)[case]
    out = cli("run", *args, "--out", str(tmp_path / "o"), "--fast", "--quiet")
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("avatar-nb: error:")]
    assert len(errors) == 1 and message in errors[0], out.stderr
    assert "Traceback" not in out.stderr


def test_debug_shows_the_traceback(tmp_path):
    args, _ = _bad_inputs(tmp_path)["corrupt"]
    out = cli("run", *args, "--out", str(tmp_path / "o"), "--fast", "--quiet", "--debug")
    assert out.returncode == 2 and "Traceback" in out.stderr


def test_a_bad_clip_does_not_stop_the_batch(tmp_path):
    _bad_inputs(tmp_path)
    write_wav(tmp_path / "good.wav", speech_like(0.4, 16000), 16000)
    out = cli("run", str(tmp_path / "garbage.wav"), str(tmp_path / "good.wav"), "--out", str(tmp_path / "o"),
              "--fast", "--quiet", "--no-plot")
    assert out.returncode == 2
    assert "1 of 2 clips animated" in out.stdout
    assert (tmp_path / "o" / "good.npz").exists()
    with open(tmp_path / "o" / "summary.csv") as fh:
        rows = {r["clip"]: r for r in csv.DictReader(fh)}
    assert rows["good"]["status"] == "ok" and rows["garbage"]["status"] == "failed"
    assert "not a WAV file" in rows["garbage"]["error"]


def test_raw_pcm_needs_its_rate(tmp_path):
    (tmp_path / "x.pcm").write_bytes(b"\x00\x00" * 100)
    out = cli("run", str(tmp_path / "x.pcm"), "--out", str(tmp_path / "o"), "--fast", "--quiet")
    assert out.returncode == 2
    assert "x.pcm: raw PCM needs its sample rate (--raw-rate HZ)" in out.stderr
    out = cli("run", str(tmp_path), "--raw-rate", "16000", "--out", str(tmp_path / "o"), "--fast", "--quiet", "--no-plot")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--sample-rate", "12345"], "unsupported sample rate 12345"),
        (["--chunk-ms", "0"], "must be a positive number"),
        (["--concurrency", "-1"], "must be a positive integer"),
        (["--chunk-ms", "1e9"], "one message can carry"),
        (["--pacing", "slow"], "invalid choice: 'slow'"),
    ],
)
def test_bad_options(tmp_path, args, message):
    write_wav(tmp_path / "x.wav", speech_like(0.2, 16000), 16000)
    out = cli("run", str(tmp_path / "x.wav"), "--out", str(tmp_path / "o"), *args)
    assert out.returncode == 2 and message in out.stderr


def test_remote_endpoints_must_be_complete(tmp_path):
    write_wav(tmp_path / "x.wav", speech_like(0.2, 16000), 16000)
    out = cli("run", str(tmp_path / "x.wav"), "--out", str(tmp_path / "o"), "--console-url", "http://127.0.0.1:9/v1/console")
    assert out.returncode == 2 and "missing --ingress-url, --api-key, --app-id, --avatar-id" in out.stderr


def test_serve_then_run_against_it_then_ctrl_c(tmp_path):
    secret = "sk-cli-test-secret-42"
    server = subprocess.Popen(
        [sys.executable, "-m", "avatar_nb", "serve", "--port", "0", "--fast", "--api-key", secret],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        info = {}
        for line in server.stdout:
            match = re.match(r"\s+(\w+)\s+= (\S+)", line)
            if match:
                info[match.group(1)] = match.group(2)
            if "avatar_id" in info:
                break
        assert info["api_key"] == secret
        write_wav(tmp_path / "x.wav", speech_like(0.4, 16000), 16000)
        env = dict(ENV, AVATAR_NB_API_KEY=secret)
        out = cli(
            "run", str(tmp_path / "x.wav"), "--out", str(tmp_path / "o"), "--fast", "--quiet", "--no-plot",
            "--console-url", info["console_endpoint_url"], "--ingress-url", info["ingress_endpoint_url"],
            "--app-id", info["app_id"], "--avatar-id", info["avatar_id"], env=env,
        )
        assert out.returncode == 0, out.stderr
        assert secret not in out.stdout + out.stderr
        assert secret not in (tmp_path / "o" / "summary.csv").read_text()
        assert Timeline.load(tmp_path / "o" / "x.npz").n_keyframes == 10
    finally:
        server.send_signal(signal.SIGINT)
        code = server.wait(timeout=30)
    assert code == 0
    rest = server.stdout.read()
    assert "stopped" in rest
    assert "Traceback" not in server.stderr.read()


def test_out_must_be_a_folder(tmp_path):
    write_wav(tmp_path / "x.wav", speech_like(0.2, 16000), 16000)
    (tmp_path / "taken").write_text("a file")
    out = cli("run", str(tmp_path / "x.wav"), "--out", str(tmp_path / "taken"), "--fast", "--quiet")
    assert out.returncode == 2 and "taken: exists and is not a folder" in out.stderr
    assert "Traceback" not in out.stderr


def test_progress_bar_counts_clips_and_audio_hours(tmp_path):
    write_wav(tmp_path / "a.wav", speech_like(1.0, 16000), 16000)
    write_wav(tmp_path / "b.wav", speech_like(0.6, 16000, seed=1), 16000)
    out = cli("run", str(tmp_path), "--out", str(tmp_path / "o"), "--fast", "--no-plot")
    assert out.returncode == 0, out.stderr
    states = out.stderr.replace("\r", "\n").splitlines()
    final = [s for s in states if "2/2" in s and "clip" in s]
    assert final, out.stderr
    assert f"{1.6 / 3600:.4f} h audio" in final[-1]
    # the per-clip lines stay on stdout, whole
    assert sum(1 for line in out.stdout.splitlines() if " keyframes, fast pacing, first frame " in line) == 2


def test_session_options_reach_the_timeline(tmp_path):
    write_wav(tmp_path / "x.wav", speech_like(0.4, 16000), 16000)
    out = cli("run", str(tmp_path / "x.wav"), "--out", str(tmp_path / "o"), "--fast", "--quiet", "--no-plot",
              "--sample-rate", "24000", "--chunk-ms", "100")
    assert out.returncode == 0, out.stderr
    tl = Timeline.load(tmp_path / "o" / "x.npz")
    assert tl.sample_rate == 24000 and tl.audio.shape[0] == 9600
    assert tl.chunk_samples.tolist() == [2400, 2400, 2400, 2400]
    assert tl.meta["pacing"] == "fast" and tl.meta["chunk_ms"] == 100
    assert tl.n_keyframes == 10 and tl.complete


def test_realtime_is_paced_and_fast_is_not(tmp_path):
    write_wav(tmp_path / "x.wav", speech_like(0.4, 16000), 16000)
    for mode in ("--realtime", "--fast"):
        out = cli("run", str(tmp_path / "x.wav"), "--out", str(tmp_path / mode), mode, "--quiet", "--no-plot")
        assert out.returncode == 0, out.stderr
    paced = Timeline.load(tmp_path / "--realtime" / "x.npz")
    fast = Timeline.load(tmp_path / "--fast" / "x.npz")
    # paced: no keyframe arrives before its moment in the audio (the service adds its latency)
    assert (paced.lateness > 0).all()
    # unpaced: the whole clip is answered before its audio would have finished playing
    assert fast.arrival[-1] < fast.audio_duration
    assert paced.n_keyframes == fast.n_keyframes == 10


def _remote_env(svc, **overrides) -> dict:
    values = svc.session_kwargs()
    env = dict(ENV)
    for key, var in pipeline.ENV_VARS.items():
        env[var] = overrides.get(key, values[key])
    return env


def test_environment_selects_the_service_and_keys_stay_hidden(tmp_path, service):
    write_wav(tmp_path / "x.wav", speech_like(0.4, 16000), 16000)
    write_wav(tmp_path / "y.wav", speech_like(0.4, 16000, seed=3), 16000)
    out = cli("run", str(tmp_path / "x.wav"), "--out", str(tmp_path / "ok"), "--fast", "--quiet", "--no-plot",
              "--json", env=_remote_env(service))
    assert out.returncode == 0, out.stderr
    assert service.api_key not in out.stdout + out.stderr
    tl = Timeline.load(tmp_path / "ok" / "x.npz")
    assert tl.complete and tl.meta["service"] == service.ingress_url

    wrong = "sk-not-the-right-key-7731"
    out = cli("run", str(tmp_path / "x.wav"), str(tmp_path / "y.wav"), "--out", str(tmp_path / "bad"), "--fast",
              "--quiet", "--no-plot", "--json", env=_remote_env(service, api_key=wrong))
    assert out.returncode == 1  # a failed run, not bad input
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert all("sessionTokenInvalid" in r["error"] for r in records)
    errors = [line for line in out.stderr.splitlines() if line.startswith("avatar-nb: error:")]
    assert len(errors) == 2 and "Traceback" not in out.stderr
    everything = out.stdout + out.stderr + (tmp_path / "bad" / "summary.csv").read_text()
    assert wrong not in everything and service.api_key not in everything

    # a flag wins over its variable
    out = cli("run", str(tmp_path / "x.wav"), "--out", str(tmp_path / "flag"), "--fast", "--quiet", "--no-plot",
              "--api-key", service.api_key, env=_remote_env(service, api_key=wrong))
    assert out.returncode == 0, out.stderr
    assert service.api_key not in out.stdout + out.stderr


def test_serve_refuses_a_busy_port_and_a_bad_one():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = cli("serve", "--port", str(port))
    assert out.returncode == 2
    assert out.stderr.strip() == f"avatar-nb: error: cannot listen on 127.0.0.1:{port}: address already in use"
    out = cli("serve", "--port", "70000")
    assert out.returncode == 2 and "port 70000 is out of range" in out.stderr


def test_pacing_flag_settings_in_summary_and_seconds_everywhere(tmp_path):
    write_wav(tmp_path / "x.wav", speech_like(0.4, 22050), 22050)
    out = cli("run", str(tmp_path / "x.wav"), "--out", str(tmp_path / "o"), "--pacing", "fast", "--quiet",
              "--no-plot", "--json", "--chunk-ms", "80", "--sample-rate", "24000")
    assert out.returncode == 0, out.stderr
    (record,) = [json.loads(line) for line in out.stdout.splitlines()]
    with open(tmp_path / "o" / "summary.csv") as fh:
        (row,) = list(csv.DictReader(fh))
    for r in (record, row):
        assert str(r["pacing"]) == "fast" and float(r["chunk_ms"]) == 80.0 and int(r["sample_rate"]) == 24000
        assert int(r["source_rate"]) == 22050 and int(r["source_channels"]) == 1
        assert float(r["clip_seconds"]) == pytest.approx(0.4)
        assert float(r["latency_ms"]) == 80.0 and r["service"] == "local"
        # seconds, not milliseconds: a local service answers a 0.4 s clip within a second
        assert 0 < float(r["first_frame_latency"]) < 1 and 0 < float(r["latency_p99"]) < 1
        assert r["lateness_p99"] in (None, "")  # no meaning under fast pacing
        assert not [k for k in r if k.endswith("_ms") and k not in ("chunk_ms", "latency_ms", "jitter_ms")]
    assert Timeline.load(tmp_path / "o" / "x.npz").meta["pacing"] == "fast"


def test_pacing_aliases():
    parser = cli_module.build_parser()
    from avatar_nb.pacing import DEFAULT_PACING

    base = ["run", "x.wav", "--out", "o"]
    assert parser.parse_args(base).pacing == DEFAULT_PACING
    assert parser.parse_args([*base, "--fast"]).pacing == "fast"
    assert parser.parse_args([*base, "--realtime"]).pacing == DEFAULT_PACING
    assert parser.parse_args([*base, "--pacing", "playback"]).pacing == "playback"
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--pacing", "slow"])


def test_debug_is_an_argument_not_an_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("AVATAR_NB_DEBUG", raising=False)
    code = cli_module.main(["run", str(tmp_path / "missing.wav"), "--out", str(tmp_path / "o"), "--debug"])
    assert code == 2 and "AVATAR_NB_DEBUG" not in os.environ


def test_the_figure_names_its_clip(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    titles = []
    monkeypatch.setattr(Figure, "savefig", lambda self, path, **kw: titles.append(self.get_suptitle()) or Path(path).touch())
    write_wav(tmp_path / "hello.wav", speech_like(0.4, 16000), 16000)
    assert cli_module.main(["run", str(tmp_path / "hello.wav"), "--out", str(tmp_path / "o"), "--fast", "--quiet"]) == 0
    assert len(titles) == 1 and titles[0].startswith("hello")


def test_an_interrupt_the_command_did_not_turn_into_its_line_is_still_one_line(monkeypatch, capsys):
    """A second Ctrl-C during a command's wind-down ends it at once: exit 130 and one line,
    and asyncio's report of the task it ended is not printed beside it."""
    import logging

    def wound_down(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "_cmd_run", wound_down)
    assert cli_module.main(["run", "nothing.wav", "--out", "o"]) == 130
    assert capsys.readouterr().err == "avatar-nb: interrupted (files already written are whole)\n"
    log = logging.getLogger("asyncio")
    kept = []

    def record(exc):
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "Task exception was never retrieved",
                                 None, (type(exc), exc, None))

    assert not log.filter(record(KeyboardInterrupt())) and log.filter(record(ValueError("a real failure")))
    kept.append(log.filters.count(cli_module._QUIET_INTERRUPTS))
    cli_module.main(["run", "nothing.wav", "--out", "o"])
    capsys.readouterr()
    assert log.filters.count(cli_module._QUIET_INTERRUPTS) == kept[0] == 1  # added once however often main runs


def test_a_second_ctrl_c_inside_a_finaliser_is_not_printed(monkeypatch):
    import types

    seen = []
    hook = cli_module._quiet_unraisable(seen.append)
    hook(types.SimpleNamespace(exc_value=KeyboardInterrupt()))
    failure = types.SimpleNamespace(exc_value=ValueError("a real failure"))
    hook(failure)
    assert seen == [failure]
    before = sys.unraisablehook
    monkeypatch.setattr(cli_module, "_cmd_run", lambda args: 0)
    assert cli_module.main(["run", "x.wav", "--out", "o"]) == 0 and sys.unraisablehook is before  # restored
