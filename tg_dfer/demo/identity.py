"""Who a demo face is: the geometry units of its canvas and its static look (skin, hair, eye, brow and
mouth geometry), drawn per clip from the clip's generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Face geometry is written in "face units": origin at the centre of the face ellipse, y down, and
# the ellipse's half-height is 1. FACE_HEIGHT is that ellipse's height as a fraction of the frame.
FACE_HEIGHT = 0.5


# Canvas extent around the face centre, in face units: wide enough for ears and hair, tall enough
# for the hair on top and the chin below.
CANVAS_LEFT, CANVAS_TOP, CANVAS_RIGHT, CANVAS_BOTTOM = -1.08, -1.38, 1.08, 1.08


SKIN_TONES = np.array(
    [(241, 211, 189), (226, 184, 154), (201, 150, 114), (166, 114, 80), (124, 84, 58), (90, 60, 43)],
    dtype=np.float32,
)


HAIR_COLOURS = np.array(
    [(24, 20, 18), (48, 34, 26), (88, 60, 38), (118, 62, 36), (176, 146, 98), (132, 128, 124)],
    dtype=np.float32,
)


# Dark hair is the most common, and it keeps the hair band distinct from the forehead.
HAIR_WEIGHTS = np.array([0.3, 0.25, 0.2, 0.1, 0.08, 0.07])


@dataclass(frozen=True)
class Look:
    """Static identity of a clip's face, in face units and RGB colours."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    half_width: float
    jaw_taper: float
    eye_dx: float
    eye_y: float
    eye_w: float
    eye_h: float
    brow_y: float
    brow_thickness: float
    nose_y: float
    mouth_y: float
    mouth_w: float
    lip_upper: float
    lip_lower: float
    hairline: float
    hairline_curve: float
    hair_length: float


def sample_look(rng: np.random.Generator) -> Look:
    tone = rng.uniform(0, len(SKIN_TONES) - 1)
    low = int(np.floor(tone))
    high = min(low + 1, len(SKIN_TONES) - 1)
    skin = SKIN_TONES[low] + (SKIN_TONES[high] - SKIN_TONES[low]) * (tone - low)
    hair = HAIR_COLOURS[rng.choice(len(HAIR_COLOURS), p=HAIR_WEIGHTS)] * rng.uniform(0.85, 1.15)
    brown = rng.random() < 0.75
    iris = np.array((60, 40, 28)) * rng.uniform(0.6, 1.4) if brown else np.array((70, 95, 120))
    eye_y = rng.uniform(-0.16, -0.08)
    return Look(
        skin=tuple(skin.tolist()),
        hair=tuple(np.clip(hair, 0, 255).tolist()),
        iris=tuple(iris.tolist()),
        half_width=rng.uniform(0.74, 0.84),
        jaw_taper=rng.uniform(0.12, 0.3),
        eye_dx=rng.uniform(0.3, 0.35),
        eye_y=eye_y,
        eye_w=rng.uniform(0.13, 0.15),
        eye_h=rng.uniform(0.058, 0.07),
        brow_y=eye_y - rng.uniform(0.17, 0.21),
        brow_thickness=rng.uniform(0.045, 0.065),
        nose_y=rng.uniform(0.26, 0.32),
        mouth_y=rng.uniform(0.5, 0.56),
        mouth_w=rng.uniform(0.22, 0.27),
        lip_upper=rng.uniform(0.035, 0.05),
        lip_lower=rng.uniform(0.045, 0.065),
        hairline=rng.uniform(-0.72, -0.6),
        hairline_curve=rng.uniform(0.2, 0.5),
        hair_length=rng.uniform(-0.3, 0.9),
    )
