"""Everything around the face in a demo frame: head motion, background and body, lighting, noise, and
the composition of the face canvas into the frame."""

from __future__ import annotations

import cv2
import numpy as np

from tg_dfer.demo.drawing import Painter
from tg_dfer.demo.head import face_grid
from tg_dfer.demo.identity import CANVAS_LEFT, CANVAS_TOP, Look

# Per-frame noise is a window of one larger noise field, shifted by up to this many pixels.
NOISE_MARGIN = 32


def sample_motion(num_frames: int, size: int, origin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(T, 2, 3) affine maps from head-canvas pixels to frame pixels."""
    t = np.linspace(0, 1, num_frames)
    scale = rng.uniform(0.85, 1.15) * (1 + 0.012 * np.sin(2 * np.pi * (rng.uniform(0.5, 1.5) * t + rng.random())))
    angle = (
        rng.uniform(-6, 6)
        + rng.uniform(0, 3) * np.sin(2 * np.pi * (rng.uniform(0.3, 1.2) * t + rng.random()))
        + rng.normal(0, 0.35, num_frames)
    )
    # Beyond about 10 degrees of roll the frontal-face detectors of the pipeline start to miss.
    angle = np.clip(angle, -10, 10)
    start = rng.uniform(-0.05, 0.05, 2) * size
    drift = rng.uniform(-0.05, 0.05, 2) * size
    sway = rng.uniform(0, 0.012) * size * np.sin(2 * np.pi * (rng.uniform(0.5, 1.5) * t + rng.random()))
    centre = (
        np.array([0.5, 0.47]) * size
        + start
        + t[:, None] * drift
        + sway[:, None] * np.array([1.0, 0.3])
        + rng.normal(0, 0.35, (num_frames, 2))
    )
    maps = np.empty((num_frames, 2, 3))
    for index in range(num_frames):
        radians = np.deg2rad(angle[index])
        rotation = scale[index] * np.array([[np.cos(radians), -np.sin(radians)], [np.sin(radians), np.cos(radians)]])
        maps[index, :, :2] = rotation
        maps[index, :, 2] = centre[index] - rotation @ origin
    return maps


def render_background(
    size: int, look: Look, motion: np.ndarray, unit: float, rng: np.random.Generator
) -> np.ndarray:
    """Static scene behind the head: wall (plain, gradient or blotchy) plus neck and shoulders."""
    base = rng.uniform(40, 220, 3)
    other = np.clip(base + rng.uniform(-70, 70, 3), 0, 255)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    kind = rng.integers(0, 3)
    if kind == 0:
        mix = np.zeros((size, size), np.float32)
    elif kind == 1:
        direction = rng.uniform(0, 2 * np.pi)
        mix = np.clip(0.5 + (xs - 0.5) * np.cos(direction) + (ys - 0.5) * np.sin(direction), 0, 1)
    else:
        blotches = rng.random((size // 16 + 1, size // 16 + 1)).astype(np.float32)
        mix = cv2.resize(blotches, (size, size), interpolation=cv2.INTER_CUBIC)
        mix = np.clip(cv2.GaussianBlur(mix, (0, 0), sigmaX=size / 40), 0, 1)
    image = base[None, None, :] + (other - base)[None, None, :] * mix[..., None]
    return _draw_body(image.astype(np.float32), look, motion, unit, rng)


def _draw_body(image: np.ndarray, look: Look, motion: np.ndarray, unit: float, rng: np.random.Generator) -> np.ndarray:
    # The body stays still while the head moves a little on top of it, so it is drawn where the
    # head is on average; the neck starts well inside the chin so that it never shows above it.
    mean = motion.mean(axis=0)
    scale = float(np.hypot(mean[0, 0], mean[1, 0])) * unit
    centre = mean[:, 2] + mean[:, :2] @ (-CANVAS_LEFT * unit, -CANVAS_TOP * unit)
    painter = Painter(image, centre, scale)
    _, v = face_grid(image.shape[:2], centre, scale)
    neck = painter.coverage(np.array([(-0.42, 0.3), (0.42, 0.3), (0.5, 1.6), (-0.5, 1.6)]))
    # The chin casts a soft shadow that fades down the neck.
    shadow = 1 - 0.35 * np.exp(-np.clip(v - 0.95, 0, None) / 0.15)
    neck_colour = np.array(look.skin, np.float32) * (0.8 * shadow)[..., None]
    top = np.linspace(np.pi, 2 * np.pi, 33)
    arc = np.stack([1.9 * np.cos(top), 2.0 + 0.78 * np.sin(top)], axis=1)
    # The torso continues far below the frame so that its lower edge never shows.
    torso = painter.coverage(np.concatenate([arc, [(1.9, 6.0), (-1.9, 6.0)]]))
    clothing = rng.uniform(20, 230, 3).astype(np.float32)
    image = image + (neck_colour - image) * neck[..., None]
    return image + (clothing - image) * torso[..., None]


def sample_lighting(size: int, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Per-pixel gain (directional gradient, brightness, contrast, colour cast), offset, noise sigma."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    direction = rng.uniform(0, 2 * np.pi)
    gradient = 1 + rng.uniform(0, 0.45) * (xs * np.cos(direction) + ys * np.sin(direction))
    contrast = rng.uniform(0.75, 1.1)
    brightness = rng.uniform(0.8, 1.15)
    cast = 1 + rng.uniform(-0.06, 0.06, 3)
    gain = (gradient[..., None] * (contrast * brightness) * cast[None, None, :]).astype(np.float32)
    offset = float((1 - contrast) * 128 * brightness)
    return gain, offset, float(rng.uniform(1.0, 4.0))


def compose(
    face: np.ndarray, motion: np.ndarray, backdrop: np.ndarray, gain: np.ndarray, offset: float, noise: np.ndarray
) -> np.ndarray:
    """Warp the (premultiplied) head canvas over the lit backdrop, light it the same way, add noise."""
    x0, y0, x1, y1 = _warped_box(face.shape, motion, backdrop.shape[0])
    shifted = motion.copy()
    shifted[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(face, shifted, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    cover = warped[..., 3:].astype(np.float32) * (1 / 255)
    premultiplied = warped[..., :3].astype(np.float32)
    image = backdrop + noise
    # backdrop * (1 - cover) + (face * gain + offset) * cover, with face * cover = premultiplied
    image[y0:y1, x0:x1] += premultiplied * gain[y0:y1, x0:x1] + (offset - backdrop[y0:y1, x0:x1]) * cover
    return np.clip(image, 0, 255, out=image).astype(np.uint8)


def _warped_box(shape: tuple[int, ...], motion: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """Frame-pixel box (x0, y0, x1, y1) that holds the warped head canvas."""
    height, width = shape[:2]
    corners = np.array([(0, 0, 1), (width, 0, 1), (0, height, 1), (width, height, 1)], dtype=np.float64)
    points = corners @ motion.T
    x0, y0 = np.clip(np.floor(points.min(axis=0)).astype(int) - 1, 0, size)
    x1, y1 = np.clip(np.ceil(points.max(axis=0)).astype(int) + 2, 0, size)
    return int(x0), int(y0), int(x1), int(y1)
