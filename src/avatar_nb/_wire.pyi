"""Type stubs for avatar_nb._wire, Message envelope decoding and encoding (see _wire.pyx)."""

import numpy as np
import numpy.typing as npt

from typing_extensions import Buffer

class DecodedMessage:
    type: int
    data_field: int
    connection_id: str
    req_id: str
    end: bool
    avatar_id: str
    error_code: int
    error_message: str
    capabilities: tuple[str, ...]
    audio: bytes
    sample_rate: int
    bitrate: int
    audio_format: int
    transport_compression: int
    egress_type: int
    playback_state: int
    played_ms: int
    reason: str
    animation: bytes
    keyframes: npt.NDArray[np.float32]
    animation_error: str | None
    def __init__(self) -> None: ...

def decode_message(data: Buffer) -> DecodedMessage: ...
def encode_audio_messages(
    pcm: Buffer, req_id: str, chunk_bytes: int, *, end: bool = True
) -> list[bytes]: ...
def encode_animation_message(
    keyframes: npt.ArrayLike,
    *,
    connection_id: str = "",
    req_id: str = "",
    end: bool = False,
    avatar_id: str = "",
) -> bytes: ...
