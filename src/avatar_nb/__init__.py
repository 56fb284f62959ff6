"""avatar_nb: stream speech to an avatar service, get FLAME animation back, study it in a notebook.

The public API is re-exported here; see the README for a tour. ``import avatar_nb``
loads the compiled core, numpy and the small pure modules only: the session (aiohttp,
websockets), the local service, matplotlib and ipywidgets load when first used.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._lazy import lazy_getattr as _lazy_getattr

_CORE_MODULES = ("_pcm", "_envelope", "_flame", "_wire", "_pyramid")
"""The compiled core (Cython extensions), all loaded by ``import avatar_nb``."""

for _core in _CORE_MODULES:
    try:
        _importlib.import_module(f".{_core}", __name__)
    except ImportError as _exc:  # only on a broken install
        raise ImportError(
            f"avatar_nb's compiled core module avatar_nb.{_core} is missing or does not load "
            f"({_exc}); the compiled core is {', '.join(_CORE_MODULES)}. Build it with `pip install .` "
            "(or `pip install -e .` in a checkout, or `python setup.py build_ext --inplace`); "
            "it needs a C compiler, Cython 3 and numpy."
        ) from _exc
del _core

__version__ = "0.1.0"

# public name -> module that defines it; each loads on first access (PEP 562)
_EXPORTS: dict[str, str] = {
    # compiled core
    "DecodedMessage": "._wire",
    "decode_animation": "._flame",
    "decode_animation_batch": "._flame",
    "decode_message": "._wire",
    "encode_animation": "._flame",
    "encode_animation_message": "._wire",
    "encode_audio_messages": "._wire",
    "frame_features": "._pcm",
    "from_s16le": "._pcm",
    "peak_envelope": "._pcm",
    "to_s16le": "._pcm",
    # audio in
    "AUDIO_SUFFIXES": ".audio",
    "AudioFormatError": ".audio",
    "load_audio": ".audio",
    "load_wav": ".audio",
    "prepare_audio": ".audio",
    "speech_like": ".audio",
    "write_wav": ".audio",
    "OggOpusDecoder": ".opus",
    "OggOpusEncoder": ".opus",
    "OggOpusError": ".opus",
    # configuration, errors, ids
    "AgoraEgressConfig": ".config",
    "AudioFormat": ".config",
    "LiveKitEgressConfig": ".config",
    "SessionConfig": ".config",
    "SessionConfigBuilder": ".config",
    "AvatarSDKError": ".errors",
    "AvatarSDKErrorCode": ".errors",
    "CloseCode": ".errors",
    "InvalidStateError": ".errors",
    "ServerErrorCode": ".errors",
    "SessionTokenError": ".errors",
    "InterruptReason": ".events",
    "PlaybackSignal": ".events",
    "PlaybackState": ".events",
    "PlaybackStateEvent": ".events",
    "generate_log_id": ".logid",
    "DEFAULT_FPS": ".flame",
    "DEFAULT_SAMPLE_RATE": ".protocol",
    "SUPPORTED_SAMPLE_RATES": ".protocol",
    # sessions and runs
    "AvatarSession": ".session",
    "new_avatar_session": ".session",
    "AnimationTimeout": ".pipeline",
    "animate": ".pipeline",
    "animate_sync": ".pipeline",
    "open_service": ".endpoints",
    "Timeline": ".timeline",
    "explore": ".widgets.explorer",
    # many runs: sweeps and their datasets
    "sweep": ".sweeps",
    "load_results": ".dataset",
    # recorded sessions (avatar-nb tap)
    "load_capture": ".tap",
    "LocalService": ".server",
    "SimulatedEgress": ".server",
}

_SUBMODULES = ("analysis", "batch", "experiments", "flame", "plots", "tap", "tidy", "video", "widgets")

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "show"])


__getattr__ = _lazy_getattr(__name__, globals(), _EXPORTS, _SUBMODULES)


def __dir__() -> list[str]:
    return list(__all__)


def show(timeline: _Any, **kwargs: _Any) -> _Any:
    """Everything about one Timeline in one widget (see :func:`avatar_nb.widgets.show`)."""
    from .widgets import show as _show

    return _show(timeline, **kwargs)


if _TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from ._flame import decode_animation, decode_animation_batch, encode_animation  # noqa: F401
    from ._pcm import (  # noqa: F401
        frame_features,
        from_s16le,
        peak_envelope,
        to_s16le,
    )
    from ._wire import DecodedMessage, decode_message, encode_animation_message, encode_audio_messages  # noqa: F401
    from .audio import (  # noqa: F401
        AUDIO_SUFFIXES,
        AudioFormatError,
        load_audio,
        load_wav,
        prepare_audio,
        speech_like,
        write_wav,
    )
    from .config import (  # noqa: F401
        AgoraEgressConfig,
        AudioFormat,
        LiveKitEgressConfig,
        SessionConfig,
        SessionConfigBuilder,
    )
    from .endpoints import open_service  # noqa: F401
    from .errors import (  # noqa: F401
        AvatarSDKError,
        AvatarSDKErrorCode,
        CloseCode,
        InvalidStateError,
        ServerErrorCode,
        SessionTokenError,
    )
    from .events import InterruptReason, PlaybackSignal, PlaybackState, PlaybackStateEvent  # noqa: F401
    from .flame import DEFAULT_FPS  # noqa: F401
    from .logid import generate_log_id  # noqa: F401
    from .opus import OggOpusDecoder, OggOpusEncoder, OggOpusError  # noqa: F401
    from .pipeline import AnimationTimeout, animate, animate_sync  # noqa: F401
    from .protocol import DEFAULT_SAMPLE_RATE, SUPPORTED_SAMPLE_RATES  # noqa: F401
    from .server import LocalService, SimulatedEgress  # noqa: F401
    from .session import AvatarSession, new_avatar_session  # noqa: F401
    from .timeline import Timeline  # noqa: F401
    from .sweeps import sweep  # noqa: F401
    from .dataset import load_results  # noqa: F401
    from .widgets.explorer import explore  # noqa: F401
    from .tap import load_capture  # noqa: F401
