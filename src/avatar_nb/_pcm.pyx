# cython: language_level=3
"""avatar_nb's compiled core, audio side: PCM conversion, waveform envelopes, per-frame features.

Every function here has a slow pure-Python twin in ``avatar_nb._reference`` that the
tests use as the oracle. The wire side of the core is in ``_wire`` (the ``Message``
envelope) and ``_flame`` (the FLAME animation payload).

Reading untrusted bytes: the only bytes read here are s16le PCM, taken through a
byte view (``as_bytes_view`` in ``_reader.pxd``) whose length is checked before any
sample is read; ``ValueError`` or ``TypeError`` name what was wrong and what is
accepted.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.math cimport ceil, fabs, floor, isfinite, signbit, sqrt
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t

import numpy as np

cimport cython
cimport numpy as cnp

from avatar_nb._reader cimport as_bytes_view


cnp.import_array()

cdef extern from "_kernels.h" nogil:
    int AVNB_BAD
    int AVNB_OUT_OF_RANGE
    int avnb_f32_to_s16(const float* x, Py_ssize_t n, int16_t* out)
    int avnb_f64_to_s16(const double* x, Py_ssize_t n, int16_t* out)
    int avnb_minmax_f32(const float* x, Py_ssize_t n, Py_ssize_t bins, float* mins, float* maxs)
    int avnb_minmax_f64(const double* x, Py_ssize_t n, Py_ssize_t bins, float* mins, float* maxs)
    void avnb_minmax_i16(const int16_t* x, Py_ssize_t n, Py_ssize_t bins, float* mins, float* maxs)

# ----------------------------------------------------------------------------- PCM
#
# Sample conversion runs in C loops specialised per dtype (fused types), without the
# GIL and without temporary arrays: one pass over the input writes the output bytes.
# Full scale is 32768 for every dtype, so that from_s16le() followed by to_s16le()
# gives the same bytes back. Floats are rounded to nearest (half away from zero) and
# clipped to [-1, 1] first; integers are scaled exactly with integer arithmetic and
# rounded down (floor), which keeps int16 bit-exact and shifts int32 right by 16.

ctypedef fused sample_t:
    float
    double
    int16_t
    int32_t
    uint8_t

_ACCEPTED = "float32 or float64 in [-1, 1], int16, int32 or uint8 (offset binary)"

cdef enum:
    CONVERT_OK = 0
    CONVERT_NOT_FINITE = 1
    CONVERT_OUT_OF_RANGE = 2


@cython.cdivision(True)  # C division (truncating) here, whatever the build's directives
cdef inline int64_t _floordiv(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline int16_t _round_float(double v) noexcept nogil:
    # v is within [-1, 1]: v * 32768 is within [-32768, 32768]
    cdef double x = v * 32768.0
    cdef int64_t q = <int64_t>(x + 0.5) if x >= 0 else -<int64_t>(0.5 - x)
    if q > 32767:
        q = 32767
    return <int16_t>q


cdef int _convert(const sample_t[:, :] x, char* out, bint clip, Py_ssize_t* bad_index,
                  Py_ssize_t* bad_channel, double* bad_value) noexcept nogil:
    """Downmix (frames, channels) to s16le bytes in ``out``; report the first bad sample."""
    cdef Py_ssize_t n = x.shape[0], ch = x.shape[1], i, c
    cdef double acc, v
    cdef int64_t iacc
    cdef int16_t q
    for i in range(n):
        if sample_t is float or sample_t is double:
            acc = 0.0
            for c in range(ch):
                v = x[i, c]
                if not isfinite(v):
                    bad_index[0], bad_channel[0], bad_value[0] = i, c, v
                    return CONVERT_NOT_FINITE
                if v > 1.0 or v < -1.0:
                    if not clip:
                        bad_index[0], bad_channel[0], bad_value[0] = i, c, v
                        return CONVERT_OUT_OF_RANGE
                    v = 1.0 if v > 0 else -1.0
                acc += v
            q = _round_float(acc / ch if ch > 1 else acc)
        else:
            iacc = 0
            for c in range(ch):
                iacc += x[i, c]
            if sample_t is int16_t:
                q = <int16_t>_floordiv(iacc, ch) if ch > 1 else <int16_t>iacc
            elif sample_t is int32_t:
                q = <int16_t>_floordiv(iacc, ch * 65536)
            else:
                q = <int16_t>_floordiv((iacc - 128 * ch) * 256, ch)
        out[2 * i] = <char>(q & 0xFF)
        out[2 * i + 1] = <char>((q >> 8) & 0xFF)
    return CONVERT_OK


cdef int _convert_mono(const sample_t* x, Py_ssize_t n, char* out, bint clip, Py_ssize_t* bad_index,
                       double* bad_value) noexcept nogil:
    """The common case, contiguous mono: the same arithmetic as :func:`_convert`."""
    cdef Py_ssize_t i
    cdef double v
    cdef int16_t q
    for i in range(n):
        if sample_t is float or sample_t is double:
            v = x[i]
            if not isfinite(v):
                bad_index[0], bad_value[0] = i, v
                return CONVERT_NOT_FINITE
            if v > 1.0 or v < -1.0:
                if not clip:
                    bad_index[0], bad_value[0] = i, v
                    return CONVERT_OUT_OF_RANGE
                v = 1.0 if v > 0 else -1.0
            q = _round_float(v)
        elif sample_t is int16_t:
            q = x[i]
        elif sample_t is int32_t:
            q = <int16_t>(x[i] >> 16)  # arithmetic shift: floor
        else:
            q = <int16_t>((<int32_t>x[i] - 128) * 256)
        out[2 * i] = <char>(q & 0xFF)
        out[2 * i + 1] = <char>((q >> 8) & 0xFF)
    return CONVERT_OK


cdef bint _LITTLE_ENDIAN = np.little_endian


cdef int _vector_kernel(const sample_t* x, Py_ssize_t n, char* out) noexcept nogil:
    """The vectorised kernels of _kernels.h (floats, little-endian hosts); -1: none applies.

    They write native int16, which is s16le on a little-endian host only.
    """
    if not _LITTLE_ENDIAN:
        return -1
    if sample_t is float:
        return avnb_f32_to_s16(x, n, <int16_t*>out)
    elif sample_t is double:
        return avnb_f64_to_s16(x, n, <int16_t*>out)
    else:
        return -1


def _to_s16le_typed(const sample_t[:, :] x, bint clip, bint has_channels):
    """The body of :func:`to_s16le` for (frames, channels) samples of one accepted dtype.

    A fused function: Cython picks the specialisation from the array's dtype, so each
    dtype's loop is compiled once from this one source. ``has_channels``: the caller's
    array was 2-D (the error then names the channel).
    """
    cdef Py_ssize_t n = x.shape[0]
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n * 2)
    cdef char* dst = PyBytes_AS_STRING(out)
    cdef Py_ssize_t bad_index = -1, bad_channel = 0
    cdef double bad_value = 0.0
    cdef int status = CONVERT_OK, flags
    with nogil:
        if x.shape[1] == 1 and x.strides[0] == sizeof(sample_t):  # contiguous mono
            # the vectorised kernel converts everything; a scalar pass names a bad sample
            flags = _vector_kernel(&x[0, 0], n, dst)
            if flags < 0 or flags & AVNB_BAD or (flags & AVNB_OUT_OF_RANGE and not clip):
                status = _convert_mono(&x[0, 0], n, dst, clip, &bad_index, &bad_value)
        else:
            status = _convert(x, dst, clip, &bad_index, &bad_channel, &bad_value)
    if status == CONVERT_OK:
        return out
    where = f"sample {bad_index}" + (f" (channel {bad_channel})" if has_channels else "")
    if status == CONVERT_NOT_FINITE:
        raise ValueError(f"{where} is {bad_value}; NaN and infinity are not audio")
    raise ValueError(f"{where} is {bad_value:g}, outside [-1, 1]; pass clip=True to clip it")


_SAMPLE_TYPES = frozenset([cnp.NPY_FLOAT32, cnp.NPY_FLOAT64, cnp.NPY_INT16, cnp.NPY_INT32, cnp.NPY_UINT8])


cdef object _samples_array(object samples):
    """``samples`` as a numpy array of an accepted dtype in native byte order, 1-D or 2-D."""
    if isinstance(samples, (bytes, bytearray, memoryview, str)):
        raise TypeError(
            f"to_s16le() takes a numpy array of samples, got {type(samples).__name__}; "
            f"accepted dtypes: {_ACCEPTED}"
        )
    arr = np.asarray(samples)
    if cnp.PyArray_TYPE(arr) not in _SAMPLE_TYPES:
        if arr.dtype.kind not in "biufc":  # None, dicts, strings ...: not numbers at all
            raise TypeError(
                f"to_s16le() takes a numpy array (or a sequence) of samples, got {type(samples).__name__}; "
                f"accepted dtypes: {_ACCEPTED}"
            )
        raise TypeError(f"unsupported sample dtype {arr.dtype}; accepted: {_ACCEPTED}")
    if arr.ndim == 0:
        raise ValueError(
            f"to_s16le() takes an array of samples, got a single {type(samples).__name__} value; "
            "samples must be 1-D (mono) or 2-D (frames, channels)"
        )
    if arr.ndim > 2:
        raise ValueError(f"samples must be 1-D (mono) or 2-D (frames, channels), got shape {arr.shape}")
    if arr.ndim == 2 and arr.shape[1] == 0:
        raise ValueError(f"samples have no channels: shape {arr.shape}")
    if not arr.dtype.isnative:  # the loops read native values and write little-endian bytes
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def to_s16le(samples, *, bint clip=True):
    """Convert audio samples to mono 16-bit little-endian PCM bytes.

    Accepts a 1-D array (mono) or a 2-D array of shape (frames, channels), which is
    downmixed by averaging the channels, of dtype float32/float64 (full scale [-1, 1]),
    int16, int32 (full scale 2**31) or uint8 (offset binary, 128 = silence). Floats
    outside [-1, 1] are clipped, or rejected with ``ValueError`` when ``clip=False``;
    NaN and infinity are always rejected, naming the first bad index. Anything else
    (another dtype or shape, ``None``, bytes) is a ``TypeError``/``ValueError`` naming
    what was given and what is accepted.
    """
    arr = _samples_array(samples)
    if arr.shape[0] == 0:
        return b""
    return _to_s16le_typed(arr.reshape(-1, 1) if arr.ndim == 1 else arr, clip, arr.ndim == 2)


def from_s16le(data):
    """Decode s16le PCM bytes (any bytes-like object) into float32 samples in [-1, 1)."""
    cdef const uint8_t[::1] mv = as_bytes_view(data)
    cdef Py_ssize_t n_bytes = mv.shape[0], i, n
    if n_bytes % 2:
        raise ValueError(f"s16le PCM must have an even number of bytes, got {n_bytes}")
    n = n_bytes // 2
    out = np.empty(n, dtype=np.float32)
    if n == 0:
        return out
    cdef float* dst = <float*>cnp.PyArray_DATA(out)
    cdef const uint8_t* src = &mv[0]
    with nogil:
        for i in range(n):
            dst[i] = <int16_t>(src[2 * i] | (src[2 * i + 1] << 8)) * (1.0 / 32768.0)
    return out


ctypedef fused envelope_t:
    float
    double
    int16_t


cdef object _mono_samples(object samples, str what):
    """A contiguous 1-D float32, float64 or int16 array for the feature functions."""
    if isinstance(samples, (bytes, bytearray, memoryview)):
        mv = as_bytes_view(samples)
        if mv.shape[0] % 2:
            raise ValueError(f"s16le PCM must have an even number of bytes, got {mv.shape[0]}")
        return np.frombuffer(mv, dtype="<i2")
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise ValueError(f"{what} takes 1-D samples or s16le bytes, got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64, np.int16):
        raise TypeError(f"unsupported sample dtype {arr.dtype}; accepted: s16le bytes, int16, float32, float64")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return np.ascontiguousarray(arr)


def peak_envelope(samples, Py_ssize_t n_bins):
    """Min and max of each of ``n_bins`` equal spans of ``samples`` (for waveform drawing).

    ``samples``: 1-D int16, float32 or float64, or s16le bytes. Bin ``i`` covers samples
    ``[i * n // n_bins, (i + 1) * n // n_bins)``; when there are fewer samples than bins,
    there is one bin per sample. int16 values are scaled to [-1, 1) (divided by 32768);
    floats are used as they are (NaN is a ``ValueError``). Returns two float32 arrays;
    one vectorised pass, no GIL held.
    """
    if n_bins <= 0:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    x = _mono_samples(samples, "peak_envelope()")
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t bins = min(n_bins, n)
    mins = np.empty(bins, dtype=np.float32)
    maxs = np.empty(bins, dtype=np.float32)
    if bins == 0:
        return mins, maxs
    cdef float* lo = <float*>cnp.PyArray_DATA(mins)
    cdef float* hi = <float*>cnp.PyArray_DATA(maxs)
    cdef const float[::1] f32
    cdef const double[::1] f64
    cdef const int16_t[::1] i16
    cdef int nan = 0
    if x.dtype == np.float32:
        f32 = x
        with nogil:
            nan = avnb_minmax_f32(&f32[0], n, bins, lo, hi)
    elif x.dtype == np.float64:
        f64 = x
        with nogil:
            nan = avnb_minmax_f64(&f64[0], n, bins, lo, hi)
    else:
        i16 = x
        with nogil:
            avnb_minmax_i16(&i16[0], n, bins, lo, hi)
    if nan:
        first = int(np.flatnonzero(np.isnan(x))[0])
        raise ValueError(f"sample {first} is nan; NaN is not audio")
    return mins, maxs


cdef void _features(const envelope_t[::1] x, double scale, double sample_rate, double fps, Py_ssize_t n_frames,
                    float* rms, float* peak, float* zcr, float* bright) noexcept nogil:
    cdef Py_ssize_t n = x.shape[0], k, i, a, b, length
    cdef double v, prev, sq, dsq, pk, r, crossings
    for k in range(n_frames):
        # k * sample_rate is exact in a double, so this is the same boundary as Python's
        # math.floor(k * sample_rate / fps)
        a = <Py_ssize_t>floor(<double>k * sample_rate / fps)
        b = <Py_ssize_t>floor(<double>(k + 1) * sample_rate / fps)
        if b > n:
            b = n
        length = b - a
        rms[k] = peak[k] = zcr[k] = bright[k] = 0.0
        if length <= 0:
            continue
        sq = 0.0
        dsq = 0.0
        pk = 0.0
        crossings = 0.0
        prev = x[a] * scale
        for i in range(a, b):
            v = x[i] * scale
            sq += v * v
            if fabs(v) > pk:
                pk = fabs(v)
            if i > a:
                dsq += (v - prev) * (v - prev)
                if signbit(v) != signbit(prev):
                    crossings += 1.0
            prev = v
        r = sqrt(sq / length)
        rms[k] = <float>r
        peak[k] = <float>pk
        if length > 1:
            zcr[k] = <float>(crossings / length)
            bright[k] = <float>(sqrt(dsq / (length - 1)) / r) if r > 1e-9 else 0.0


def frame_count(Py_ssize_t n_samples, int sample_rate, double fps):
    """How many video frames ``n_samples`` of audio make (the last, partial one included)."""
    if n_samples <= 0:
        return 0
    return int(ceil(<double>n_samples * fps / sample_rate - 1e-9))


def frame_features(pcm_or_samples, int sample_rate, double fps):
    """Per-video-frame audio features: the animator's and the waveform views' input.

    ``pcm_or_samples``: s16le bytes, or 1-D int16 / float32 / float64 samples. Frame
    ``k`` covers samples ``[floor(k * sr / fps), floor((k + 1) * sr / fps))``; the last,
    partial frame is included, so there are :func:`frame_count` frames. Returns float32
    arrays keyed ``rms`` (root mean square), ``peak`` (max ``|x|``), ``zcr`` (sign changes
    per sample) and ``brightness`` (RMS of the first difference over RMS: a cheap
    measure of spectral tilt, about 0 for low tones and up to 2 for noise). One pass over
    the samples, no GIL held.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not (fps > 0 and isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    x = _mono_samples(pcm_or_samples, "frame_features()")
    cdef Py_ssize_t n_frames = frame_count(x.shape[0], sample_rate, fps)
    rms = np.zeros(n_frames, dtype=np.float32)
    peak = np.zeros(n_frames, dtype=np.float32)
    zcr = np.zeros(n_frames, dtype=np.float32)
    bright = np.zeros(n_frames, dtype=np.float32)
    result = {"rms": rms, "peak": peak, "zcr": zcr, "brightness": bright}
    if n_frames == 0:
        return result
    cdef float* p_rms = <float*>cnp.PyArray_DATA(rms)
    cdef float* p_peak = <float*>cnp.PyArray_DATA(peak)
    cdef float* p_zcr = <float*>cnp.PyArray_DATA(zcr)
    cdef float* p_bright = <float*>cnp.PyArray_DATA(bright)
    cdef const float[::1] f32
    cdef const double[::1] f64
    cdef const int16_t[::1] i16
    if x.dtype == np.float32:
        f32 = x
        with nogil:
            _features(f32, 1.0, sample_rate, fps, n_frames, p_rms, p_peak, p_zcr, p_bright)
    elif x.dtype == np.float64:
        f64 = x
        with nogil:
            _features(f64, 1.0, sample_rate, fps, n_frames, p_rms, p_peak, p_zcr, p_bright)
    else:
        i16 = x
        with nogil:
            _features(i16, 1.0 / 32768.0, sample_rate, fps, n_frames, p_rms, p_peak, p_zcr, p_bright)
    return result
