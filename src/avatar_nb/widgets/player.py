"""AudioPlayer: the browser's audio element as a widget whose position Python can read and set.

Audio up to :data:`FULL_AUDIO_SECONDS` travels whole, as a WAV data URL in ``src``. Longer
audio (an hour of microphone capture or a soak run) would not: an hour at 16 kHz is 115 MB
of WAV, 154 MB of base64, held in the widget state, the saved notebook and the browser's
memory. So the player carries a window of :data:`WINDOW_SECONDS` of it (the first in
``src``) and asks the kernel for the window around the position when a seek leaves the
window it holds or playback reaches its end (``static/player.js``). The kernel answers
with the samples as one int16 buffer (:meth:`AudioPlayer.handle`), never JSON lists or
base64; the browser plays it as a WAV blob. ``time`` and ``seek`` are seconds of the
whole run, never of the window.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from .. import _pcm
from ..audio import wav_bytes
from ._util import finite_number

__all__ = ["AudioPlayer"]

FULL_AUDIO_SECONDS = 300.0
"""The longest audio carried whole, in ``src`` (five minutes: 9.6 MB of WAV, 12.8 MB of
base64 at 16 kHz). Longer audio is carried a window at a time."""

WINDOW_SECONDS = 60.0
"""The audio in the browser at a time beyond :data:`FULL_AUDIO_SECONDS`, and the most the
kernel sends for one request (1.9 MB at 16 kHz, 5.8 MB at 48 kHz)."""

_STATIC = Path(__file__).resolve().parent / "static"


class AudioPlayer(anywidget.AnyWidget):
    """An ``<audio>`` element: ``time`` follows playback (about 20 updates a second),
    setting ``seek`` moves the playback position, ``playing`` says whether it plays; both
    in seconds of the whole audio. ``duration``: its length in seconds.

    Audio longer than :data:`FULL_AUDIO_SECONDS` is carried :data:`WINDOW_SECONDS` at a
    time (``window_seconds``; 0 when ``src`` holds it all): see the module docstring.
    Kernel side, testable without a browser: :meth:`handle` answers one browser message.
    """

    _esm = (_STATIC / "player.js").read_text(encoding="utf-8")
    src = traitlets.Unicode("").tag(sync=True)
    time = traitlets.Float(0.0).tag(sync=True)
    seek = traitlets.Float(0.0).tag(sync=True)
    playing = traitlets.Bool(False).tag(sync=True)
    duration = traitlets.Float(0.0).tag(sync=True)
    window_seconds = traitlets.Float(0.0).tag(sync=True)

    def __init__(self, samples: np.ndarray | bytes, sample_rate: int, **kwargs: object) -> None:
        if isinstance(samples, (bytes, bytearray, memoryview)):
            samples = np.frombuffer(samples, dtype="<i2")  # s16le, as the library's audio travels
        self.sample_rate = int(sample_rate)
        duration = len(samples) / self.sample_rate
        if duration <= FULL_AUDIO_SECONDS:
            self._samples = None
            src, window = wav_bytes(samples, self.sample_rate), 0.0
        else:
            self._samples = _int16(samples)
            src, window = wav_bytes(self._samples[: int(WINDOW_SECONDS * self.sample_rate)], self.sample_rate), WINDOW_SECONDS
        data = base64.b64encode(src).decode("ascii")
        super().__init__(src=f"data:audio/wav;base64,{data}", duration=duration, window_seconds=window, **kwargs)
        self.on_msg(self._on_browser_msg)

    def window(self, t: float, seconds: float) -> tuple[float, np.ndarray]:
        """The audio from ``t`` (seconds of the whole audio, clipped into it) for ``seconds``,
        at most :data:`WINDOW_SECONDS`: where it starts (on a sample) and its int16 samples."""
        if self._samples is None:
            raise ValueError("this player holds its whole audio; it has no windows")
        n = self._samples.shape[0]
        i0 = min(max(0, int(t * self.sample_rate)), n)
        count = int(max(0.0, min(seconds, WINDOW_SECONDS)) * self.sample_rate)
        return i0 / self.sample_rate, self._samples[i0 : i0 + count]

    def handle(self, content: Any) -> tuple[dict[str, Any] | None, list[bytes]]:
        """The reply to one browser message and its buffers: ``{"type": "window", "req", "t",
        "seconds"}`` gets :meth:`window` as ``{"type": "window", "req", "start", "sample_rate",
        "n"}`` and one little-endian int16 buffer. Anything else (another type, a player that
        holds its whole audio, ``t`` outside the audio, ``seconds`` not positive, a value that
        is not a finite number) gets ``(None, [])``: it is ignored."""
        if self._samples is None or not isinstance(content, dict) or content.get("type") != "window":
            return None, []
        t, seconds, req = finite_number(content.get("t")), finite_number(content.get("seconds")), content.get("req")
        if t is None or seconds is None or not (0.0 <= t < self.duration) or seconds <= 0.0:
            return None, []
        start, pcm = self.window(t, seconds)
        reply = {"type": "window", "req": req if finite_number(req) is not None else None,
                 "start": start, "sample_rate": self.sample_rate, "n": int(pcm.shape[0])}
        return reply, [pcm.astype("<i2", copy=False).tobytes()]

    def _on_browser_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        reply, buffers = self.handle(content)
        if reply is not None:
            self.send(reply, buffers=buffers)



def _int16(samples: Any) -> np.ndarray:
    """Mono int16 samples: a 1-D int16 array as it is (no copy of an hour's audio), anything
    else through the library's converter."""
    arr = np.asarray(samples)
    if arr.dtype == np.int16 and arr.ndim == 1:
        return arr
    return np.frombuffer(_pcm.to_s16le(arr), dtype="<i2")
