# cython: language_level=3
"""avatar_nb's compiled core: PCM conversion, message framing and animation decoding.

Every function here has a slow pure-Python twin in ``avatar_nb._reference`` that the
tests use as the oracle. The wire layout is PROTOCOL.md's (see proto/message.proto).

Reading untrusted bytes: every read from an input buffer goes through the ``_read_*``
helpers below, which check the position against the buffer's end *before* touching
memory and raise ``ValueError`` naming the byte offset otherwise. Nothing else in this
module dereferences an input pointer.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport ceil, fabs, floor, isfinite, signbit, sqrt
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

import numpy as np

cimport cython
cimport numpy as cnp

cnp.import_array()

cdef extern from "_kernels.h" nogil:
    int AVNB_BAD
    int AVNB_OUT_OF_RANGE
    int avnb_f32_to_s16(const float* x, Py_ssize_t n, int16_t* out)
    int avnb_f64_to_s16(const double* x, Py_ssize_t n, int16_t* out)
    int avnb_minmax_f32(const float* x, Py_ssize_t n, Py_ssize_t bins, float* mins, float* maxs)
    int avnb_minmax_f64(const double* x, Py_ssize_t n, Py_ssize_t bins, float* mins, float* maxs)
    void avnb_minmax_i16(const int16_t* x, Py_ssize_t n, Py_ssize_t bins, float* mins, float* maxs)

# ----------------------------------------------------------------------------- layout

FLAME_FIELDS = (
    ("translation", 3),
    ("rotation", 3),
    ("neck_pose", 3),
    ("jaw_pose", 3),
    ("eye_pose", 6),
    ("eye_lid", 2),
    ("expression", -1),
)
FLAME_FIXED_COLUMNS = 20

# column offset and length of Flame fields 1..6 (index = field number)
cdef Py_ssize_t _FLAME_OFFSET[7]
cdef Py_ssize_t _FLAME_LEN[7]
_FLAME_OFFSET[:] = [0, 0, 3, 6, 9, 12, 18]
_FLAME_LEN[:] = [0, 3, 3, 3, 3, 6, 2]

cdef enum:
    N_FIXED = 20  # FLAME_FIXED_COLUMNS, as a C constant
    WT_VARINT = 0
    WT_I64 = 1
    WT_LEN = 2
    WT_SGROUP = 3
    WT_EGROUP = 4
    WT_I32 = 5

# ----------------------------------------------------------------------------- reader

cdef struct Reader:
    const uint8_t* buf
    Py_ssize_t pos
    Py_ssize_t end
    Py_ssize_t base  # offset of buf[0] within the outermost message, for error text


cdef int _fail(const Reader* r, str what) except -1:
    raise ValueError(f"{what} at byte offset {r.base + r.pos}")


cdef inline int _read_varint(Reader* r, uint64_t* out) except -1:
    cdef uint64_t result = 0
    cdef int shift = 0
    cdef uint8_t b
    cdef Py_ssize_t start = r.pos
    while True:
        if r.pos >= r.end:
            r.pos = start
            return _fail(r, "truncated varint")
        if shift >= 64:
            r.pos = start
            return _fail(r, "varint longer than 10 bytes")
        b = r.buf[r.pos]
        r.pos += 1
        result |= (<uint64_t>(b & 0x7F)) << shift
        if b < 0x80:
            out[0] = result
            return 0
        shift += 7


cdef inline int _read_len(Reader* r, Py_ssize_t* start, Py_ssize_t* length) except -1:
    """Read a length prefix and check that the bytes it announces are all there."""
    cdef uint64_t n
    cdef Py_ssize_t at = r.pos
    _read_varint(r, &n)
    if n > <uint64_t>(r.end - r.pos):
        r.pos = at
        return _fail(r, f"length {n} runs past the end of the buffer")
    start[0] = r.pos
    length[0] = <Py_ssize_t>n
    r.pos += <Py_ssize_t>n
    return 0


cdef int _skip_field(Reader* r, uint32_t wire_type) except -1:
    cdef uint64_t v
    cdef Py_ssize_t s, n
    if wire_type == WT_VARINT:
        _read_varint(r, &v)
    elif wire_type == WT_I64:
        if r.end - r.pos < 8:
            return _fail(r, "truncated fixed64 field")
        r.pos += 8
    elif wire_type == WT_LEN:
        _read_len(r, &s, &n)
    elif wire_type == WT_I32:
        if r.end - r.pos < 4:
            return _fail(r, "truncated fixed32 field")
        r.pos += 4
    elif wire_type == WT_SGROUP or wire_type == WT_EGROUP:
        return _fail(r, "groups are not supported")
    else:
        return _fail(r, f"invalid wire type {wire_type}")
    return 0


cdef inline int _read_tag(Reader* r, uint32_t* field, uint32_t* wire_type) except -1:
    cdef uint64_t tag
    cdef Py_ssize_t at = r.pos
    _read_varint(r, &tag)
    if (tag >> 3) == 0 or (tag >> 3) > 536870911:
        r.pos = at
        return _fail(r, f"invalid field number {tag >> 3}")
    field[0] = <uint32_t>(tag >> 3)
    wire_type[0] = <uint32_t>(tag & 7)
    return 0


cdef inline Reader _sub(const Reader* r, Py_ssize_t start, Py_ssize_t length):
    cdef Reader sub
    sub.buf = r.buf + start
    sub.pos = 0
    sub.end = length
    sub.base = r.base + start
    return sub


cdef str _utf8(const Reader* r, Py_ssize_t start, Py_ssize_t length):
    try:
        return (<const char*>r.buf + start)[:length].decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"invalid UTF-8 in string field at byte offset {r.base + start}") from None


# ----------------------------------------------------------------------------- FLAME decode
#
# A FlameAnimation is decoded in two passes over its bytes: the first validates the
# structure and counts keyframes and expression coefficients (so the output can be
# allocated once, at its final size), the second copies the floats. Fields with an
# unexpected wire type are skipped as unknown fields, as protobuf parsers do; the
# length checks then catch a Flame that lost values that way.

cdef int _flame_counts(Reader* r, Py_ssize_t* counts) except -1:
    """Count the floats of each field (1..7) in one Flame message; validate structure."""
    cdef uint32_t field, wt
    cdef Py_ssize_t s, n
    cdef int i
    for i in range(8):
        counts[i] = 0
    while r.pos < r.end:
        _read_tag(r, &field, &wt)
        if 1 <= field <= 7 and wt == WT_LEN:
            _read_len(r, &s, &n)
            if n % 4:
                r.pos = s
                return _fail(r, f"packed float field {field} has length {n}, not a multiple of 4")
            counts[field] += n // 4
        elif 1 <= field <= 7 and wt == WT_I32:
            if r.end - r.pos < 4:
                return _fail(r, "truncated float")
            r.pos += 4
            counts[field] += 1
        else:
            _skip_field(r, wt)
    return 0


cdef int _check_counts(const Py_ssize_t* counts, Py_ssize_t frame, Py_ssize_t offset, Py_ssize_t* n_expr) except -1:
    cdef int i
    for i in range(1, 7):
        if counts[i] != _FLAME_LEN[i]:
            raise ValueError(
                f"keyframe {frame} at byte offset {offset}: field "
                f"{FLAME_FIELDS[i - 1][0]} has {counts[i]} values, expected {_FLAME_LEN[i]}"
            )
    if n_expr[0] < 0:
        n_expr[0] = counts[7]
    elif counts[7] != n_expr[0]:
        raise ValueError(
            f"keyframe {frame} at byte offset {offset} has {counts[7]} expression "
            f"coefficients, earlier keyframes have {n_expr[0]}"
        )
    return 0


cdef int _scan_flames(Reader* r, Py_ssize_t* n_frames, Py_ssize_t* n_expr) except -1:
    """Pass 1 over a FlameAnimation: validate, count keyframes, check every E is ``n_expr``
    (``n_expr`` < 0 on entry: take the first keyframe's)."""
    cdef uint32_t field, wt
    cdef Py_ssize_t s, n
    cdef Py_ssize_t counts[8]
    cdef Reader sub
    n_frames[0] = 0
    while r.pos < r.end:
        _read_tag(r, &field, &wt)
        if field == 1 and wt == WT_LEN:
            _read_len(r, &s, &n)
            sub = _sub(r, s, n)
            _flame_counts(&sub, counts)
            _check_counts(counts, n_frames[0], r.base + s, n_expr)
            n_frames[0] += 1
        else:
            _skip_field(r, wt)
    return 0


cdef int _flame_fill(Reader* r, float* row, Py_ssize_t width) except -1:
    """Copy the floats of one Flame message (validated by pass 1) into ``row``.

    The destination bounds are checked again here, so that the copy can never write
    outside ``row`` even if pass 1 and pass 2 disagreed.
    """
    cdef uint32_t field, wt
    cdef Py_ssize_t s, n, off, limit, k
    cdef Py_ssize_t filled[8]
    cdef int i
    for i in range(8):
        filled[i] = 0
    while r.pos < r.end:
        _read_tag(r, &field, &wt)
        if 1 <= field <= 7 and (wt == WT_LEN or wt == WT_I32):
            if field <= 6:
                off = _FLAME_OFFSET[field]
                limit = _FLAME_LEN[field]
            else:
                off = N_FIXED
                limit = width - N_FIXED
            if wt == WT_LEN:
                _read_len(r, &s, &n)
                k = n // 4
                if filled[field] + k > limit:
                    return _fail(r, "keyframe changed between passes")
                memcpy(row + off + filled[field], r.buf + s, k * 4)
            else:
                if r.end - r.pos < 4 or filled[field] + 1 > limit:
                    return _fail(r, "truncated float")
                memcpy(row + off + filled[field], r.buf + r.pos, 4)
                r.pos += 4
                k = 1
            filled[field] += k
        else:
            _skip_field(r, wt)
    return 0


cdef int _fill_flames(Reader* r, float* out, Py_ssize_t width, Py_ssize_t n_frames) except -1:
    """Pass 2 over a FlameAnimation: copy ``n_frames`` keyframes into rows of ``out``."""
    cdef uint32_t field, wt
    cdef Py_ssize_t s, n, k = 0
    cdef Reader sub
    while r.pos < r.end:
        _read_tag(r, &field, &wt)
        if field == 1 and wt == WT_LEN:
            _read_len(r, &s, &n)
            if k >= n_frames:
                return _fail(r, "more keyframes than counted")
            sub = _sub(r, s, n)
            _flame_fill(&sub, out + k * width, width)
            k += 1
        else:
            _skip_field(r, wt)
    return 0


cdef object _decode_flame_payload(Reader* r):
    """Decode a FlameAnimation (the whole of ``r``) into an (n, 20 + E) float32 array."""
    cdef Py_ssize_t n_frames = 0, n_expr = -1
    cdef Py_ssize_t start = r.pos
    _scan_flames(r, &n_frames, &n_expr)
    if n_expr < 0:
        n_expr = 0
    out = np.zeros((n_frames, N_FIXED + n_expr), dtype=np.float32)
    if n_frames:
        r.pos = start
        _fill_flames(r, <float*>cnp.PyArray_DATA(out), N_FIXED + n_expr, n_frames)
    return out


def decode_animation(payload):
    """Decode a serialized ``FlameAnimation`` into a float32 array of shape (n, 20 + E).

    Columns follow PROTOCOL.md section 4: translation (3), rotation (3), neck_pose (3),
    jaw_pose (3), eye_pose (6), eye_lid (2), expression (E). Packed and unpacked floats
    are both accepted; unknown fields are skipped. Raises ``ValueError`` (naming the byte
    offset) on truncated bytes, a Flame field of the wrong length, or keyframes whose E
    differs.
    """
    cdef const uint8_t[::1] mv = _as_bytes_view(payload)
    cdef Reader r
    r.buf = &mv[0] if mv.shape[0] else <const uint8_t*>b""
    r.pos = 0
    r.end = mv.shape[0]
    r.base = 0
    return _decode_flame_payload(&r)


cdef const uint8_t[::1] _as_bytes_view(object data):
    if isinstance(data, str):
        raise TypeError("expected a bytes-like object, got str")
    try:
        return memoryview(data).cast("B")
    except TypeError:
        raise TypeError(f"expected a bytes-like object, got {type(data).__name__}") from None

# ----------------------------------------------------------------------------- envelope decode

cdef class DecodedMessage:
    """The fields of one ``Message`` envelope, flattened.

    ``type`` is the MessageType; ``data_field`` the number of the oneof field that was
    present (0 when none). Fields that the message did not carry keep their protobuf
    default. For animation messages ``keyframes`` holds the decoded FLAME keyframes;
    when the payload cannot be read, ``keyframes`` is empty, ``animation`` keeps the raw
    payload and ``animation_error`` says what was wrong.
    """

    cdef public int type
    cdef public int data_field
    cdef public str connection_id
    cdef public str req_id
    cdef public bint end
    cdef public str avatar_id
    cdef public int error_code
    cdef public str error_message
    cdef public tuple capabilities
    cdef public bytes audio
    cdef public int sample_rate
    cdef public int bitrate
    cdef public int audio_format
    cdef public int transport_compression
    cdef public int egress_type
    cdef public int playback_state
    cdef public long long played_ms
    cdef public str reason
    cdef public bytes animation
    cdef public object keyframes
    cdef public object animation_error

    def __init__(self):
        self.type = 0
        self.data_field = 0
        self.connection_id = ""
        self.req_id = ""
        self.end = False
        self.avatar_id = ""
        self.error_code = 0
        self.error_message = ""
        self.capabilities = ()
        self.audio = b""
        self.sample_rate = 0
        self.bitrate = 0
        self.audio_format = 0
        self.transport_compression = 0
        self.egress_type = 0
        self.playback_state = 0
        self.played_ms = 0
        self.reason = ""
        self.animation = b""
        self.keyframes = _EMPTY_KEYFRAMES
        self.animation_error = None

    def __repr__(self):
        parts = [f"type={self.type}"]
        for name in ("connection_id", "req_id", "avatar_id", "error_message", "reason"):
            value = getattr(self, name)
            if value:
                parts.append(f"{name}={value!r}")
        if self.end:
            parts.append("end=True")
        if self.error_code:
            parts.append(f"error_code={self.error_code}")
        if self.capabilities:
            parts.append(f"capabilities={self.capabilities!r}")
        if self.audio:
            parts.append(f"audio=<{len(self.audio)} bytes>")
        if self.sample_rate:
            parts.append(f"sample_rate={self.sample_rate}")
        if self.keyframes.shape[0]:
            parts.append(f"keyframes=<{self.keyframes.shape[0]}x{self.keyframes.shape[1]}>")
        if self.animation_error:
            parts.append(f"animation_error={self.animation_error!r}")
        return f"DecodedMessage({', '.join(parts)})"


_EMPTY_KEYFRAMES = np.zeros((0, FLAME_FIXED_COLUMNS), dtype=np.float32)
_EMPTY_KEYFRAMES.setflags(write=False)


cdef int _as_int32(uint64_t v):
    return <int32_t>(<uint32_t>(v & 0xFFFFFFFF))


cdef int _decode_inner(Reader* r, DecodedMessage msg, uint32_t which) except -1:
    """Decode the oneof submessage number ``which`` into ``msg``."""
    cdef uint32_t field, wt
    cdef uint64_t v
    cdef Py_ssize_t s, n
    cdef list caps = None
    cdef Reader sub
    while r.pos < r.end:
        _read_tag(r, &field, &wt)
        if which == 2:  # ClientConfigureSession
            if 1 <= field <= 5 and wt == WT_VARINT:
                _read_varint(r, &v)
                if field == 1:
                    msg.sample_rate = _as_int32(v)
                elif field == 2:
                    msg.bitrate = _as_int32(v)
                elif field == 3:
                    msg.audio_format = _as_int32(v)
                elif field == 4:
                    msg.transport_compression = _as_int32(v)
                else:
                    msg.egress_type = _as_int32(v)
                continue
        elif which == 3:  # ServerConfirmSession
            if field == 1 and wt == WT_LEN:
                _read_len(r, &s, &n)
                msg.connection_id = _utf8(r, s, n)
                continue
            if field == 2 and wt == WT_LEN:
                _read_len(r, &s, &n)
                if caps is None:
                    caps = list(msg.capabilities)  # repeated fields append across merges
                caps.append(_utf8(r, s, n))
                continue
        elif which == 4:  # ClientAudioInput
            if field == 1 and wt == WT_LEN:
                _read_len(r, &s, &n)
                msg.req_id = _utf8(r, s, n)
                continue
            if field == 2 and wt == WT_VARINT:
                _read_varint(r, &v)
                msg.end = v != 0
                continue
            if field == 3 and wt == WT_LEN:
                _read_len(r, &s, &n)
                msg.audio = PyBytes_FromStringAndSize(<const char*>r.buf + s, n)
                continue
        elif which == 5:  # ServerError
            if field == 1 and wt == WT_LEN:
                _read_len(r, &s, &n)
                msg.connection_id = _utf8(r, s, n)
                continue
            if field == 2 and wt == WT_LEN:
                _read_len(r, &s, &n)
                msg.req_id = _utf8(r, s, n)
                continue
            if field == 3 and wt == WT_VARINT:
                _read_varint(r, &v)
                msg.error_code = _as_int32(v)
                continue
            if field == 4 and wt == WT_LEN:
                _read_len(r, &s, &n)
                msg.error_message = _utf8(r, s, n)
                continue
        elif which == 6:  # ServerResponseAnimation
            if field == 1 and wt == WT_LEN:
                _read_len(r, &s, &n)
                msg.connection_id = _utf8(r, s, n)
                continue
            if field == 2 and wt == WT_LEN:
                _read_len(r, &s, &n)
                msg.req_id = _utf8(r, s, n)
                continue
            if field == 3 and wt == WT_VARINT:
                _read_varint(r, &v)
                msg.end = v != 0
                continue
            if field == 4 and wt == WT_LEN:
                _read_len(r, &s, &n)
                msg.animation = PyBytes_FromStringAndSize(<const char*>r.buf + s, n)
                sub = _sub(r, s, n)
                try:
                    msg.keyframes = _decode_flame_payload(&sub)
                    msg.animation_error = None
                except ValueError as exc:
                    msg.keyframes = _EMPTY_KEYFRAMES
                    msg.animation_error = str(exc)
                continue
            if field == 5 and wt == WT_LEN:
                _read_len(r, &s, &n)
                msg.avatar_id = _utf8(r, s, n)
                continue
        elif 8 <= which <= 10:  # ClientInterrupt / ClientPause / ClientResume
            if field == 1 and wt == WT_LEN:
                _read_len(r, &s, &n)
                msg.req_id = _utf8(r, s, n)
                continue
        elif which == 11:  # ServerPlaybackState
            if field == 1 and wt == WT_LEN:
                _read_len(r, &s, &n)
                msg.connection_id = _utf8(r, s, n)
                continue
            if field == 2 and wt == WT_LEN:
                _read_len(r, &s, &n)
                msg.req_id = _utf8(r, s, n)
                continue
            if field == 3 and wt == WT_VARINT:
                _read_varint(r, &v)
                msg.playback_state = _as_int32(v)
                continue
            if field == 4 and wt == WT_VARINT:
                _read_varint(r, &v)
                msg.played_ms = <int64_t>v
                continue
            if field == 5 and wt == WT_LEN:
                _read_len(r, &s, &n)
                msg.reason = _utf8(r, s, n)
                continue
        _skip_field(r, wt)
    if caps is not None:
        msg.capabilities = tuple(caps)
    return 0


def decode_message(data):
    """Decode one serialized ``Message`` envelope into a :class:`DecodedMessage`.

    Parses by hand: varints, length-delimited and fixed-width fields; unknown fields are
    skipped, groups rejected. Raises ``ValueError`` naming the byte offset when the bytes
    are not a well-formed message (truncated, over-long varint, bad wire type, invalid
    UTF-8 in a string). A malformed animation payload does not raise: see
    :class:`DecodedMessage`.
    """
    cdef const uint8_t[::1] mv = _as_bytes_view(data)
    cdef Reader r
    cdef Reader sub
    cdef uint32_t field, wt
    cdef uint64_t v
    cdef Py_ssize_t s, n
    cdef DecodedMessage msg = DecodedMessage.__new__(DecodedMessage)
    msg.__init__()
    r.buf = &mv[0] if mv.shape[0] else <const uint8_t*>b""
    r.pos = 0
    r.end = mv.shape[0]
    r.base = 0
    while r.pos < r.end:
        _read_tag(&r, &field, &wt)
        if field == 1 and wt == WT_VARINT:
            _read_varint(&r, &v)
            msg.type = _as_int32(v)
        elif 2 <= field <= 11 and field != 7 and wt == WT_LEN:
            _read_len(&r, &s, &n)
            if msg.data_field != 0 and msg.data_field != <int>field:
                # a later oneof member replaces an earlier one, as in protobuf
                t = msg.type
                msg.__init__()
                msg.type = t
            msg.data_field = field
            sub = _sub(&r, s, n)
            _decode_inner(&sub, msg, field)
        else:
            _skip_field(&r, wt)
    return msg


cdef int _find_animation(Reader* r, Py_ssize_t* start, Py_ssize_t* length) except -1:
    """Walk a Message envelope; set the span of its animation payload (``start`` -1: none).

    The whole envelope is walked, so a malformed message raises even when its animation
    is fine. Protobuf's rules decide which payload counts: within
    ``server_response_animation`` the last ``animation`` wins, and a later member of the
    ``data`` oneof replaces the animation message entirely.
    """
    cdef uint32_t field, wt, inner_field, inner_wt
    cdef Py_ssize_t s, n, s2, n2
    cdef Reader sub
    start[0] = -1
    length[0] = 0
    while r.pos < r.end:
        _read_tag(r, &field, &wt)
        if field == 6 and wt == WT_LEN:
            _read_len(r, &s, &n)
            sub = _sub(r, s, n)
            while sub.pos < sub.end:
                _read_tag(&sub, &inner_field, &inner_wt)
                if inner_field == 4 and inner_wt == WT_LEN:
                    _read_len(&sub, &s2, &n2)
                    start[0] = s + s2
                    length[0] = n2
                else:
                    _skip_field(&sub, inner_wt)
        elif 2 <= field <= 11 and field != 7 and wt == WT_LEN:
            _skip_field(r, wt)
            start[0] = -1  # another oneof member replaces the animation
            length[0] = 0
        else:
            _skip_field(r, wt)
    return 0


def decode_animation_batch(messages):
    """Decode the FLAME keyframes of many animation ``Message`` envelopes into one array.

    Returns float32 of shape (total keyframes, 20 + E), rows in message order. Messages
    without an animation payload contribute no rows. Every envelope is checked for
    structure (string fields are not decoded here: use :func:`decode_message` for those).
    Raises ``ValueError`` naming the message index and byte offset when an envelope or a
    payload is malformed, or when E differs between keyframes.

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
        return np.zeros((0, N_FIXED), dtype=np.float32)
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
                r.buf = <const uint8_t*>PyBytes_AS_STRING(obj)
                r.end = PyBytes_GET_SIZE(obj)
            else:
                mv = _as_bytes_view(obj)
                views.append(mv)  # keeps the buffer alive for pass 2
                r.end = mv.shape[0]
                r.buf = &mv[0] if r.end else <const uint8_t*>b""
            r.pos = 0
            r.base = 0
            bufs[i] = r.buf
            try:
                _find_animation(&r, &payload_start, &payload_len)
                n_frames = 0
                if payload_start >= 0:
                    sub = _sub(&r, payload_start, payload_len)
                    _scan_flames(&sub, &n_frames, &n_expr)
            except ValueError as exc:
                raise ValueError(f"message {i}: {exc}") from None
            spans[3 * i] = payload_start
            spans[3 * i + 1] = payload_len
            spans[3 * i + 2] = n_frames
            total += n_frames
        if n_expr < 0:
            n_expr = 0
        width = N_FIXED + n_expr
        out = np.empty((total, width), dtype=np.float32)
        out_ptr = <float*>cnp.PyArray_DATA(out)
        for i in range(count):
            n_frames = spans[3 * i + 2]
            if n_frames == 0:
                continue
            sub.buf = bufs[i] + spans[3 * i]
            sub.pos = 0
            sub.end = spans[3 * i + 1]
            sub.base = spans[3 * i]
            _fill_flames(&sub, out_ptr, width, n_frames)
            out_ptr += n_frames * width
        return out
    finally:
        PyMem_Free(bufs)
        PyMem_Free(spans)

# ----------------------------------------------------------------------------- encode

cdef inline Py_ssize_t _varint_size(uint64_t v) nogil:
    cdef Py_ssize_t n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline char* _put_varint(char* p, uint64_t v) nogil:
    while v >= 0x80:
        p[0] = <char>((v & 0x7F) | 0x80)
        v >>= 7
        p += 1
    p[0] = <char>v
    return p + 1


cdef inline char* _put_bytes(char* p, uint8_t tag, const char* data, Py_ssize_t n) nogil:
    p[0] = <char>tag
    p = _put_varint(p + 1, <uint64_t>n)
    memcpy(p, data, n)
    return p + n


def encode_audio_messages(pcm, str req_id, Py_ssize_t chunk_bytes, *, bint end=True):
    """Split s16le PCM into ``chunk_bytes`` chunks, each a serialized audio ``Message``.

    Each element is ``Message{type=CLIENT_AUDIO_INPUT, client_audio_input{req_id, end,
    audio}}``, byte-identical to the protobuf library's serialization; only the last
    chunk carries ``end``. Empty PCM with ``end=True`` gives one message with no audio
    (an end marker); empty PCM with ``end=False`` gives an empty list.
    """
    cdef const uint8_t[::1] mv = _as_bytes_view(pcm)
    cdef Py_ssize_t total = mv.shape[0]
    if chunk_bytes <= 0 or chunk_bytes % 2:
        raise ValueError(f"chunk_bytes must be a positive even number of bytes, got {chunk_bytes}")
    if total % 2:
        raise ValueError(f"s16le PCM must have an even number of bytes, got {total}")
    cdef bytes rid = req_id.encode("utf-8")
    cdef Py_ssize_t rid_len = len(rid)
    cdef list out = []
    cdef Py_ssize_t off = 0, n, inner, size
    cdef bint last
    cdef bytes buf
    cdef char* p
    cdef const char* src = <const char*>&mv[0] if total else <const char*>b""
    if total == 0:
        if not end:
            return out
    while True:
        n = min(chunk_bytes, total - off)
        last = off + n >= total
        inner = 0
        if rid_len:
            inner += 1 + _varint_size(rid_len) + rid_len
        if last and end:
            inner += 2
        if n:
            inner += 1 + _varint_size(n) + n
        size = 2 + 1 + _varint_size(inner) + inner
        buf = PyBytes_FromStringAndSize(NULL, size)
        p = PyBytes_AS_STRING(buf)
        p[0] = 0x08
        p[1] = 0x03
        p[2] = 0x22
        p = _put_varint(p + 3, <uint64_t>inner)
        if rid_len:
            p = _put_bytes(p, 0x0A, <const char*>rid, rid_len)
        if last and end:
            p[0] = 0x10
            p[1] = 0x01
            p += 2
        if n:
            p = _put_bytes(p, 0x1A, src + off, n)
        out.append(buf)
        off += n
        if last:
            break
    return out


cdef Py_ssize_t _packed_size(Py_ssize_t count) nogil:
    if count == 0:
        return 0
    return 1 + _varint_size(<uint64_t>(count * 4)) + count * 4


cdef Py_ssize_t _flame_size(Py_ssize_t n_expr) nogil:
    cdef Py_ssize_t size = 0
    cdef int i
    for i in range(1, 7):
        size += _packed_size(_FLAME_LEN[i])
    return size + _packed_size(n_expr)


def encode_animation(keyframes):
    """Serialize an (n, 20 + E) float array as a ``FlameAnimation`` (packed floats).

    Byte-identical to the protobuf library's serialization of the same keyframes.
    """
    arr = np.ascontiguousarray(keyframes, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] < FLAME_FIXED_COLUMNS:
        raise ValueError(
            f"keyframes must have shape (n, {FLAME_FIXED_COLUMNS} + E), got {tuple(arr.shape)}"
        )
    cdef float[:, ::1] kf = arr
    cdef Py_ssize_t n_frames = kf.shape[0]
    cdef Py_ssize_t n_expr = kf.shape[1] - FLAME_FIXED_COLUMNS
    cdef Py_ssize_t flame = _flame_size(n_expr)
    cdef Py_ssize_t size = n_frames * (1 + _varint_size(flame) + flame)
    cdef bytes buf = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(buf)
    cdef Py_ssize_t k
    cdef int i
    with nogil:
        for k in range(n_frames):
            p[0] = 0x0A
            p = _put_varint(p + 1, <uint64_t>flame)
            for i in range(1, 7):
                p = _put_bytes(p, <uint8_t>((i << 3) | 2),
                               <const char*>&kf[k, _FLAME_OFFSET[i]], _FLAME_LEN[i] * 4)
            if n_expr:
                p = _put_bytes(p, <uint8_t>((7 << 3) | 2),
                               <const char*>&kf[k, N_FIXED], n_expr * 4)
    return buf


def encode_animation_message(keyframes, *, str connection_id="", str req_id="",
                             bint end=False, str avatar_id=""):
    """Serialize ``Message{type=SERVER_RESPONSE_ANIMATION, server_response_animation{...}}``.

    The animation payload is :func:`encode_animation` of ``keyframes`` (omitted when
    there are none); byte-identical to the protobuf library's serialization.
    """
    cdef bytes payload = encode_animation(keyframes)
    cdef bytes cid = connection_id.encode("utf-8")
    cdef bytes rid = req_id.encode("utf-8")
    cdef bytes aid = avatar_id.encode("utf-8")
    cdef Py_ssize_t inner = 0
    if len(cid):
        inner += 1 + _varint_size(len(cid)) + len(cid)
    if len(rid):
        inner += 1 + _varint_size(len(rid)) + len(rid)
    if end:
        inner += 2
    if len(payload):
        inner += 1 + _varint_size(len(payload)) + len(payload)
    if len(aid):
        inner += 1 + _varint_size(len(aid)) + len(aid)
    cdef Py_ssize_t size = 2 + 1 + _varint_size(inner) + inner
    cdef bytes buf = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(buf)
    p[0] = 0x08
    p[1] = 0x05
    p[2] = 0x32
    p = _put_varint(p + 3, <uint64_t>inner)
    if len(cid):
        p = _put_bytes(p, 0x0A, <const char*>cid, len(cid))
    if len(rid):
        p = _put_bytes(p, 0x12, <const char*>rid, len(rid))
    if end:
        p[0] = 0x18
        p[1] = 0x01
        p += 2
    if len(payload):
        p = _put_bytes(p, 0x22, <const char*>payload, len(payload))
    if len(aid):
        p = _put_bytes(p, 0x2A, <const char*>aid, len(aid))
    return buf

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


cdef int _convert_mono(const sample_t[::1] x, char* out, bint clip, Py_ssize_t* bad_index,
                       double* bad_value) noexcept nogil:
    """The common case, contiguous mono: the same arithmetic as :func:`_convert`."""
    cdef Py_ssize_t n = x.shape[0], i
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


cdef object _samples_array(object samples):
    if isinstance(samples, (bytes, bytearray, memoryview, str)):
        raise TypeError(
            f"to_s16le() takes a numpy array of samples, got {type(samples).__name__}; "
            f"accepted dtypes: {_ACCEPTED}"
        )
    arr = np.asarray(samples)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not _LITTLE_ENDIAN):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr


cdef bint _LITTLE_ENDIAN = np.little_endian


def to_s16le(samples, *, bint clip=True):
    """Convert audio samples to mono 16-bit little-endian PCM bytes.

    Accepts a 1-D array (mono) or a 2-D array of shape (frames, channels), which is
    downmixed by averaging the channels, of dtype float32/float64 (full scale [-1, 1]),
    int16, int32 (full scale 2**31) or uint8 (offset binary, 128 = silence). Floats
    outside [-1, 1] are clipped, or rejected with ``ValueError`` when ``clip=False``;
    NaN and infinity are always rejected, naming the first bad index. Any other dtype
    or shape is a ``TypeError``/``ValueError`` saying what is accepted.
    """
    arr = _samples_array(samples)
    if arr.ndim not in (1, 2):
        raise ValueError(f"samples must be 1-D (mono) or 2-D (frames, channels), got shape {arr.shape}")
    if arr.ndim == 2 and arr.shape[1] == 0:
        raise ValueError(f"samples have no channels: shape {arr.shape}")
    dtype = arr.dtype
    if dtype not in (np.float32, np.float64, np.int16, np.int32, np.uint8):
        raise TypeError(f"unsupported sample dtype {dtype}; accepted: {_ACCEPTED}")
    cdef Py_ssize_t n = arr.shape[0]
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n * 2)
    cdef char* dst = PyBytes_AS_STRING(out)
    cdef Py_ssize_t bad_index = -1, bad_channel = 0
    cdef double bad_value = 0.0
    cdef int status = CONVERT_OK
    cdef const float[::1] f32
    cdef const double[::1] f64
    cdef const int16_t[::1] i16
    cdef const int32_t[::1] i32
    cdef const uint8_t[::1] u8
    cdef const float[:, :] f32_2
    cdef const double[:, :] f64_2
    cdef const int16_t[:, :] i16_2
    cdef const int32_t[:, :] i32_2
    cdef const uint8_t[:, :] u8_2
    if n == 0:
        return b""
    cdef int flags
    if arr.ndim == 1 and arr.flags.c_contiguous:
        if dtype == np.float32:
            f32 = arr
            if _LITTLE_ENDIAN:
                with nogil:  # the vectorised kernel; a scalar pass names a bad sample
                    flags = avnb_f32_to_s16(&f32[0], n, <int16_t*>dst)
                    if flags & AVNB_BAD or (flags & AVNB_OUT_OF_RANGE and not clip):
                        status = _convert_mono(f32, dst, clip, &bad_index, &bad_value)
            else:
                with nogil:
                    status = _convert_mono(f32, dst, clip, &bad_index, &bad_value)
        elif dtype == np.float64:
            f64 = arr
            if _LITTLE_ENDIAN:
                with nogil:
                    flags = avnb_f64_to_s16(&f64[0], n, <int16_t*>dst)
                    if flags & AVNB_BAD or (flags & AVNB_OUT_OF_RANGE and not clip):
                        status = _convert_mono(f64, dst, clip, &bad_index, &bad_value)
            else:
                with nogil:
                    status = _convert_mono(f64, dst, clip, &bad_index, &bad_value)
        elif dtype == np.int16:
            i16 = arr
            with nogil:
                status = _convert_mono(i16, dst, clip, &bad_index, &bad_value)
        elif dtype == np.int32:
            i32 = arr
            with nogil:
                status = _convert_mono(i32, dst, clip, &bad_index, &bad_value)
        else:
            u8 = arr
            with nogil:
                status = _convert_mono(u8, dst, clip, &bad_index, &bad_value)
    else:
        arr2 = arr.reshape(-1, 1) if arr.ndim == 1 else arr
        if dtype == np.float32:
            f32_2 = arr2
            with nogil:
                status = _convert(f32_2, dst, clip, &bad_index, &bad_channel, &bad_value)
        elif dtype == np.float64:
            f64_2 = arr2
            with nogil:
                status = _convert(f64_2, dst, clip, &bad_index, &bad_channel, &bad_value)
        elif dtype == np.int16:
            i16_2 = arr2
            with nogil:
                status = _convert(i16_2, dst, clip, &bad_index, &bad_channel, &bad_value)
        elif dtype == np.int32:
            i32_2 = arr2
            with nogil:
                status = _convert(i32_2, dst, clip, &bad_index, &bad_channel, &bad_value)
        else:
            u8_2 = arr2
            with nogil:
                status = _convert(u8_2, dst, clip, &bad_index, &bad_channel, &bad_value)
    where = f"sample {bad_index}" + (f" (channel {bad_channel})" if arr.ndim == 2 else "")
    if status == CONVERT_NOT_FINITE:
        raise ValueError(f"{where} is {bad_value}; NaN and infinity are not audio")
    if status == CONVERT_OUT_OF_RANGE:
        raise ValueError(f"{where} is {bad_value:g}, outside [-1, 1]; pass clip=True to clip it")
    return out


def from_s16le(data):
    """Decode s16le PCM bytes (any bytes-like object) into float32 samples in [-1, 1)."""
    cdef const uint8_t[::1] mv = _as_bytes_view(data)
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
        mv = _as_bytes_view(samples)
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
    arrays keyed ``rms`` (root mean square), ``peak`` (max |x|), ``zcr`` (sign changes
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
