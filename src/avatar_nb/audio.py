"""Audio in: audio files and arrays to mono s16le at a supported rate, and a speech-like test signal.

``prepare_audio`` is the one door audio comes through: an audio file (WAV, FLAC, Ogg
Vorbis, Ogg Opus, MP3, ...) of any common sample format and channel count, or a numpy
array with its sample rate, comes out as mono 16-bit little-endian PCM at one of the
rates the service accepts, resampled with soxr (a well-tested, fast, high-quality
resampler) when the rates differ.

WAV files are read by a small RIFF reader of our own rather than the stdlib ``wave``
module, because ``wave`` rejects IEEE-float and WAVE_FORMAT_EXTENSIBLE files, which
many recorders and DAWs write. Every read of the file's bytes is bounds-checked; a
malformed file gives :class:`AudioFormatError` naming the file and the problem.
Other files are read with soundfile (libsndfile, bundled in its wheel: FLAC, Ogg
Vorbis, Ogg Opus, MP3, AIFF, ...) and, where it cannot, with PyAV (FFmpeg, bundled in
its wheel: AAC/M4A, WebM and the rest).

Limits, checked before anything is allocated for the output: the source rate must
lie in :data:`SOURCE_RATE_RANGE` and the audio may last at most
:data:`MAX_AUDIO_SECONDS` (see there for why).

What is read or prepared with a loss is said, as an :class:`AudioWarning`: float
samples beyond full scale that are clipped, a WAV file shorter than its header says.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from pathlib import Path
from typing import Any, Union

import numpy as np

from . import _pcm
from .protocol import DEFAULT_SAMPLE_RATE, SUPPORTED_SAMPLE_RATES

__all__ = [
    "AUDIO_SUFFIXES",
    "MAX_AUDIO_SECONDS",
    "SOURCE_RATE_RANGE",
    "AudioFormatError",
    "AudioWarning",
    "load_audio",
    "load_wav",
    "prepare_audio",
    "speech_like",
    "wav_bytes",
    "write_wav",
]

PathLike = Union[str, "os.PathLike[str]"]

_PCM = 0x0001
_FLOAT = 0x0003
_EXTENSIBLE = 0xFFFE
_ACCEPTED_FORMATS = "8, 16, 24 or 32-bit integer PCM, or 32/64-bit float"

#: File suffixes read as audio (a folder scan picks these up). The reader is chosen by
#: content, not by suffix: WAV by its RIFF header, everything else by soundfile, then PyAV.
AUDIO_SUFFIXES: tuple[str, ...] = (
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".m4a", ".aac", ".webm",
)
_ACCEPTED_FILES = "WAV, FLAC, Ogg Vorbis, Ogg Opus, MP3, AIFF, AAC/M4A or WebM audio"

#: Source sample rates accepted, in Hz, both ends included. 4 kHz is below any rate that
#: still carries speech worth animating (telephone audio is 8 kHz; a few old recorders
#: wrote 4-6 kHz); 768 kHz is the highest rate audio converters record at. Outside it a
#: "rate" is a corrupt header or a wrong argument: a 1 Hz file would be resampled to
#: tens of thousands of times its size, a rate of 2^32 Hz leaves nothing to resample.
SOURCE_RATE_RANGE: tuple[int, int] = (4000, 768000)

#: The longest audio prepared in one go, in seconds (two hours). Prepared audio is held
#: in memory whole (s16le at the target rate: 230 MB at 16 kHz, 690 MB at 48 kHz for
#: two hours, a few times that at the resampler's peak) and a real-time session streams
#: it for as long as it lasts; longer recordings are better cut into utterances.
#: Checked from the sample count and rate, before the output is allocated.
MAX_AUDIO_SECONDS: float = 2 * 3600.0


class AudioFormatError(ValueError):
    """A file that is not audio avatar_nb can read (the message names the file)."""


class AudioWarning(UserWarning):
    """Audio read or prepared with a loss: samples clipped to full scale, a truncated file
    (the message names the file or argument, what was lost and how to avoid it)."""


def _duration_text(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} hours"
    if seconds >= 60:
        return f"{seconds / 60:.1f} minutes"
    return f"{seconds:.2f} s"


def _warn(message: str) -> None:
    """An :class:`AudioWarning` attributed to the first caller outside avatar_nb and the
    event loop machinery (the user's line, however deep in the package the audio was
    read); to the caller of the package when the stack has none (a worker thread)."""
    import sys

    frame: Any = sys._getframe(0)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith(_NOT_THE_CALLER):
        frame = frame.f_back
        level += 1
    warnings.warn(message, AudioWarning, stacklevel=level if frame is not None else 3)


_NOT_THE_CALLER = ("avatar_nb.", "asyncio.", "concurrent.", "threading", "nest_asyncio")


def _percent(part: int, whole: int) -> str:
    pct = 100.0 * part / whole
    return f"{pct:.0f}%" if pct >= 10 else f"{pct:.2g}%"


def _empty(path: Path, what: str) -> AudioFormatError:
    """A file with no bytes at all says so, rather than failing every reader's header probe
    (decided by reading, not by its size: pseudo-files report 0 bytes and hold more)."""
    return AudioFormatError(f"{path}: the file is empty (0 bytes), so it holds no {what}")


def _rates() -> str:
    return ", ".join(str(r) for r in SUPPORTED_SAMPLE_RATES)


def _check_rate(name: str, rate: object) -> int:
    """``rate`` as an int when it is an accepted source rate, else a clear error naming ``name``."""
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"{name}: sample_rate must be a positive integer number of Hz, got {rate!r}")
    low, high = SOURCE_RATE_RANGE
    if not low <= rate <= high:
        raise ValueError(f"{name}: sample rate {rate} Hz is outside the accepted {low}..{high} Hz")
    return int(rate)


def _check_duration(name: str, n_frames: int, rate: int) -> None:
    """Refuse audio longer than MAX_AUDIO_SECONDS (before anything is made of it)."""
    if n_frames > MAX_AUDIO_SECONDS * rate:
        raise ValueError(
            f"{name}: {n_frames} samples at {rate} Hz last {n_frames / rate / 3600:.2f} hours; "
            f"at most {MAX_AUDIO_SECONDS / 3600:g} hours are prepared at once (cut it into parts)"
        )


# ----------------------------------------------------------------------------- WAV


def load_wav(path: PathLike) -> tuple[np.ndarray, int]:
    """Read a WAV file; return float32 samples of shape (frames, channels) and the rate.

    Integer formats are scaled to [-1, 1) (8-bit is offset binary); float files are
    returned as stored, except that float64 values beyond float32's range are clipped
    to it rather than turned into infinity. Raises ``FileNotFoundError`` for a missing
    file and :class:`AudioFormatError` for anything that is not a readable WAV: a rate
    outside :data:`SOURCE_RATE_RANGE`, more than :data:`MAX_AUDIO_SECONDS` of audio
    (checked before the samples are converted), NaN or infinite float samples.
    """
    path = Path(path)
    if path.is_dir():
        raise AudioFormatError(f"{path}: is a directory, not a WAV file")
    data = path.read_bytes()
    if not data:
        raise _empty(path, "WAV audio")
    return _parse_wav(path, data)


def _parse_wav(path: Path, data: bytes) -> tuple[np.ndarray, int]:

    def fail(problem: str) -> AudioFormatError:
        return AudioFormatError(f"{path}: {problem}")

    if len(data) < 12 or data[0:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        raise fail("not a WAV file (no RIFF/WAVE header)")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    samples: bytes | None = None
    promised: int | None = None  # the data chunk's size when the file ends before it
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body_start = pos + 8
        body_end = body_start + size
        if chunk_id == b"data" and (body_end > len(data) or size == 0xFFFFFFFF):
            if size != 0xFFFFFFFF:  # a size was written, and the file ends before it
                promised = size
            body_end = len(data)  # streamed files leave the size unset: take what is there
        elif body_end > len(data):
            raise fail(f"chunk {chunk_id!r} claims {size} bytes but the file ends after {len(data) - body_start}")
        body = data[body_start:body_end]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise fail(f"fmt chunk is {len(body)} bytes, too short")
            tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", body, 0)
            if tag == _EXTENSIBLE:
                if len(body) < 26:
                    raise fail("WAVE_FORMAT_EXTENSIBLE fmt chunk is truncated")
                (tag,) = struct.unpack_from("<H", body, 24)
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            samples = body
        pos = body_end + (size & 1)  # chunks are word aligned
    if fmt is None:
        raise fail("no fmt chunk")
    if samples is None:
        raise fail("no data chunk")
    tag, channels, rate, bits = fmt
    if channels < 1:
        raise fail(f"{channels} channels")
    low, high = SOURCE_RATE_RANGE
    if not low <= rate <= high:
        raise fail(f"sample rate {rate} Hz is outside the accepted {low}..{high} Hz")
    if tag == _PCM and bits in (8, 16, 24, 32):
        width = bits // 8
    elif tag == _FLOAT and bits in (32, 64):
        width = bits // 8
    else:
        kind = {_PCM: "integer PCM", _FLOAT: "float"}.get(tag, f"format tag 0x{tag:04x}")
        raise fail(f"unsupported sample format: {bits}-bit {kind}; accepted: {_ACCEPTED_FORMATS}")
    frame = width * channels
    n_frames = len(samples) // frame
    if promised is not None:
        _truncated(path, promised // frame, n_frames, rate)
    _file_limits(path, n_frames, rate)
    raw = samples[: n_frames * frame]
    if tag == _FLOAT:
        stored = np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8")
        _check_finite(path, stored, channels)
        if width == 8:  # beyond float32's range the cast would make infinities
            limit = np.finfo(np.float32).max
            stored = np.clip(stored, -limit, limit)
        out = stored.astype(np.float32)
    elif width == 1:
        out = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        out = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8  # sign-extend 24 bits
        out = ints.astype(np.float32) / 8388608.0
    else:
        out = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    return out.reshape(n_frames, channels), int(rate)


def _truncated(path: Path, promised: int, held: int, rate: int) -> None:
    """A WAV file that ends before its data chunk does: an error when no sample is left,
    else a warning saying how much is missing (the samples there are used)."""
    said = f"its header promises {_duration_text(promised / rate)} of audio ({promised} samples at {rate} Hz)"
    if held == 0:
        raise AudioFormatError(
            f"{path}: truncated: {said} but the file ends after its header, with no samples; "
            "the recording or the copy was cut short"
        )
    _warn(
        f"{path}: truncated: {said} but the file holds only {_duration_text(held / rate)}; "
        "the samples there are used (the recording or the copy was cut short)"
    )


def _check_finite(path: Path | str, samples: np.ndarray, channels: int) -> None:
    finite = np.isfinite(samples)
    if not finite.all():
        index = int(np.argmin(finite))
        raise AudioFormatError(
            f"{path}: sample {index // channels} (channel {index % channels}) is {samples[index]}; "
            "NaN and infinity are not audio"
        )


# ----------------------------------------------------------------------------- other formats


def load_audio(path: PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file; return float32 samples of shape (frames, channels) and the rate.

    WAV (by its RIFF header) goes through :func:`load_wav`; anything else through
    soundfile, then PyAV where soundfile cannot read it. The same limits apply to
    every format (:data:`SOURCE_RATE_RANGE`, :data:`MAX_AUDIO_SECONDS`, finite
    samples); a file neither can read is an :class:`AudioFormatError` naming it.
    """
    path = Path(path)
    if path.is_dir():
        raise AudioFormatError(f"{path}: is a directory, not an audio file")
    with open(path, "rb") as f:
        head = f.read(12)
    if not head:
        raise _empty(path, "audio")
    if head[0:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return load_wav(path)
    problems: list[str] = []
    for reader in (_read_soundfile, _read_pyav):
        try:
            result = reader(path)
        except AudioFormatError:
            raise
        except Exception as exc:  # each library has its own error types; keep their words
            words = _ERRNO.sub("", str(exc)).strip() or type(exc).__name__  # FFmpeg's codes say nothing
            problems.append(f"{reader.__name__.removeprefix('_read_')}: {words}")
            continue
        samples, rate = result
        _check_finite(path, samples.reshape(-1), samples.shape[1] if samples.ndim == 2 else 1)
        return samples, rate
    what = "not a WAV file (no RIFF/WAVE header)" if path.suffix.lower() in (".wav", ".wave") else "not an audio file"
    raise AudioFormatError(f"{path}: {what} that avatar_nb can read; accepted: {_ACCEPTED_FILES} ({'; '.join(problems)})")


_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")


def _file_limits(path: Path, n_frames: int, rate: int) -> None:
    """The source limits (rate, duration) of a file's audio, as an AudioFormatError naming it."""
    try:
        _check_rate(str(path), rate)
        _check_duration(str(path), n_frames, rate)
    except ValueError as exc:
        raise AudioFormatError(str(exc)) from None


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    with soundfile.SoundFile(str(path)) as f:
        _file_limits(path, max(0, f.frames), f.samplerate)
        samples = f.read(dtype="float32", always_2d=True)
    return samples, int(f.samplerate)


#: The most channels a compressed file may have (FFmpeg's layouts go to 22.2; 64 leaves room)
_MAX_FILE_CHANNELS = 64


def _read_pyav(path: Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path), "r") as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or 0)
        if rate <= 0:  # FFmpeg's probe guessed a stream it cannot time: not audio
            raise ValueError("audio stream without a sample rate")
        _file_limits(path, 0, rate)
        limit = int(MAX_AUDIO_SECONDS * rate)
        layout = stream.codec_context.layout
        channels = len(layout.channels)
        if not 1 <= channels <= _MAX_FILE_CHANNELS:
            raise AudioFormatError(f"{path}: {channels} audio channels; avatar_nb reads 1 to {_MAX_FILE_CHANNELS}")
        # packed (interleaved) float at the stream's own rate and layout: one plane whatever
        # the channel count. Planar frames are never turned into arrays here: PyAV counts 9
        # planes in an 8-channel planar frame and to_ndarray() then reads past FFmpeg's
        # array of plane pointers (a segfault). The channels are averaged later, as a WAV's are.
        resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
        blocks: list[np.ndarray] = []
        total = 0

        def take(frames: list) -> None:
            nonlocal total
            for out in frames:
                if len(out.planes) != 1 or len(out.layout.channels) != channels:
                    raise AudioFormatError(f"{path}: the decoder gave {len(out.layout.channels)} channels for {channels}")
                block = out.to_ndarray().reshape(-1, channels)
                blocks.append(block)
                total += block.shape[0]

        for frame in container.decode(stream):
            take(resampler.resample(frame))
            if total > limit:  # duration headers can lie: count while decoding
                _file_limits(path, total, rate)
        take(resampler.resample(None))
    if not blocks:
        return np.zeros((0, 1), np.float32), rate
    return np.ascontiguousarray(np.concatenate(blocks, axis=0), dtype=np.float32), rate


