# cython: language_level=3
"""avatar_nb's compiled core, views of long runs: min/max (and sum) pyramids over time.

A pyramid summarises a series sampled at a fixed rate (audio, or one value per keyframe)
at power-of-two bucket sizes, so that a view of any window at any width is answered from
the level whose buckets come nearest to one per pixel, reading about two values per pixel
whatever the length of the run. Level 0 reduces the raw series in buckets of ``bucket``
samples (one pass); each further level halves the one below it (pairs of buckets).

Every function takes a 1-D series or a 2-D ``(n, columns)`` array (one series per column,
all sharing one time axis) and returns float32 (min/max) or float64 (sums) arrays of
``(buckets,)`` or ``(buckets, columns)``. Bucket ``i`` of a level covers samples
``[i * size, min((i + 1) * size, n))``: the last bucket may be partial. NaN values are
left out of a bucket's min and max (a bucket with nothing but NaN is NaN), so a lateness
series with gaps still draws; sums propagate NaN. Time is linear in the input, memory is
the output alone, and no GIL is held in the loops. The pure numpy twins are in
``avatar_nb._reference`` (the tests' oracle).
"""

from libc.math cimport NAN, isnan
from libc.stdint cimport int16_t

import numpy as np

cimport cython
cimport numpy as cnp

cnp.import_array()

ctypedef fused series_t:
    float
    double
    int16_t

_ACCEPTED = "a 1-D or 2-D (n, columns) array of int16, float32 or float64"


