"""A procedural audio-to-FLAME animator: deterministic keyframes from speech, frame by frame.

No learned model: per 1/fps frame of audio, the loudness (smoothed with a fast attack
and a slower release, as a jaw moves) opens the jaw; the expression coefficients follow
the frame's spectral shape (loudness, brightness and zero-crossing rate projected on a
fixed random basis whose weights fall off like a PCA spectrum); the eyelids blink at
natural, randomised intervals; head, neck and gaze drift slowly. Everything that is
random comes from a generator seeded per stream, and motion is driven by the stream's
frame counter, never by the wall clock: the same audio gives the same keyframes,
however it was cut into chunks.

Audio is consumed incrementally: :meth:`Animator.feed` returns the keyframes of every
frame whose audio span is complete; :meth:`Animator.finish` also returns the partial
last frame of an utterance.

An audio-to-motion offset can be set (``offset_samples``, for the local service's
``av_offset_ms``): the motion of frame ``k`` is then computed from the utterance's
audio shifted by that many samples (silence before its start and after its end), so
the mouth lags (positive) or leads (negative) the sound by exactly that amount, sub-
frame amounts included. A frame still leaves no earlier than its own audio span is
complete; a leading mouth also waits for the audio it anticipates.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from functools import lru_cache

import numpy as np

from .. import _pcm
from ..flame import CHANNELS, DEFAULT_FPS, FIXED_COLUMNS, SCALAR_CHANNELS

__all__ = ["DEFAULT_N_EXPRESSION", "Animator"]

DEFAULT_N_EXPRESSION = 50
"""Expression coefficients per keyframe unless told otherwise (FLAME models use 50 or 100)."""

_FIXED = FIXED_COLUMNS
# where each moving part goes in a keyframe row (from the one layout definition)
_TRANSLATION = CHANNELS["translation"].start
_ROTATION = CHANNELS["rotation"].start
_NECK = CHANNELS["neck_pose"].start
_JAW = SCALAR_CHANNELS["jaw_open"]
_EYES = CHANNELS["eye_pose"].start
_LIDS = CHANNELS["eye_lid"].start
_JAW_MAX = 0.32  # radians of jaw opening at full loudness
_BLINK = (0.35, 0.8, 1.0, 0.85, 0.5, 0.2)  # eyelid closure per frame of a blink at _BLINK_FPS
_BLINK_FPS = 25.0
_BLOCK = 250  # frames of index-only motion computed at once
_CACHED_BLOCKS = 32  # per motion model: the first 5 minutes of every stream at 25 fps


class _MotionModel:
    """What a seed fixes for every stream: the expression basis and the slow motion.

    Shared by all animators with the same seed, rate and width (a service gives every
    session the same seed), so the index-only motion of frame ``k`` is computed once,
    not once per session: sessions that start together would otherwise all compute
    the same block in the same frame period.
    """

    def __init__(self, seed: int, fps: float, n_expression: int) -> None:
        rng = np.random.default_rng(seed)
        self.fps = fps
        self.n_expression = n_expression
        self.width = _FIXED + n_expression
        # expression basis: 3 audio features -> E coefficients, variance falling with index
        falloff = 1.0 / np.sqrt(1.0 + np.arange(n_expression))
        self.basis = rng.standard_normal((3, n_expression)) * falloff * 0.6
        self.drift_freq = rng.uniform(0.03, 0.12, n_expression)
        self.drift_phase = rng.uniform(0, 2 * np.pi, n_expression)
        self.head_freq = rng.uniform(0.05, 0.2, 3)
        self.head_phase = rng.uniform(0, 2 * np.pi, 3)
        self._blocks: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # services in several threads may share a model

    def block(self, index: int) -> np.ndarray:
        """Slow motion of frames ``index * _BLOCK`` onwards, (_BLOCK, width) float64, read-only.

        Columns as in a keyframe: translation, head drift (the pitch gets the nod added
        per frame) and the expression "mood" drift. Always computed for a whole block,
        so a frame's value never depends on how many frames were asked for at once
        (vectorised sin may round differently at array edges).
        """
        with self._lock:
            rows = self._blocks.get(index)
            if rows is not None:
                self._blocks.move_to_end(index)
                return rows
        t = (index * _BLOCK + np.arange(_BLOCK)) / self.fps
        rows = np.zeros((_BLOCK, self.width))
        rows[:, _TRANSLATION] = 0.002 * np.sin(2 * np.pi * 0.07 * t)
        rows[:, _TRANSLATION + 1] = 0.0015 * np.sin(2 * np.pi * 0.05 * t + 1.0)
        rows[:, _ROTATION : _ROTATION + 3] = 0.05 * np.sin(
            2 * np.pi * self.head_freq[None, :] * t[:, None] + self.head_phase[None, :]
        )
        if self.n_expression:
            rows[:, _FIXED:] = 0.05 * np.sin(
                2 * np.pi * self.drift_freq[None, :] * t[:, None] + self.drift_phase[None, :]
            )
        rows.flags.writeable = False
        with self._lock:
            self._blocks[index] = rows
            while len(self._blocks) > _CACHED_BLOCKS:
                self._blocks.popitem(last=False)
        return rows

    def rows(self, first: int, n: int) -> np.ndarray:
        """A fresh (n, width) float64 array holding the slow motion of frames first..first+n-1."""
        b0, b1 = first // _BLOCK, (first + n - 1) // _BLOCK
        i = first - b0 * _BLOCK
        if b0 == b1:
            return self.block(b0)[i : i + n].copy()
        return np.concatenate([self.block(b) for b in range(b0, b1 + 1)])[i : i + n]


@lru_cache(maxsize=16)
def _motion_model(seed: int, fps: float, n_expression: int) -> _MotionModel:
    return _MotionModel(seed, fps, n_expression)


class Animator:
    """Turns one session's audio into FLAME keyframes of ``FIXED_COLUMNS + n_expression``
    floats (the layout of :mod:`avatar_nb.flame`)."""

    def __init__(
        self,
        sample_rate: int,
        fps: float = DEFAULT_FPS,
        *,
        n_expression: int = DEFAULT_N_EXPRESSION,
        seed: int = 0,
        offset_samples: int = 0,
    ) -> None:
        if sample_rate <= 0 or not fps > 0:
            raise ValueError(f"sample_rate and fps must be positive, got {sample_rate} and {fps}")
        if n_expression < 0:
            raise ValueError(f"n_expression must be >= 0, got {n_expression}")
        if not isinstance(offset_samples, int) or isinstance(offset_samples, bool):
            raise TypeError(f"offset_samples must be an int (samples), got {offset_samples!r}")
        self.offset_samples = offset_samples
        self.sample_rate = int(sample_rate)
        self.fps = float(fps)
        self.n_expression = int(n_expression)
        self.width = _FIXED + self.n_expression
        spf = self.sample_rate / self.fps
        self._integral_frames = abs(spf - round(spf)) < 1e-9
        self._spf = round(spf) if self._integral_frames else spf
        self._model = _motion_model(int(seed), self.fps, self.n_expression)
        # blinks and saccades: this stream's own generator, from the same seed
        rng = np.random.default_rng([int(seed), 1])
        self._rng = rng
        self._frame = 0  # frames produced in this stream, across utterances
        self._next_blink = self._blink_gap()
        self._blink_at = -100
        self._gaze = (0.0, 0.0)
        self._blink_len = max(1, round(len(_BLINK) * self.fps / _BLINK_FPS))
        self._next_saccade = int(rng.uniform(1.0, 3.0) * self.fps)
        self._jaw = 0.0
        self._nod = 0.0
        self._utterance_frame = 0  # frames produced in the current utterance
        self._start_utterance()

    # ------------------------------------------------------------------ audio in

    def _start_utterance(self) -> None:
        # `_pending` holds the feature stream from frame `_utterance_frame` on: the
        # utterance's audio shifted by `offset_samples` (silence first when the mouth lags)
        lag = max(0, self.offset_samples)
        self._pending = np.zeros(lag, dtype=np.int16)
        self._skip = max(0, -self.offset_samples)  # audio the leading mouth has already used
        self._received = 0  # samples of the utterance received

    def _blink_gap(self) -> int:
        return int(self._rng.uniform(2.0, 5.5) * self.fps)

    def _span(self, k: int) -> int:
        """First sample of frame ``k`` of the utterance."""
        if self._integral_frames:
            return k * self._spf
        return math.floor(k * self._spf + 1e-9)

    def feed(self, pcm: bytes) -> np.ndarray:
        """Add s16le audio of the current utterance; return keyframes of the frames it completed."""
        if len(pcm) % 2:
            raise ValueError(f"s16le audio has {len(pcm)} bytes, an odd number")
        if pcm:
            samples = np.frombuffer(pcm, dtype="<i2")
            self._received += samples.shape[0]
            if self._skip:
                skipped = min(self._skip, samples.shape[0])
                samples, self._skip = samples[skipped:], self._skip - skipped
            if samples.shape[0]:
                self._pending = (
                    np.concatenate((self._pending, samples)) if self._pending.size else samples
                )
        return self._produce(final=False)

    def finish(self) -> np.ndarray:
        """End the current utterance: return the keyframes still owed (the partial last frame)."""
        out = self._produce(final=True)
        self._utterance_frame = 0
        self._start_utterance()
        return out

    def reset_utterance(self) -> None:
        """Drop the current utterance's unconsumed audio (an interrupt)."""
        self._utterance_frame = 0
        self._start_utterance()

    def _frames_within(self, k0: int, samples: int) -> int:
        """The number of frames whose span ends within the first ``samples`` of the utterance."""
        if self._integral_frames:
            return samples // self._spf
        k1 = k0
        while self._span(k1 + 1) <= samples:
            k1 += 1
        return k1

    def _produce(self, final: bool) -> np.ndarray:
        k0 = self._utterance_frame
        base = self._span(k0)
        available = base + self._pending.shape[0]  # feature stream (shifted audio) at hand
        received = self._received
        # complete frames: those whose span ends within the audio received and, when the
        # motion is shifted, within the shifted audio as well
        k1 = self._frames_within(k0, min(available, received))
        if final and self._span(k1) < received:
            k1 = self._frames_within(k0, received)
            if self._span(k1) < received:
                k1 += 1  # the partial last frame
        if k1 <= k0:
            return np.zeros((0, self.width), dtype=np.float32)
        if self.offset_samples and final:
            # the shifted stream ends where the audio ends: silence after it, nothing beyond
            end = min(self._span(k1), received)
            if available < end:
                pad = np.zeros(end - available, dtype=np.int16)
                self._pending = np.concatenate((self._pending, pad)) if self._pending.size else pad
                available = end
            elif available > end:
                self._pending = self._pending[: end - base]
                available = end
        used = min(self._span(k1), available) - base
        audio = self._pending[:used]
        if self._integral_frames:
            features = _pcm.frame_features(audio, self.sample_rate, self.fps)
        else:
            parts = [
                _pcm.frame_features(
                    audio[self._span(k) - base : min(self._span(k + 1), available) - base],
                    self.sample_rate,
                    self.fps,
                )
                for k in range(k0, k1)
            ]
            features = {key: np.concatenate([p[key][:1] for p in parts]) for key in parts[0]}
        self._pending = self._pending[used:]
        self._utterance_frame = k1
        return self._keyframes(features)

    # ------------------------------------------------------------------ motion

    def _keyframes(self, features: dict[str, np.ndarray]) -> np.ndarray:
        # Per frame work is plain float arithmetic (a few microseconds), one row at a
        # time: a service animates hundreds of streams a frame at a time, where numpy's
        # per-call overhead on 1-element arrays would dominate.
        rms = features["rms"].tolist()
        brightness = features["brightness"].tolist()
        zero_crossings = features["zcr"].tolist()
        n = len(rms)
        first = self._frame
        out = self._model.rows(first, n)
        slow = out[:, :_FIXED].tolist()
        fixed = []
        coef = []
        j, d = self._jaw, self._nod
        blink_len = self._blink_len
        for i in range(n):
            frame = first + i
            # loudness in [0, 1]: -50 dBFS is silence, -12 dBFS is full voice
            loud = min(1.0, max(0.0, (20.0 * math.log10(rms[i] + 1e-6) + 50.0) / 38.0))
            bright = min(1.0, max(0.0, brightness[i] / 1.2))
            zcr = min(1.0, max(0.0, zero_crossings[i] * 4.0))
            # one-pole smoothing: fast to open, slower to close; the nod follows energy slowly
            j += (0.7 if loud > j else 0.5) * (loud - j)
            d += 0.08 * (loud - d)
            row = slow[i]
            # head (pitch, yaw, roll): slow drift plus a nod; the neck carries part of it
            pitch = row[_ROTATION] + 0.06 * d - 0.02
            yaw, roll = row[_ROTATION + 1], row[_ROTATION + 2]
            # eyes: saccades to a new target every 1-3 s, both eyes together
            if frame >= self._next_saccade:
                gx, gy = self._rng.uniform(-0.12, 0.12, 2).tolist()
                self._gaze = (0.6 * gx, gy)
                self._next_saccade = frame + int(self._rng.uniform(1.0, 3.0) * self.fps)
            gx, gy = self._gaze
            # eyelids: open at rest, a blink every 2-5.5 s
            if frame >= self._next_blink:
                self._blink_at = frame
                self._next_blink = frame + self._blink_gap()
            age = frame - self._blink_at
            lid = 0.06
            if 0 <= age < blink_len:
                lid = max(lid, _BLINK[min(len(_BLINK) - 1, age * len(_BLINK) // blink_len)])
            r = [0.0] * _FIXED
            r[_TRANSLATION] = row[_TRANSLATION]
            r[_TRANSLATION + 1] = row[_TRANSLATION + 1]
            r[_ROTATION : _ROTATION + 3] = (pitch, yaw, roll)
            r[_NECK : _NECK + 3] = (0.4 * pitch, 0.4 * yaw, 0.4 * roll)
            r[_JAW] = _JAW_MAX * j  # how far the jaw opens
            r[_JAW + 1] = 0.02 * (bright - 0.5) * j  # sideways on fricatives
            r[_EYES : _EYES + 6] = (gx, gy, 0.0, gx, gy, 0.0)  # both eyes look together
            r[_LIDS : _LIDS + 2] = (lid, lid)
            fixed.append(r)
            coef.append((loud, bright * loud, zcr * loud))
        self._jaw, self._nod = j, d
        out[:, :_FIXED] = fixed
        # expression: spectral shape on a fixed basis, scaled by loudness, over the drift;
        # elementwise, in a fixed order (a matrix product sums in a batch-size dependent
        # order, and the result must not depend on how audio was chunked)
        if self.n_expression:
            b0, b1, b2 = self._model.basis
            if n == 1:  # the paced case: the same float operations, fewer numpy calls
                x, y, z = coef[0]
                out[0, _FIXED:] += x * b0 + y * b1 + z * b2
            else:
                c = np.array(coef)
                out[:, _FIXED:] += c[:, 0:1] * b0 + c[:, 1:2] * b1 + c[:, 2:3] * b2
        self._frame += n
        return out.astype(np.float32)
