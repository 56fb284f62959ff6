"""Type stubs for avatar_nb._pcm, the compiled core (see _pcm.pyx for the contracts)."""

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from typing_extensions import Buffer

# Column layout of a decoded keyframe row (PROTOCOL.md section 4).
FLAME_FIELDS: tuple[tuple[str, int], ...]
"""(field name, number of floats) in column order; expression is last and variable."""
FLAME_FIXED_COLUMNS: int
"""Columns before the expression coefficients (20)."""

def to_s16le(samples: npt.ArrayLike, *, clip: bool = True) -> bytes: ...
def from_s16le(data: Buffer) -> npt.NDArray[np.float32]: ...
def encode_audio_messages(
    pcm: Buffer, req_id: str, chunk_bytes: int, *, end: bool = True
) -> list[bytes]: ...
def encode_animation(keyframes: npt.ArrayLike) -> bytes: ...
def encode_animation_message(
    keyframes: npt.ArrayLike,
    *,
    connection_id: str = "",
    req_id: str = "",
    end: bool = False,
    avatar_id: str = "",
) -> bytes: ...

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
def decode_animation(payload: Buffer) -> npt.NDArray[np.float32]: ...
def decode_animation_batch(messages: Iterable[Buffer]) -> npt.NDArray[np.float32]: ...
def peak_envelope(
    samples: npt.ArrayLike, n_bins: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
def frame_features(
    pcm_or_samples: Any, sample_rate: int, fps: float
) -> dict[str, npt.NDArray[np.float32]]: ...