def _write_wav(target: Any, audio: bytes | np.ndarray, sample_rate: int) -> None:
    import wave

    pcm = audio if isinstance(audio, (bytes, bytearray, memoryview)) else _pcm.to_s16le(audio)
    if len(pcm) % 2:
        raise ValueError(f"s16le audio has {len(pcm)} bytes, an odd number")
    with wave.open(target, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(bytes(pcm))


def write_wav(path: PathLike, audio: bytes | np.ndarray, sample_rate: int) -> Path:
    """Write mono 16-bit PCM WAV: ``audio`` is s16le bytes or samples for :func:`to_s16le`."""
    path = Path(path)
    _write_wav(str(path), audio, sample_rate)
    return path


def wav_bytes(audio: bytes | np.ndarray, sample_rate: int) -> bytes:
    """The bytes of the WAV file :func:`write_wav` would write (for an audio element or a download)."""
    import io

    buf = io.BytesIO()
    _write_wav(buf, audio, sample_rate)
    return buf.getvalue()


# ----------------------------------------------------------------------------- preparation


def prepare_audio(
    source: PathLike | np.ndarray | bytes,
    sample_rate: int | None = None,
    *,
    target_rate: int = DEFAULT_SAMPLE_RATE,
    label: str | None = None,
) -> bytes:
    """Turn an audio file or an array into mono s16le PCM at ``target_rate``.

    ``source`` is a path to an audio file (WAV of any channel count, 8/16/24/32-bit
    integer or 32/64-bit float; FLAC, Ogg Vorbis, Ogg Opus, MP3 and the other formats of
    :data:`AUDIO_SUFFIXES`), a numpy array (1-D mono or 2-D (frames, channels); float
    in [-1, 1], int16, int32 or uint8) with its ``sample_rate``, or s16le bytes with
    their ``sample_rate``. Channels are averaged; the audio is resampled with soxr when
    its rate differs from ``target_rate``, which must be one of ``SUPPORTED_SAMPLE_RATES``.

    The source rate must lie in :data:`SOURCE_RATE_RANGE` and the audio may last at most
    :data:`MAX_AUDIO_SECONDS`; both are checked before any output is allocated, and the
    error names the file or argument. Files that cannot be read, or hold NaN or infinite
    samples, raise :class:`AudioFormatError` naming the file. Float samples beyond
    [-1, 1] are clipped to full scale with an :class:`AudioWarning` saying how many;
    ``label`` names the audio in it (default: the file, or ``prepare_audio`` for arrays).
    """
    if target_rate not in SUPPORTED_SAMPLE_RATES:
        raise ValueError(f"unsupported target_rate {target_rate!r}; accepted: {_rates()} Hz")
    name = "source"  # the argument, until it is a file
    if isinstance(source, (str, os.PathLike)):
        name = str(source)
        samples, rate = load_audio(source)
        if sample_rate is not None and sample_rate != rate:
            raise ValueError(f"{name}: the file says {rate} Hz but sample_rate={sample_rate} was given")
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if sample_rate is None:
            raise ValueError("s16le bytes need their sample_rate, e.g. prepare_audio(pcm, 16000)")
        _check_duration(name, len(source) // 2, _check_rate("sample_rate", sample_rate))  # before converting
        samples = _pcm.from_s16le(source)
        rate = sample_rate
    elif isinstance(source, np.ndarray):
        if sample_rate is None:
            raise ValueError("an array needs its sample_rate, e.g. prepare_audio(samples, 44100)")
        samples = source
        rate = sample_rate
    else:
        raise TypeError(
            f"cannot prepare audio from {type(source).__name__}; "
            "accepted: an audio file's path, a numpy array with sample_rate, or s16le bytes with sample_rate"
        )
    rate = _check_rate(name if name != "source" else "sample_rate", rate)
    if samples.ndim not in (1, 2):
        raise ValueError(f"audio must be 1-D (mono) or 2-D (frames, channels), got shape {samples.shape}")
    if samples.shape[0] == 0:
        raise AudioFormatError(f"{name}: contains no audio samples")
    _check_duration(name, samples.shape[0], rate)
    _warn_if_clipped(label or (name if name != "source" else "prepare_audio"), samples)
    if rate == target_rate:
        return _pcm.to_s16le(samples)
    if samples.shape[0] * target_rate < rate:  # less than one output sample: say so, do not return nothing
        raise AudioFormatError(f"{name}: {samples.shape[0]} samples at {rate} Hz make no sample at {target_rate} Hz")
    import soxr

    mono = np.frombuffer(_pcm.to_s16le(samples), dtype="<i2").astype(np.float32) / 32768.0
    resampled = soxr.resample(mono, rate, int(target_rate), quality="HQ")
    return _pcm.to_s16le(np.clip(resampled, -1.0, 1.0))


def _warn_if_clipped(name: str, samples: np.ndarray) -> None:
    """Float samples beyond [-1, 1] are clipped to full scale when converted: say how many,
    by how much, and how to avoid it (one pass for the peak; counted only when over)."""
    if samples.dtype.kind != "f" or not samples.size:
        return
    high, low = float(np.max(samples)), float(np.min(samples))
    if not (high > 1.0 or low < -1.0):  # NaN compares false: to_s16le names it
        return
    over = int(np.count_nonzero((samples > 1.0) | (samples < -1.0)))
    peak = max(high, -low)
    _warn(
        f"{name}: {over} of {samples.size} sample values ({_percent(over, samples.size)}) lie outside "
        f"[-1, 1], up to {peak:.3g} ({20 * np.log10(peak):+.1f} dB over full scale), and were clipped to "
        "full scale; float audio is full scale at 1.0: to keep the peaks, scale it into [-1, 1] first "
        "(e.g. samples / np.abs(samples).max()), pass int16 samples, or lower the recording's level "
        "(decoded lossy audio overshoots near full scale)"
    )


# ----------------------------------------------------------------------------- synthetic speech

# (F1, F2, F3) in Hz of a few vowels, and their relative loudness
_VOWELS = np.array(
    [
        (730, 1090, 2440),  # a
        (270, 2290, 3010),  # i
        (300, 870, 2240),  # u
        (530, 1840, 2480),  # e
        (570, 840, 2410),  # o
    ],
    dtype=np.float64,
)


def speech_like(duration: float = 3.0, sample_rate: int = 16000, *, seed: int = 0) -> np.ndarray:
    """A deterministic, speech-like test signal: float32 mono in [-1, 1].

    Words of two to four syllables (about 4-5 syllables a second) separated by pauses;
    voiced syllables with a falling pitch contour and vowel formants (additive synthesis
    of the glottal harmonics under formant resonances), some preceded by a short noisy
    fricative. Good enough for an animator to open the mouth on syllables and close it in
    pauses, and for plots to look like speech. Same ``seed``, same signal.
    """
    if not duration > 0:
        raise ValueError(f"duration must be positive, got {duration!r}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
    rng = np.random.default_rng(seed)
    n = int(round(duration * sample_rate))
    f0 = np.zeros(n)
    formants = np.zeros((n, 3))
    env = np.zeros(n)
    noise_env = np.zeros(n)

    t = int(0.15 * sample_rate)  # a little silence first
    base_pitch = rng.uniform(110, 190)
    while t < n:
        syllables = int(rng.integers(2, 5))
        pitch = base_pitch * rng.uniform(0.95, 1.15)
        for _ in range(syllables):
            if t >= n:
                break
            if rng.random() < 0.35:  # fricative onset
                length = int(rng.uniform(0.04, 0.09) * sample_rate)
                end = min(n, t + length)
                noise_env[t:end] = np.hanning(end - t) * rng.uniform(0.15, 0.3)
                t = end
            length = int(rng.uniform(0.14, 0.24) * sample_rate)
            end = min(n, t + length)
            span = end - t
            if span <= 0:
                break
            shape = np.sin(np.linspace(0, np.pi, span)) ** 0.7
            env[t:end] = shape * rng.uniform(0.6, 1.0)
            f0[t:end] = pitch * np.linspace(1.05, 0.92, span)
            formants[t:end] = _VOWELS[int(rng.integers(len(_VOWELS)))] * rng.uniform(0.95, 1.05)
            pitch *= rng.uniform(0.94, 1.0)
            t = end + int(rng.uniform(0.03, 0.08) * sample_rate)
        t += int((rng.uniform(0.12, 0.3) if rng.random() < 0.8 else rng.uniform(0.45, 0.7)) * sample_rate)

    # smooth formant and pitch tracks so transitions glide like articulation does
    voiced = f0 > 0
    f0_filled = np.where(voiced, f0, base_pitch)
    phase = 2 * np.pi * np.cumsum(f0_filled) / sample_rate
    formants[~voiced] = _VOWELS[0]
    kernel = np.hanning(max(3, int(0.02 * sample_rate)))
    kernel /= kernel.sum()
    for k in range(3):
        formants[:, k] = np.convolve(formants[:, k], kernel, mode="same")

    voice = np.zeros(n)
    nyquist = sample_rate / 2
    bandwidth = np.array([90.0, 120.0, 160.0])
    for h in range(1, 40):
        freq = h * f0_filled
        audible = freq < nyquist * 0.95
        if not audible.any():
            break
        gain = np.zeros(n)
        for k in range(3):
            gain += np.exp(-(((freq - formants[:, k]) / bandwidth[k]) ** 2)) / (k + 1)
        voice += np.where(audible, gain / np.sqrt(h), 0.0) * np.sin(h * phase)
    signal = voice * env
    noise = rng.standard_normal(n)
    fricative = np.diff(noise, prepend=0.0) * noise_env  # first difference: a high-passed hiss
    signal = signal + fricative + 0.002 * noise  # and a faint noise floor
    peak = np.max(np.abs(signal)) or 1.0
    return (0.8 * signal / peak).astype(np.float32)
