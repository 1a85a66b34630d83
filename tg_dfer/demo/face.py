"""A drawn face: its identity (Look), its action parameters per frame (FaceParams), and the drawing
of head, brows, eyes, nose and mouth on a per-clip canvas."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from tg_dfer.demo.drawing import Painter, curve, ellipse, opaque, thick
from tg_dfer.demo.head import HeadCanvas
from tg_dfer.demo.identity import Look

# Canvas extent around the face centre, in face units: wide enough for ears and hair, tall enough
# for the hair on top and the chin below.
CANVAS_LEFT, CANVAS_TOP, CANVAS_RIGHT, CANVAS_BOTTOM = -1.08, -1.38, 1.08, 1.08


@dataclass(frozen=True)
class FaceParams:
    """Continuous action parameters of one frame; all zero is the relaxed neutral face.

    Most are in [-1, 1] or [0, 1]; ``eye_open`` of -1 closes the eyes.
    """

    brow_raise: float = 0.0
    brow_inner: float = 0.0
    brow_pull: float = 0.0
    brow_arch: float = 0.0
    eye_open: float = 0.0
    cheek_raise: float = 0.0
    nose_wrinkle: float = 0.0
    mouth_curve: float = 0.0
    mouth_open: float = 0.0
    mouth_width: float = 0.0
    lip_press: float = 0.0
    upper_lip_raise: float = 0.0
    mouth_asym: float = 0.0

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, field.name) for field in fields(self)], dtype=np.float64)

    @classmethod
    def from_vector(cls, values: np.ndarray) -> FaceParams:
        return cls(*(float(value) for value in values))


PARAM_INDEX = {field.name: index for index, field in enumerate(fields(FaceParams))}


EXPRESSIONS = {
    "happiness": FaceParams(
        mouth_curve=1.2, mouth_width=0.6, mouth_open=0.45, cheek_raise=1.0, eye_open=-0.35, brow_raise=0.05
    ),
    "sadness": FaceParams(
        mouth_curve=-0.9, mouth_width=-0.1, lip_press=0.3, brow_inner=1.0, brow_pull=0.3, eye_open=-0.3
    ),
    "neutral": FaceParams(),
    "anger": FaceParams(
        brow_raise=-0.6, brow_inner=-1.0, brow_pull=1.0, eye_open=-0.45,
        lip_press=1.0, mouth_width=-0.25, mouth_curve=-0.2, nose_wrinkle=0.25,
    ),
    "surprise": FaceParams(brow_raise=1.0, brow_arch=1.0, eye_open=0.8, mouth_open=1.0, mouth_width=-0.6),
    "disgust": FaceParams(
        upper_lip_raise=1.0, mouth_asym=0.6, mouth_curve=-0.4, mouth_open=0.1, nose_wrinkle=1.0,
        brow_raise=-0.4, brow_pull=0.4, eye_open=-0.35, cheek_raise=0.3,
    ),
    "fear": FaceParams(
        brow_raise=0.7, brow_inner=0.7, brow_pull=0.8, eye_open=0.8, mouth_width=0.8, mouth_open=0.35, mouth_curve=-0.3
    ),
}


def draw_face(head: HeadCanvas, look: Look, p: FaceParams) -> np.ndarray:
    """The head canvas of one frame: (h, w, 4) uint8 RGBA."""
    weights = {
        "forehead": max(p.brow_raise, 0.0),
        "nose": max(p.nose_wrinkle, 0.0),
        "glabella": max(p.brow_pull, 0.0),
        "folds": max(p.cheek_raise, 0.7 * p.upper_lip_raise, 0.0),
        "cheeks": max(p.cheek_raise, 0.0),
    }
    canvas = head.rgba.copy()
    active = {name: weight for name, weight in weights.items() if weight > 0}
    if active:
        shading = 1 + sum(weight * head.wrinkle_maps[name] for name, weight in active.items())
        canvas[..., :3] = np.clip(head.rgb * shading[..., None], 0, 255)
    painter = Painter(canvas, head.origin, head.unit)
    for side in (-1, 1):
        _draw_brow(painter, look, p, side)
        _draw_eye(painter, look, p, side)
    _draw_mouth(painter, look, p)
    return canvas


def _draw_brow(painter: Painter, look: Look, p: FaceParams, side: int) -> None:
    lift = 0.09 * p.brow_raise
    # brow_inner > 0 lifts the inner ends (sad, fearful obliques), < 0 lowers them into a V.
    inner_x = 0.12 - 0.045 * p.brow_pull
    inner_y = look.brow_y + 0.015 - lift - 0.075 * p.brow_inner + 0.025 * max(p.brow_pull, 0.0)
    outer_x = look.eye_dx + 0.17
    outer_y = look.brow_y + 0.035 - 0.8 * lift + 0.02 * p.brow_inner
    middle_y = look.brow_y - 0.03 - lift - 0.05 * p.brow_arch - 0.035 * p.brow_inner
    middle_x = 0.45 * inner_x + 0.55 * outer_x
    arc = curve((side * inner_x, inner_y), (side * middle_x, middle_y), (side * outer_x, outer_y), points=16)
    taper = np.linspace(1.25, 0.55, len(arc)) * look.brow_thickness
    painter.fill(thick(arc, taper), opaque(np.array(look.hair) * 0.55 + np.array(look.skin) * 0.12))


def _draw_eye(painter: Painter, look: Look, p: FaceParams, side: int) -> None:
    cx, cy = side * look.eye_dx, look.eye_y
    upper_h = look.eye_h * max(0.0, 1 + p.eye_open)
    # A smile's raised cheeks push the lower lid up.
    lower_h = 0.65 * look.eye_h * max(0.0, 1 + 0.5 * p.eye_open) * (1 - 0.45 * max(p.cheek_raise, 0.0))
    inner = (cx - side * look.eye_w, cy + 0.008)
    outer = (cx + side * look.eye_w, cy - 0.008)
    upper = curve(inner, (cx + side * 0.012, cy - upper_h), outer)
    lower = curve(inner, (cx, cy + lower_h), outer)
    skin = np.array(look.skin)
    if upper_h + lower_h > 0.012:
        opening = np.concatenate([upper, lower[::-1]])
        iris_centre = (cx, cy + 0.006)
        iris_r = 0.44 * look.eye_w
        painter.fill_clipped(
            opening,
            [
                (opening, (218, 212, 205, 255)),
                (ellipse(iris_centre, (iris_r, iris_r)), opaque(look.iris)),
                (ellipse(iris_centre, (0.42 * iris_r, 0.42 * iris_r)), (12, 10, 10, 255)),
                (ellipse((cx + 0.02, cy - 0.012), (0.012, 0.012)), (235, 235, 235, 255)),
            ],
        )
        painter.line(lower, opaque(skin * 0.55), 0.012)
    painter.line(upper, opaque(skin * 0.2), 0.028)
    crease = curve(
        (inner[0] + side * 0.02, inner[1] - 0.03), (cx, cy - upper_h - 0.05), (outer[0] + side * 0.01, outer[1] - 0.04)
    )
    painter.line(crease, opaque(skin * 0.62), 0.012)


def _draw_mouth(painter: Painter, look: Look, p: FaceParams) -> None:
    half = look.mouth_w * (1 + 0.3 * p.mouth_width - 0.12 * p.lip_press)
    corner_y = look.mouth_y - 0.09 * p.mouth_curve
    left = (-half, corner_y + 0.045 * p.mouth_asym)
    right = (half, corner_y - 0.045 * p.mouth_asym)
    # The jaw drops: an opening mouth moves the lower lip three times as far as the upper one.
    gap = 0.22 * max(p.mouth_open, 0.0)
    upper_y = look.mouth_y - 0.25 * gap - 0.065 * p.upper_lip_raise
    lower_y = look.mouth_y + 0.75 * gap
    # A raised upper lip peaks towards the side the mouth is pulled to (disgust's sneer).
    upper_x = -0.35 * half * p.mouth_asym * p.upper_lip_raise
    thinning = 1 - 0.65 * p.lip_press
    upper_inner = curve(left, (upper_x, upper_y), right)
    upper_outer = curve(left, (upper_x, upper_y - look.lip_upper * thinning), right)
    lower_inner = curve(left, (0, lower_y), right)
    lower_outer = curve(left, (0, lower_y + look.lip_lower * thinning), right)

    skin = np.array(look.skin)
    lip = skin * 0.62 + np.array((150.0, 55.0, 60.0)) * 0.25
    painter.fill(np.concatenate([upper_outer, upper_inner[::-1]]), opaque(lip * 0.92))
    painter.fill(np.concatenate([lower_inner, lower_outer[::-1]]), opaque(lip))
    if np.max(lower_inner[:, 1] - upper_inner[:, 1]) > 0.01:
        opening = np.concatenate([upper_inner, lower_inner[::-1]])
        teeth = np.concatenate([upper_inner, upper_inner[::-1] + (0, 0.045)])
        painter.fill_clipped(opening, [(opening, (55, 18, 22, 255)), (teeth, (225, 220, 205, 255))])
    painter.line(upper_inner, opaque(skin * 0.3), 0.016)


