"""The avatar-nb command line, run as a real process."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avatar_nb import Timeline, speech_like, write_wav

SCRIPT = Path(sys.executable).with_name("avatar-nb")
ENV = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_NB_")}


def cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "avatar_nb", *args],
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


def test_installed_script_and_help():
    out = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, env=ENV, timeout=60)
    assert out.returncode == 0
    for command in ("run", "serve", "demo"):
        assert command in out.stdout


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
    raw.write_bytes(np.frombuffer(open(tmp_path / "c.wav", "rb").read()[44:], dtype="<i2").tobytes())
    out_dir = tmp_path / "out"
    out = cli(
        "run", str(clips), str(tmp_path / "c*.wav"), str(raw), "--raw-rate", "16000",
        "--out", str(out_dir), "--fast", "--json", "--concurrency", "2", "--no-plot",
    )
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(r["name"] for r in records) == ["a", "b", "c", "d"]
    assert all(r["status"] == "ok" and r["complete"] for r in records)
    by_name = {r["name"]: r for r in records}
    assert by_name["a"]["keyframes"] == 25 and by_name["b"]["keyframes"] == 15 and by_name["c"]["keyframes"] == 10
    assert by_name["d"]["keyframes"] == by_name["c"]["keyframes"]
    with open(out_dir / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["name"] for r in rows) == ["a", "b", "c", "d"]
    for r in rows:
        tl = Timeline.load(r["npz"])
        assert tl.n_keyframes == int(r["keyframes"])


def test_run_human_output_and_png(tmp_path):
    write_wav(tmp_path / "x.wav", speech_like(0.8, 16000), 16000)
    out = cli("run", str(tmp_path / "x.wav"), "--out", str(tmp_path / "o"), "--fast", "--quiet")
    assert out.returncode == 0, out.stderr
    line = out.stdout.splitlines()[0]
    assert re.match(r".*x\.wav: 0\.80 s audio, 20 keyframes, first frame [\d.]+ ms, RTF [\d.]+ -> .*x\.npz, .*x\.png", line)
    assert (tmp_path / "o" / "x.png").read_bytes()[:4] == b"\x89PNG"
    assert "1 of 1 clips animated" in out.stdout


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    (tmp_path / "garbage.wav").write_bytes(b"this is not audio")
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 8000 * 2, 2, 12)
    body = b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 4) + b"\x00" * 4
    (tmp_path / "w12.wav").write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
    write_wav(tmp_path / "empty.wav", b"", 16000)
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "notes.txt").write_text("no audio here")
    (tmp_path / "x.pcm").write_bytes(b"\x00\x00" * 100)
    return {
        "missing": ([str(tmp_path / "missing.wav")], "missing.wav: no such file or directory"),
        "corrupt": ([str(tmp_path / "garbage.wav")], "garbage.wav: not a WAV file"),
        "width": ([str(tmp_path / "w12.wav")], "w12.wav: unsupported sample format: 12-bit integer PCM"),
        "empty": ([str(tmp_path / "empty.wav")], "empty.wav: contains no audio samples"),
        "no audio dir": ([str(tmp_path / "nothing")], "nothing: directory contains no audio files"),
        "no glob match": ([str(tmp_path / "*.flac")], "*.flac: no files match this pattern"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "corrupt", "width", "empty", "no audio dir", "no glob match"]
)
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
    rows = {r["name"]: r for r in csv.DictReader(open(tmp_path / "o" / "summary.csv"))}
    assert rows["good"]["status"] == "ok" and rows["garbage"]["status"] == "failed"
    assert "not a WAV file" in rows["garbage"]["error"]


def test_raw_pcm_needs_its_rate(tmp_path):
    (tmp_path / "x.pcm").write_bytes(b"\x00\x00" * 100)
    out = cli("run", str(tmp_path / "x.pcm"), "--out", str(tmp_path / "o"), "--fast", "--quiet")
    assert out.returncode == 2
    assert "x.pcm: raw PCM needs --raw-rate HZ" in out.stderr
    out = cli("run", str(tmp_path), "--raw-rate", "16000", "--out", str(tmp_path / "o"), "--fast", "--quiet", "--no-plot")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--sample-rate", "12345"], "unsupported sample rate 12345"),
        (["--chunk-ms", "0"], "must be a positive number"),
        (["--concurrency", "-1"], "must be a positive integer"),
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
