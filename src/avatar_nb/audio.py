"""Audio in: WAV files and arrays to mono s16le at a supported rate, and a speech-like test signal.

``prepare_audio`` is the one door audio comes through: a WAV file of any common
sample format and channel count, or a numpy array with its sample rate, comes out as
mono 16-bit little-endian PCM at one of the rates the service accepts, resampled with
soxr (a well-tested, fast, high-quality resampler) when the rates differ.

WAV files are read by a small RIFF reader of our own rather than the stdlib ``wave``
module, because ``wave`` rejects IEEE-float and WAVE_FORMAT_EXTENSIBLE files, which
many recorders and DAWs write. Every read of the file's bytes is bounds-checked; a
malformed file gives :class:`AudioFormatError` naming the file and the problem.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Union

import numpy as np

from . import _pcm
from .protocol import SUPPORTED_SAMPLE_RATES

__all__ = ["AudioFormatError", "load_wav", "prepare_audio", "speech_like", "write_wav"]

PathLike = Union[str, "os.PathLike[str]"]

_PCM = 0x0001
_FLOAT = 0x0003
_EXTENSIBLE = 0xFFFE
_ACCEPTED_FORMATS = "8, 16, 24 or 32-bit integer PCM, or 32/64-bit float"


class AudioFormatError(ValueError):
    """A file that is not audio avatar_nb can read (the message names the file)."""


def _rates() -> str:
    return ", ".join(str(r) for r in SUPPORTED_SAMPLE_RATES)


# ----------------------------------------------------------------------------- WAV


def load_wav(path: PathLike) -> tuple[np.ndarray, int]:
    """Read a WAV file; return float32 samples of shape (frames, channels) and the rate.

    Integer formats are scaled to [-1, 1) (8-bit is offset binary); float files are
    returned as stored. Raises ``FileNotFoundError`` for a missing file and
    :class:`AudioFormatError` for anything that is not a readable WAV.
    """
    path = Path(path)
    if path.is_dir():
        raise AudioFormatError(f"{path}: is a directory, not a WAV file")
    data = path.read_bytes()

    def fail(problem: str) -> AudioFormatError:
        return AudioFormatError(f"{path}: {problem}")

    if len(data) < 12 or data[0:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        raise fail("not a WAV file (no RIFF/WAVE header)")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    samples: bytes | None = None
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body_start = pos + 8
        body_end = body_start + size
        if chunk_id == b"data" and (body_end > len(data) or size == 0xFFFFFFFF):
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
    if rate <= 0:
        raise fail(f"sample rate {rate} Hz")
    if tag == _PCM and bits in (8, 16, 24, 32):
        width = bits // 8
    elif tag == _FLOAT and bits in (32, 64):
        width = bits // 8
    else:
        kind = {_PCM: "integer PCM", _FLOAT: "float"}.get(tag, f"format tag 0x{tag:04x}")
        raise fail(f"unsupported sample format: {bits}-bit {kind}; accepted: {_ACCEPTED_FORMATS}")
    frame = width * channels
    n_frames = len(samples) // frame
    raw = samples[: n_frames * frame]
    if tag == _FLOAT:
        out = np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float32)
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


def write_wav(path: PathLike, audio: bytes | np.ndarray, sample_rate: int) -> Path:
    """Write mono 16-bit PCM WAV: ``audio`` is s16le bytes or samples for :func:`to_s16le`."""
    import wave

    pcm = audio if isinstance(audio, (bytes, bytearray, memoryview)) else _pcm.to_s16le(audio)
    if len(pcm) % 2:
        raise ValueError(f"s16le audio has {len(pcm)} bytes, an odd number")
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(bytes(pcm))
    return path


# ----------------------------------------------------------------------------- preparation


def prepare_audio(
    source: PathLike | np.ndarray | bytes,
    sample_rate: int | None = None,
    *,
    target_rate: int = 16000,
) -> bytes:
    """Turn a WAV file or an array into mono s16le PCM at ``target_rate``.

    ``source`` is a path to a WAV file (any channel count; 8/16/24/32-bit integer or
    32/64-bit float), a numpy array (1-D mono or 2-D (frames, channels); float in
    [-1, 1], int16, int32 or uint8) with its ``sample_rate``, or s16le bytes with their
    ``sample_rate``. Channels are averaged; the audio is resampled with soxr when its rate
    differs from ``target_rate``, which must be one of ``SUPPORTED_SAMPLE_RATES``.
    """
    if target_rate not in SUPPORTED_SAMPLE_RATES:
        raise ValueError(f"unsupported target_rate {target_rate!r}; accepted: {_rates()} Hz")
    name = "audio"
    if isinstance(source, (str, os.PathLike)):
        name = str(source)
        samples, rate = load_wav(source)
        if sample_rate is not None and sample_rate != rate:
            raise ValueError(f"{name}: the file says {rate} Hz but sample_rate={sample_rate} was given")
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if sample_rate is None:
            raise ValueError("s16le bytes need their sample_rate, e.g. prepare_audio(pcm, 16000)")
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
            "accepted: a WAV path, a numpy array with sample_rate, or s16le bytes with sample_rate"
        )
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer number of Hz, got {rate!r}")
    if samples.ndim not in (1, 2):
        raise ValueError(f"audio must be 1-D (mono) or 2-D (frames, channels), got shape {samples.shape}")
    if samples.shape[0] == 0:
        raise AudioFormatError(f"{name}: contains no audio samples")
    if rate == target_rate:
        return _pcm.to_s16le(samples)
    import soxr

    mono = np.frombuffer(_pcm.to_s16le(samples), dtype="<i2").astype(np.float32) / 32768.0
    resampled = soxr.resample(mono, int(rate), int(target_rate), quality="HQ")
    return _pcm.to_s16le(np.clip(resampled, -1.0, 1.0))


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
