"""The pyramid of long series: the compiled core against its numpy twin, levels and windows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from avatar_nb import _pyramid, _reference
from avatar_nb.pyramid import SeriesPyramid

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
maybe_nan = st.one_of(finite, st.just(float("nan")))


def same(a, b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(0, 300), st.integers(1, 4)), elements=maybe_nan),
    st.integers(1, 40),
)
def test_bucket_minmax_matches_numpy(values, bucket):
    lo, hi = _pyramid.bucket_minmax(values, bucket)
    ref_lo, ref_hi = _reference.bucket_minmax(values, bucket)
    same(lo, ref_lo)
    same(hi, ref_hi)
    # 1-D input gives 1-D output, column by column the same
    lo1, hi1 = _pyramid.bucket_minmax(values[:, 0].copy(), bucket)
    same(lo1, lo[:, 0])
    same(hi1, hi[:, 0])


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.int16, st.integers(0, 500)), st.integers(1, 64))
def test_bucket_minmax_scales_int16_audio(samples, bucket):
    lo, hi = _pyramid.bucket_minmax(samples, bucket)
    ref_lo, ref_hi = _reference.bucket_minmax(samples, bucket)
    same(lo, ref_lo)
    same(hi, ref_hi)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 700), elements=maybe_nan), st.integers(1, 8))
def test_every_level_is_the_minmax_of_its_buckets(values, base_log):
    base = 1 << (base_log - 1)
    pyramid = SeriesPyramid(values, 100.0, base=base)
    for level, (lo, hi) in enumerate(pyramid.levels):
        ref_lo, ref_hi = _reference.bucket_minmax(values, pyramid.bucket(level))
        same(lo, ref_lo)
        same(hi, ref_hi)
    if pyramid.levels:
        assert pyramid.levels[-1][0].shape[0] == 1


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(0, 300), st.integers(1, 3)), elements=finite),
    st.integers(1, 40),
)
def test_bucket_sum_matches_numpy_and_halves(values, bucket):
    sums = _pyramid.bucket_sum(values, bucket)
    np.testing.assert_allclose(sums, _reference.bucket_sum(values, bucket), rtol=1e-12, atol=1e-6)
    up = _pyramid.halve_sum(sums)
    np.testing.assert_allclose(up, _reference.bucket_sum(values, 2 * bucket), rtol=1e-12, atol=1e-6)
    counts = _pyramid.bucket_counts(values.shape[0], bucket)
    assert counts.sum() == values.shape[0] and counts.shape[0] == sums.shape[0]


def test_windows_answer_from_about_one_bucket_per_pixel():
    rate = 16000
    audio = (np.sin(np.arange(rate * 600) / 7.0) * 20000).astype(np.int16)  # 10 minutes
    pyramid = SeriesPyramid(audio, rate, base=32)
    for t0, t1 in [(0.0, 600.0), (100.0, 160.0), (300.0, 301.0), (12.0, 12.1), (599.99, 600.0)]:
        for pixels in (200, 1000, 1920):
            view = pyramid.window(t0, t1, pixels)
            # at most about 2 values per pixel: a sample each (raw), or a min and a max per bucket
            values = view.mins.shape[0] * (1 if view.level < 0 else 2)
            assert values <= 2 * pixels + 4, (t0, t1, pixels, view.level)
            # exact: each bucket is the min/max of its samples
            size = view.bucket
            first = round((view.times[0] - pyramid.start) * rate / size) if view.times.size else 0
            for k in (0, view.mins.shape[0] // 2, view.mins.shape[0] - 1):
                part = audio[(first + k) * size : (first + k + 1) * size].astype(np.float32) / 32768
                assert view.mins[k] == part.min() and view.maxs[k] == part.max()
            # the window is covered
            assert view.times[0] <= t0 + 1e-9
            assert view.times[-1] + size / rate >= min(t1, pyramid.duration) - 1e-9


def test_pyramid_memory_is_under_half_the_series():
    keyframes = np.random.default_rng(0).normal(size=(90_000, 83))
    audio = np.zeros(16000 * 3600 // 10, dtype=np.int16)
    assert SeriesPyramid(keyframes, 25.0).nbytes < keyframes.nbytes / 2
    assert SeriesPyramid(audio, 16000, base=32).nbytes < audio.nbytes / 2


def test_bad_input_says_what_is_accepted():
    with pytest.raises(ValueError, match="bucket must be a positive"):
        _pyramid.bucket_minmax(np.zeros(4), 0)
    with pytest.raises(TypeError, match="int16, float32 or float64"):
        _pyramid.bucket_minmax(np.zeros(4, dtype=np.int64), 2)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        _pyramid.bucket_minmax(np.zeros((2, 2, 2)), 2)
    with pytest.raises(ValueError, match="base must be a power of two"):
        SeriesPyramid(np.zeros(10), 25.0, base=3)
    with pytest.raises(ValueError, match="finite t0 <= t1"):
        SeriesPyramid(np.zeros(100), 25.0).window(2.0, 1.0, 10)
