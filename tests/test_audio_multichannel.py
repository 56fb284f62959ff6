"""Multichannel compressed files through PyAV: read whole, averaged to mono, never a crash.

PyAV counts 9 planes in an 8-channel planar frame, and ``to_ndarray()`` on such a frame
read past FFmpeg's plane pointers: a 7.1 AAC ``.m4a`` or an 8-channel Opus file killed
the process. Each file is written and read in a subprocess, so a crash fails the test
instead of ending pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("av")

# the default FFmpeg layout for 1..8 channels
LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}

_WRITE = textwrap.dedent(
    """
    import av, numpy as np

    def write(path, codec, layout, channel_values, *, frames=20, options=None, rate=48000):
        # each channel a constant level (channel_values), written through a packed frame
        # and PyAV's resampler to the codec's format: planar 8-channel frames cannot be
        # made from arrays in PyAV either
        with av.open(path, "w") as container:
            stream = container.add_stream(codec, rate=rate, layout=layout)
            if options:
                stream.codec_context.options = options
            n = stream.codec_context.frame_size or 1024
            nch = len(channel_values)
            to_codec = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=rate)
            block = np.tile(np.asarray(channel_values, np.float32), n)[None, :]
            for i in range(frames):
                frame = av.AudioFrame.from_ndarray(block, format="flt", layout=layout)
                frame.sample_rate, frame.pts = rate, i * n
                for out in to_codec.resample(frame):
                    for packet in stream.encode(out):
                        container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    """
)


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _WRITE + textwrap.dedent(code)],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )


@pytest.mark.parametrize("channels", range(1, 9))
def test_flac_of_1_to_8_channels_reads_every_channel_and_averages_them(channels, tmp_path):
    values = [round(0.05 * (k + 1) * (-1) ** k, 4) for k in range(channels)]
    result = _run(
        f"""
        import json
        from pathlib import Path
        import numpy as np
        from avatar_nb import audio
        write("c.mka", "flac", {LAYOUTS[channels]!r}, {values!r})
        samples, rate = audio._read_pyav(Path("c.mka"))
        pcm = np.frombuffer(audio.prepare_audio("c.mka", target_rate=48000), "<i2") / 32768.0
        middle = samples[samples.shape[0] // 4 : samples.shape[0] * 3 // 4]
        print(json.dumps({{"shape": samples.shape, "rate": rate, "levels": middle.mean(axis=0).tolist(),
                           "spread": float(np.ptp(middle, axis=0).max()),
                           "mono": float(np.median(pcm))}}))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["rate"] == 48000
    assert out["shape"][1] == channels
    assert out["shape"][0] >= 19 * 1024  # FLAC is lossless: every frame comes back
    assert out["levels"] == pytest.approx(values, abs=2 / 32768)  # each channel in its place (s16 in FLAC)
    assert out["spread"] < 2 / 32768
    assert out["mono"] == pytest.approx(sum(values) / channels, abs=2 / 32768)  # the downmix is the average


@pytest.mark.parametrize(
    "codec,suffix,options",
    [("aac", "m4a", None), ("libopus", "opus", {"mapping_family": "255"}), ("libopus", "ogg", None)],
    ids=["aac-7.1", "opus-mapping-255", "opus-mapping-1"],
)
def test_8_channel_compressed_files_do_not_crash(codec, suffix, options, tmp_path):
    """The issue's reproducers: a 7.1 AAC .m4a of 20 silent frames and 8-channel Opus files."""
    values = [0.0] * 8
    result = _run(
        f"""
        import json
        from pathlib import Path
        from avatar_nb import audio
        write("71.{suffix}", {codec!r}, "7.1", {values!r}, options={options!r})
        samples, rate = audio._read_pyav(Path("71.{suffix}"))
        pcm = audio.prepare_audio("71.{suffix}", target_rate=16000)
        print(json.dumps({{"shape": samples.shape, "peak": float(abs(samples).max()), "pcm": len(pcm)}}))
        """,
        tmp_path,
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["shape"][1] == 8
    assert out["shape"][0] >= 15 * 960
    assert out["peak"] < 1e-3  # silence in, silence out
    assert out["pcm"] > 0


def test_the_cli_runs_a_7_1_file(tmp_path):
    """``avatar-nb run 71.m4a`` exited 139 (a segfault); now the file streams like any other."""
    made = _run('write("71.m4a", "aac", "7.1", [0.1] * 8, frames=40)', tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    result = subprocess.run(
        [sys.executable, "-m", "avatar_nb", "run", "71.m4a", "--out", "out"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
