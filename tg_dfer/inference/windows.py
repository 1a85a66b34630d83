"""Sliding windows over a video: their bounds, and their faces from one decoding pass."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from tg_dfer.faces import CropPolicy, crop_clip, guarded
from tg_dfer.io.faces_h5 import FaceRecord
from tg_dfer.sampling import segment_indices, window_starts
from tg_dfer.video import Clip, ClipInfo


class WindowClip(Clip):
    """Frames ``start`` to ``stop`` of a clip, served from frames decoded beforehand (at ``max_side``)."""

    def __init__(self, path: Path, info: ClipInfo, frames: dict[int, np.ndarray], start: int, stop: int):
        self.path = path
        self.info = replace(info, num_frames=stop - start)
        self.frames = frames
        self.start = start

    def read(self, indices, max_side: int | None = None) -> np.ndarray:
        return np.stack([self.frames[self.start + int(index)] for index in indices])


def window_bounds(num_frames: int, fps: float, seconds: float, hop: float) -> list[tuple[int, int]]:
    """(start, stop) frames of windows of ``seconds`` every ``hop`` seconds; the last one ends at the clip's end."""
    length = max(1, int(round(seconds * fps)))
    step = max(1, int(round(hop * fps)))
    if num_frames <= length:
        return [(0, num_frames)]
    return [(start, start + length) for start in window_starts(num_frames, length, step)]


def crop_windows(clip: Clip, name: str, bounds: list[tuple[int, int]], detector, policy: CropPolicy
                 ) -> list[FaceRecord]:
    """One faces record per window, from a single decoding pass; only frames later windows need are kept."""
    picks = [segment_indices(stop - start, policy.frames_per_clip, "centre")[0] + start for start, stop in bounds]
    frames: dict[int, np.ndarray] = {}
    records: list[FaceRecord] = []
    for index, frame in clip.stream(np.concatenate(picks), max_side=policy.max_side):
        frames[index] = frame
        while len(records) < len(bounds) and picks[len(records)][-1] <= index:
            start, stop = bounds[len(records)]
            window_id = f"{name}@{start}-{stop}"
            window = WindowClip(clip.path, clip.info, frames, start, stop)
            record = guarded(clip.path, window_id, lambda: crop_clip(window_id, window, detector, policy))
            if record.frame_index is not None:
                record.frame_index = record.frame_index + start
            records.append(record)
            if len(records) < len(bounds):
                first = picks[len(records)][0]
                for old in [kept for kept in frames if kept < first]:
                    del frames[old]
    return records
