# cython: language_level=3
"""The ``Message`` envelope: decoding one into a :class:`DecodedMessage`, encoding the
messages avatar_nb sends in bulk (audio chunks, animation replies).

The wire layout is docs/protocol.md's (proto/message.proto); field numbers come from
``_wire_numbers.pxd``. Every function has a slow pure twin in ``avatar_nb._reference``
that the tests use as the oracle, with protobuf as the judge of what is well formed.

Reading untrusted bytes: decoding goes through the envelope walker (``_envelope``),
whose every read is bounds-checked before it happens (``_reader.pxd``) and which
accepts exactly what protobuf's parser accepts; anything else raises ``ValueError``
naming the byte offset. Decoding is linear in the input's size.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

import numpy as np

from avatar_nb._envelope cimport Envelope, walk_envelope
from avatar_nb._flame cimport decode_flame_payload, encode_flame_payload
from avatar_nb._flame_layout cimport FIXED_COLUMNS
from avatar_nb._reader cimport Reader, Span, as_bytes_view, reader_over
from avatar_nb._wire_numbers cimport *
from avatar_nb._writer cimport (
    len_field_size, put_len_field, put_len_header, put_len_tag, put_varint, put_varint_field, varint_field_size,
    varint_size,
)

_EMPTY_KEYFRAMES = np.zeros((0, FIXED_COLUMNS), dtype=np.float32)
_EMPTY_KEYFRAMES.setflags(write=False)


# ----------------------------------------------------------------------------- decoding

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


cdef int _collect_capability(void* ctx, const uint8_t* buf, Span span) except -1:
    """The walker's capability sink: append one (UTF-8 checked) string; start -1 clears."""
    cdef list caps = <list>ctx
    if span.start < 0:
        del caps[:]
    else:
        caps.append((<const char*>buf + span.start)[:span.length].decode("utf-8"))
    return 0


cdef inline str _text(const uint8_t* buf, Span span):
    if span.start < 0:
        return ""
    return (<const char*>buf + span.start)[:span.length].decode("utf-8")  # validated by the walker


cdef inline bytes _raw(const uint8_t* buf, Span span):
    if span.start < 0:
        return b""
    return PyBytes_FromStringAndSize(<const char*>buf + span.start, span.length)


cdef int _set_animation(DecodedMessage msg, const uint8_t* buf, Span span) except -1:
    """Keep the raw payload and decode its keyframes; a bad payload is recorded, not raised."""
    cdef Reader sub
    msg.animation = _raw(buf, span)
    sub = reader_over(buf + span.start, span.length)
    sub.base = span.start  # error offsets count from the envelope's first byte
    try:
        msg.keyframes = decode_flame_payload(&sub)
    except ValueError as exc:
        msg.animation_error = str(exc)
    return 0


def decode_message(data):
    """Decode one serialized ``Message`` envelope into a :class:`DecodedMessage`.

    Accepts exactly what protobuf's parser accepts: unknown fields and groups are
    skipped, string fields (those of the egress configs included) must be valid UTF-8.
    Raises ``ValueError`` naming the byte offset otherwise (truncated, over-long varint
    or tag, bad wire type, unmatched group, invalid UTF-8). A malformed animation
    payload does not raise: see :class:`DecodedMessage`.
    """
    cdef const uint8_t[::1] mv = as_bytes_view(data)
    cdef const uint8_t* buf = &mv[0] if mv.shape[0] else <const uint8_t*>b""
    cdef Reader r = reader_over(buf, mv.shape[0])
    cdef list caps = []
    cdef Envelope env
    env.on_capability = _collect_capability
    env.ctx = <void*>caps
    walk_envelope(&r, &env)

    cdef DecodedMessage msg = DecodedMessage()
    msg.type = env.type
    msg.data_field = env.data_field
    msg.connection_id = _text(buf, env.connection_id)
    msg.req_id = _text(buf, env.req_id)
    msg.avatar_id = _text(buf, env.avatar_id)
    msg.error_message = _text(buf, env.error_message)
    msg.reason = _text(buf, env.reason)
    msg.end = env.end
    msg.error_code = env.error_code
    msg.sample_rate = env.sample_rate
    msg.bitrate = env.bitrate
    msg.audio_format = env.audio_format
    msg.transport_compression = env.transport_compression
    msg.egress_type = env.egress_type
    msg.playback_state = env.playback_state
    msg.played_ms = env.played_ms
    if caps:
        msg.capabilities = tuple(caps)
    if env.audio.start >= 0:
        msg.audio = _raw(buf, env.audio)
    if env.animation.start >= 0:
        _set_animation(msg, buf, env.animation)
    return msg


# ----------------------------------------------------------------------------- encoding

cdef inline Py_ssize_t _optional_len_field_size(uint32_t field, Py_ssize_t n) noexcept:
    """proto3 leaves empty strings and bytes off the wire."""
    return len_field_size(field, n) if n else 0


cdef inline char* _put_optional(char* p, uint32_t field, bytes value) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value)
    if n:
        return put_len_field(p, field, PyBytes_AS_STRING(value), n)
    return p


