"""Type stubs for avatar_nb._flame, the FLAME animation payload (see _flame.pyx)."""

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from typing_extensions import Buffer

LAYOUT: tuple[tuple[int, int, int], ...]
"""(field number, first column, width) of the fixed-width Flame fields, as compiled in."""
LAYOUT_FIXED_COLUMNS: int
LAYOUT_EXPRESSION_FIELD: int
LAYOUT_KEYFRAMES_FIELD: int

def decode_animation(payload: Buffer) -> npt.NDArray[np.float32]: ...
def decode_animation_batch(messages: Iterable[Buffer]) -> npt.NDArray[np.float32]: ...
def encode_animation(keyframes: npt.ArrayLike) -> bytes: ...
