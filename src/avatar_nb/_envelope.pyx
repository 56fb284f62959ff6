# cython: language_level=3
"""Walking a serialized ``Message`` envelope: validation as protobuf does it, fields as spans.

One walker serves both decoders: ``_wire.decode_message`` (which turns the spans into
a ``DecodedMessage``) and ``_flame.decode_animation_batch`` (which only wants the
animation payload), so the batch rejects exactly what ``decode_message`` rejects.
The walker creates no Python object; what it accepts is what protobuf's parser
accepts (see ``_reader.pxd`` for the rules), string fields included: every string,
also inside ``livekit_egress``/``agora_egress`` and their map entries, must be
valid UTF-8. Malformed input raises ``ValueError`` naming the byte offset.

Linear time: every byte is read once. Repeated and merged fields overwrite a span or
go to the capability sink; replacing a oneof member clears a fixed-size record.
Field numbers come from ``_wire_numbers.pxd``; the layout is docs/protocol.md's
(proto/message.proto).
"""

from libc.stdint cimport int32_t, uint32_t
from libc.string cimport memset

from avatar_nb._reader cimport (
    WT_I32, WT_LEN, WT_VARINT, Reader, Span, read_bool, read_bytes, read_int32, read_int64, read_len,
    read_string, read_tag, read_varint, skip_field, sub_reader,
)
from avatar_nb._wire_numbers cimport *

ctypedef int (*MemberReader)(Reader* r, Envelope* env) except -1


cdef Envelope _NO_MEMBER  # every member field absent or zero (filled at import, below)


cdef int _clear_member(Envelope* env) except -1:
    """Forget the fields of the oneof member read so far (a later member replaces it)."""
    cdef CapabilitySink sink = env.on_capability
    cdef void* ctx = env.ctx
    cdef int32_t message_type = env.type
    cdef Span clear
    env[0] = _NO_MEMBER
    env.type = message_type
    env.on_capability = sink
    env.ctx = ctx
    if sink != NULL:
        clear.start = -1
        clear.length = 0
        sink(ctx, NULL, clear)
    return 0


cdef void _init_no_member() noexcept:
    memset(&_NO_MEMBER, 0, sizeof(Envelope))
    _NO_MEMBER.connection_id.start = -1
    _NO_MEMBER.req_id.start = -1
    _NO_MEMBER.avatar_id.start = -1
    _NO_MEMBER.error_message.start = -1
    _NO_MEMBER.reason.start = -1
    _NO_MEMBER.audio.start = -1
    _NO_MEMBER.animation.start = -1


_init_no_member()


# ----------------------------------------------------------------------------- egress configs
# Not kept (nothing in avatar_nb reads them back), but validated as protobuf would.

cdef int _validate_map_entry(Reader* r) except -1:
    """A ``map<string, string>`` entry: key and value are strings."""
    cdef uint32_t field, wt
    cdef Span ignored
    while r.pos < r.end:
        read_tag(r, &field, &wt)
        if wt == WT_LEN and (field == MAP_KEY or field == MAP_VALUE):
            read_string(r, &ignored)
        else:
            skip_field(r, field, wt)
    return 0


cdef int _validate_livekit(Reader* r) except -1:
    cdef uint32_t field, wt
    cdef Py_ssize_t s = 0, n = 0
    cdef Span ignored
    cdef Reader sub
    while r.pos < r.end:
        read_tag(r, &field, &wt)
        if wt == WT_LEN and field == LIVEKIT_EXTRA_ATTRIBUTES:
            read_len(r, &s, &n)
            sub = sub_reader(r, s, n)
            _validate_map_entry(&sub)
        elif wt == WT_LEN and field in (LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET, LIVEKIT_ROOM_NAME,
                                        LIVEKIT_PUBLISHER_ID, LIVEKIT_API_TOKEN):
            read_string(r, &ignored)
        else:  # idle_timeout, a varint, needs no check
            skip_field(r, field, wt)
    return 0


cdef int _validate_agora(Reader* r) except -1:
    cdef uint32_t field, wt
    cdef Span ignored
    while r.pos < r.end:
        read_tag(r, &field, &wt)
        if wt == WT_LEN and field in (AGORA_CHANNEL_NAME, AGORA_TOKEN, AGORA_PUBLISHER_ID):
            read_string(r, &ignored)
        else:  # uid, a varint, needs no check
            skip_field(r, field, wt)
    return 0


