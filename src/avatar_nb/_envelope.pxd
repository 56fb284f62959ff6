# cython: language_level=3
"""The one walker of ``Message`` envelopes: see _envelope.pyx."""

from libc.stdint cimport int32_t, int64_t, uint8_t

from avatar_nb._reader cimport Reader, Span

# Called for each capability string of server_confirm_session (already UTF-8 checked),
# with ``span.start == -1`` when an earlier member of the oneof was replaced and the
# capabilities collected so far must be dropped.
ctypedef int (*CapabilitySink)(void* ctx, const uint8_t* buf, Span span) except -1


cdef struct Envelope:
    int32_t type
    int data_field          # the number of the oneof member present, 0 when none
    # the fields of that member (the last occurrence of each wins, as in protobuf);
    # spans are offsets within the envelope's bytes, start -1 when absent
    Span connection_id
    Span req_id
    Span avatar_id
    Span error_message
    Span reason
    Span audio
    Span animation
    bint end
    int32_t sample_rate
    int32_t bitrate
    int32_t audio_format
    int32_t transport_compression
    int32_t egress_type
    int32_t error_code
    int32_t playback_state
    int64_t played_ms
    # where capabilities go; NULL: they are only validated
    CapabilitySink on_capability
    void* ctx


cdef int walk_envelope(Reader* r, Envelope* env) except -1
