"""Type stubs for avatar_nb._pcm, the compiled core's audio side (see _pcm.pyx for the contracts)."""

from typing import Any

import numpy as np
import numpy.typing as npt

from typing_extensions import Buffer

def to_s16le(samples: npt.ArrayLike, *, clip: bool = True) -> bytes: ...
def from_s16le(data: Buffer) -> npt.NDArray[np.float32]: ...
def peak_envelope(
    samples: npt.ArrayLike | Buffer, n_bins: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
def frame_count(n_samples: int, sample_rate: int, fps: float) -> int: ...
def frame_features(
    pcm_or_samples: Any, sample_rate: int, fps: float
) -> dict[str, npt.NDArray[np.float32]]: ...
