"""The procedural animator: mouth follows speech, eyes blink, results are deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_nb import _pcm
from avatar_nb.audio import speech_like
from avatar_nb.flame import CHANNELS, DEFAULT_FPS, FIXED_COLUMNS, SCALAR_CHANNELS
from avatar_nb.server import Animator

from .helpers import expected_frames


def animate_all(pcm: bytes, rate: int = 16000, chunk: int = 1280, **kwargs) -> np.ndarray:
    animator = Animator(rate, **kwargs)
    parts = [animator.feed(pcm[i : i + chunk]) for i in range(0, len(pcm), chunk)]
    parts.append(animator.finish())
    return np.concatenate(parts)


def test_mouth_opens_on_speech_and_closes_in_pauses():
    x = speech_like(12.0, 16000, seed=11)
    pcm = _pcm.to_s16le(x)
    kf = animate_all(pcm)
    jaw = kf[:, SCALAR_CHANNELS["jaw_open"]]
    rms = _pcm.frame_features(x, 16000, DEFAULT_FPS)["rms"]
    assert jaw.shape == rms.shape
    speech = rms > 0.2 * rms.max()
    silence = rms < 0.01 * rms.max()
    assert speech.sum() > 50 and silence.sum() > 30
    assert np.median(jaw[speech]) > 0.15  # open while speaking
    # closed in pauses, allowing the jaw a few frames to settle after a word ends
    settled = silence & np.concatenate(([False] * 4, silence[:-4])) & np.roll(silence, 4)
    assert np.median(jaw[settled]) < 0.02
    assert np.corrcoef(jaw, np.log(rms + 1e-4))[0, 1] > 0.7


def test_blinks_at_natural_intervals():
    kf = animate_all(_pcm.to_s16le(speech_like(30.0, 16000, seed=2)))
    lids = kf[:, SCALAR_CHANNELS["eyelid_left"]]
    np.testing.assert_array_equal(lids, kf[:, SCALAR_CHANNELS["eyelid_right"]])
    closed = lids > 0.9
    starts = np.flatnonzero(closed & ~np.concatenate(([False], closed[:-1])))
    assert 5 <= starts.size <= 15  # one blink every 2 to 5.5 s over 30 s
    assert np.all(np.diff(starts) >= 2.0 * DEFAULT_FPS)
    assert np.median(lids[~(lids > 0.1)]) < 0.1  # open between blinks


def test_head_moves_slowly():
    kf = animate_all(_pcm.to_s16le(speech_like(10.0, 16000, seed=5)))
    head = kf[:, CHANNELS["rotation"]]
    assert np.ptp(head, axis=0).min() > 0.01  # it moves
    assert np.abs(np.diff(head, axis=0)).max() < 0.02  # slowly: < 0.02 rad per frame
    np.testing.assert_allclose(kf[:, CHANNELS["neck_pose"]], 0.4 * head, rtol=1e-5)


@pytest.mark.parametrize("rate,fps", [(16000, 25), (44100, 25), (8000, 30), (22050, 30)])
def test_frame_count_and_width(rate, fps):
    pcm = _pcm.to_s16le(speech_like(1.37, rate))
    kf = animate_all(pcm, rate, chunk=998, fps=fps, n_expression=100)
    assert kf.shape == (expected_frames(len(pcm) // 2, rate, fps), FIXED_COLUMNS + 100)
    assert kf.dtype == np.float32 and np.all(np.isfinite(kf))


def test_deterministic_and_seeded():
    pcm = _pcm.to_s16le(speech_like(3.0, 16000, seed=1))
    a = animate_all(pcm, chunk=640)
    np.testing.assert_array_equal(a, animate_all(pcm, chunk=3333 * 2))
    assert not np.array_equal(a, animate_all(pcm, seed=9))


def test_interrupt_drops_pending_audio():
    animator = Animator(16000)
    assert animator.feed(b"\x00\x00" * 1000).shape[0] == 1  # 640 samples make one frame
    animator.reset_utterance()
    assert animator.finish().shape[0] == 0


def test_bad_input():
    with pytest.raises(ValueError, match="odd number"):
        Animator(16000).feed(b"\x00\x00\x00")
    with pytest.raises(ValueError, match="positive"):
        Animator(0)


def _audio_driven_expression(x: np.ndarray) -> np.ndarray:
    """Expression minus the slow "mood" drift (what silence of the same length gives)."""
    pcm = _pcm.to_s16le(x)
    return animate_all(pcm)[:, FIXED_COLUMNS:] - animate_all(bytes(len(pcm)))[:, FIXED_COLUMNS:]


def test_expression_follows_spectral_shape():
    rate = 16000
    t = np.arange(rate) / rate
    tone = 0.3 * np.sin(2 * np.pi * 180 * t)  # voiced-like: dark, few zero crossings
    noise = np.random.default_rng(0).standard_normal(rate)
    noise *= np.sqrt(np.mean(tone**2) / np.mean(noise**2))  # fricative-like, same loudness
    e_tone = _audio_driven_expression(tone.astype(np.float32))[2:-2]
    e_noise = _audio_driven_expression(noise.astype(np.float32))[2:-2]
    e_quiet = _audio_driven_expression((0.1 * tone).astype(np.float32))[2:-2]
    # a different spectrum at the same loudness gives clearly different coefficients...
    spread = np.linalg.norm(e_noise.mean(axis=0) - e_tone.mean(axis=0))
    assert spread > 0.3 * np.linalg.norm(e_tone.mean(axis=0))
    # ...while the same sound gives nearly the same coefficients frame after frame
    assert np.linalg.norm(e_tone - e_tone.mean(axis=0), axis=1).max() < 0.1 * spread
    assert np.linalg.norm(e_noise - e_noise.mean(axis=0), axis=1).max() < 0.1 * spread
    # louder speech moves the face more; silence adds nothing to the drift
    assert np.linalg.norm(e_quiet, axis=1).mean() < 0.7 * np.linalg.norm(e_tone, axis=1).mean()
    np.testing.assert_array_equal(_audio_driven_expression(np.zeros(rate, np.float32)), 0.0)


def test_utterances_continue_one_stream():
    """A new utterance restarts frame counting (partial last frames per utterance) but
    not the face: blinks, head and drift go on from where the previous one ended."""
    a = _pcm.to_s16le(speech_like(1.01, 16000, seed=1))
    b = _pcm.to_s16le(speech_like(0.5, 16000, seed=2))
    animator = Animator(16000)
    first = np.concatenate([animator.feed(a), animator.finish()])
    second = np.concatenate([animator.feed(b), animator.finish()])
    assert first.shape[0] == expected_frames(len(a) // 2) and second.shape[0] == expected_frames(
        len(b) // 2
    )
    alone = animate_all(b)
    # the head drift of the second utterance continues from the first, unlike a fresh stream
    yaw, head = SCALAR_CHANNELS["head_yaw"], CHANNELS["rotation"]
    assert not np.allclose(second[:, yaw], alone[:, yaw])
    step = np.abs(second[0, head] - first[-1, head]).max()
    assert step < 0.02
