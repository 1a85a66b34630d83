"""Generated frames whose index can be read back, and a tiny CLIP of the real class."""

from __future__ import annotations

import numpy as np


def numbered_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frames whose flat grey level encodes their index, so decoded frames can be identified."""
    levels = np.linspace(20, 235, count).round().astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def frame_number(frame: np.ndarray, count: int) -> int:
    levels = np.linspace(20, 235, count)
    return int(np.argmin(np.abs(levels - frame.mean())))


def tiny_clip(seed: int = 0):
    """A small CLIP of the real class, for tests that need the code path, not the size."""
    import torch
    from clip.model import CLIP

    torch.manual_seed(seed)
    # Widths of 64: clip's build_model infers one attention head per 64 channels.
    return CLIP(embed_dim=32, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
                context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                transformer_layers=1).eval()
