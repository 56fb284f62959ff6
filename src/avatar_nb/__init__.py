"""avatar_nb: stream speech to an avatar service, get FLAME animation back, study it in a notebook.

The public API is re-exported here; see the README for a tour.
"""

from __future__ import annotations

try:
    from . import _pcm
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "avatar_nb's compiled core avatar_nb._pcm is missing or does not load "
        f"({exc}). Build it with `pip install .` (or `pip install -e .` in a checkout, "
        "or `python setup.py build_ext --inplace`); it needs a C compiler, Cython 3 and numpy."
    ) from exc

from ._pcm import (
    DecodedMessage,
    decode_animation,
    decode_animation_batch,
    decode_message,
    encode_animation,
    encode_animation_message,
    encode_audio_messages,
    frame_features,
    from_s16le,
    peak_envelope,
    to_s16le,
)
from .pipeline import AnimationTimeout, animate, animate_sync
from .audio import AudioFormatError, load_wav, prepare_audio, speech_like, write_wav
from .config import (
    AgoraEgressConfig,
    AudioFormat,
    LiveKitEgressConfig,
    SessionConfig,
    SessionConfigBuilder,
)
from .errors import (
    AvatarSDKError,
    AvatarSDKErrorCode,
    CloseCode,
    InvalidStateError,
    SessionTokenError,
)
from .logid import generate_log_id
from .protocol import DEFAULT_FPS, SUPPORTED_SAMPLE_RATES
from .server import LocalService
from .session import AvatarSession, new_avatar_session
from .timeline import Timeline

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # matplotlib and ipywidgets load on first use: a script that only streams audio,
    # or the command line's --help, should not pay for them
    if name in ("plots", "widgets"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'avatar_nb' has no attribute {name!r}")


def show(timeline: Timeline, **kwargs: object) -> object:
    """Everything about one Timeline in one widget (see :func:`avatar_nb.widgets.show`)."""
    from .widgets import show as _show

    return _show(timeline, **kwargs)


__all__ = [
    "plots",
    "show",
    "widgets",
    "AnimationTimeout",
    "AvatarSession",
    "animate",
    "animate_sync",
    "new_avatar_session",
    "AgoraEgressConfig",
    "AudioFormat",
    "AudioFormatError",
    "AvatarSDKError",
    "AvatarSDKErrorCode",
    "CloseCode",
    "DEFAULT_FPS",
    "DecodedMessage",
    "InvalidStateError",
    "LiveKitEgressConfig",
    "LocalService",
    "SUPPORTED_SAMPLE_RATES",
    "SessionConfig",
    "SessionConfigBuilder",
    "SessionTokenError",
    "Timeline",
    "decode_animation",
    "decode_animation_batch",
    "decode_message",
    "encode_animation",
    "encode_animation_message",
    "encode_audio_messages",
    "frame_features",
    "from_s16le",
    "generate_log_id",
    "load_wav",
    "peak_envelope",
    "prepare_audio",
    "speech_like",
    "to_s16le",
    "write_wav",
]