cdef object _as_2d(object values, str what):
    arr = np.asarray(values)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    elif arr.ndim != 2:
        raise ValueError(f"{what} takes {_ACCEPTED}, got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64, np.int16):
        raise TypeError(f"{what} takes {_ACCEPTED}, got dtype {arr.dtype}")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return np.ascontiguousarray(arr)


cdef Py_ssize_t _check_bucket(Py_ssize_t bucket) except -1:
    if bucket <= 0:
        raise ValueError(f"bucket must be a positive number of samples, got {bucket}")
    return bucket


cdef void _minmax(const series_t[:, ::1] x, Py_ssize_t bucket, double scale,
                  float[:, ::1] lo, float[:, ::1] hi) noexcept nogil:
    cdef Py_ssize_t n = x.shape[0], cols = x.shape[1], nb = lo.shape[0]
    cdef Py_ssize_t b, i, c, start, stop
    cdef double v
    for b in range(nb):
        start = b * bucket
        stop = start + bucket
        if stop > n:
            stop = n
        for c in range(cols):
            lo[b, c] = NAN
            hi[b, c] = NAN
        for i in range(start, stop):
            for c in range(cols):
                v = <double>x[i, c] * scale
                if isnan(v):
                    continue
                if isnan(lo[b, c]) or v < lo[b, c]:
                    lo[b, c] = <float>v
                if isnan(hi[b, c]) or v > hi[b, c]:
                    hi[b, c] = <float>v


cdef void _minmax_i16(const int16_t[:, ::1] x, Py_ssize_t bucket, float[:, ::1] lo, float[:, ::1] hi) noexcept nogil:
    # audio: integers have no NaN, so each bucket is a plain integer min/max, scaled once
    cdef Py_ssize_t n = x.shape[0], cols = x.shape[1], nb = lo.shape[0]
    cdef Py_ssize_t b, i, c, start, stop
    cdef int16_t v, mn, mx
    for c in range(cols):
        for b in range(nb):
            start = b * bucket
            stop = start + bucket
            if stop > n:
                stop = n
            mn = x[start, c]
            mx = mn
            for i in range(start + 1, stop):
                v = x[i, c]
                if v < mn:
                    mn = v
                if v > mx:
                    mx = v
            lo[b, c] = <float>(mn / 32768.0)
            hi[b, c] = <float>(mx / 32768.0)


def _fill_minmax(const series_t[:, ::1] x, Py_ssize_t bucket, float[:, ::1] lo, float[:, ::1] hi):
    # one kernel per input type, chosen by Cython's fused-type dispatch from the array's dtype
    with nogil:
        if series_t is int16_t:
            _minmax_i16(x, bucket, lo, hi)
        else:
            _minmax(x, bucket, 1.0, lo, hi)


def bucket_minmax(values, Py_ssize_t bucket):
    """Min and max of each ``bucket`` samples of ``values``: the pyramid's level 0.

    ``values``: 1-D or 2-D ``(n, columns)`` int16 (scaled to [-1, 1): divided by 32768),
    float32 or float64. Returns two float32 arrays of ``ceil(n / bucket)`` buckets (with the
    input's columns when it is 2-D); NaN is left out, an all-NaN bucket is NaN.
    """
    _check_bucket(bucket)
    one_d = np.ndim(values) == 1
    x = _as_2d(values, "bucket_minmax()")
    cdef Py_ssize_t n = x.shape[0], cols = x.shape[1]
    cdef Py_ssize_t nb = (n + bucket - 1) // bucket
    mins = np.empty((nb, cols), dtype=np.float32)
    maxs = np.empty((nb, cols), dtype=np.float32)
    if nb:
        _fill_minmax(x, bucket, mins, maxs)
    if one_d:
        return mins[:, 0], maxs[:, 0]
    return mins, maxs


cdef inline float _nanmin(float a, float b) noexcept nogil:
    if isnan(a):
        return b
    if isnan(b) or a <= b:
        return a
    return b


cdef inline float _nanmax(float a, float b) noexcept nogil:
    if isnan(a):
        return b
    if isnan(b) or a >= b:
        return a
    return b


def halve_minmax(mins, maxs):
    """The next level up: min and max of each pair of buckets (an odd last bucket alone).

    ``mins`` and ``maxs``: float32 arrays of the same 1-D or 2-D shape, as
    :func:`bucket_minmax` returns them. Returns ``ceil(buckets / 2)`` buckets.
    """
    one_d = np.ndim(mins) == 1
    a = np.ascontiguousarray(np.asarray(mins, dtype=np.float32))
    b = np.ascontiguousarray(np.asarray(maxs, dtype=np.float32))
    if a.shape != b.shape or a.ndim not in (1, 2):
        raise ValueError(f"halve_minmax() takes mins and maxs of one 1-D or 2-D shape, got {a.shape} and {b.shape}")
    if one_d:
        a = a.reshape(-1, 1)
        b = b.reshape(-1, 1)
    cdef const float[:, ::1] lo_in = a
    cdef const float[:, ::1] hi_in = b
    cdef Py_ssize_t n = a.shape[0], cols = a.shape[1]
    cdef Py_ssize_t nb = (n + 1) // 2
    out_lo = np.empty((nb, cols), dtype=np.float32)
    out_hi = np.empty((nb, cols), dtype=np.float32)
    cdef float[:, ::1] lo = out_lo
    cdef float[:, ::1] hi = out_hi
    cdef Py_ssize_t i, c, j
    with nogil:
        for i in range(nb):
            j = 2 * i
            for c in range(cols):
                if j + 1 < n:
                    lo[i, c] = _nanmin(lo_in[j, c], lo_in[j + 1, c])
                    hi[i, c] = _nanmax(hi_in[j, c], hi_in[j + 1, c])
                else:
                    lo[i, c] = lo_in[j, c]
                    hi[i, c] = hi_in[j, c]
    if one_d:
        return out_lo[:, 0], out_hi[:, 0]
    return out_lo, out_hi


cdef void _sums(const series_t[:, ::1] x, Py_ssize_t bucket, double scale, double[:, ::1] out) noexcept nogil:
    cdef Py_ssize_t n = x.shape[0], cols = x.shape[1], nb = out.shape[0]
    cdef Py_ssize_t b, i, c, start, stop
    for b in range(nb):
        start = b * bucket
        stop = start + bucket
        if stop > n:
            stop = n
        for c in range(cols):
            out[b, c] = 0.0
        for i in range(start, stop):
            for c in range(cols):
                out[b, c] += <double>x[i, c] * scale


def _fill_sums(const series_t[:, ::1] x, Py_ssize_t bucket, double[:, ::1] out):
    # int16 audio is summed scaled to [-1, 1), as bucket_minmax scales it
    with nogil:
        if series_t is int16_t:
            _sums(x, bucket, 1.0 / 32768.0, out)
        else:
            _sums(x, bucket, 1.0, out)


def bucket_sum(values, Py_ssize_t bucket):
    """Sum of each ``bucket`` samples of ``values`` (float64; NaN propagates): level 0 of
    a mean pyramid, as the expression heatmap uses. Same input and buckets as
    :func:`bucket_minmax`; divide by :func:`bucket_counts` for means."""
    _check_bucket(bucket)
    one_d = np.ndim(values) == 1
    x = _as_2d(values, "bucket_sum()")
    cdef Py_ssize_t n = x.shape[0], cols = x.shape[1]
    cdef Py_ssize_t nb = (n + bucket - 1) // bucket
    sums = np.empty((nb, cols), dtype=np.float64)
    if nb:
        _fill_sums(x, bucket, sums)
    return sums[:, 0] if one_d else sums


def halve_sum(sums):
    """The next level of a sum pyramid: each pair of buckets added (an odd last one alone)."""
    one_d = np.ndim(sums) == 1
    a = np.ascontiguousarray(np.asarray(sums, dtype=np.float64))
    if a.ndim not in (1, 2):
        raise ValueError(f"halve_sum() takes a 1-D or 2-D array, got shape {a.shape}")
    if one_d:
        a = a.reshape(-1, 1)
    cdef const double[:, ::1] s = a
    cdef Py_ssize_t n = a.shape[0], cols = a.shape[1]
    cdef Py_ssize_t nb = (n + 1) // 2
    result = np.empty((nb, cols), dtype=np.float64)
    cdef double[:, ::1] out = result
    cdef Py_ssize_t i, c, j
    with nogil:
        for i in range(nb):
            j = 2 * i
            for c in range(cols):
                out[i, c] = s[j, c] + s[j + 1, c] if j + 1 < n else s[j, c]
    return result[:, 0] if one_d else result


def bucket_counts(Py_ssize_t n, Py_ssize_t size):
    """How many samples each bucket of ``size`` holds in a series of ``n`` (the last may be partial)."""
    _check_bucket(size)
    if n < 0:
        raise ValueError(f"n must be a non-negative number of samples, got {n}")
    nb = (n + size - 1) // size
    counts = np.full(nb, size, dtype=np.int64)
    if nb and n % size:
        counts[nb - 1] = n % size
    return counts
