"""The predictions for new videos, and their JSON records (docs/predict.schema.json)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tg_dfer.io.images import decode_image


@dataclass
class UnitPrediction:
    """The prediction for a clip or one window of it. T = frames the model sees."""

    status: str  # a faces status: ok | partial | no_face | failed
    reason: str
    probs: np.ndarray | None = None  # (C,) float, sums to 1; None when not predicted
    frame_index: np.ndarray | None = None  # (T',) source frames the model saw (padding dropped)
    influence: np.ndarray | None = None  # (T',) raw per-frame score of the predicted class
    face_score: np.ndarray | None = None  # (T',) detector confidence of those frames
    crops: list[bytes] = field(default_factory=list)  # (T',) the encoded face crops of those frames

    @property
    def predicted(self) -> bool:
        return self.probs is not None

    @property
    def pred(self) -> int:
        return int(np.argmax(self.probs))


@dataclass
class VideoPrediction:
    name: str
    path: str | None
    fps: float
    num_frames: int
    clip: UnitPrediction
    windows: list[tuple[int, int, UnitPrediction]] = field(default_factory=list)
    window_error: str = ""


def min_max(values: np.ndarray) -> np.ndarray:
    """Values scaled to [0, 1] over the clip, as the paper's Figure 4; all 0.5 when they are all equal."""
    values = np.asarray(values, dtype=np.float64)
    low, high = float(np.min(values)), float(np.max(values))
    return np.full_like(values, 0.5) if high - low <= 1e-12 else (values - low) / (high - low)


def _seconds(frame: int, fps: float) -> float | None:
    return round(frame / fps, 4) if fps > 0 else None


def unit_record(unit: UnitPrediction, class_names: list[str], fps: float) -> dict[str, Any]:
    """The JSON form of a clip's or a window's prediction (docs/predict.schema.json)."""
    record: dict[str, Any] = {"status": unit.status, "reason": unit.reason, "predicted": unit.predicted,
                              "prediction": None, "probabilities": None, "frames": []}
    if not unit.predicted:
        return record
    record["prediction"] = class_names[unit.pred]
    record["probabilities"] = {name: float(p) for name, p in zip(class_names, unit.probs)}
    normalised = min_max(unit.influence)
    record["frames"] = [{"frame_index": int(index), "time_s": _seconds(int(index), fps), "influence": float(raw),
                         "influence_normalised": round(float(norm), 6), "face_score": round(float(score), 6)}
                        for index, raw, norm, score in zip(unit.frame_index, unit.influence, normalised,
                                                           unit.face_score)]
    return record


def video_record(video: VideoPrediction, class_names: list[str], sliding: bool) -> dict[str, Any]:
    record = {"input": video.name, "fps": video.fps or None, "num_frames": video.num_frames or None,
              **unit_record(video.clip, class_names, video.fps)}
    if sliding:
        record["windows"] = [{"start_frame": start, "end_frame": stop, "start_s": _seconds(start, video.fps),
                              "end_s": _seconds(stop, video.fps), **unit_record(unit, class_names, video.fps)}
                             for start, stop, unit in video.windows]
        record["windows_error"] = video.window_error
    return record


def decoded_crops(unit: UnitPrediction) -> list[np.ndarray]:
    return [decode_image(crop) for crop in unit.crops]
