"""Audio in: WAV reading of every supported format, preparation, resampling, the test signal."""

from __future__ import annotations

import struct
import wave

import numpy as np
import pytest

from avatar_nb import _pcm
from avatar_nb.audio import AudioFormatError, load_wav, prepare_audio, speech_like, write_wav


def _wav_bytes(payload: bytes, *, tag: int, channels: int, rate: int, bits: int, extensible: bool = False) -> bytes:
    block = channels * bits // 8
    if extensible:
        fmt = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, bits)
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"LIST" + struct.pack("<I", 3) + b"abc" + b"\x00"  # odd-sized chunk with pad byte
    chunks += b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


RAMP = np.array([[0.5, -0.5], [0.25, 0.0], [-1.0, 0.75]], dtype=np.float64)  # 3 frames, 2 channels


@pytest.mark.parametrize(
    "bits,tag,encode,tolerance",
    [
        (8, 1, lambda x: np.round(x * 128 + 128).clip(0, 255).astype(np.uint8).tobytes(), 1 / 128),
        (16, 1, lambda x: np.round(x * 32768).clip(-32768, 32767).astype("<i2").tobytes(), 1 / 32768),
        (
            24,
            1,
            lambda x: b"".join(
                int(v).to_bytes(4, "little", signed=True)[:3] for v in np.round(x * 8388608).clip(-8388608, 8388607).ravel()
            ),
            1 / 8388608,
        ),
        (32, 1, lambda x: np.round(x * 2147483648).clip(-2147483648, 2147483647).astype("<i4").tobytes(), 1e-7),
        (32, 3, lambda x: x.astype("<f4").tobytes(), 0),
        (64, 3, lambda x: x.astype("<f8").tobytes(), 0),
    ],
)
@pytest.mark.parametrize("extensible", [False, True])
def test_load_wav_formats(tmp_path, bits, tag, encode, tolerance, extensible):
    path = tmp_path / "x.wav"
    path.write_bytes(_wav_bytes(encode(RAMP), tag=tag, channels=2, rate=22050, bits=bits, extensible=extensible))
    samples, rate = load_wav(path)
    assert rate == 22050
    assert samples.shape == (3, 2) and samples.dtype == np.float32
    np.testing.assert_allclose(samples, RAMP, atol=tolerance + 1e-7)


def test_write_wav_round_trip_through_stdlib(tmp_path):
    pcm = _pcm.to_s16le(np.linspace(-1, 1, 101, dtype=np.float32))
    path = write_wav(tmp_path / "y.wav", pcm, 8000)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert w.readframes(1000) == pcm
    samples, rate = load_wav(path)
    assert rate == 8000
    np.testing.assert_array_equal(_pcm.to_s16le(samples[:, 0]), pcm)


@pytest.mark.parametrize(
    "content,problem",
    [
        (b"", "not a WAV file"),
        (b"hello world, not audio at all", "not a WAV file"),
        (b"RIFF\x00\x00\x00\x00WAVE", "no fmt chunk"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", "claims 16 bytes"),
    ],
)
def test_corrupt_wav_names_file_and_problem(tmp_path, content, problem):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioFormatError, match=problem) as info:
        load_wav(path)
    assert str(path) in str(info.value)


def test_unsupported_sample_width(tmp_path):
    path = tmp_path / "w12.wav"
    path.write_bytes(_wav_bytes(b"\x00" * 12, tag=1, channels=1, rate=8000, bits=12))
    with pytest.raises(AudioFormatError, match=r"unsupported sample format: 12-bit integer PCM; accepted: 8, 16, 24"):
        load_wav(path)