# ----------------------------------------------------------------------------- oneof members
# One function per member of ``Message.data``: a field it knows with the expected wire
# type is read; anything else is skipped as an unknown field, as protobuf does.

cdef int _configure_session(Reader* r, Envelope* env) except -1:
    cdef uint32_t field, wt
    cdef Py_ssize_t s = 0, n = 0
    cdef Reader sub
    while r.pos < r.end:
        read_tag(r, &field, &wt)
        if wt == WT_VARINT and field == CONFIGURE_SAMPLE_RATE:
            read_int32(r, &env.sample_rate)
        elif wt == WT_VARINT and field == CONFIGURE_BITRATE:
            read_int32(r, &env.bitrate)
        elif wt == WT_VARINT and field == CONFIGURE_AUDIO_FORMAT:
            read_int32(r, &env.audio_format)
        elif wt == WT_VARINT and field == CONFIGURE_TRANSPORT_COMPRESSION:
            read_int32(r, &env.transport_compression)
        elif wt == WT_VARINT and field == CONFIGURE_EGRESS_TYPE:
            read_int32(r, &env.egress_type)
        elif wt == WT_LEN and field == CONFIGURE_LIVEKIT_EGRESS:
            read_len(r, &s, &n)
            sub = sub_reader(r, s, n)
            _validate_livekit(&sub)
        elif wt == WT_LEN and field == CONFIGURE_AGORA_EGRESS:
            read_len(r, &s, &n)
            sub = sub_reader(r, s, n)
            _validate_agora(&sub)
        else:
            skip_field(r, field, wt)
    return 0


cdef int _confirm_session(Reader* r, Envelope* env) except -1:
    cdef uint32_t field, wt
    cdef Span capability
    while r.pos < r.end:
        read_tag(r, &field, &wt)
        if wt == WT_LEN and field == CONFIRM_CONNECTION_ID:
            read_string(r, &env.connection_id)
        elif wt == WT_LEN and field == CONFIRM_CAPABILITIES:
            read_string(r, &capability)
            if env.on_capability != NULL:
                env.on_capability(env.ctx, r.buf - r.base, capability)
        else:
            skip_field(r, field, wt)
    return 0


cdef int _audio_input(Reader* r, Envelope* env) except -1:
    cdef uint32_t field, wt
    while r.pos < r.end:
        read_tag(r, &field, &wt)
        if wt == WT_LEN and field == AUDIO_REQ_ID:
            read_string(r, &env.req_id)
        elif wt == WT_VARINT and field == AUDIO_END:
            read_bool(r, &env.end)
        elif wt == WT_LEN and field == AUDIO_AUDIO:
            read_bytes(r, &env.audio)
        else:
            skip_field(r, field, wt)
    return 0


cdef int _server_error(Reader* r, Envelope* env) except -1:
    cdef uint32_t field, wt
    while r.pos < r.end:
        read_tag(r, &field, &wt)
        if wt == WT_LEN and field == ERROR_CONNECTION_ID:
            read_string(r, &env.connection_id)
        elif wt == WT_LEN and field == ERROR_REQ_ID:
            read_string(r, &env.req_id)
        elif wt == WT_VARINT and field == ERROR_CODE:
            read_int32(r, &env.error_code)
        elif wt == WT_LEN and field == ERROR_MESSAGE:
            read_string(r, &env.error_message)
        else:
            skip_field(r, field, wt)
    return 0


cdef int _response_animation(Reader* r, Envelope* env) except -1:
    cdef uint32_t field, wt
    while r.pos < r.end:
        read_tag(r, &field, &wt)
        if wt == WT_LEN and field == ANIMATION_CONNECTION_ID:
            read_string(r, &env.connection_id)
        elif wt == WT_LEN and field == ANIMATION_REQ_ID:
            read_string(r, &env.req_id)
        elif wt == WT_VARINT and field == ANIMATION_END:
            read_bool(r, &env.end)
        elif wt == WT_LEN and field == ANIMATION_ANIMATION:
            read_bytes(r, &env.animation)  # a FlameAnimation, decoded by the caller
        elif wt == WT_LEN and field == ANIMATION_AVATAR_ID:
            read_string(r, &env.avatar_id)
        else:
            skip_field(r, field, wt)
    return 0


