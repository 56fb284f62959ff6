# cython: language_level=3
"""The FLAME animation payload: decoding (one payload, or the payloads of many envelopes) and encoding.

A ``FlameAnimation`` (docs/protocol.md, "The animation payload") decodes into a float32
array of shape (n, 20 + E), one row per keyframe, columns as ``avatar_nb.flame``
describes them; the compiled code takes the offsets from ``_flame_layout.pxd``.

Reading untrusted bytes: every read goes through ``_reader.pxd``, which checks bounds
before touching memory and raises ``ValueError`` naming the byte offset; the rules are
protobuf's, so a payload decodes here exactly when protobuf parses it (and its Flames
have the right lengths). Every function has a pure twin in ``avatar_nb._reference``.

A payload is decoded in two passes over its bytes: the first validates the structure
and counts keyframes and expression coefficients (so the output is allocated once, at
its final size), the second copies the floats. Fields with an unexpected wire type are
skipped as unknown fields, as protobuf does; the length checks then catch a Flame that
lost values that way.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport uint8_t, uint32_t
from libc.string cimport memcpy

import numpy as np

cimport numpy as cnp

from avatar_nb._envelope cimport Envelope, walk_envelope
from avatar_nb._flame_layout cimport *
from avatar_nb._reader cimport (
    WT_I32, WT_LEN, Reader, as_bytes_view, avnb_fail, fail, read_len, read_tag, reader_over, skip_field, sub_reader,
)
from avatar_nb._wire_numbers cimport DATA_SERVER_RESPONSE_ANIMATION
from avatar_nb._writer cimport len_field_size, put_len_field, put_len_header, tag_of, varint_size

from .flame import FIELDS as _FIELDS

cnp.import_array()

LAYOUT = tuple((field, FLAME_OFFSET[field], FLAME_WIDTH[field]) for field in range(1, FLAME_FIXED_FIELDS + 1))
"""(field number, first column, width) of the fixed-width Flame fields, as compiled in."""
LAYOUT_FIXED_COLUMNS = FIXED_COLUMNS
LAYOUT_EXPRESSION_FIELD = FLAME_EXPRESSION
LAYOUT_KEYFRAMES_FIELD = KEYFRAMES_FIELD

_FIELD_NAMES = {number: name for name, number, _ in _FIELDS}  # for error text only


# ----------------------------------------------------------------------------- decoding

cdef inline bint _is_float_field(uint32_t field) noexcept:
    return FLAME_TRANSLATION <= field <= FLAME_EXPRESSION


cdef int _flame_counts(Reader* r, Py_ssize_t* counts) except -1:
    """Count the floats of each field in one Flame message (``counts`` indexed by field number)."""
    cdef uint32_t field, wt
    cdef Py_ssize_t s = 0, n = 0
    cdef int i
    for i in range(FLAME_EXPRESSION + 1):
        counts[i] = 0
    while r.pos < r.end:
        read_tag(r, &field, &wt)
        if wt == WT_LEN and _is_float_field(field):
            read_len(r, &s, &n)
            if n % 4:
                r.pos = s
                return avnb_fail(r.base + r.pos, "packed float field %u has length %zd, not a multiple of 4",
                                 <unsigned int>field, n)
            counts[field] += n // 4
        elif wt == WT_I32 and _is_float_field(field):
            if r.end - r.pos < 4:
                return fail(r, "truncated float")
            r.pos += 4
            counts[field] += 1
        else:
            skip_field(r, field, wt)
    return 0


cdef int _check_counts(const Py_ssize_t* counts, Py_ssize_t frame, Py_ssize_t offset, Py_ssize_t* n_expr) except -1:
    cdef int field
    for field in range(FLAME_TRANSLATION, FLAME_FIXED_FIELDS + 1):
        if counts[field] != FLAME_WIDTH[field]:
            raise ValueError(
                f"keyframe {frame} at byte offset {offset}: field "
                f"{_FIELD_NAMES[field]} has {counts[field]} values, expected {FLAME_WIDTH[field]}"
            )
    if n_expr[0] < 0:
        n_expr[0] = counts[FLAME_EXPRESSION]
    elif counts[FLAME_EXPRESSION] != n_expr[0]:
        raise ValueError(
            f"keyframe {frame} at byte offset {offset} has {counts[FLAME_EXPRESSION]} expression "
            f"coefficients, earlier keyframes have {n_expr[0]}"
        )
    return 0


cdef int _scan_flames(Reader* r, Py_ssize_t* n_frames, Py_ssize_t* n_expr) except -1:
    """Pass 1 over a FlameAnimation: validate, count keyframes, check every E is ``n_expr``
    (``n_expr`` < 0 on entry: take the first keyframe's)."""
    cdef uint32_t field, wt
    cdef Py_ssize_t s = 0, n = 0
    cdef Py_ssize_t counts[FLAME_EXPRESSION + 1]
    cdef Reader sub
    n_frames[0] = 0
    while r.pos < r.end:
        read_tag(r, &field, &wt)
        if wt == WT_LEN and field == KEYFRAMES_FIELD:
            read_len(r, &s, &n)
            sub = sub_reader(r, s, n)
            _flame_counts(&sub, counts)
            _check_counts(counts, n_frames[0], r.base + s, n_expr)
            n_frames[0] += 1
        else:
            skip_field(r, field, wt)
    return 0


cdef int _flame_fill(Reader* r, float* row, Py_ssize_t width) except -1:
    """Copy the floats of one Flame message (validated by pass 1) into ``row``.

    The destination bounds are checked again here, so that the copy can never write
    outside ``row`` even if pass 1 and pass 2 disagreed.
    """
    cdef uint32_t field, wt
    cdef Py_ssize_t s = 0, n = 0, off, limit, k
    cdef Py_ssize_t filled[FLAME_EXPRESSION + 1]
    cdef int i
    for i in range(FLAME_EXPRESSION + 1):
        filled[i] = 0
    while r.pos < r.end:
        read_tag(r, &field, &wt)
        if (wt == WT_LEN or wt == WT_I32) and _is_float_field(field):
            if field == FLAME_EXPRESSION:
                off = FIXED_COLUMNS
                limit = width - FIXED_COLUMNS
            else:
                off = FLAME_OFFSET[field]
                limit = FLAME_WIDTH[field]
            if wt == WT_LEN:
                read_len(r, &s, &n)
                k = n // 4
                if filled[field] + k > limit:
                    return fail(r, "keyframe changed between passes")
                memcpy(row + off + filled[field], r.buf + s, k * 4)
            else:
                if r.end - r.pos < 4 or filled[field] + 1 > limit:
                    return fail(r, "truncated float")
                memcpy(row + off + filled[field], r.buf + r.pos, 4)
                r.pos += 4
                k = 1
            filled[field] += k
        else:
            skip_field(r, field, wt)
    return 0


cdef int _fill_flames(Reader* r, float* out, Py_ssize_t width, Py_ssize_t n_frames) except -1:
    """Pass 2 over a FlameAnimation: copy ``n_frames`` keyframes into rows of ``out``."""
    cdef uint32_t field, wt
    cdef Py_ssize_t s = 0, n = 0, k = 0
    cdef Reader sub
    while r.pos < r.end:
        read_tag(r, &field, &wt)
        if wt == WT_LEN and field == KEYFRAMES_FIELD:
            read_len(r, &s, &n)
            if k >= n_frames:
                return fail(r, "more keyframes than counted")
            sub = sub_reader(r, s, n)
            _flame_fill(&sub, out + k * width, width)
            k += 1
        else:
            skip_field(r, field, wt)
    return 0


cdef object decode_flame_payload(Reader* r):
    """Decode a FlameAnimation (the whole of ``r``) into an (n, 20 + E) float32 array."""
    cdef Py_ssize_t n_frames = 0, n_expr = -1
    cdef Py_ssize_t start = r.pos
    _scan_flames(r, &n_frames, &n_expr)
    if n_expr < 0:
        n_expr = 0
    out = np.zeros((n_frames, FIXED_COLUMNS + n_expr), dtype=np.float32)
    if n_frames:
        r.pos = start
        _fill_flames(r, <float*>cnp.PyArray_DATA(out), FIXED_COLUMNS + n_expr, n_frames)
    return out


cdef inline Reader _reader_of(const uint8_t[::1] mv) noexcept:
    return reader_over(&mv[0] if mv.shape[0] else <const uint8_t*>b"", mv.shape[0])


def decode_animation(payload):
    """Decode a serialized ``FlameAnimation`` into a float32 array of shape (n, 20 + E).

    Columns as in ``avatar_nb.flame``: translation (3), rotation (3), neck_pose (3),
    jaw_pose (3), eye_pose (6), eye_lid (2), expression (E). Packed and unpacked floats
    are both accepted; unknown fields (groups included) are skipped. Raises ``ValueError``
    (naming the byte offset) on bytes protobuf would not parse, a Flame field of the
    wrong length, or keyframes whose E differs.
    """
    cdef const uint8_t[::1] mv = as_bytes_view(payload)
    cdef Reader r = _reader_of(mv)
    return decode_flame_payload(&r)


cdef int _animation_span(Reader* r, Py_ssize_t* start, Py_ssize_t* length) except -1:
    """Walk an envelope as ``decode_message`` does; the span of its animation payload (start -1: none)."""
    cdef Envelope env
    env.on_capability = NULL  # validated, not kept
    env.ctx = NULL
    walk_envelope(r, &env)
    if env.data_field == DATA_SERVER_RESPONSE_ANIMATION:
        start[0] = env.animation.start
        length[0] = env.animation.length
    else:
        start[0] = -1
        length[0] = 0
    return 0


def decode_animation_batch(messages):
    """Decode the FLAME keyframes of many animation ``Message`` envelopes into one array.

    Returns float32 of shape (total keyframes, 20 + E), rows in message order. Messages
    without an animation payload contribute no rows. Every envelope is checked exactly
    as :func:`avatar_nb._wire.decode_message` checks it (the same walker; strings are
    validated, not decoded). Raises ``ValueError`` naming the message index and byte
    offset when an envelope or a payload is malformed, or when E differs between
    keyframes.

    Two passes, no Python object per message or keyframe: the first finds and validates
    every payload and counts keyframes, the output is allocated once, the second copies
    the floats.
    """
    cdef list items = messages if type(messages) is list else list(messages)
    cdef Py_ssize_t count = len(items), i, n_frames, total = 0, n_expr = -1, width
    cdef Py_ssize_t payload_start, payload_len
    cdef const uint8_t** bufs = NULL
    cdef Py_ssize_t* spans = NULL
    cdef list views = []
    cdef const uint8_t[::1] mv
    cdef Reader r, sub
    cdef object obj
    cdef float* out_ptr
    if count == 0:
        return np.zeros((0, FIXED_COLUMNS), dtype=np.float32)
    bufs = <const uint8_t**>PyMem_Malloc(count * sizeof(const uint8_t*))
    spans = <Py_ssize_t*>PyMem_Malloc(count * 3 * sizeof(Py_ssize_t))
    if bufs == NULL or spans == NULL:
        PyMem_Free(bufs)
        PyMem_Free(spans)
        raise MemoryError()
    try:
        for i in range(count):
            obj = items[i]
            if type(obj) is bytes:
                r = reader_over(<const uint8_t*>PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj))
            else:
                mv = as_bytes_view(obj)
                views.append(mv)  # keeps the buffer alive for pass 2
                r = _reader_of(mv)
            bufs[i] = r.buf
            try:
                _animation_span(&r, &payload_start, &payload_len)
                n_frames = 0
                if payload_start >= 0:
                    sub = reader_over(r.buf + payload_start, payload_len)
                    sub.base = payload_start
                    _scan_flames(&sub, &n_frames, &n_expr)
            except ValueError as exc:
                raise ValueError(f"message {i}: {exc}") from None
            spans[3 * i] = payload_start
            spans[3 * i + 1] = payload_len
            spans[3 * i + 2] = n_frames
            total += n_frames
        if n_expr < 0:
            n_expr = 0
        width = FIXED_COLUMNS + n_expr
        out = np.empty((total, width), dtype=np.float32)
        out_ptr = <float*>cnp.PyArray_DATA(out)
        for i in range(count):
            n_frames = spans[3 * i + 2]
            if n_frames == 0:
                continue
            sub = reader_over(bufs[i] + spans[3 * i], spans[3 * i + 1])
            sub.base = spans[3 * i]
            _fill_flames(&sub, out_ptr, width, n_frames)
            out_ptr += n_frames * width
        return out
    finally:
        PyMem_Free(bufs)
        PyMem_Free(spans)


