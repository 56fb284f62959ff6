"""Small helpers shared by test modules."""

from __future__ import annotations

import numpy as np


def expected_frames(n_samples: int, sample_rate: int = 16000, fps: float = 25.0) -> int:
    """Keyframes the service makes for an utterance of ``n_samples`` (the last one partial)."""
    return int(np.ceil(n_samples * fps / sample_rate - 1e-9))