cdef int _control(Reader* r, Envelope* env) except -1:
    """ClientInterrupt, ClientPause and ClientResume: a req_id each."""
    cdef uint32_t field, wt
    while r.pos < r.end:
        read_tag(r, &field, &wt)
        if wt == WT_LEN and field == CONTROL_REQ_ID:
            read_string(r, &env.req_id)
        else:
            skip_field(r, field, wt)
    return 0


cdef int _playback_state(Reader* r, Envelope* env) except -1:
    cdef uint32_t field, wt
    while r.pos < r.end:
        read_tag(r, &field, &wt)
        if wt == WT_LEN and field == PLAYBACK_CONNECTION_ID:
            read_string(r, &env.connection_id)
        elif wt == WT_LEN and field == PLAYBACK_REQ_ID:
            read_string(r, &env.req_id)
        elif wt == WT_VARINT and field == PLAYBACK_STATE:
            read_int32(r, &env.playback_state)
        elif wt == WT_VARINT and field == PLAYBACK_PLAYED_MS:
            read_int64(r, &env.played_ms)
        elif wt == WT_LEN and field == PLAYBACK_REASON:
            read_string(r, &env.reason)
        else:
            skip_field(r, field, wt)
    return 0


cdef MemberReader _member_reader(uint32_t field) noexcept:
    """The reader of oneof member ``field``; NULL for a number that is not a member."""
    if field == DATA_CLIENT_CONFIGURE_SESSION:
        return _configure_session
    if field == DATA_SERVER_CONFIRM_SESSION:
        return _confirm_session
    if field == DATA_CLIENT_AUDIO_INPUT:
        return _audio_input
    if field == DATA_SERVER_ERROR:
        return _server_error
    if field == DATA_SERVER_RESPONSE_ANIMATION:
        return _response_animation
    if field == DATA_CLIENT_INTERRUPT or field == DATA_CLIENT_PAUSE or field == DATA_CLIENT_RESUME:
        return _control
    if field == DATA_SERVER_PLAYBACK_STATE:
        return _playback_state
    return NULL


cdef int walk_envelope(Reader* r, Envelope* env) except -1:
    """Read the whole envelope ``r`` into ``env`` (``on_capability``/``ctx`` set by the caller)."""
    cdef uint32_t field, wt
    cdef Py_ssize_t s = 0, n = 0
    cdef Reader sub
    cdef MemberReader read_member
    env.type = 0
    _clear_member(env)  # data_field is 0 from here until a member is read
    while r.pos < r.end:
        read_tag(r, &field, &wt)
        if wt == WT_VARINT and field == MESSAGE_TYPE:
            read_int32(r, &env.type)
            continue
        if wt == WT_LEN:
            read_member = _member_reader(field)
            if read_member != NULL:
                read_len(r, &s, &n)
                if env.data_field != <int>field:
                    # a later member of the oneof replaces an earlier one; the same
                    # member again merges into it (protobuf's rules)
                    if env.data_field != 0:
                        _clear_member(env)
                    env.data_field = field
                sub = sub_reader(r, s, n)
                read_member(&sub, env)
                continue
        skip_field(r, field, wt)
    return 0


# ----------------------------------------------------------------------------- for the schema tests

MESSAGE_TYPES = {
    "MESSAGE_UNSPECIFIED": MESSAGE_UNSPECIFIED,
    "MESSAGE_CLIENT_CONFIGURE_SESSION": MESSAGE_CLIENT_CONFIGURE_SESSION,
    "MESSAGE_SERVER_CONFIRM_SESSION": MESSAGE_SERVER_CONFIRM_SESSION,
    "MESSAGE_CLIENT_AUDIO_INPUT": MESSAGE_CLIENT_AUDIO_INPUT,
    "MESSAGE_SERVER_ERROR": MESSAGE_SERVER_ERROR,
    "MESSAGE_SERVER_RESPONSE_ANIMATION": MESSAGE_SERVER_RESPONSE_ANIMATION,
    "MESSAGE_CLIENT_INTERRUPT": MESSAGE_CLIENT_INTERRUPT,
    "MESSAGE_CLIENT_PAUSE": MESSAGE_CLIENT_PAUSE,
    "MESSAGE_CLIENT_RESUME": MESSAGE_CLIENT_RESUME,
    "MESSAGE_SERVER_PLAYBACK_STATE": MESSAGE_SERVER_PLAYBACK_STATE,
}
"""The MessageType values the compiled core writes (``_wire_numbers.pxd``)."""

