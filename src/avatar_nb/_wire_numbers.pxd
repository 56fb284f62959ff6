# cython: language_level=3
"""The wire numbers of proto/message.proto that the compiled core reads and writes.

One definition: the envelope walker (``_envelope``) and the encoders (``_wire``) use
these names, never bare numbers. ``_envelope`` exposes them to Python
(``MESSAGE_TYPES``, ``DATA_FIELDS``, ``FIELD_NUMBERS``) and tests/test_schema.py
checks them against the generated schema, so a message or field added to the
.proto without teaching the decoder fails a test.
"""

cdef enum MessageType:
    MESSAGE_UNSPECIFIED = 0
    MESSAGE_CLIENT_CONFIGURE_SESSION = 1
    MESSAGE_SERVER_CONFIRM_SESSION = 2
    MESSAGE_CLIENT_AUDIO_INPUT = 3
    MESSAGE_SERVER_ERROR = 4
    MESSAGE_SERVER_RESPONSE_ANIMATION = 5
    MESSAGE_CLIENT_INTERRUPT = 7
    MESSAGE_CLIENT_PAUSE = 8
    MESSAGE_CLIENT_RESUME = 9
    MESSAGE_SERVER_PLAYBACK_STATE = 10

# Message: `type`, then the members of the oneof `data`
cdef enum MessageField:
    MESSAGE_TYPE = 1
    DATA_CLIENT_CONFIGURE_SESSION = 2
    DATA_SERVER_CONFIRM_SESSION = 3
    DATA_CLIENT_AUDIO_INPUT = 4
    DATA_SERVER_ERROR = 5
    DATA_SERVER_RESPONSE_ANIMATION = 6
    DATA_CLIENT_INTERRUPT = 8
    DATA_CLIENT_PAUSE = 9
    DATA_CLIENT_RESUME = 10
    DATA_SERVER_PLAYBACK_STATE = 11

cdef enum ClientConfigureSessionField:
    CONFIGURE_SAMPLE_RATE = 1
    CONFIGURE_BITRATE = 2
    CONFIGURE_AUDIO_FORMAT = 3
    CONFIGURE_TRANSPORT_COMPRESSION = 4
    CONFIGURE_EGRESS_TYPE = 5
    CONFIGURE_LIVEKIT_EGRESS = 6
    CONFIGURE_AGORA_EGRESS = 7

cdef enum LiveKitEgressConfigField:
    LIVEKIT_URL = 1
    LIVEKIT_API_KEY = 2
    LIVEKIT_API_SECRET = 3
    LIVEKIT_ROOM_NAME = 4
    LIVEKIT_PUBLISHER_ID = 5
    LIVEKIT_EXTRA_ATTRIBUTES = 6
    LIVEKIT_IDLE_TIMEOUT = 7
    LIVEKIT_API_TOKEN = 8

# a map<string, string> entry (LiveKitEgressConfig.extra_attributes)
cdef enum MapEntryField:
    MAP_KEY = 1
    MAP_VALUE = 2

cdef enum AgoraEgressConfigField:
    AGORA_CHANNEL_NAME = 1
    AGORA_TOKEN = 2
    AGORA_UID = 3
    AGORA_PUBLISHER_ID = 4

cdef enum ServerConfirmSessionField:
    CONFIRM_CONNECTION_ID = 1
    CONFIRM_CAPABILITIES = 2

cdef enum ClientAudioInputField:
    AUDIO_REQ_ID = 1
    AUDIO_END = 2
    AUDIO_AUDIO = 3

cdef enum ServerErrorField:
    ERROR_CONNECTION_ID = 1
    ERROR_REQ_ID = 2
    ERROR_CODE = 3
    ERROR_MESSAGE = 4

cdef enum ServerResponseAnimationField:
    ANIMATION_CONNECTION_ID = 1
    ANIMATION_REQ_ID = 2
    ANIMATION_END = 3
    ANIMATION_ANIMATION = 4
    ANIMATION_AVATAR_ID = 5

# ClientInterrupt, ClientPause and ClientResume: one field each
cdef enum ControlField:
    CONTROL_REQ_ID = 1

cdef enum ServerPlaybackStateField:
    PLAYBACK_CONNECTION_ID = 1
    PLAYBACK_REQ_ID = 2
    PLAYBACK_STATE = 3
    PLAYBACK_PLAYED_MS = 4
    PLAYBACK_REASON = 5
