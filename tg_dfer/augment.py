"""Augmented views of a clip's face crops, cached beside the clean view (the paper's augmentation).

View 0 is always the clean crops. Every further view draws one random crop, flip, small rotation
and colour jitter per clip and applies it to all frames of the clip alike, so the motion between
frames is kept. The draw depends only on (seed, clip id, view), not on the order of processing.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF


@dataclass(frozen=True)
class ViewParams:
    top: int
    left: int
    height: int
    width: int
    flip: bool
    angle: float
    brightness: float
    contrast: float
    saturation: float


def draw_view(size: int, clip_id: str, view: int, seed: int, scale=(0.8, 1.0), max_angle: float = 10.0,
              jitter: float = 0.2) -> ViewParams:
    rng = np.random.default_rng([seed, zlib.crc32(clip_id.encode("utf-8")), view])
    area = rng.uniform(*scale) * size * size
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    width = int(min(size, round(np.sqrt(area * aspect))))
    height = int(min(size, round(np.sqrt(area / aspect))))
    return ViewParams(
        top=int(rng.integers(0, size - height + 1)), left=int(rng.integers(0, size - width + 1)),
        height=height, width=width, flip=bool(rng.random() < 0.5), angle=float(rng.uniform(-max_angle, max_angle)),
        brightness=float(rng.uniform(1 - jitter, 1 + jitter)), contrast=float(rng.uniform(1 - jitter, 1 + jitter)),
        saturation=float(rng.uniform(1 - jitter, 1 + jitter)),
    )


def apply_view(frames: torch.Tensor, params: ViewParams) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> the same frames seen through one augmented view, same shape."""
    size = frames.shape[1]
    x = frames.permute(0, 3, 1, 2)  # (F, 3, H, W)
    x = TF.resized_crop(x, params.top, params.left, params.height, params.width, [size, size], antialias=True)
    if params.flip:
        x = TF.horizontal_flip(x)
    x = TF.rotate(x, params.angle, interpolation=TF.InterpolationMode.BILINEAR)
    x = TF.adjust_brightness(x, params.brightness)
    x = TF.adjust_contrast(x, params.contrast)
    x = TF.adjust_saturation(x, params.saturation)
    return x.permute(0, 2, 3, 1).contiguous()
