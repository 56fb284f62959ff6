"""Record any session, study it, replay it.

- :class:`TapProxy` (``avatar-nb tap``): a recording proxy between any client and any
  avatar service, one capture file per session (:mod:`.fileformat`, docs/capture.md);
- :func:`load_capture`: a capture as the :class:`~avatar_nb.Timeline` the client's
  session would have built (a folder: a list of them);
- :func:`read_capture`: the raw records (the upgrade, every message, the closes);
- :func:`read_console`: the console (HTTP) requests a tap run forwarded, token
  requests above all, as a DataFrame: status, seconds, sizes, the error of a refusal,
  the answer's JSON with every credential redacted (``console.jsonl``, :mod:`.console`);
- replay: ``LocalService(replay=capture)`` answers a client with the recorded
  messages, timed as in the capture (:mod:`.replay`);
- :func:`captures_to_dataset`: many captures as runs of a dataset.
"""

from __future__ import annotations

import importlib as _importlib
from typing import Any as _Any

_EXPORTS = {
    "Capture": ".fileformat",
    "CaptureMessage": ".fileformat",
    "CaptureWriter": ".fileformat",
    "read_capture": ".fileformat",
    "read_console": ".console",
    "TapProxy": ".proxy",
    "run_tap": ".proxy",
    "load_capture": ".timeline",
    "capture_conditions": ".timeline",
    "Replay": ".replay",
    "captures_to_dataset": ".dataset",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> _Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
