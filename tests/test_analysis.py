"""analysis: the audio-to-motion offset and per-condition statistics with bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from avatar_nb import Timeline, _pcm
from avatar_nb.analysis import AVOffset, av_offset, summarize
from avatar_nb.audio import speech_like
from avatar_nb.flame import SCALAR_CHANNELS
from avatar_nb.server.animator import Animator

RATE = 16000
FPS = 25.0
JAW = SCALAR_CHANNELS["jaw_open"]


def shifted_timeline(offset_frames: int, *, seed: int = 3, seconds: float = 6.0) -> Timeline:
    """The local service's animation of speech, with the jaw moved ``offset_frames`` late (+) or early (-)."""
    pcm = _pcm.to_s16le(speech_like(seconds, RATE, seed=seed))
    animator = Animator(RATE, FPS)
    keyframes = np.concatenate([animator.feed(pcm), animator.finish()])
    jaw = np.roll(keyframes[:, JAW], offset_frames)
    if offset_frames > 0:
        jaw[:offset_frames] = keyframes[0, JAW]
    elif offset_frames < 0:
        jaw[offset_frames:] = keyframes[-1, JAW]
    keyframes[:, JAW] = jaw
    tl = Timeline(FPS, sample_rate=RATE, audio=np.frombuffer(pcm, "<i2"))
    tl.add_audio_chunk("r", 0.0, len(pcm) // 2)
    tl.add_animation(keyframes, req_id="r", arrival=0.1, end=True)
    return tl


@pytest.mark.parametrize("offset_ms", [-80, 0, 40, 120])
@pytest.mark.parametrize("seed", [1, 3])
def test_av_offset_recovers_a_shift_of_the_jaw(offset_ms, seed):
    result = av_offset(shifted_timeline(int(offset_ms / 40), seed=seed))
    assert isinstance(result, AVOffset)
    assert abs(result.lag - offset_ms / 1000) < 0.010, result
    assert result.confidence > 0.7
    assert result.lags.shape == result.correlation.shape
    # the peak of the curve is where the lag says, to within one step of the curve
    assert abs(result.lags[np.nanargmax(result.correlation)] - result.lag) <= result.resolution
    assert ("lags" if offset_ms >= 0 else "leads") in repr(result)


def loudness_timeline(*, seed: int) -> Timeline:
    """Speech whose jaw is each frame's loudness itself: a mouth with no lag of its own."""
    audio = speech_like(6.0, RATE, seed=seed)
    pcm = _pcm.to_s16le(audio)
    samples = np.frombuffer(pcm, "<i2")
    rms = _pcm.frame_features(samples, RATE, FPS)["rms"].astype(np.float64)
    keyframes = np.zeros((rms.shape[0], Animator(RATE, FPS).width))
    keyframes[:, JAW] = np.clip((20 * np.log10(rms + 1e-6) + 50) / 38, 0, 1)
    tl = Timeline(FPS, sample_rate=RATE, audio=samples)
    tl.add_audio_chunk("r", 0.0, samples.shape[0])
    tl.add_animation(keyframes, req_id="r", arrival=0.1, end=True)
    return tl


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_av_offset_has_no_bias_of_its_own(seed):
    # a jaw that follows loudness with no smoothing reads 0, to a fraction of a millisecond
    assert abs(av_offset(loudness_timeline(seed=seed)).lag) < 0.0015


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_local_animator_mouth_lags_by_its_smoothing(seed):
    # the local animator smooths loudness as a jaw moves (fast attack, slower release),
    # which puts its mouth a few milliseconds behind the sound at av_offset_ms=0: the
    # figure the README and notebook 05 state ("about 5 ms")
    lag = av_offset(shifted_timeline(0, seed=seed, seconds=12.0)).lag
    assert 0.002 < lag < 0.009, lag


@pytest.mark.parametrize("delay_ms", [5, 15, 25])
def test_av_offset_resolves_shifts_finer_than_a_frame(delay_ms):
    # the recorded audio delayed by a fraction of a frame: the mouth now leads it by that much
    base = shifted_timeline(0)
    delay = int(RATE * delay_ms / 1000)
    audio = np.concatenate([np.zeros(delay, np.int16), base.audio[:-delay]])
    delayed = Timeline(FPS, sample_rate=RATE, audio=audio)
    delayed.add_audio_chunk("r", 0.0, audio.shape[0])
    delayed.add_animation(np.asarray(base.keyframes), req_id="r", arrival=0.1, end=True)
    change = av_offset(delayed, resolution=0.0005).lag - av_offset(base, resolution=0.0005).lag
    assert change == pytest.approx(-delay_ms / 1000, abs=0.003)


def test_av_offset_of_motion_unrelated_to_sound_has_low_confidence():
    tl = shifted_timeline(0)
    rng = np.random.default_rng(0)
    noise = Timeline(FPS, sample_rate=RATE, audio=tl.audio)
    keyframes = np.asarray(tl.keyframes).copy()
    keyframes[:, JAW] = rng.random(keyframes.shape[0])
    noise.add_audio_chunk("r", 0.0, tl.audio.shape[0])
    noise.add_animation(keyframes, req_id="r", arrival=0.1, end=True)
    assert av_offset(noise).confidence < 0.4


def test_av_offset_says_what_is_missing():
    tl = shifted_timeline(0)
    no_audio = Timeline(FPS)
    no_audio.add_animation(np.asarray(tl.keyframes), req_id="r", arrival=0.1, end=True)
    with pytest.raises(ValueError, match="audio"):
        av_offset(no_audio)
    with pytest.raises(ValueError, match="max_lag"):
        av_offset(tl, max_lag=-1)
    with pytest.raises(ValueError, match="channel"):
        av_offset(tl, channel="nose")


def runs_table() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for chunk in (20, 40):
        for rate in (16000, 24000):
            for repeat in range(6):
                rows.append(
                    {
                        "chunk_ms": chunk,
                        "sample_rate": rate,
                        "repeat": repeat,
                        "status": "ok",
                        "latency_p99": 0.08 + chunk / 1000 + rng.normal(0, 0.002),
                    }
                )
    rows.append(
        {"chunk_ms": 20, "sample_rate": 16000, "repeat": 9, "status": "failed", "latency_p99": 9.9}
    )
    return pd.DataFrame(rows)


def test_summarize_per_condition():
    runs = runs_table()
    table = summarize(runs, by=["chunk_ms", "sample_rate"], value="latency_p99", seed=1)
    assert len(table) == 4 and set(table["n"]) == {6}  # the failed run is left out
    for _, row in table.iterrows():
        group = runs[
            (runs.chunk_ms == row.chunk_ms)
            & (runs.sample_rate == row.sample_rate)
            & (runs.status == "ok")
        ]
        assert row["mean"] == pytest.approx(group.latency_p99.mean())
        assert row["p50"] == pytest.approx(group.latency_p99.median())
        assert row["ci_low"] < row["mean"] < row["ci_high"]
        assert row["ci_high"] - row["ci_low"] < 4 * row["std"]
    # seeded: the same table and seed give the same interval; another seed another
    again = summarize(runs, by=["chunk_ms", "sample_rate"], value="latency_p99", seed=1)
    pd.testing.assert_frame_equal(table, again)
    other = summarize(runs, by=["chunk_ms", "sample_rate"], value="latency_p99", seed=2)
    assert not np.allclose(table["ci_low"], other["ci_low"])
    with_failed = summarize(runs, by="chunk_ms", value="latency_p99", only_ok=False)
    assert with_failed.loc[with_failed.chunk_ms == 20, "n"].item() == 13


def test_summarize_bootstrap_interval_covers_the_true_mean():
    # 200 conditions of 20 normal draws: a 95% interval misses the true mean about 5% of the time
    rng = np.random.default_rng(11)
    runs = pd.DataFrame({"cond": np.repeat(np.arange(200), 20), "x": rng.normal(1.0, 0.5, 4000)})
    table = summarize(runs, by="cond", value="x", n_boot=1000, seed=0)
    missed = ((table.ci_low > 1.0) | (table.ci_high < 1.0)).mean()
    assert 0.01 <= missed <= 0.12


def test_summarize_several_values_and_bad_input():
    runs = runs_table().assign(jitter=0.001)
    table = summarize(runs, by="chunk_ms", value=["latency_p99", "jitter"])
    assert list(table["value"]) == ["latency_p99", "jitter", "latency_p99", "jitter"]
    assert math.isnan(table.loc[table.value == "jitter", "std"].iloc[0]) is False
    with pytest.raises(KeyError, match="nope"):
        summarize(runs, by="nope", value="jitter")
    with pytest.raises(ValueError, match="ci"):
        summarize(runs, by="chunk_ms", value="jitter", ci=95)
