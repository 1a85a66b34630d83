"""Anti-aliased drawing in face units: outlines (ellipses, quadratic curves, thick strokes) and the
painter that fills them on a canvas with sub-pixel precision."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

# cv2 drawing takes fixed-point coordinates; 4 fractional bits give smooth anti-aliased edges.
SHIFT = 4


def opaque(colour) -> tuple[float, float, float, float]:
    """RGBA colour for drawing on the head canvas, where features are always fully covered."""
    return (*(float(channel) for channel in colour), 255.0)


@lru_cache(maxsize=None)
def _unit_circle(points: int) -> np.ndarray:
    theta = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return np.stack([np.cos(theta), np.sin(theta)], axis=1)


@lru_cache(maxsize=None)
def _bezier_basis(points: int) -> np.ndarray:
    """(points, 3) weights that turn (start, middle, end) into a quadratic Bezier through middle.

    The control point is 2 * middle - (start + end) / 2, folded into the weights; features are
    redrawn every frame, so this is worth caching.
    """
    t = np.linspace(0, 1, points)
    a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t**2
    return np.stack([a - 0.5 * b, 2 * b, c - 0.5 * b], axis=1)


def ellipse(
    centre: tuple[float, float], axes: tuple[float, float], angle: float = 0.0, points: int = 32
) -> np.ndarray:
    circle = _unit_circle(points) * axes
    if angle:
        rad = np.deg2rad(angle)
        circle = circle @ np.array([[np.cos(rad), np.sin(rad)], [-np.sin(rad), np.cos(rad)]])
    return circle + centre


def curve(start, middle, end, points: int = 12) -> np.ndarray:
    """Quadratic Bezier from ``start`` to ``end`` that passes through ``middle`` halfway."""
    return _bezier_basis(points) @ np.array((start, middle, end), dtype=np.float64)


def thick(curve: np.ndarray, thickness: np.ndarray) -> np.ndarray:
    """Outline of a stroke along ``curve`` whose width varies point by point."""
    tangent = np.gradient(curve, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    offset = normal * (thickness[:, None] / 2)
    return np.concatenate([curve + offset, (curve - offset)[::-1]])


class Painter:
    """Draws polygons given in face units onto an image, anti-aliased and sub-pixel precise."""

    def __init__(self, image: np.ndarray, origin: np.ndarray, unit: float):
        self.image = image
        self.origin = np.asarray(origin, dtype=np.float64)
        self.unit = unit

    def _pixels(self, points: np.ndarray, origin: np.ndarray | None = None) -> np.ndarray:
        origin = self.origin if origin is None else origin
        return np.round((origin + np.asarray(points) * self.unit) * (1 << SHIFT)).astype(np.int32)

    def fill(self, points: np.ndarray, colour: tuple) -> None:
        cv2.fillPoly(self.image, [self._pixels(points)], colour, lineType=cv2.LINE_AA, shift=SHIFT)

    def line(self, points: np.ndarray, colour: tuple, width: float, antialias: bool = True) -> None:
        thickness = max(1, int(round(width * self.unit)))
        kind = cv2.LINE_AA if antialias else cv2.LINE_8
        cv2.polylines(self.image, [self._pixels(points)], False, colour, thickness, kind, shift=SHIFT)

    def coverage(self, points: np.ndarray) -> np.ndarray:
        """Anti-aliased mask of a polygon, as float32 in [0, 1] with the image's height and width."""
        mask = np.zeros(self.image.shape[:2], np.uint8)
        cv2.fillPoly(mask, [self._pixels(points)], 255, lineType=cv2.LINE_AA, shift=SHIFT)
        return mask.astype(np.float32) / 255

    def fill_clipped(self, clip: np.ndarray, layers: list[tuple[np.ndarray, tuple]]) -> None:
        """Fill ``layers`` in order, but only inside the polygon ``clip`` (eye or mouth opening)."""
        pixels = self.origin + clip * self.unit
        x0, y0 = np.floor(pixels.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(pixels.max(axis=0)).astype(int) + 2
        x0, y0 = max(x0, 0), max(y0, 0)
        region = self.image[y0:y1, x0:x1]
        local = self.origin - (x0, y0)
        drawn = region.copy()
        for points, colour in layers:
            cv2.fillPoly(drawn, [self._pixels(points, local)], colour, lineType=cv2.LINE_AA, shift=SHIFT)
        mask = np.zeros(region.shape[:2], np.uint8)
        cv2.fillPoly(mask, [self._pixels(clip, local)], 255, lineType=cv2.LINE_AA, shift=SHIFT)
        weight = mask[..., None].astype(np.float32) / 255
        region[...] = np.round(region + (drawn.astype(np.float32) - region) * weight).astype(np.uint8)