# ----------------------------------------------------------------------------- encoding

cdef Py_ssize_t _packed_size(uint32_t field, Py_ssize_t count) noexcept nogil:
    return len_field_size(field, count * 4) if count else 0


cdef Py_ssize_t _flame_size(Py_ssize_t n_expr) noexcept nogil:
    cdef Py_ssize_t size = 0
    cdef uint32_t field
    for field in range(FLAME_TRANSLATION, FLAME_FIXED_FIELDS + 1):
        size += _packed_size(field, FLAME_WIDTH[field])
    return size + _packed_size(FLAME_EXPRESSION, n_expr)


cdef bytes encode_flame_payload(object keyframes):
    arr = np.ascontiguousarray(keyframes, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] < FIXED_COLUMNS:
        raise ValueError(f"keyframes must have shape (n, {FIXED_COLUMNS} + E), got {tuple(arr.shape)}")
    cdef float[:, ::1] kf = arr
    cdef Py_ssize_t n_frames = kf.shape[0]
    cdef Py_ssize_t n_expr = kf.shape[1] - FIXED_COLUMNS
    cdef Py_ssize_t flame = _flame_size(n_expr)
    cdef Py_ssize_t size = n_frames * len_field_size(KEYFRAMES_FIELD, flame)
    cdef bytes buf = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(buf)
    cdef Py_ssize_t k
    cdef uint32_t field
    with nogil:
        for k in range(n_frames):
            p = put_len_header(p, KEYFRAMES_FIELD, flame)
            for field in range(FLAME_TRANSLATION, FLAME_FIXED_FIELDS + 1):
                p = put_len_field(p, field, <const char*>&kf[k, FLAME_OFFSET[field]], FLAME_WIDTH[field] * 4)
            if n_expr:
                p = put_len_field(p, FLAME_EXPRESSION, <const char*>&kf[k, FIXED_COLUMNS], n_expr * 4)
    return buf


def encode_animation(keyframes):
    """Serialize an (n, 20 + E) float array as a ``FlameAnimation`` (packed floats).

    Byte-identical to the protobuf library's serialization of the same keyframes.
    """
    return encode_flame_payload(keyframes)
