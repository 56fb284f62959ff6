"""The three drawings of the face (matplotlib, SVG, video frame) agree with the one geometry.

For each keyframe the geometry is computed once (:func:`avatar_nb.face.face_geometry`), then
checked against what each drawing holds: the matplotlib artists' coordinates, the SVG's
element attributes, and the rendered video frame's pixels (the mouth's opened height, each
eye's opening, the head's centre and tilt).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from matplotlib.patches import Ellipse

from avatar_nb import plots, video
from avatar_nb.face import VIEW, face_geometry, face_pose
from avatar_nb.flame import CHANNELS, SCALAR_CHANNELS
from avatar_nb.timeline import Timeline

E = 10
EYE = CHANNELS["eye_pose"].start


def keyframe(**channels: float) -> np.ndarray:
    row = np.zeros(20 + E, np.float32)
    for name, value in channels.items():
        if name == "gaze_yaw":  # both eyes
            row[EYE + 1] = row[EYE + 4] = value
        elif name == "brow":
            row[20] = value
        else:
            row[SCALAR_CHANNELS[name]] = value
    return row


KEYFRAMES = {
    "closed mouth": keyframe(),
    "open mouth": keyframe(jaw_open=0.3),
    "left eye closed": keyframe(eyelid_left=1.0, jaw_open=0.1),
    "half-closed eyes": keyframe(eyelid_left=0.5, eyelid_right=0.3, gaze_yaw=0.15),
    "head yawed and rolled": keyframe(head_yaw=0.1, head_roll=0.08, jaw_open=0.2, brow=1.0),
    "head pitched and rolled the other way": keyframe(head_pitch=0.08, head_roll=-0.06, eyelid_right=1.0),
}

TOL = 0.03  # face units (about 4 px in the 480 x 400 video frame)


# ----------------------------------------------------------------------------- matplotlib: the artists


def matplotlib_face(row):
    """(head, [eye whites], mouth) Ellipses and the view's data-to-face map (identity) of plots.face."""
    fig = plots.face(row)
    ellipses = [p for p in fig.axes[0].patches if isinstance(p, Ellipse)]
    whites = [e for e in ellipses if e.get_facecolor()[:3] == (1.0, 1.0, 1.0)]
    return ellipses[0], whites, ellipses[-1]


# ----------------------------------------------------------------------------- SVG: the attributes


SVG_UNIT, SVG_CENTRE = 84.0, (100.0, 105.0)


def svg_face(row):
    """The SVG's head, eye whites and mouth as (centre in face units, rx, ry in face units),
    and the group's rotation in degrees counterclockwise as seen (SVG's y points down)."""
    root = ET.fromstring(plots.face_svg(row))
    ns = {"s": "http://www.w3.org/2000/svg"}
    group = root.find("s:g", ns)
    tx, ty, angle = (float(v) for v in
                     re.fullmatch(r"translate\(([-\d.]+),([-\d.]+)\) rotate\(([-\d.]+)\)", group.get("transform")).groups())
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))

    def in_face_units(el):
        x, y = float(el.get("cx")), float(el.get("cy"))
        sx, sy = tx + c * x - s * y, ty + s * x + c * y  # SVG's rotate(a): x' = x cos a - y sin a
        centre = ((sx - SVG_CENTRE[0]) / SVG_UNIT, (SVG_CENTRE[1] - sy) / SVG_UNIT)
        return centre, float(el.get("rx")) / SVG_UNIT, float(el.get("ry")) / SVG_UNIT

    ellipses = [in_face_units(el) for el in group.findall("s:ellipse", ns)]
    whites = [in_face_units(el) for el in group.findall("s:ellipse", ns) if el.get("fill") == "white"]
    return ellipses[0], whites, ellipses[-1], -angle


# ----------------------------------------------------------------------------- video: the pixels

SIZE = (480, 400)
SKIN = np.array([242, 211, 177])
MOUTH = np.array([139, 45, 45])
WHITE = np.array([255, 255, 255])
BACKGROUND = np.array([246, 246, 246])
TEXT_ROWS = 30  # the time and keyframe line at the top of a face-only frame