def test_no_data_chunk(tmp_path):
    path = tmp_path / "nodata.wav"
    wav = _wav_bytes(b"", tag=1, channels=1, rate=8000, bits=16)
    path.write_bytes(wav[: wav.index(b"data")])
    with pytest.raises(AudioFormatError, match="no data chunk"):
        load_wav(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        load_wav("/nonexistent/clip.wav")


def test_prepare_from_wav_downmixes_and_resamples(tmp_path):
    rate = 44100
    t = np.arange(rate) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([tone, tone], axis=1)
    path = tmp_path / "tone.wav"
    path.write_bytes(_wav_bytes(stereo.astype("<f4").tobytes(), tag=3, channels=2, rate=rate, bits=32))
    pcm = prepare_audio(path, target_rate=16000)
    out = _pcm.from_s16le(pcm)
    assert abs(out.shape[0] - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(out[1000:-1000] * np.hanning(out.shape[0] - 2000)))
    peak_hz = np.argmax(spectrum) * 16000 / (out.shape[0] - 2000)
    assert abs(peak_hz - 440) < 2
    assert np.max(np.abs(out[1000:-1000])) == pytest.approx(0.5, abs=0.01)


def test_prepare_same_rate_is_exact_conversion():
    x = speech_like(0.5, 16000)
    assert prepare_audio(x, 16000) == _pcm.to_s16le(x)


def test_prepare_from_bytes_and_int16():
    pcm = _pcm.to_s16le(speech_like(0.25, 8000))
    assert prepare_audio(pcm, 8000, target_rate=8000) == pcm
    ints = np.frombuffer(pcm, dtype="<i2")
    assert prepare_audio(ints, 8000, target_rate=8000) == pcm
    up = prepare_audio(pcm, 8000, target_rate=16000)
    assert len(up) == 2 * len(pcm) * 2 // 2


@pytest.mark.parametrize("rate", [12345, 0, 96000])
def test_prepare_rejects_unsupported_target(rate):
    with pytest.raises(ValueError, match=rf"unsupported target_rate {rate}; accepted: 8000, 16000"):
        prepare_audio(np.zeros(10, dtype=np.float32), 16000, target_rate=rate)


def test_prepare_errors():
    with pytest.raises(ValueError, match="needs its sample_rate"):
        prepare_audio(np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError, match="need their sample_rate"):
        prepare_audio(b"\x00\x00")
    with pytest.raises(TypeError, match="cannot prepare audio from list"):
        prepare_audio([0.0, 0.1], 16000)
    with pytest.raises(AudioFormatError, match="no audio samples"):
        prepare_audio(np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="positive integer"):
        prepare_audio(np.zeros(10, dtype=np.float32), -5)
    with pytest.raises(ValueError, match="NaN"):
        prepare_audio(np.array([0.0, np.nan], dtype=np.float32), 16000)


def test_prepare_empty_wav(tmp_path):
    path = tmp_path / "empty.wav"
    write_wav(path, b"", 16000)
    with pytest.raises(AudioFormatError, match=f"{path}: contains no audio samples"):
        prepare_audio(path)


def test_speech_like_is_deterministic_and_speechy():
    a = speech_like(4.0, 16000, seed=3)
    assert a.dtype == np.float32 and a.shape == (64000,)
    np.testing.assert_array_equal(a, speech_like(4.0, 16000, seed=3))
    assert not np.array_equal(a, speech_like(4.0, 16000, seed=4))
    assert np.max(np.abs(a)) <= 0.8 + 1e-6
    rms = _pcm.frame_features(a, 16000, 25)["rms"]
    loud = rms > 0.1 * rms.max()
    # words and pauses alternate: at least four loud stretches with silence between them
    switches = np.count_nonzero(np.diff(loud.astype(int)))
    assert switches >= 8
    assert 0.3 < loud.mean() < 0.9  # speech with pauses, neither silence nor a drone
    # the energy sits in the speech band
    spectrum = np.abs(np.fft.rfft(a)) ** 2
    freqs = np.fft.rfftfreq(a.shape[0], 1 / 16000)
    assert spectrum[(freqs > 80) & (freqs < 4000)].sum() > 0.8 * spectrum.sum()
