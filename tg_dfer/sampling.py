"""Segment sampling of frame indices (as in TSN and the DFER literature).

A clip of ``n`` frames is cut into ``count`` equal segments and one frame is taken from each:
the centre frame for testing, a random frame for training. Clips shorter than ``count`` keep all
their frames and are padded by repeating the last one; the number of real frames is returned so
that later stages can mask the padding.
"""

from __future__ import annotations

import numpy as np

MODES = ("centre", "random")


def segment_indices(num_frames: int, count: int, mode: str = "centre",
                    rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    """Indices of ``count`` frames out of ``num_frames``, and how many of them are not padding.

    Returns ``(indices, valid)``: ``indices`` is an int64 array of length ``count`` in increasing
    order; ``indices[valid:]`` repeat the last frame when the clip is shorter than ``count``.
    """
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {num_frames}")
    if count < 1:
        raise ValueError(f"frames per clip must be at least 1, got {count}")
    if mode not in MODES:
        raise ValueError(f"sampling mode must be one of {MODES}, got {mode!r}")
    if num_frames < count:
        indices = np.minimum(np.arange(count), num_frames - 1)
        return indices.astype(np.int64), num_frames
    # Segment k holds the whole frames ceil(k n / count) .. ceil((k + 1) n / count) - 1, at least one.
    bounds = np.ceil(np.arange(count + 1) * num_frames / count)
    starts, ends = bounds[:-1], bounds[1:]
    if mode == "centre":
        indices = np.floor((starts + ends) / 2)  # the later of two middle frames, as TSN
    else:
        if rng is None:
            raise ValueError("random sampling needs a numpy Generator")
        indices = starts + np.floor(rng.random(count) * (ends - starts))
    return indices.astype(np.int64), count


def subsample(count_in: int, count_out: int) -> np.ndarray:
    """Positions of ``count_out`` segment-centre picks among ``count_in`` already sampled frames."""
    indices, _ = segment_indices(count_in, count_out, "centre")
    return indices


def window_starts(frames: int, window: int, stride: int) -> list[int]:
    """First frame of each window of ``window`` frames every ``stride`` over ``frames`` frames; a last
    window flush with the end covers frames a stride would miss (the fine-grained module's windows,
    Eq. 3, and sliding windows over a video alike).
    """
    starts = list(range(0, frames - window + 1, stride))
    if starts[-1] + window < frames:
        starts.append(frames - window)
    return starts
