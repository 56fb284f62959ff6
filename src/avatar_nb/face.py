"""The face that avatar_nb draws from a keyframe: its pose and its geometry, in one place.

:func:`face_pose` reads the drawing's parameters out of keyframes (every column index
from :mod:`avatar_nb.flame`). The matplotlib face (:func:`avatar_nb.plots.face`), the SVG
face (:func:`avatar_nb.plots.face_svg`) and the video frames (:mod:`avatar_nb.video`)
all draw from these, so the three agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .flame import CHANNELS, FIXED_COLUMNS, SCALAR_CHANNELS

__all__ = ["face_pose"]


def face_pose(keyframes: Any) -> dict[str, np.ndarray]:
    """The face drawing's parameters of one keyframe (20 + E values) or many (n, 20 + E).

    Returns 1-D float64 arrays (one value per keyframe): ``pitch``, ``yaw``, ``roll``
    (head rotation, rad), ``jaw`` (opening, rad, >= 0), ``lid_left``/``lid_right``
    (0 open ... 1 closed), ``gaze_left_x``/``gaze_left_y``/``gaze_right_x``/``gaze_right_y``
    (each eye's yaw and pitch, rad; positive pitch looks down) and ``brow`` (the first expression coefficient, 0
    when E = 0). Every column index comes from :mod:`avatar_nb.flame`.
    """
    kf = np.asarray(keyframes, dtype=np.float64)
    if kf.ndim == 1:
        kf = kf[None, :]
    if kf.ndim != 2 or kf.shape[1] < FIXED_COLUMNS:
        raise ValueError(f"a keyframe has at least {FIXED_COLUMNS} values, got shape {np.shape(keyframes)}")
    eye = CHANNELS["eye_pose"].start  # left eye (pitch, yaw, roll), then the right eye
    zeros = np.zeros(kf.shape[0])
    return {
        "pitch": kf[:, SCALAR_CHANNELS["head_pitch"]],
        "yaw": kf[:, SCALAR_CHANNELS["head_yaw"]],
        "roll": kf[:, SCALAR_CHANNELS["head_roll"]],
        "jaw": np.maximum(kf[:, SCALAR_CHANNELS["jaw_open"]], 0.0),
        "lid_left": np.clip(kf[:, SCALAR_CHANNELS["eyelid_left"]], 0.0, 1.0),
        "lid_right": np.clip(kf[:, SCALAR_CHANNELS["eyelid_right"]], 0.0, 1.0),
        "gaze_left_y": kf[:, eye],
        "gaze_left_x": kf[:, eye + 1],
        "gaze_right_y": kf[:, eye + 3],
        "gaze_right_x": kf[:, eye + 4],
        "brow": kf[:, FIXED_COLUMNS] if kf.shape[1] > FIXED_COLUMNS else zeros,
    }
