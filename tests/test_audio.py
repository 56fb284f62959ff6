"""Audio in: WAV reading of every supported format, preparation, resampling, the test signal."""

from __future__ import annotations

import struct
import wave

import numpy as np
import pytest

from avatar_nb import _pcm
from avatar_nb.audio import AudioFormatError, load_wav, prepare_audio, speech_like, write_wav

from .helpers import expected_frames


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
        (b"", r"the file is empty \(0 bytes\)"),
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


# ----------------------------------------------------------------------------- limits (rates, sizes, non-finite)

from avatar_nb.audio import AUDIO_SUFFIXES, MAX_AUDIO_SECONDS, SOURCE_RATE_RANGE, load_audio  # noqa: E402


@pytest.mark.parametrize("rate", [1, 3999, 768001, 2**32, 2**40, 2**44, 2**47, 2**62])
def test_prepare_refuses_rates_outside_the_range_naming_the_argument(rate):
    # 2^47 Hz used to hang in the resampler, 2^32..2^44 to give empty audio, 1 Hz to
    # expand 16 KB into 524 MB; the range check comes before any conversion
    low, high = SOURCE_RATE_RANGE
    with pytest.raises(ValueError, match=rf"sample_rate: sample rate {rate} Hz is outside the accepted {low}..{high} Hz"):
        prepare_audio(np.zeros(8000, dtype=np.int16), rate)
    with pytest.raises(ValueError, match=rf"sample rate {rate} Hz is outside"):
        prepare_audio(b"\x00\x00" * 8000, rate)


@pytest.mark.parametrize("rate", [1, 2**32, 2**47])
def test_wav_declaring_an_absurd_rate_is_refused_naming_the_file(tmp_path, rate):
    # a 640 KB WAV declaring 1 Hz would have expanded to 44 hours at 16 kHz
    path = tmp_path / "slow.wav"
    path.write_bytes(_wav_bytes(b"\x00\x01" * 320_000, tag=1, channels=1, rate=rate % 2**32 or 1, bits=16))
    with pytest.raises(AudioFormatError, match=rf"{path}: sample rate \d+ Hz is outside the accepted"):
        prepare_audio(path)


