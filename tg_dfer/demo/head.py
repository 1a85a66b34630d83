"""The static part of a demo face, drawn once per clip: head outline, hair, ears, skin shading, nose,
and the wrinkle maps whose strength the action parameters set per frame."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tg_dfer.demo.drawing import Painter, curve, ellipse
from tg_dfer.demo.identity import CANVAS_BOTTOM, CANVAS_LEFT, CANVAS_RIGHT, CANVAS_TOP, Look


@dataclass
class HeadCanvas:
    """The part of a clip's head drawing that is shared by all of its frames."""

    # Colours are premultiplied by coverage (the canvas is composited over black), so that warping
    # interpolates colour and coverage alike and the head gets no dark fringe in the frame.
    rgb: np.ndarray  # (h, w, 3) float32, shaded static head
    rgba: np.ndarray  # (h, w, 4) uint8, the same with its coverage, for frames without wrinkles
    wrinkle_maps: dict[str, np.ndarray]  # name -> (h, w) float32 relative shading change
    origin: np.ndarray  # canvas pixel of the face centre
    unit: float  # pixels per face unit


def face_grid(shape: tuple[int, int], origin: np.ndarray, unit: float) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return (xs - origin[0]) / unit, (ys - origin[1]) / unit


def _gauss(u: np.ndarray, v: np.ndarray, centre: tuple[float, float], sigma: tuple[float, float]) -> np.ndarray:
    return np.exp(-0.5 * (((u - centre[0]) / sigma[0]) ** 2 + ((v - centre[1]) / sigma[1]) ** 2))


def render_head(look: Look, unit: float, rng: np.random.Generator) -> HeadCanvas:
    width = int(np.ceil((CANVAS_RIGHT - CANVAS_LEFT) * unit))
    height = int(np.ceil((CANVAS_BOTTOM - CANVAS_TOP) * unit))
    origin = np.array([-CANVAS_LEFT * unit, -CANVAS_TOP * unit])
    u, v = face_grid((height, width), origin, unit)
    painter = Painter(np.zeros((height, width), np.uint8), origin, unit)

    back_hair = painter.coverage(_hair_back_outline(look))
    ear_x = look.half_width - 0.02
    ears = sum(painter.coverage(ellipse((side * ear_x, look.eye_y + 0.12), (0.09, 0.19))) for side in (-1, 1))
    face = painter.coverage(_head_outline(look))
    hairline = look.hairline + look.hairline_curve * u**2 + rng.uniform(-0.06, 0.06) * u
    # The fringe reaches a little past the face outline (onto the back hair) so that no sliver of
    # the face's anti-aliased edge shows through between the two hair layers.
    above_hairline = np.clip((hairline - v) * unit / 2 + 0.5, 0, 1)
    fringe = painter.coverage(_head_outline(look, grow=0.03)) * above_hairline

    skin = np.array(look.skin, np.float32)
    hair = np.array(look.hair, np.float32) * _hair_texture((height, width), u, v, rng)[..., None]
    rgb = np.zeros((height, width, 3), np.float32)
    alpha = np.zeros((height, width), np.float32)
    layers = (
        (back_hair, hair),
        (np.clip(ears, 0, 1), skin * 0.82),
        (face, skin * _skin_shading(look, u, v)[..., None]),
        (fringe, hair),
    )
    for cover, colour in layers:
        rgb += (colour - rgb) * cover[..., None]
        alpha += (1 - alpha) * cover
    rgb = _draw_nose(rgb, look, origin, unit)
    maps = wrinkle_maps(look, (height, width), u, v, origin, unit)
    skin_only = face * (1 - fringe)
    maps = {name: shading * skin_only for name, shading in maps.items()}
    rgba = np.dstack([np.clip(rgb, 0, 255), np.round(alpha * 255)]).astype(np.uint8)
    return HeadCanvas(rgb=rgb, rgba=rgba, wrinkle_maps=maps, origin=origin, unit=unit)


def _head_outline(look: Look, grow: float = 0.0) -> np.ndarray:
    """Face outline: an ellipse whose lower half narrows towards the chin."""
    outline = ellipse((0, 0), (look.half_width + grow, 1.0 + grow), points=64)
    outline[:, 0] *= 1 - look.jaw_taper * np.clip(outline[:, 1], 0, None) ** 2
    return outline


def _hair_back_outline(look: Look) -> np.ndarray:
    """Hair behind the head: a dome above the face that hangs down to ``hair_length``."""
    dome = ellipse((0, -0.22), (look.half_width + 0.13, 1.08), points=64)
    return dome[dome[:, 1] <= look.hair_length] if look.hair_length < 0.85 else dome


