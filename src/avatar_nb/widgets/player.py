"""AudioPlayer: the browser's audio element as a widget whose position Python can read and set."""

from __future__ import annotations

import base64
from pathlib import Path

import anywidget
import numpy as np
import traitlets

from ..audio import wav_bytes

__all__ = ["AudioPlayer"]

_STATIC = Path(__file__).resolve().parent / "static"



class AudioPlayer(anywidget.AnyWidget):
    """An ``<audio>`` element: ``time`` follows playback (about 20 updates a second),
    setting ``seek`` moves the playback position, ``playing`` says whether it plays."""

    _esm = (_STATIC / "player.js").read_text(encoding="utf-8")
    src = traitlets.Unicode("").tag(sync=True)
    time = traitlets.Float(0.0).tag(sync=True)
    seek = traitlets.Float(0.0).tag(sync=True)
    playing = traitlets.Bool(False).tag(sync=True)

    def __init__(self, samples: np.ndarray, sample_rate: int, **kwargs: object) -> None:
        data = base64.b64encode(wav_bytes(samples, sample_rate)).decode("ascii")
        super().__init__(src=f"data:audio/wav;base64,{data}", **kwargs)
