"""The FLAME keyframe layout: the one definition every layer of avatar_nb reads.

A decoded keyframe is one row of ``20 + E`` float32 columns, in the order of the
``Flame`` message's fields (see ``docs/protocol.md``, "The animation payload"):

=============  ======  =======  ===============================================
channel        field   columns  meaning
=============  ======  =======  ===============================================
translation    1       0:3      head position (x, y, z)
rotation       2       3:6      head rotation, axis-angle (pitch, yaw, roll), rad
neck_pose      3       6:9      neck rotation, axis-angle, rad
jaw_pose       4       9:12     jaw rotation; ``jaw_pose[0]`` is how far it opens
eye_pose       5       12:18    left then right eye, axis-angle, rad
eye_lid        6       18:20    left, right: 0 open ... 1 closed
expression     7       20:      E coefficients of the FLAME expression space
=============  ======  =======  ===============================================

Derived single-column channels with readable names (``jaw_open``, ``eyelid_left``,
``head_yaw`` ...) are in :data:`SCALAR_CHANNELS`. The compiled decoder takes its
column offsets from ``_flame_layout.pxd``; a test checks that the two agree.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CHANNELS",
    "DEFAULT_FPS",
    "EXPRESSION",
    "EXPRESSION_FIELD",
    "FIELDS",
    "FIXED_COLUMNS",
    "SCALAR_CHANNELS",
    "channel",
    "channel_names",
    "column_names",
]

DEFAULT_FPS = 25.0
"""Keyframe rate assumed when the server declares no ``fps:<n>`` capability."""

FIELDS: tuple[tuple[str, int, int], ...] = (
    ("translation", 1, 3),
    ("rotation", 2, 3),
    ("neck_pose", 3, 3),
    ("jaw_pose", 4, 3),
    ("eye_pose", 5, 6),
    ("eye_lid", 6, 2),
)
"""The fixed-width ``Flame`` fields in column order: (name, field number, width)."""

EXPRESSION = "expression"
EXPRESSION_FIELD = 7
"""The ``Flame`` field holding the E expression coefficients (the columns after the fixed ones)."""


def _slices() -> dict[str, slice]:
    out: dict[str, slice] = {}
    start = 0
    for name, _, width in FIELDS:
        out[name] = slice(start, start + width)
        start += width
    return out


CHANNELS: dict[str, slice] = _slices()
"""Fixed-width channels and their columns (``expression`` is ``FIXED_COLUMNS`` onward)."""

FIXED_COLUMNS: int = sum(width for _, _, width in FIELDS)
"""Columns before the expression coefficients (20)."""

SCALAR_CHANNELS: dict[str, int] = {
    "jaw_open": CHANNELS["jaw_pose"].start,
    "eyelid_left": CHANNELS["eye_lid"].start,
    "eyelid_right": CHANNELS["eye_lid"].start + 1,
    "head_pitch": CHANNELS["rotation"].start,
    "head_yaw": CHANNELS["rotation"].start + 1,
    "head_roll": CHANNELS["rotation"].start + 2,
}
"""Single columns with readable names: derived views, not extra data."""


def channel_names() -> list[str]:
    """Every channel name :func:`channel` accepts, vector channels first."""
    return [*CHANNELS, EXPRESSION, *SCALAR_CHANNELS]


def channel(keyframes: np.ndarray, name: str) -> np.ndarray:
    """Channel ``name`` of an (n, 20 + E) keyframe array: 2-D for vector channels and
    ``expression``, 1-D for the scalar ones. ``KeyError`` names the known channels."""
    if name in CHANNELS:
        return keyframes[:, CHANNELS[name]]
    if name == EXPRESSION:
        return keyframes[:, FIXED_COLUMNS:]
    if name in SCALAR_CHANNELS:
        return keyframes[:, SCALAR_CHANNELS[name]]
    raise KeyError(f"unknown channel {name!r}; known: {', '.join(channel_names())}")


def column_names(n_expression: int) -> list[str]:
    """One name per keyframe column: ``translation_0`` .. ``eye_lid_1``, ``expression_0`` ..

    The tidy exports (``Timeline.to_pandas``) use these as column names.
    """
    if n_expression < 0:
        raise ValueError(f"n_expression must be >= 0, got {n_expression}")
    names = [f"{name}_{i}" for name, _, width in FIELDS for i in range(width)]
    names += [f"{EXPRESSION}_{i}" for i in range(n_expression)]
    return names
