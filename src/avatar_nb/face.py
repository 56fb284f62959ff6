"""The face that avatar_nb draws from a keyframe: its pose and its geometry, in one place.

:func:`face_pose` reads the drawing's parameters out of keyframes (every column index
from :mod:`avatar_nb.flame`); :func:`face_geometry` turns one keyframe's pose into the
shapes of the face. The matplotlib face (:func:`avatar_nb.plots.face`), the SVG face
(:func:`avatar_nb.plots.face_svg`) and the video frames (:mod:`avatar_nb.video`) all draw
these shapes, each only mapping face units to its own coordinates, so the three agree.

What moves, in face units (the head is 1.7 wide and 2.2 tall; y up; :data:`VIEW` is the
frame drawn around it):

- the jaw opens the mouth (the lower lip moves three times as far as the upper) and drops
  the chin with it;
- each eyelid closes its eye (a closed eye is its lid line) and cuts the pupil;
- each eye's pose moves its pupil (yaw right, positive pitch down), kept inside the eye;
- head roll tilts the whole face (three times the real angle: real roll is a few
  degrees); yaw and pitch shift the outline, and the features a little further, so a
  turn reads as a turn;
- the first expression coefficient raises (and tilts) the brows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .flame import CHANNELS, FIXED_COLUMNS, SCALAR_CHANNELS

__all__ = ["VIEW", "Eye", "FaceGeometry", "Oval", "face_geometry", "face_pose"]


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


# ----------------------------------------------------------------------------- the geometry

VIEW: tuple[float, float] = (2.6, 2.75)
"""Width and height, in face units, of the frame a face is drawn in (centred on the head at rest)."""

_HEAD_RX, _HEAD_RY = 0.85, 1.1
_ROLL_GAIN = 3.0  # roll is exaggerated: a real head rolls a few degrees
_HEAD_SHIFT = 1.2  # face units the outline moves per radian of yaw or pitch
_FEATURE_SHIFT = 1.0  # and the features further still, inside the turned outline
_CHIN_DROP = 0.35  # face units the chin drops per radian of jaw opening
_EYE_X, _EYE_Y, _EYE_RX, _EYE_RY = 0.36, 0.28, 0.17, 0.13
_EYE_CLOSED = 0.012  # an eye opened less than this (half-height) is drawn as its lid line
_PUPIL_R, _PUPIL_GAIN, _PUPIL_MAX = 0.06, 0.5, (0.11, 0.06)
_BROW_Y, _BROW_RAISE, _BROW_TILT = 0.22, 0.12, 0.02
_NOSE = ((0.0, 0.15), (-0.07, -0.12), (0.05, -0.14))
_MOUTH_Y, _MOUTH_RX, _MOUTH_RY, _MOUTH_GAIN = -0.5, 0.27, 0.02, 0.8


@dataclass(frozen=True)
class Oval:
    """An axis-aligned ellipse in the head's frame: centre and half-axes, face units."""

    cx: float
    cy: float
    rx: float
    ry: float


@dataclass(frozen=True)
class Eye:
    """One eye: its white (``ry`` is the opening, 0 when shut), whether it is drawn shut
    (as its lid line), its pupil (a circle; None when shut) and its brow's two ends."""

    white: Oval
    closed: bool
    pupil: Oval | None
    brow: tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class FaceGeometry:
    """The shapes of one keyframe's face, in face units in the head's frame (y up, origin
    the centre of the head at rest). :meth:`place` maps them to the view: rotated by
    ``roll`` (radians, counterclockwise as seen) about the origin, then moved by ``shift``."""

    shift: tuple[float, float]
    roll: float
    head: Oval
    eyes: tuple[Eye, Eye]  # the viewer's left (x < 0), then right
    nose: tuple[tuple[float, float], ...]
    mouth: Oval

    @property
    def roll_degrees(self) -> float:
        return math.degrees(self.roll)

    def place(self, points: Any) -> np.ndarray:
        """(n, 2) points of the head's frame, where they are in the view (face units, y up)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        c, s = math.cos(self.roll), math.sin(self.roll)
        x, y = pts[:, 0], pts[:, 1]
        return np.stack([c * x - s * y + self.shift[0], s * x + c * y + self.shift[1]], axis=1)

    def place_point(self, x: float, y: float) -> tuple[float, float]:
        """One point of the head's frame, where it is in the view."""
        c, s = math.cos(self.roll), math.sin(self.roll)
        return c * x - s * y + self.shift[0], s * x + c * y + self.shift[1]


def face_geometry(pose: Mapping[str, float] | Any) -> FaceGeometry:
    """The face's shapes for one keyframe: ``pose`` is one keyframe's values from
    :func:`face_pose` (a mapping of floats), or the keyframe itself (20 + E values)."""
    if not isinstance(pose, Mapping):
        pose = {name: float(v[0]) for name, v in face_pose(np.asarray(pose, dtype=np.float64).ravel()).items()}
    p = pose
    fx, fy = _FEATURE_SHIFT * p["yaw"], -_FEATURE_SHIFT * p["pitch"]  # positive pitch: the head nods down
    chin = _CHIN_DROP * p["jaw"]
    brow = p["brow"]
    eyes = []
    for side, lid, gx, gy in ((-1, p["lid_left"], p["gaze_left_x"], p["gaze_left_y"]),
                              (1, p["lid_right"], p["gaze_right_x"], p["gaze_right_y"])):
        ex, ey = _EYE_X * side + fx, _EYE_Y + fy
        open_h = _EYE_RY * (1.0 - lid)
        closed = open_h <= _EYE_CLOSED
        pupil = None
        if not closed:  # moved by the eye's own yaw and pitch, kept inside the eye, cut by the lid
            px = ex + min(max(_PUPIL_GAIN * gx, -_PUPIL_MAX[0]), _PUPIL_MAX[0])
            py = ey - min(max(_PUPIL_GAIN * gy, -_PUPIL_MAX[1]), _PUPIL_MAX[1])  # positive pitch: looking down
            r = min(_PUPIL_R, open_h * 0.9)
            pupil = Oval(px, py, r, r)
        by = ey + _BROW_Y + _BROW_RAISE * brow
        tilt = _BROW_TILT * side * brow
        eyes.append(Eye(Oval(ex, ey, _EYE_RX, open_h), closed, pupil,
                        ((ex - _EYE_RX, by - tilt), (ex + _EYE_RX, by + tilt))))
    mouth_h = _MOUTH_RY + _MOUTH_GAIN * p["jaw"]
    return FaceGeometry(
        shift=(_HEAD_SHIFT * p["yaw"], -_HEAD_SHIFT * p["pitch"]),
        roll=_ROLL_GAIN * p["roll"],
        head=Oval(0.0, -chin / 2.0, _HEAD_RX, _HEAD_RY + chin / 2.0),  # the top stays, the chin drops
        eyes=(eyes[0], eyes[1]),
        nose=tuple((x + fx, y + fy) for x, y in _NOSE),
        mouth=Oval(fx, _MOUTH_Y - mouth_h / 2.0 + fy, _MOUTH_RX, mouth_h),
    )
