# cython: language_level=3
"""The bounds-checked reader of protobuf's wire format, shared by the compiled decoders.

Reading untrusted bytes: every read from an input buffer goes through the inline
functions below, which check the position against the buffer's end *before* touching
memory and raise ``ValueError`` naming the byte offset otherwise. Nothing else in the
compiled core dereferences an input pointer.

The rules are protobuf's (its upb parser, the one the Python library uses), so that
what these decoders accept is exactly what ``Message.FromString`` accepts:

- a tag is a varint of at most 5 bytes whose value fits 32 bits, field number not 0;
- other varints are at most 10 bytes (bits past the 64th are dropped);
- an unknown group is skipped up to its matching end tag; an end tag anywhere else,
  or one for another field, is an error;
- submessages and groups nest at most ``DEPTH_LIMIT`` deep;
- a string field must be valid UTF-8 (checked in C: ``_reader.h``).
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t


cdef extern from "_reader.h":
    bint avnb_utf8_valid(const uint8_t* s, Py_ssize_t n) nogil
    int avnb_fail(Py_ssize_t offset, const char* fmt, ...) except -1


cdef enum WireType:
    WT_VARINT = 0
    WT_I64 = 1
    WT_LEN = 2
    WT_SGROUP = 3
    WT_EGROUP = 4
    WT_I32 = 5

cdef enum:
    DEPTH_LIMIT = 100  # upb's default: submessages and groups nested deeper are an error
    MAX_TAG_BYTES = 5


cdef struct Reader:
    const uint8_t* buf
    Py_ssize_t pos
    Py_ssize_t end
    Py_ssize_t base  # offset of buf[0] within the outermost buffer, for error text and spans
    int depth        # nesting level of the message being read (the outermost is 0)


cdef struct Span:
    Py_ssize_t start   # offset within the outermost buffer; -1 when the field is absent
    Py_ssize_t length


cdef inline Reader reader_over(const uint8_t* buf, Py_ssize_t length) noexcept:
    cdef Reader r
    r.buf = buf
    r.pos = 0
    r.end = length
    r.base = 0
    r.depth = 0
    return r


cdef inline Reader sub_reader(const Reader* r, Py_ssize_t start, Py_ssize_t length) noexcept:
    """A reader over ``length`` bytes of ``r`` at ``start``: a nested message, one level deeper.

    The schemas read here nest at most four messages deep, far below ``DEPTH_LIMIT``;
    the depth matters for the groups they may contain.
    """
    cdef Reader sub
    sub.buf = r.buf + start
    sub.pos = 0
    sub.end = length
    sub.base = r.base + start
    sub.depth = r.depth + 1
    return sub


cdef inline int fail(const Reader* r, const char* what) except -1:
    """Raise ValueError naming ``what`` and the reader's position (formatting in _reader.h)."""
    return avnb_fail(r.base + r.pos, "%s", what)


cdef inline int read_varint(Reader* r, uint64_t* out) except -1:
    cdef uint64_t result = 0
    cdef int shift = 0
    cdef uint8_t b
    cdef Py_ssize_t start = r.pos
    while True:
        if r.pos >= r.end:
            r.pos = start
            return fail(r, "truncated varint")
        if shift >= 64:
            r.pos = start
            return fail(r, "varint longer than 10 bytes")
        b = r.buf[r.pos]
        r.pos += 1
        result |= (<uint64_t>(b & 0x7F)) << shift
        if b < 0x80:
            out[0] = result
            return 0
        shift += 7


cdef inline int read_tag(Reader* r, uint32_t* field, uint32_t* wire_type) except -1:
    cdef uint64_t tag = 0
    cdef Py_ssize_t at = r.pos
    cdef int i
    cdef uint8_t b
    field[0] = wire_type[0] = 0  # defined even on error (keeps the compiler's flow analysis quiet)
    if r.pos < r.end and r.buf[r.pos] < 0x80:  # one-byte tags: fields 1..15
        tag = r.buf[r.pos]
        r.pos += 1
    else:
        for i in range(MAX_TAG_BYTES + 1):
            if i == MAX_TAG_BYTES:
                r.pos = at
                return fail(r, "tag longer than 5 bytes")
            if r.pos >= r.end:
                r.pos = at
                return fail(r, "truncated varint")
            b = r.buf[r.pos]
            r.pos += 1
            tag |= (<uint64_t>(b & 0x7F)) << (7 * i)
            if b < 0x80:
                break
        if (tag >> 32) != 0:
            r.pos = at
            return avnb_fail(r.base + r.pos, "tag %llu does not fit 32 bits", <unsigned long long>tag)
    if (tag >> 3) == 0:
        r.pos = at
        return fail(r, "invalid field number 0")
    field[0] = <uint32_t>(tag >> 3)
    wire_type[0] = <uint32_t>(tag & 7)
    return 0