def video_frame(row):
    tl = Timeline(25.0)
    tl.add_animation(row[None, :], req_id="r", arrival=0.1, end=True)
    (rgb,) = video.render_frames(tl, size=SIZE, panels=("face",))
    return rgb.astype(np.int32)


def pixel_map():
    """Face units per pixel and where the head's centre at rest is (the frame fits VIEW)."""
    unit = min(SIZE[0] / VIEW[0], SIZE[1] / VIEW[1])
    return unit, (SIZE[0] / 2.0, SIZE[1] / 2.0)


def to_face(rows, cols):
    unit, (ox, oy) = pixel_map()
    return (cols + 0.5 - ox) / unit, (oy - rows - 0.5) / unit


def colour(rgb, c, tol=30):
    mask = np.abs(rgb - c).sum(axis=-1) < tol
    mask[:TEXT_ROWS] = False
    return mask


def head_centre_and_tilt(rgb):
    """The head's centre (face units) and tilt (degrees, counterclockwise) from the moments of
    everything drawn that is not the background (the features are all inside the outline)."""
    drawn = ~colour(rgb, BACKGROUND, 12)
    drawn[:TEXT_ROWS] = False
    rows, cols = np.nonzero(drawn)
    x, y = to_face(rows, cols)
    cx, cy = x.mean(), y.mean()
    cov = np.cov(np.stack([x - cx, y - cy]))
    values, vectors = np.linalg.eigh(cov)
    vx, vy = vectors[:, np.argmax(values)]  # the long axis: upright at rest
    if vy < 0:
        vx, vy = -vx, -vy
    return (cx, cy), math.degrees(math.atan2(-vx, vy))


def features_in_the_head_frame(rgb, g):
    """Pixels drawn over the skin (features, their outlines), as coordinates in the head's
    frame: the view's face units taken back through the geometry's shift and roll."""
    drawn = ~colour(rgb, SKIN, 24) & ~colour(rgb, BACKGROUND, 12)
    drawn[:TEXT_ROWS] = False
    rows, cols = np.nonzero(drawn)
    x, y = to_face(rows, cols)
    dx, dy = x - g.shift[0], y - g.shift[1]
    c, s = math.cos(g.roll), math.sin(g.roll)
    return c * dx + s * dy, -s * dx + c * dy, rows, cols


def extent_near(local, oval, margin=0.04):
    """Width and height (face units, one pixel added) of the drawn pixels within ``margin``
    of the box of ``oval`` in the head's frame, and their centre; None when there are none."""
    lx, ly = local
    ry = max(oval.ry, 0.02)
    near = (np.abs(lx - oval.cx) < oval.rx + margin) & (np.abs(ly - oval.cy) < ry + margin)
    if not near.any():
        return None
    px = 1.0 / pixel_map()[0]
    x, y = lx[near], ly[near]
    return (x.max() - x.min() + px, y.max() - y.min() + px), ((x.max() + x.min()) / 2, (y.max() + y.min()) / 2)


# ----------------------------------------------------------------------------- the test