def encode_audio_messages(pcm, str req_id, Py_ssize_t chunk_bytes, *, bint end=True):
    """Split s16le PCM into ``chunk_bytes`` chunks, each a serialized audio ``Message``.

    Each element is ``Message{type=CLIENT_AUDIO_INPUT, client_audio_input{req_id, end,
    audio}}``, byte-identical to the protobuf library's serialization; only the last
    chunk carries ``end``. Empty PCM with ``end=True`` gives one message with no audio
    (an end marker); empty PCM with ``end=False`` gives an empty list.
    """
    cdef const uint8_t[::1] mv = as_bytes_view(pcm)
    cdef Py_ssize_t total = mv.shape[0]
    if chunk_bytes <= 0 or chunk_bytes % 2:
        raise ValueError(f"chunk_bytes must be a positive even number of bytes, got {chunk_bytes}")
    if total % 2:
        raise ValueError(f"s16le PCM must have an even number of bytes, got {total}")
    cdef list out = []
    if total == 0 and not end:
        return out
    cdef const char* src = <const char*>&mv[0] if total else <const char*>b""
    # the bytes every message shares are written once, then copied: the type field and
    # the member's tag (head), the req_id field, the end field
    cdef bytes rid = req_id.encode("utf-8")
    cdef Py_ssize_t rid_len = PyBytes_GET_SIZE(rid)
    cdef bytes rid_field = PyBytes_FromStringAndSize(NULL, _optional_len_field_size(AUDIO_REQ_ID, rid_len))
    _put_optional(PyBytes_AS_STRING(rid_field), AUDIO_REQ_ID, rid)
    cdef Py_ssize_t rid_size = PyBytes_GET_SIZE(rid_field)
    cdef const char* rid_bytes = PyBytes_AS_STRING(rid_field)
    cdef char head[16]
    cdef char end_field[16]
    cdef Py_ssize_t head_size = put_len_tag(put_varint_field(head, MESSAGE_TYPE, MESSAGE_CLIENT_AUDIO_INPUT),
                                            DATA_CLIENT_AUDIO_INPUT) - head
    cdef Py_ssize_t end_size = put_varint_field(end_field, AUDIO_END, 1) - end_field
    cdef Py_ssize_t off = 0, n, inner
    cdef bint last
    cdef bytes buf
    cdef char* p
    while True:
        n = min(chunk_bytes, total - off)
        last = off + n >= total
        inner = rid_size + _optional_len_field_size(AUDIO_AUDIO, n) + (end_size if last and end else 0)
        buf = PyBytes_FromStringAndSize(NULL, head_size + varint_size(<uint64_t>inner) + inner)
        p = PyBytes_AS_STRING(buf)
        memcpy(p, head, head_size)
        p = put_varint(p + head_size, <uint64_t>inner)
        memcpy(p, rid_bytes, rid_size)
        p += rid_size
        if last and end:
            memcpy(p, end_field, end_size)
            p += end_size
        if n:
            put_len_field(p, AUDIO_AUDIO, src + off, n)
        out.append(buf)
        off += n
        if last:
            break
    return out


def encode_animation_message(keyframes, *, str connection_id="", str req_id="",
                             bint end=False, str avatar_id=""):
    """Serialize ``Message{type=SERVER_RESPONSE_ANIMATION, server_response_animation{...}}``.

    The animation payload is :func:`avatar_nb._flame.encode_animation` of ``keyframes``
    (omitted when there are none); byte-identical to the protobuf library's serialization.
    """
    cdef bytes payload = encode_flame_payload(keyframes)
    cdef bytes cid = connection_id.encode("utf-8")
    cdef bytes rid = req_id.encode("utf-8")
    cdef bytes aid = avatar_id.encode("utf-8")
    cdef Py_ssize_t inner = (
        _optional_len_field_size(ANIMATION_CONNECTION_ID, len(cid))
        + _optional_len_field_size(ANIMATION_REQ_ID, len(rid))
        + (varint_field_size(ANIMATION_END, 1) if end else 0)
        + _optional_len_field_size(ANIMATION_ANIMATION, len(payload))
        + _optional_len_field_size(ANIMATION_AVATAR_ID, len(aid))
    )
    cdef Py_ssize_t size = (varint_field_size(MESSAGE_TYPE, MESSAGE_SERVER_RESPONSE_ANIMATION)
                            + len_field_size(DATA_SERVER_RESPONSE_ANIMATION, inner))
    cdef bytes buf = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(buf)
    p = put_varint_field(p, MESSAGE_TYPE, MESSAGE_SERVER_RESPONSE_ANIMATION)
    p = put_len_header(p, DATA_SERVER_RESPONSE_ANIMATION, inner)
    p = _put_optional(p, ANIMATION_CONNECTION_ID, cid)
    p = _put_optional(p, ANIMATION_REQ_ID, rid)
    if end:
        p = put_varint_field(p, ANIMATION_END, 1)
    p = _put_optional(p, ANIMATION_ANIMATION, payload)
    p = _put_optional(p, ANIMATION_AVATAR_ID, aid)
    return buf