cdef inline int read_len(Reader* r, Py_ssize_t* start, Py_ssize_t* length) except -1:
    """Read a length prefix and check that the bytes it announces are all there."""
    cdef uint64_t n = 0
    cdef Py_ssize_t at = r.pos
    read_varint(r, &n)
    if n > <uint64_t>(r.end - r.pos):
        r.pos = at
        return avnb_fail(r.base + r.pos, "length %llu runs past the end of the buffer", <unsigned long long>n)
    start[0] = r.pos
    length[0] = <Py_ssize_t>n
    r.pos += <Py_ssize_t>n
    return 0


cdef inline int read_bytes(Reader* r, Span* out) except -1:
    """A length-delimited field's span, as an offset within the outermost buffer."""
    cdef Py_ssize_t s = 0, n = 0
    read_len(r, &s, &n)
    out.start = r.base + s
    out.length = n
    return 0


cdef inline int read_string(Reader* r, Span* out) except -1:
    """A string field's span; invalid UTF-8 is an error, as in protobuf."""
    cdef Py_ssize_t s = 0, n = 0
    read_len(r, &s, &n)
    if not avnb_utf8_valid(r.buf + s, n):
        r.pos = s
        return fail(r, "invalid UTF-8 in string field")
    out.start = r.base + s
    out.length = n
    return 0


cdef inline int read_int32(Reader* r, int32_t* out) except -1:
    """int32 and enum fields: the low 32 bits of the varint, as protobuf keeps them."""
    cdef uint64_t v = 0
    read_varint(r, &v)
    out[0] = <int32_t>(<uint32_t>v)  # C truncation keeps the low 32 bits
    return 0


cdef inline int read_int64(Reader* r, int64_t* out) except -1:
    cdef uint64_t v = 0
    read_varint(r, &v)
    out[0] = <int64_t>v
    return 0


cdef inline int read_bool(Reader* r, bint* out) except -1:
    cdef uint64_t v = 0
    read_varint(r, &v)
    out[0] = v != 0
    return 0


cdef inline int skip_scalar(Reader* r, uint32_t wire_type) except -1:
    """Skip a field of any wire type but the group ones."""
    cdef uint64_t v = 0
    cdef Py_ssize_t s = 0, n = 0
    if wire_type == WT_VARINT:
        read_varint(r, &v)
    elif wire_type == WT_I64:
        if r.end - r.pos < 8:
            return fail(r, "truncated fixed64 field")
        r.pos += 8
    elif wire_type == WT_LEN:
        read_len(r, &s, &n)
    elif wire_type == WT_I32:
        if r.end - r.pos < 4:
            return fail(r, "truncated fixed32 field")
        r.pos += 4
    elif wire_type == WT_EGROUP:
        return fail(r, "end-group tag without a start-group tag")
    else:
        return avnb_fail(r.base + r.pos, "invalid wire type %u", <unsigned int>wire_type)
    return 0


cdef inline int skip_group(Reader* r, uint32_t field) except -1:
    """Skip an unknown group (its start tag just read) through its matching end tag.

    Iterative, with the open groups' field numbers on a fixed stack: nesting is bounded
    by ``DEPTH_LIMIT`` and the time by the bytes skipped.
    """
    cdef uint32_t open_fields[DEPTH_LIMIT]
    cdef int n_open = 0
    cdef uint32_t f, wt
    f = field
    wt = WT_SGROUP
    while True:
        if wt == WT_SGROUP:
            if r.depth + n_open + 1 > DEPTH_LIMIT:
                return avnb_fail(r.base + r.pos, "groups nested deeper than %d levels", <int>DEPTH_LIMIT)
            open_fields[n_open] = f
            n_open += 1
        elif wt == WT_EGROUP:
            if f != open_fields[n_open - 1]:
                return avnb_fail(r.base + r.pos, "end-group tag of field %u closes the group of field %u",
                                <unsigned int>f, <unsigned int>open_fields[n_open - 1])
            n_open -= 1
            if n_open == 0:
                return 0
        else:
            skip_scalar(r, wt)
        if r.pos >= r.end:
            return avnb_fail(r.base + r.pos, "unterminated group of field %u", <unsigned int>open_fields[n_open - 1])
        read_tag(r, &f, &wt)


cdef inline int skip_field(Reader* r, uint32_t field, uint32_t wire_type) except -1:
    """Skip an unknown field (or a known one with an unexpected wire type), as protobuf does."""
    if wire_type == WT_SGROUP:
        return skip_group(r, field)
    return skip_scalar(r, wire_type)


cdef inline const uint8_t[::1] as_bytes_view(object data):
    """A byte view of any bytes-like object; a non-contiguous buffer is copied first."""
    cdef object view
    if isinstance(data, str):
        raise TypeError("expected a bytes-like object (bytes, bytearray, memoryview), got str")
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(
            f"expected a bytes-like object (bytes, bytearray, memoryview), got {type(data).__name__}"
        ) from None
    if not view.c_contiguous:
        view = memoryview(view.tobytes())  # its bytes in C order, as bytes(view) gives them
    return view.cast("B")
