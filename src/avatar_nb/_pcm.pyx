# cython: language_level=3
"""avatar_nb's compiled core: PCM conversion, message framing and animation decoding.

Every function here has a slow pure-Python twin in ``avatar_nb._reference`` that the
tests use as the oracle. The wire layout is PROTOCOL.md's (see proto/message.proto).

Reading untrusted bytes: every read from an input buffer goes through the ``_read_*``
helpers below, which check the position against the buffer's end *before* touching
memory and raise ``ValueError`` naming the byte offset otherwise. Nothing else in this
module dereferences an input pointer.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.math cimport fabs, floor, isfinite, rint, sqrt
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

import numpy as np

cimport numpy as cnp

cnp.import_array()

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


cdef int _expect(const Reader* r, uint32_t wire_type, uint32_t expected, str name) except -1:
    if wire_type != expected:
        return _fail(r, f"field {name} has wire type {wire_type}, expected {expected}")
    return 0

# ----------------------------------------------------------------------------- FLAME decode

cdef int _flame_counts(Reader* r, Py_ssize_t* counts) except -1:
    """Count the floats of each field (1..7) in one Flame message; validate structure."""
    cdef uint32_t field, wt
    cdef Py_ssize_t s, n
    cdef int i
    for i in range(8):
        counts[i] = 0
    while r.pos < r.end:
        _read_tag(r, &field, &wt)
        if 1 <= field <= 7:
            if wt == WT_LEN:
                _read_len(r, &s, &n)
                if n % 4:
                    r.pos = s - 1
                    return _fail(r, f"packed float field {field} has length {n}, not a multiple of 4")
                counts[field] += n // 4
            elif wt == WT_I32:
                if r.end - r.pos < 4:
                    return _fail(r, "truncated float")
                r.pos += 4
                counts[field] += 1
            else:
                return _fail(r, f"Flame field {field} has wire type {wt}, expected 2 or 5")
        else:
            _skip_field(r, wt)
    return 0


cdef int _flame_fill(Reader* r, float* row, Py_ssize_t n_expr) except -1:
    """Copy the floats of one (already validated) Flame message into ``row``."""
    cdef uint32_t field, wt
    cdef Py_ssize_t s, n
    cdef Py_ssize_t filled[8]
    cdef Py_ssize_t off
    cdef int i
    for i in range(8):
        filled[i] = 0
    while r.pos < r.end:
        _read_tag(r, &field, &wt)
        if 1 <= field <= 7:
            off = _FLAME_OFFSET[field] if field <= 6 else N_FIXED
            if wt == WT_LEN:
                _read_len(r, &s, &n)
                memcpy(row + off + filled[field], r.buf + s, n)
                filled[field] += n // 4
            else:
                memcpy(row + off + filled[field], r.buf + r.pos, 4)
                r.pos += 4
                filled[field] += 1
        else:
            _skip_field(r, wt)
    return 0


cdef object _decode_flame_payload(Reader* r):
    """Decode a FlameAnimation (the whole of ``r``) into an (n, 20 + E) float32 array."""
    cdef uint32_t field, wt
    cdef Py_ssize_t s, n, n_frames = 0, n_expr = -1, i
    cdef Py_ssize_t counts[8]
    cdef Py_ssize_t start = r.pos
    cdef Reader sub
    # pass 1: validate and size
    while r.pos < r.end:
        _read_tag(r, &field, &wt)
        if field == 1:
            _expect(r, wt, WT_LEN, "keyframes")
            _read_len(r, &s, &n)
            sub = _sub(r, s, n)
            _flame_counts(&sub, counts)
            for i in range(1, 7):
                if counts[i] != _FLAME_LEN[i]:
                    raise ValueError(
                        f"keyframe {n_frames} at byte offset {r.base + s}: field "
                        f"{FLAME_FIELDS[i - 1][0]} has {counts[i]} values, expected {_FLAME_LEN[i]}"
                    )
            if n_expr < 0:
                n_expr = counts[7]
            elif counts[7] != n_expr:
                raise ValueError(
                    f"keyframe {n_frames} at byte offset {r.base + s} has {counts[7]} expression "
                    f"coefficients, earlier keyframes have {n_expr}"
                )
            n_frames += 1
        else:
            _skip_field(r, wt)
    if n_expr < 0:
        n_expr = 0
    out = np.zeros((n_frames, FLAME_FIXED_COLUMNS + n_expr), dtype=np.float32)
    cdef float[:, ::1] view = out
    cdef Py_ssize_t k = 0
    r.pos = start
    while r.pos < r.end:
        _read_tag(r, &field, &wt)
        if field == 1:
            _read_len(r, &s, &n)
            sub = _sub(r, s, n)
            _flame_fill(&sub, &view[k, 0], n_expr)
            k += 1
        else:
            _skip_field(r, wt)
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
                    caps = []
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


def decode_animation_batch(messages):
    """Decode the FLAME keyframes of many animation ``Message`` envelopes into one array.

    Messages without an animation payload contribute no rows. Raises ``ValueError`` when
    any envelope or payload is malformed, or when E differs between messages.
    """
    parts = []
    cdef Py_ssize_t width = -1
    for i, data in enumerate(messages):
        msg = decode_message(data)
        if msg.animation_error is not None:
            raise ValueError(f"message {i}: {msg.animation_error}")
        kf = msg.keyframes
        if kf.shape[0] == 0:
            continue
        if width < 0:
            width = kf.shape[1]
        elif kf.shape[1] != width:
            raise ValueError(
                f"message {i} has {kf.shape[1] - FLAME_FIXED_COLUMNS} expression coefficients, "
                f"earlier messages have {width - FLAME_FIXED_COLUMNS}"
            )
        parts.append(kf)
    if not parts:
        return np.zeros((0, FLAME_FIXED_COLUMNS), dtype=np.float32)
    return np.concatenate(parts, axis=0)

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

_ACCEPTED = "float32 or float64 in [-1, 1], int16, int32 or uint8 (offset binary)"


def to_s16le(samples, *, bint clip=True):
    """Convert audio samples to mono 16-bit little-endian PCM bytes.

    Accepts a 1-D array (mono) or a 2-D array of shape (frames, channels), which is
    downmixed by averaging the channels, of dtype float32/float64 (full scale [-1, 1]),
    int16, int32 (full scale 2**31) or uint8 (offset binary, 128 = silence). Floats
    outside [-1, 1] are clipped, or rejected with ``ValueError`` when ``clip=False``;
    NaN and infinity are always rejected, naming the first bad index.
    """
    arr = np.asarray(samples)
    if arr.ndim == 1:
        arr2 = arr.reshape(-1, 1)
    elif arr.ndim == 2:
        arr2 = arr
    else:
        raise ValueError(
            f"samples must be 1-D (mono) or 2-D (frames, channels), got shape {arr.shape}"
        )
    if arr2.shape[1] == 0:
        raise ValueError(f"samples have no channels: shape {arr.shape}")
    kind = arr2.dtype
    cdef Py_ssize_t n = arr2.shape[0], ch = arr2.shape[1], i, c
    cdef double acc, scale, x
    out = np.empty(n, dtype="<i2")
    cdef int16_t[::1] o = out
    cdef double[:, :] d
    if kind in (np.float32, np.float64, np.int16, np.int32, np.uint8):
        d = arr2.astype(np.float64)
    else:
        raise TypeError(f"unsupported sample dtype {kind}; accepted: {_ACCEPTED}")
    if kind == np.int16:
        scale = 1.0 / 32768.0
    elif kind == np.int32:
        scale = 1.0 / 2147483648.0
    elif kind == np.uint8:
        scale = 1.0 / 128.0
    else:
        scale = 1.0
    for i in range(n):
        acc = 0.0
        for c in range(ch):
            x = d[i, c]
            if kind == np.uint8:
                x -= 128.0
            if not isfinite(x):
                raise ValueError(f"sample {i} (channel {c}) is {x}; NaN and infinity are not audio")
            acc += x
        acc = acc * scale / ch
        if acc > 1.0 or acc < -1.0:
            if not clip:
                raise ValueError(
                    f"sample {i} is {acc:g}, outside [-1, 1]; pass clip=True to clip it"
                )
            acc = 1.0 if acc > 0 else -1.0
        # full scale is 32768 for every input, so that from_s16le() followed by to_s16le()
        # gives the same bytes back; floats round to nearest (half to even), integers
        # floor, which keeps int16 bit-exact and shifts int32 right by 16
        x = rint(acc * 32768.0) if scale == 1.0 else floor(acc * 32768.0)
        if x > 32767.0:
            x = 32767.0
        elif x < -32768.0:
            x = -32768.0
        o[i] = <int16_t>x
    return out.tobytes()


def from_s16le(data):
    """Decode s16le PCM bytes into float32 samples in [-1, 1) (divided by 32768)."""
    cdef const uint8_t[::1] mv = _as_bytes_view(data)
    if mv.shape[0] % 2:
        raise ValueError(f"s16le PCM must have an even number of bytes, got {mv.shape[0]}")
    return np.frombuffer(mv, dtype="<i2").astype(np.float32) / np.float32(32768.0)


def _as_float_samples(x):
    if isinstance(x, (bytes, bytearray, memoryview)):
        return from_s16le(x)
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"samples must be 1-D, got shape {arr.shape}")
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / np.float32(32768.0)
    if arr.dtype in (np.float32, np.float64):
        return arr.astype(np.float32)
    raise TypeError(f"unsupported sample dtype {arr.dtype}; accepted: s16le bytes, int16, float32, float64")


def peak_envelope(samples, Py_ssize_t n_bins):
    """Min and max of each of ``n_bins`` equal spans of ``samples`` (for waveform drawing).

    Bin ``i`` covers samples ``[i * n // n_bins, (i + 1) * n // n_bins)``; when there are
    fewer samples than bins, there is one bin per sample. int16 input is scaled to
    [-1, 1); float input is used as it is. Returns two float32 arrays.
    """
    if n_bins <= 0:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    x = _as_float_samples(samples)
    n = x.shape[0]
    bins = min(n_bins, n)
    mins = np.empty(bins, dtype=np.float32)
    maxs = np.empty(bins, dtype=np.float32)
    for i in range(bins):
        seg = x[i * n // bins:(i + 1) * n // bins]
        mins[i] = seg.min()
        maxs[i] = seg.max()
    return mins, maxs


def frame_features(pcm_or_samples, int sample_rate, double fps):
    """Per-video-frame audio features: the animator's and the waveform views' input.

    Frame ``i`` covers samples ``[floor(i * sr / fps), floor((i + 1) * sr / fps))``; the
    last, partial frame is included, so there are ``ceil(n * fps / sr)`` frames.
    Returns float32 arrays keyed ``rms`` (root mean square), ``peak`` (max |x|),
    ``zcr`` (zero crossings per sample) and ``brightness`` (RMS of the first difference
    over RMS: a cheap measure of spectral tilt, ~0 for low tones, up to 2 for noise).
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    x = _as_float_samples(pcm_or_samples)
    n = x.shape[0]
    import math
    n_frames = int(math.ceil(n * fps / sample_rate - 1e-9)) if n else 0
    rms = np.zeros(n_frames, dtype=np.float32)
    peak = np.zeros(n_frames, dtype=np.float32)
    zcr = np.zeros(n_frames, dtype=np.float32)
    bright = np.zeros(n_frames, dtype=np.float32)
    for i in range(n_frames):
        a = int(math.floor(i * sample_rate / fps))
        b = min(n, int(math.floor((i + 1) * sample_rate / fps)))
        seg = x[a:b].astype(np.float64)
        if seg.shape[0] == 0:
            continue
        r = math.sqrt(float(np.mean(seg * seg)))
        rms[i] = r
        peak[i] = float(np.max(np.abs(seg)))
        if seg.shape[0] > 1:
            zcr[i] = float(np.count_nonzero(np.signbit(seg[1:]) != np.signbit(seg[:-1]))) / seg.shape[0]
            dr = math.sqrt(float(np.mean(np.diff(seg) ** 2)))
            bright[i] = dr / r if r > 1e-9 else 0.0
    return {"rms": rms, "peak": peak, "zcr": zcr, "brightness": bright}