def _hair_texture(shape: tuple[int, int], u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Vertical streaks plus a sheen on the crown read as hair rather than a flat cap.
    streaks = rng.standard_normal((1, shape[1])).astype(np.float32)
    streaks = cv2.GaussianBlur(streaks, (0, 0), sigmaX=1.5)
    return 1.0 + 0.12 * np.repeat(streaks, shape[0], axis=0) + 0.25 * _gauss(u, v, (0.25, -1.0), (0.25, 0.12))


def _skin_shading(look: Look, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Multiplicative shading of a roughly lit frontal face; its contrasts are what Haar looks for."""
    ex, ey = look.eye_dx, look.eye_y
    shading = np.ones_like(u)
    light = (
        ((0.0, -0.55), (0.45, 0.22), 0.12),  # forehead
        ((0.0, ey + 0.1), (0.06, 0.22), 0.12),  # nose bridge
        ((-ex, 0.25), (0.16, 0.12), 0.1),  # cheeks
        ((ex, 0.25), (0.16, 0.12), 0.1),
        ((0.0, look.nose_y - 0.03), (0.06, 0.05), 0.1),  # nose tip
        ((0.0, 0.85), (0.2, 0.08), 0.06),  # chin
    )
    dark = (
        ((-ex, ey - 0.02), (0.17, 0.1), 0.34),  # eye sockets
        ((ex, ey - 0.02), (0.17, 0.1), 0.34),
        ((-0.1, look.nose_y - 0.08), (0.045, 0.12), 0.12),  # sides of the nose
        ((0.1, look.nose_y - 0.08), (0.045, 0.12), 0.12),
        ((0.0, look.nose_y + 0.06), (0.09, 0.035), 0.18),  # under the nose
        ((0.0, look.mouth_y + 0.14), (0.13, 0.045), 0.14),  # under the lower lip
        ((-0.72, 0.05), (0.12, 0.5), 0.18),  # temples and jaw sides
        ((0.72, 0.05), (0.12, 0.5), 0.18),
    )
    for centre, sigma, amount in light:
        shading += amount * _gauss(u, v, centre, sigma)
    for centre, sigma, amount in dark:
        shading -= amount * _gauss(u, v, centre, sigma)
    # Roundness: the face darkens towards its outline.
    radius = (u / look.half_width) ** 2 + v**2
    return shading * (1 - 0.22 * np.clip(radius, 0, 1) ** 2)


def _draw_nose(rgb: np.ndarray, look: Look, origin: np.ndarray, unit: float) -> np.ndarray:
    image = np.clip(rgb, 0, 255).astype(np.uint8)
    painter = Painter(image, origin, unit)
    shadow = tuple((np.array(look.skin) * 0.45).tolist())
    line = tuple((np.array(look.skin) * 0.62).tolist())
    for side in (-1, 1):
        painter.fill(ellipse((side * 0.065, look.nose_y + 0.015), (0.035, 0.018), angle=side * 20), shadow)
        wing = curve(
            (side * 0.07, look.nose_y - 0.06), (side * 0.125, look.nose_y - 0.01), (side * 0.09, look.nose_y + 0.035)
        )
        painter.line(wing, line, 0.012)
    return image.astype(np.float32)


def wrinkle_maps(
    look: Look, shape: tuple[int, int], u: np.ndarray, v: np.ndarray, origin: np.ndarray, unit: float
) -> dict[str, np.ndarray]:
    """Relative shading changes whose strength follows an action parameter frame by frame."""

    def creases(curves: list[np.ndarray]) -> np.ndarray:
        canvas = np.zeros(shape, np.float32)
        painter = Painter(canvas, origin, unit)
        for crease in curves:
            painter.line(crease, (1.0,), 0.012, antialias=False)
        return cv2.GaussianBlur(canvas, (0, 0), sigmaX=0.008 * unit + 0.3)

    eye_y, brow_y, nose_y, mouth_y, mouth_w = look.eye_y, look.brow_y, look.nose_y, look.mouth_y, look.mouth_w
    forehead = [curve((-0.35, y + 0.02), (0, y), (0.35, y + 0.02)) for y in (-0.6, -0.68, -0.76)]
    nose = [curve((-0.07, eye_y + d), (0, eye_y + d - 0.012), (0.07, eye_y + d)) for d in (0.03, 0.07, 0.11)]
    glabella = [
        curve((side * 0.035, brow_y + 0.01), (side * 0.045, brow_y + 0.06), (side * 0.04, brow_y + 0.11))
        for side in (-1, 1)
    ]
    folds = [
        curve(
            (side * 0.13, nose_y - 0.03),
            (side * (mouth_w + 0.02), mouth_y - 0.12),
            (side * (mouth_w + 0.06), mouth_y + 0.04),
        )
        for side in (-1, 1)
    ]
    cheeks = sum(_gauss(u, v, (side * look.eye_dx, 0.2), (0.13, 0.09)) for side in (-1, 1))
    return {
        "forehead": -0.35 * creases(forehead),
        "nose": -0.45 * creases(nose),
        "glabella": -0.4 * creases(glabella),
        "folds": -0.45 * creases(folds),
        "cheeks": 0.12 * cheeks,
    }
