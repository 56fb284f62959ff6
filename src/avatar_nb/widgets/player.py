"""AudioPlayer: the browser's audio element as a widget whose position Python can read and set."""

from __future__ import annotations

import base64

import anywidget
import numpy as np
import traitlets

from ..audio import wav_bytes

__all__ = ["AudioPlayer"]

_ESM = """
function render({ model, el }) {
  const audio = document.createElement("audio");
  audio.controls = true;
  audio.style.width = "100%";
  audio.src = model.get("src");
  model.on("change:src", () => { audio.src = model.get("src"); });
  let last = 0;
  const report = (force) => {
    const now = performance.now();
    if (force || now - last > 50) {
      last = now;
      model.set("time", audio.currentTime);
      model.save_changes();
    }
  };
  const tick = () => { report(false); if (!audio.paused) requestAnimationFrame(tick); };
  audio.addEventListener("play", () => { model.set("playing", true); model.save_changes(); requestAnimationFrame(tick); });
  audio.addEventListener("pause", () => { model.set("playing", false); report(true); });
  audio.addEventListener("seeked", () => report(true));
  model.on("change:seek", () => {
    const t = model.get("seek");
    if (Math.abs(audio.currentTime - t) > 0.06) { audio.currentTime = t; }
  });
  el.appendChild(audio);
}
export default { render };
"""


class AudioPlayer(anywidget.AnyWidget):
    """An ``<audio>`` element: ``time`` follows playback (about 20 updates a second),
    setting ``seek`` moves the playback position, ``playing`` says whether it plays."""

    _esm = _ESM
    src = traitlets.Unicode("").tag(sync=True)
    time = traitlets.Float(0.0).tag(sync=True)
    seek = traitlets.Float(0.0).tag(sync=True)
    playing = traitlets.Bool(False).tag(sync=True)

    def __init__(self, samples: np.ndarray, sample_rate: int, **kwargs: object) -> None:
        data = base64.b64encode(wav_bytes(samples, sample_rate)).decode("ascii")
        super().__init__(src=f"data:audio/wav;base64,{data}", **kwargs)
