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
"""

from __future__ import annotations

import math

import numpy as np

from .. import _pcm

__all__ = ["Animator"]

_FIXED = _pcm.FLAME_FIXED_COLUMNS
_JAW_MAX = 0.32  # radians of jaw opening at full loudness
_BLINK = np.array([0.35, 0.8, 1.0, 0.85, 0.5, 0.2], dtype=np.float32)  # eyelid closure per frame at 25 fps


class Animator:
    """Turns one session's audio into FLAME keyframes of ``20 + n_expression`` floats."""

    def __init__(self, sample_rate: int, fps: float = 25.0, *, n_expression: int = 50, seed: int = 0) -> None:
        if sample_rate <= 0 or not fps > 0:
            raise ValueError(f"sample_rate and fps must be positive, got {sample_rate} and {fps}")
        if n_expression < 0:
            raise ValueError(f"n_expression must be >= 0, got {n_expression}")
        self.sample_rate = int(sample_rate)
        self.fps = float(fps)
        self.n_expression = int(n_expression)
        self.width = _FIXED + self.n_expression
        spf = self.sample_rate / self.fps
        self._integral_frames = abs(spf - round(spf)) < 1e-9
        self._spf = int(round(spf)) if self._integral_frames else spf
        rng = np.random.default_rng(seed)
        # expression basis: 3 audio features -> E coefficients, variance falling with index
        falloff = 1.0 / np.sqrt(1.0 + np.arange(self.n_expression))
        self._basis = rng.standard_normal((3, self.n_expression)) * falloff * 0.6
        self._drift_freq = rng.uniform(0.03, 0.12, self.n_expression)
        self._drift_phase = rng.uniform(0, 2 * np.pi, self.n_expression)
        self._head_freq = rng.uniform(0.05, 0.2, 3)
        self._head_phase = rng.uniform(0, 2 * np.pi, 3)
        self._rng = rng
        self._frame = 0  # frames produced in this stream, across utterances
        self._next_blink = self._blink_gap()
        self._blink_at = -100
        self._gaze = np.zeros(2)
        self._next_saccade = int(rng.uniform(1.0, 3.0) * self.fps)
        self._jaw = 0.0
        self._nod = 0.0
        self._pending = np.zeros(0, dtype=np.int16)
        self._utterance_frame = 0  # frames produced in the current utterance

    # ------------------------------------------------------------------ audio in

    def _blink_gap(self) -> int:
        return int(self._rng.uniform(2.0, 5.5) * self.fps)

    def _span(self, k: int) -> int:
        """First sample of frame ``k`` of the utterance."""
        if self._integral_frames:
            return k * self._spf
        return int(math.floor(k * self._spf + 1e-9))

    def feed(self, pcm: bytes) -> np.ndarray:
        """Add s16le audio of the current utterance; return keyframes of the frames it completed."""
        if len(pcm) % 2:
            raise ValueError(f"s16le audio has {len(pcm)} bytes, an odd number")
        if pcm:
            samples = np.frombuffer(pcm, dtype="<i2")
            self._pending = np.concatenate((self._pending, samples)) if self._pending.size else samples
        return self._produce(final=False)

    def finish(self) -> np.ndarray:
        """End the current utterance: return the keyframes still owed (the partial last frame)."""
        out = self._produce(final=True)
        self._pending = np.zeros(0, dtype=np.int16)
        self._utterance_frame = 0
        return out

    def reset_utterance(self) -> None:
        """Drop the current utterance's unconsumed audio (an interrupt)."""
        self._pending = np.zeros(0, dtype=np.int16)
        self._utterance_frame = 0

    def _produce(self, final: bool) -> np.ndarray:
        k0 = self._utterance_frame
        base = self._span(k0)
        available = base + self._pending.shape[0]
        # complete frames: those whose span ends within the available audio
        k1 = k0
        while self._span(k1 + 1) <= available:
            k1 += 1
        if final and self._span(k1) < available:
            k1 += 1  # the partial last frame
        if k1 == k0:
            return np.zeros((0, self.width), dtype=np.float32)
        used = min(self._span(k1), available) - base
        audio = self._pending[:used]
        if self._integral_frames:
            features = _pcm.frame_features(audio, self.sample_rate, self.fps)
        else:
            parts = [
                _pcm.frame_features(audio[self._span(k) - base : min(self._span(k + 1), available) - base], self.sample_rate, self.fps)
                for k in range(k0, k1)
            ]
            features = {key: np.concatenate([p[key][:1] for p in parts]) for key in parts[0]}
        self._pending = self._pending[used:]
        self._utterance_frame = k1
        return self._keyframes(features)

    # ------------------------------------------------------------------ motion

    def _keyframes(self, features: dict[str, np.ndarray]) -> np.ndarray:
        rms = features["rms"].astype(np.float64)
        n = rms.shape[0]
        out = np.zeros((n, self.width), dtype=np.float32)
        # loudness in [0, 1]: -50 dBFS is silence, -12 dBFS is full voice
        loud = np.clip((20.0 * np.log10(rms + 1e-6) + 50.0) / 38.0, 0.0, 1.0)
        bright = np.clip(features["brightness"].astype(np.float64) / 1.2, 0.0, 1.0)
        zcr = np.clip(features["zcr"].astype(np.float64) * 4.0, 0.0, 1.0)
        t = (self._frame + np.arange(n)) / self.fps

        jaw = np.empty(n)
        nod = np.empty(n)
        j, d = self._jaw, self._nod
        for i in range(n):  # one-pole smoothing: fast to open, slower to close
            target = loud[i]
            j += (0.7 if target > j else 0.5) * (target - j)
            d += 0.08 * (target - d)
            jaw[i] = j
            nod[i] = d
        self._jaw, self._nod = j, d

        # jaw: opening, small sideways motion on bright (fricative) sounds
        out[:, 9] = _JAW_MAX * jaw
        out[:, 10] = 0.02 * (bright - 0.5) * jaw
        # head rotation (pitch, yaw, roll): slow drift plus a nod that follows speech energy
        head = 0.05 * np.sin(2 * np.pi * self._head_freq[None, :] * t[:, None] + self._head_phase[None, :])
        head[:, 0] += 0.06 * nod - 0.02
        out[:, 3:6] = head
        out[:, 6:9] = 0.4 * head  # the neck carries part of the motion
        out[:, 0] = 0.002 * np.sin(2 * np.pi * 0.07 * t)
        out[:, 1] = 0.0015 * np.sin(2 * np.pi * 0.05 * t + 1.0)
        # eyes: saccades to a new target every 1-3 s, both eyes together
        gaze = np.empty((n, 2))
        for i in range(n):
            frame = self._frame + i
            if frame >= self._next_saccade:
                self._gaze = self._rng.uniform(-0.12, 0.12, 2) * np.array([0.6, 1.0])
                self._next_saccade = frame + int(self._rng.uniform(1.0, 3.0) * self.fps)
            gaze[i] = self._gaze
        out[:, 12] = out[:, 15] = gaze[:, 0]
        out[:, 13] = out[:, 16] = gaze[:, 1]
        # eyelids: open at rest, a blink every 2-5.5 s
        lids = np.full(n, 0.06)
        blink_len = max(1, int(round(len(_BLINK) * self.fps / 25.0)))
        for i in range(n):
            frame = self._frame + i
            if frame >= self._next_blink:
                self._blink_at = frame
                self._next_blink = frame + self._blink_gap()
            age = frame - self._blink_at
            if 0 <= age < blink_len:
                lids[i] = max(lids[i], _BLINK[min(len(_BLINK) - 1, age * len(_BLINK) // blink_len)])
        out[:, 18] = lids
        out[:, 19] = lids
        # expression: spectral shape on a fixed basis, scaled by loudness, plus a slow mood drift
        if self.n_expression:
            # elementwise rather than a matrix product: BLAS sums in an order that depends
            # on the batch size, and the result must not depend on how audio was chunked
            b = self._basis
            expr = loud[:, None] * b[0] + (bright * loud)[:, None] * b[1] + (zcr * loud)[:, None] * b[2]
            expr += 0.05 * np.sin(2 * np.pi * self._drift_freq[None, :] * t[:, None] + self._drift_phase[None, :])
            out[:, _FIXED:] = expr
        self._frame += n
        return out