@pytest.mark.parametrize("name", list(KEYFRAMES))
def test_the_three_drawings_agree_on_mouth_eyelids_and_head_pose(name):
    row = KEYFRAMES[name]
    g = face_geometry(row)
    pose = {k: float(v[0]) for k, v in face_pose(row).items()}
    assert face_geometry(pose) == g  # a pose of floats and the keyframe itself give one geometry
    head_at = g.place_point(g.head.cx, g.head.cy)
    mouth_at = g.place_point(g.mouth.cx, g.mouth.cy)
    eyes_at = [g.place_point(e.white.cx, e.white.cy) for e in g.eyes]

    # matplotlib: the patches are the geometry's shapes, placed
    head, whites, mouth = matplotlib_face(row)
    assert head.center == pytest.approx(head_at, abs=1e-6)
    assert (head.width, head.height) == pytest.approx((2 * g.head.rx, 2 * g.head.ry))
    assert head.angle == pytest.approx(g.roll_degrees)
    assert mouth.center == pytest.approx(mouth_at, abs=1e-6)
    assert mouth.height == pytest.approx(2 * g.mouth.ry) and mouth.angle == pytest.approx(g.roll_degrees)
    assert len(whites) == 2
    for white, eye, at in zip(whites, g.eyes, eyes_at):
        assert white.center == pytest.approx(at, abs=1e-6)
        assert white.height == pytest.approx(max(2 * eye.white.ry, 0.015))

    # SVG: the attributes, mapped back to face units, are the same shapes (to the markup's 0.1)
    (h_at, h_rx, h_ry), svg_whites, (m_at, m_rx, m_ry), svg_roll = svg_face(row)
    svg_tol = 0.002
    assert svg_roll == pytest.approx(g.roll_degrees, abs=0.06)
    assert h_at == pytest.approx(head_at, abs=svg_tol)
    assert (h_rx, h_ry) == pytest.approx((g.head.rx, g.head.ry), abs=svg_tol)
    assert m_at == pytest.approx(mouth_at, abs=svg_tol)
    assert (m_rx, m_ry) == pytest.approx((g.mouth.rx, g.mouth.ry), abs=svg_tol)
    for (e_at, _, e_ry), eye, at in zip(svg_whites, g.eyes, eyes_at):
        assert e_at == pytest.approx(at, abs=svg_tol)
        assert e_ry == pytest.approx(max(eye.white.ry, 1.0 / SVG_UNIT), abs=svg_tol)

    # video: measured in the pixels of the rendered frame
    rgb = video_frame(row)
    (cx, cy), tilt = head_centre_and_tilt(rgb)
    assert (cx, cy) == pytest.approx(head_at, abs=TOL)
    assert tilt == pytest.approx(g.roll_degrees, abs=1.5)
    lx, ly, rows, cols = features_in_the_head_frame(rgb, g)
    # the mouth's opened height and place: its fill and outline, in the head's frame
    (mouth_w, mouth_h), mouth_c = extent_near((lx, ly), g.mouth)
    assert mouth_h == pytest.approx(2 * g.mouth.ry, abs=TOL)
    assert mouth_w == pytest.approx(2 * g.mouth.rx, abs=TOL)
    assert mouth_c == pytest.approx((g.mouth.cx, g.mouth.cy), abs=TOL)
    # each eyelid: the eye's opening, and a shut eye shows no white
    white = colour(rgb, WHITE, 10)
    for eye in g.eyes:
        (eye_w, eye_h), eye_c = extent_near((lx, ly), eye.white)
        assert eye_w == pytest.approx(2 * eye.white.rx, abs=TOL)
        assert eye_c == pytest.approx((eye.white.cx, eye.white.cy), abs=TOL)
        near = (np.abs(lx - eye.white.cx) < eye.white.rx) & (np.abs(ly - eye.white.cy) < 0.2)
        whites_here = int(white[rows[near], cols[near]].sum())
        if eye.closed:
            assert eye_h < 0.06 and whites_here == 0  # the lid line only
        else:
            assert eye_h == pytest.approx(2 * eye.white.ry, abs=TOL)
            assert whites_here > 0


def test_the_geometry_moves_what_the_keyframe_says():
    rest = face_geometry(keyframe())
    assert rest.mouth.ry < face_geometry(keyframe(jaw_open=0.3)).mouth.ry / 5
    assert face_geometry(keyframe(jaw_open=0.3)).head.cy - face_geometry(keyframe(jaw_open=0.3)).head.ry < -1.1
    shut = face_geometry(keyframe(eyelid_left=1.0))
    assert shut.eyes[0].closed and shut.eyes[0].pupil is None and not shut.eyes[1].closed
    looking = face_geometry(keyframe(gaze_yaw=5.0))  # far past the eye's corner: the pupil stays inside
    for eye in looking.eyes:
        assert eye.white.cx < eye.pupil.cx <= eye.white.cx + eye.white.rx - eye.pupil.rx + 1e-9
    turned = face_geometry(keyframe(head_yaw=0.1))
    assert turned.shift[0] > 0 and turned.mouth.cx > 0  # the features move further than the outline
    assert face_geometry(keyframe(head_roll=0.1)).roll > 0
    assert face_geometry(keyframe(brow=1.0)).eyes[0].brow[0][1] > rest.eyes[0].brow[0][1]