DATA_FIELDS = frozenset(f for f in range(1, 1 << 12) if _member_reader(f) != NULL)
"""The numbers of the ``Message.data`` oneof members the walker reads (from its dispatch)."""

FIELD_NUMBERS = {
    "Message": {
        "type": MESSAGE_TYPE,
        "client_configure_session": DATA_CLIENT_CONFIGURE_SESSION,
        "server_confirm_session": DATA_SERVER_CONFIRM_SESSION,
        "client_audio_input": DATA_CLIENT_AUDIO_INPUT,
        "server_error": DATA_SERVER_ERROR,
        "server_response_animation": DATA_SERVER_RESPONSE_ANIMATION,
        "client_interrupt": DATA_CLIENT_INTERRUPT,
        "client_pause": DATA_CLIENT_PAUSE,
        "client_resume": DATA_CLIENT_RESUME,
        "server_playback_state": DATA_SERVER_PLAYBACK_STATE,
    },
    "ClientConfigureSession": {
        "sample_rate": CONFIGURE_SAMPLE_RATE,
        "bitrate": CONFIGURE_BITRATE,
        "audio_format": CONFIGURE_AUDIO_FORMAT,
        "transport_compression": CONFIGURE_TRANSPORT_COMPRESSION,
        "egress_type": CONFIGURE_EGRESS_TYPE,
        "livekit_egress": CONFIGURE_LIVEKIT_EGRESS,
        "agora_egress": CONFIGURE_AGORA_EGRESS,
    },
    "LiveKitEgressConfig": {
        "url": LIVEKIT_URL,
        "api_key": LIVEKIT_API_KEY,
        "api_secret": LIVEKIT_API_SECRET,
        "room_name": LIVEKIT_ROOM_NAME,
        "publisher_id": LIVEKIT_PUBLISHER_ID,
        "extra_attributes": LIVEKIT_EXTRA_ATTRIBUTES,
        "idle_timeout": LIVEKIT_IDLE_TIMEOUT,
        "api_token": LIVEKIT_API_TOKEN,
    },
    "LiveKitEgressConfig.ExtraAttributesEntry": {"key": MAP_KEY, "value": MAP_VALUE},
    "AgoraEgressConfig": {
        "channel_name": AGORA_CHANNEL_NAME,
        "token": AGORA_TOKEN,
        "uid": AGORA_UID,
        "publisher_id": AGORA_PUBLISHER_ID,
    },
    "ServerConfirmSession": {"connection_id": CONFIRM_CONNECTION_ID, "capabilities": CONFIRM_CAPABILITIES},
    "ClientAudioInput": {"req_id": AUDIO_REQ_ID, "end": AUDIO_END, "audio": AUDIO_AUDIO},
    "ServerError": {
        "connection_id": ERROR_CONNECTION_ID,
        "req_id": ERROR_REQ_ID,
        "code": ERROR_CODE,
        "message": ERROR_MESSAGE,
    },
    "ServerResponseAnimation": {
        "connection_id": ANIMATION_CONNECTION_ID,
        "req_id": ANIMATION_REQ_ID,
        "end": ANIMATION_END,
        "animation": ANIMATION_ANIMATION,
        "avatar_id": ANIMATION_AVATAR_ID,
    },
    "ClientInterrupt": {"req_id": CONTROL_REQ_ID},
    "ClientPause": {"req_id": CONTROL_REQ_ID},
    "ClientResume": {"req_id": CONTROL_REQ_ID},
    "ServerPlaybackState": {
        "connection_id": PLAYBACK_CONNECTION_ID,
        "req_id": PLAYBACK_REQ_ID,
        "state": PLAYBACK_STATE,
        "played_ms": PLAYBACK_PLAYED_MS,
        "reason": PLAYBACK_REASON,
    },
}
"""Message name -> {field name: number}: every field of every envelope message, as the walker knows them."""
