# cython: language_level=3
"""Writing protobuf's wire format into a buffer sized beforehand, shared by the encoders.

The encoders compute a message's exact size first (``varint_size``, ``len_field_size``),
allocate the output once, then fill it with ``put_*``; no call here checks bounds.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from avatar_nb._reader cimport WT_LEN, WT_VARINT


cdef inline Py_ssize_t varint_size(uint64_t v) noexcept nogil:
    cdef Py_ssize_t n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline uint64_t tag_of(uint32_t field, uint32_t wire_type) noexcept nogil:
    return (<uint64_t>field << 3) | wire_type


cdef inline Py_ssize_t len_field_size(uint32_t field, Py_ssize_t n) noexcept nogil:
    """Bytes of a length-delimited field holding ``n`` bytes."""
    return varint_size(tag_of(field, WT_LEN)) + varint_size(<uint64_t>n) + n


cdef inline Py_ssize_t varint_field_size(uint32_t field, uint64_t v) noexcept nogil:
    return varint_size(tag_of(field, WT_VARINT)) + varint_size(v)


cdef inline char* put_varint(char* p, uint64_t v) noexcept nogil:
    while v >= 0x80:
        p[0] = <char>((v & 0x7F) | 0x80)
        v >>= 7
        p += 1
    p[0] = <char>v
    return p + 1


cdef inline char* put_varint_field(char* p, uint32_t field, uint64_t v) noexcept nogil:
    return put_varint(put_varint(p, tag_of(field, WT_VARINT)), v)


cdef inline char* put_len_tag(char* p, uint32_t field) noexcept nogil:
    return put_varint(p, tag_of(field, WT_LEN))


cdef inline char* put_len_header(char* p, uint32_t field, Py_ssize_t n) noexcept nogil:
    return put_varint(put_len_tag(p, field), <uint64_t>n)


cdef inline char* put_len_field(char* p, uint32_t field, const char* data, Py_ssize_t n) noexcept nogil:
    p = put_len_header(p, field, n)
    memcpy(p, data, n)
    return p + n