def test_source_rate_range_ends_are_accepted():
    low, high = SOURCE_RATE_RANGE
    assert len(_pcm.from_s16le(prepare_audio(np.zeros(low, np.int16) + 100, low))) == 16000
    assert len(_pcm.from_s16le(prepare_audio(np.zeros(high // 100, np.int16) + 100, high))) == 160


def test_too_long_audio_is_refused_before_any_allocation(tmp_path, monkeypatch):
    # a WAV whose data chunk claims more than MAX_AUDIO_SECONDS: the reader refuses it
    # from the header's numbers, before converting a single sample (the conversion is
    # made to fail loudly to prove it is never reached)
    import avatar_nb.audio as audio_mod

    rate = 8000
    n = int(MAX_AUDIO_SECONDS * rate) + 1
    path = tmp_path / "long.wav"
    header = _wav_bytes(b"", tag=1, channels=1, rate=rate, bits=16)
    # streamed-file form: the data size field says 0xFFFFFFFF and the data runs to EOF
    path.write_bytes(header[:-4] + struct.pack("<I", 0xFFFFFFFF) + bytes(2 * n))
    monkeypatch.setattr(audio_mod.np, "frombuffer", lambda *a, **k: pytest.fail("samples were converted"))
    with pytest.raises(AudioFormatError, match=rf"{path}: {n} samples at 8000 Hz last 2.00 hours; at most 2 hours"):
        prepare_audio(path)


def test_too_long_array_is_refused_before_resampling(monkeypatch):
    import soxr

    monkeypatch.setattr(soxr, "resample", lambda *a, **k: pytest.fail("resampler was reached"))
    rate = SOURCE_RATE_RANGE[0]
    samples = np.broadcast_to(np.int16(0), (int(MAX_AUDIO_SECONDS * rate) + 1,))  # no memory behind it
    with pytest.raises(ValueError, match=r"source: \d+ samples at 4000 Hz last 2.00 hours"):
        prepare_audio(samples, rate)


def test_too_long_bytes_are_refused_before_conversion(monkeypatch):
    import avatar_nb.audio as audio_mod

    monkeypatch.setattr(audio_mod._pcm, "from_s16le", lambda *a: pytest.fail("bytes were converted"))
    rate = 8000
    pcm = bytes(2 * (int(MAX_AUDIO_SECONDS * rate) + 1))  # 115 MB of zeros: the input, not the output
    with pytest.raises(ValueError, match=r"source: \d+ samples at 8000 Hz last 2.00 hours"):
        prepare_audio(pcm, rate)


def test_output_of_no_samples_is_an_error_not_empty_audio():
    with pytest.raises(AudioFormatError, match="1 samples at 768000 Hz make no sample at 8000 Hz"):
        prepare_audio(np.array([0.5], np.float32), 768000, target_rate=8000)


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_wav_names_the_file_and_sample(tmp_path, bits, bad):
    samples = np.array([[0.1, 0.2], [0.3, bad]], dtype="<f4" if bits == 32 else "<f8")
    path = tmp_path / "nan.wav"
    path.write_bytes(_wav_bytes(samples.tobytes(), tag=3, channels=2, rate=16000, bits=bits))
    with pytest.raises(AudioFormatError, match=rf"{path}: sample 1 \(channel 1\) is -?(nan|inf); NaN and infinity are not audio"):
        prepare_audio(path)
    with pytest.raises(AudioFormatError, match=str(path)):
        load_wav(path)


def test_float64_beyond_float32_range_is_clipped_not_infinite(tmp_path):
    samples = np.array([1e300, -1e300, 0.25, 3.5e38], dtype="<f8")
    path = tmp_path / "loud.wav"
    path.write_bytes(_wav_bytes(samples.tobytes(), tag=3, channels=1, rate=16000, bits=64))
    loaded, _ = load_wav(path)
    assert np.isfinite(loaded).all()
    big = np.finfo(np.float32).max
    np.testing.assert_array_equal(loaded[:, 0], np.array([big, -big, 0.25, big], np.float32))
    with pytest.warns(UserWarning, match=r"loud\.wav: 3 of 4 sample values .* clipped to full scale"):
        pcm = np.frombuffer(prepare_audio(path), dtype="<i2")
    assert list(pcm) == [32767, -32768, 8192, 32767]


# ----------------------------------------------------------------------------- other formats


def _write_with_pyav(path, samples: np.ndarray, rate: int, codec: str) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples[None, :].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = rate
        fmt = stream.codec_context.format.name
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate)
        for part in resampler.resample(frame):
            for packet in stream.encode(part):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _lag_aligned_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> float:
    """Best correlation of the two envelopes over small lags (codecs add delay)."""
    n = min(len(a), len(b)) - 2 * max_lag
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        x = a[max_lag : max_lag + n]
        y = b[max_lag + lag : max_lag + lag + n]
        best = max(best, float(np.corrcoef(x, y)[0, 1]))
    return best


def _write(kind: str, path, x: np.ndarray, rate: int) -> None:
    import soundfile

    if kind == "flac":
        soundfile.write(path, x, rate, format="FLAC", subtype="PCM_16")
    elif kind == "vorbis":
        soundfile.write(path, x, rate, format="OGG", subtype="VORBIS")
    elif kind == "opus-soundfile":
        soundfile.write(path, x, rate, format="OGG", subtype="OPUS")
    elif kind == "mp3-soundfile":
        soundfile.write(path, x, rate, format="MP3", subtype="MPEG_LAYER_III")
    elif kind == "mp3-pyav":
        _write_with_pyav(path, x, rate, "libmp3lame")
    elif kind == "opus-pyav":
        _write_with_pyav(path, x, rate, "libopus")
    elif kind == "aac-pyav":
        _write_with_pyav(path, x, rate, "aac")


@pytest.mark.parametrize(
    "kind,suffix,rate",
    [
        ("flac", ".flac", 44100),
        ("vorbis", ".ogg", 22050),
        ("opus-soundfile", ".opus", 48000),
        ("opus-pyav", ".opus", 48000),
        ("mp3-soundfile", ".mp3", 44100),
        ("mp3-pyav", ".mp3", 24000),
        ("aac-pyav", ".m4a", 16000),  # soundfile cannot: read through the PyAV fallback
    ],
)
def test_prepare_reads_compressed_formats(tmp_path, kind, suffix, rate):
    assert suffix in AUDIO_SUFFIXES
    x = speech_like(2.0, rate, seed=5)
    path = tmp_path / f"clip{suffix}"
    _write(kind, path, x, rate)
    pcm = _pcm.from_s16le(prepare_audio(path))
    assert abs(len(pcm) - 32000) <= 0.1 * 32000  # codecs pad a little at the ends
    reference = _pcm.from_s16le(prepare_audio(x, rate))  # the same clip, not through the codec
    # loudness every 10 ms, compared over lags up to 100 ms (codecs add delay; AAC in
    # MP4 keeps its 1024-sample priming)
    env_ref = _pcm.frame_features(reference, 16000, 100)["rms"]
    env_got = _pcm.frame_features(pcm, 16000, 100)["rms"]
    assert _lag_aligned_correlation(env_ref, env_got, 10) > 0.95
    if kind == "flac":  # lossless: the samples themselves, after resampling
        samples, file_rate = load_audio(path)
        assert file_rate == rate
        np.testing.assert_allclose(samples[:, 0], x, atol=2 / 32768)


def test_stereo_flac_is_downmixed(tmp_path):
    import soundfile

    x = speech_like(0.5, 16000)
    soundfile.write(tmp_path / "s.flac", np.stack([x, -x * 0 + x], axis=1), 16000, subtype="PCM_16")
    samples, rate = load_audio(tmp_path / "s.flac")
    assert samples.shape == (8000, 2) and rate == 16000
    assert prepare_audio(tmp_path / "s.flac") == _pcm.to_s16le(samples)


@pytest.mark.parametrize("name", ["noise.flac", "noise.mp3", "noise.ogg", "noise.bin"])
def test_unreadable_files_name_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(AudioFormatError, match=rf"{path}: not an audio file that avatar_nb can read; accepted: WAV, FLAC"):
        prepare_audio(path)


@pytest.mark.parametrize("name", ["empty.wav", "empty.opus", "empty.flac"])
def test_an_empty_file_is_called_empty(tmp_path, name):
    """A 0-byte file is "empty", not "not a WAV file" with FFmpeg's error number."""
    path = tmp_path / name
    path.write_bytes(b"")
    for read in (prepare_audio, load_audio):
        with pytest.raises(AudioFormatError, match=r"empty\.\w+: the file is empty \(0 bytes\)") as info:
            read(path)
        assert "Errno" not in str(info.value) and "not a WAV" not in str(info.value)
    if name.endswith(".wav"):
        with pytest.raises(AudioFormatError, match=r"the file is empty \(0 bytes\)"):
            load_wav(path)


def _promising_header(seconds: float, rate: int = 16000) -> bytes:
    size = int(seconds * rate) * 2
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size)
    return b"RIFF" + struct.pack("<I", 4 + len(chunks) + size) + b"WAVE" + chunks


def test_a_wav_header_promising_hours_without_data_says_truncated(tmp_path):
    path = tmp_path / "cut.wav"
    path.write_bytes(_promising_header(10 * 3600))
    with pytest.raises(AudioFormatError, match=r"cut\.wav: truncated: its header promises 10\.00 hours of audio") as info:
        prepare_audio(path)
    assert "ends after its header, with no samples" in str(info.value)


def test_a_wav_shorter_than_its_header_warns_and_uses_what_is_there(tmp_path):
    from avatar_nb.audio import AudioWarning

    path = tmp_path / "cut.wav"
    path.write_bytes(_promising_header(10 * 3600) + b"\x00\x10" * 16000)
    with pytest.warns(AudioWarning, match=r"cut\.wav: truncated: .*10\.00 hours.* holds only 1\.00 s") as record:
        pcm = prepare_audio(path)
    assert len(pcm) == 32000
    assert record[0].filename == __file__  # the warning points at the caller's line
    # streamed files that leave the size unset (0xFFFFFFFF) are not truncated
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    streamed = b"RIFF\xff\xff\xff\xffWAVEfmt " + struct.pack("<I", 16) + fmt + b"data\xff\xff\xff\xff" + b"\0\0" * 100
    (tmp_path / "streamed.wav").write_bytes(streamed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(prepare_audio(tmp_path / "streamed.wav")) == 200


def test_clipping_float_audio_warns_with_how_much_and_what_to_do():
    from avatar_nb.audio import AudioWarning

    with pytest.warns(AudioWarning) as record:
        pcm = prepare_audio(np.full(16000, 5.0), 16000)
    assert set(np.frombuffer(pcm, "<i2")) == {32767}  # still clipped to full scale, as before
    (warning,) = record
    text = str(warning.message)
    assert "16000 of 16000 sample values (100%) lie outside [-1, 1], up to 5 (+14.0 dB over full scale)" in text
    assert "clipped to full scale" in text and "samples / np.abs(samples).max()" in text
    assert warning.filename == __file__
    quiet = np.zeros((1000, 2))
    quiet[:3, 1] = -1.5
    with pytest.warns(AudioWarning, match=r"3 of 2000 sample values \(0\.15%\).*up to 1\.5"):
        prepare_audio(quiet, 44100)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # full scale itself, int16 and in-range floats: no warning
        prepare_audio(np.array([1.0, -1.0, 0.5]), 16000)
        prepare_audio(np.array([32767, -32768], np.int16), 16000)


def test_garbage_with_a_wav_suffix_says_it_is_not_a_wav(tmp_path):
    path = tmp_path / "garbage.wav"
    path.write_bytes(b"hello world, not audio at all")
    with pytest.raises(AudioFormatError, match=rf"{path}: not a WAV file \(no RIFF/WAVE header\)"):
        prepare_audio(path)


def test_compressed_file_with_absurd_rate_is_refused(tmp_path):
    import soundfile

    path = tmp_path / "fast.flac"
    soundfile.write(path, np.zeros(100), 1, format="FLAC", subtype="PCM_16")  # FLAC allows 1 Hz
    with pytest.raises(AudioFormatError, match=rf"{path}: sample rate 1 Hz is outside the accepted"):
        prepare_audio(path)


async def test_animate_and_the_batch_read_flac_and_mp3(tmp_path, service):
    """animate() and the command line's folder scan and clip loader take compressed files like WAV files."""
    import soundfile

    from avatar_nb import animate
    from avatar_nb.batch import as_clips, find_audio_files, prepare_clip

    x = speech_like(1.5, 22050, seed=9)
    flac = tmp_path / "clip.flac"
    soundfile.write(flac, x, 22050, subtype="PCM_16")
    mp3 = tmp_path / "clip.mp3"
    soundfile.write(mp3, x, 22050, format="MP3", subtype="MPEG_LAYER_III")
    wav = write_wav(tmp_path / "clip.wav", x, 22050)
    (tmp_path / "notes.txt").write_text("not audio")
    timeline = await animate(flac, service=service, realtime=False)
    reference = await animate(wav, service=service, realtime=False)
    assert timeline.complete and timeline.n_keyframes == reference.n_keyframes == expected_frames(24000)
    difference = np.abs(_pcm.from_s16le(_pcm.to_s16le(timeline.audio)) - _pcm.from_s16le(_pcm.to_s16le(reference.audio)))
    assert difference.max() <= 3 / 32768  # both stored as 16-bit: they differ in rounding only
    found = find_audio_files([tmp_path])
    assert sorted(p.name for p in found) == ["clip.flac", "clip.mp3", "clip.wav"]
    prepared = {c.path.name: prepare_clip(c, 16000) for c in as_clips(found)}
    np.testing.assert_allclose(
        _pcm.from_s16le(prepared["clip.flac"].pcm), _pcm.from_s16le(prepare_audio(wav)), atol=3 / 32768
    )
    assert abs(len(prepared["clip.mp3"].pcm) // 2 - 24000) < 0.1 * 24000
