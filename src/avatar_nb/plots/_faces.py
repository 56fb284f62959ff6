"""The face of one keyframe, as a matplotlib drawing and as SVG: both draw the shapes of
:func:`avatar_nb.face.face_geometry`, as the video frames do."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as _np

from ..face import VIEW as _FACE_VIEW
from ..face import face_geometry as _face_geometry
from ..timeline import Timeline as _Timeline
from ._base import new_figure, svg_document

if TYPE_CHECKING:
    from typing import Any

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def face(keyframe: Any, index: int | None = None, *, ax: Axes | None = None, size: float = 3.0) -> Figure:
    """A simple 2-D face drawn from one keyframe's FLAME values.

    ``keyframe`` is one row (20 + E floats) or a Timeline with ``index``. The jaw opening
    opens the mouth, the eyelids close the eyes, head roll tilts the face, yaw and pitch
    shift it, each eye's pose moves its pupil, and the first expression coefficient
    raises the brows: the shapes of :func:`avatar_nb.face.face_geometry`, which the SVG face
    and the video frames draw too.
    """
    from matplotlib.patches import Ellipse

    if isinstance(keyframe, _Timeline):
        if index is None:
            raise ValueError("face(timeline, index): which keyframe?")
        if not 0 <= index < keyframe.n_keyframes:
            raise IndexError(f"keyframe index {index} out of range 0..{keyframe.n_keyframes - 1}")
        row = keyframe.keyframes[index]
    else:
        row = _np.asarray(keyframe, dtype=_np.float64).ravel()
    g = _face_geometry(row)

    if ax is None:
        fig = new_figure(size, size)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    ax.clear()
    ax.set_aspect("equal")
    ax.set_xlim(-_FACE_VIEW[0] / 2, _FACE_VIEW[0] / 2)
    ax.set_ylim(-_FACE_VIEW[1] / 2, _FACE_VIEW[1] / 2)
    ax.axis("off")
    angle = g.roll_degrees
    at = g.place_point

    def oval(o: Any, **kw: Any) -> Ellipse:
        return ax.add_patch(Ellipse(at(o.cx, o.cy), 2 * o.rx, 2 * o.ry, angle=angle, **kw))

    oval(g.head, facecolor="#f2d3b1", edgecolor="0.2", linewidth=1.5)
    for eye in g.eyes:
        w = eye.white  # a shut eye: a flat white, its lid line
        ax.add_patch(Ellipse(at(w.cx, w.cy), 2 * w.rx, max(2 * w.ry, 0.015), angle=angle, facecolor="white",
                             edgecolor="0.2"))
        if eye.pupil is not None:
            oval(eye.pupil, facecolor="0.15")
        ax.plot(*zip(*(at(x, y) for x, y in eye.brow)), color="0.25", linewidth=2.5, solid_capstyle="round")
    ax.plot(*zip(*(at(x, y) for x, y in g.nose)), color="0.45", linewidth=1.2)
    oval(g.mouth, facecolor="#8b2d2d", edgecolor="0.2")
    return fig


_SVG_UNIT = 84.0  # SVG units per face unit in face_svg
_SVG_CENTRE = (100, 105)  # where the head's centre at rest is, in face_svg's 200 x 210 view box


def face_svg(keyframe: Any, size: int = 180) -> str:
    """The face of :func:`face` as an SVG string (for widgets that redraw often): the same
    shapes (:func:`avatar_nb.face.face_geometry`), 84 SVG units to a face unit."""
    g = _face_geometry(keyframe)
    u = _SVG_UNIT
    cx, cy = _SVG_CENTRE[0] + u * g.shift[0], _SVG_CENTRE[1] - u * g.shift[1]
    angle = -g.roll_degrees  # SVG's y points down: a counterclockwise roll is a negative rotate

    def oval(o: Any, min_ry: float = 0.0) -> str:
        return f'cx="{u * o.cx:.1f}" cy="{-u * o.cy:.1f}" rx="{u * o.rx:.1f}" ry="{max(min_ry, u * o.ry):.1f}"'

    def points(pts: Any) -> str:
        return " ".join(f"{u * x:.1f},{-u * y:.1f}" for x, y in pts)

    parts = [
        f'<g transform="translate({cx:.1f},{cy:.1f}) rotate({angle:.1f})">',
        f'<ellipse {oval(g.head)} fill="#f2d3b1" stroke="#333" stroke-width="2"/>',
    ]
    for eye in g.eyes:
        parts.append(f'<ellipse {oval(eye.white, 1.0)} fill="white" stroke="#333"/>')  # shut: a flat white
        if eye.pupil is not None:
            o = eye.pupil
            parts.append(f'<circle cx="{u * o.cx:.1f}" cy="{-u * o.cy:.1f}" r="{u * o.rx:.1f}" fill="#222"/>')
        parts.append(f'<polyline points="{points(eye.brow)}" fill="none" stroke="#444" stroke-width="4" '
                     'stroke-linecap="round"/>')
    parts.append(f'<polyline points="{points(g.nose)}" fill="none" stroke="#737373" stroke-width="1.5"/>')
    parts.append(f'<ellipse {oval(g.mouth)} fill="#8b2d2d" stroke="#333"/>')
    parts.append("</g>")
    return svg_document(size, size, parts, view_box=f"0 0 {2 * _SVG_CENTRE[0]} {2 * _SVG_CENTRE[1]}")
