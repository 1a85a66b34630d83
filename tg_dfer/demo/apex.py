"""Does the frame influence point at the expression? The demo's apex frames are known (labels.csv).

The renderer writes, per clip, the source frames at which its expression is at least half way to
the apex (``apex_frames``). For every non-neutral clip, the per-clip AUROC is the probability that
a seen apex frame has a higher stored influence (predictions.h5) than a seen other frame, ties
counting half: 1 ranks every apex frame first, 0.5 is chance. Clips whose seen frames are all apex
or none are (for example a very short bump between two sampled frames) have no AUROC and are counted.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tg_dfer.io.predictions_h5 import PredictionSet
from tg_dfer.metrics import pair_auroc

NEUTRAL = "neutral"


class ApexFramesError(ValueError):
    """A labels.csv without the demo's apex frames, or predictions of clips it does not list."""


def read_apex_frames(labels_csv: str | Path) -> dict[str, tuple[str, set[int]]]:
    """clip_id -> (label, apex source frames) of a demo labels.csv."""
    labels_csv = Path(labels_csv)
    try:
        with open(labels_csv, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise ApexFramesError(f"{labels_csv}: cannot read the demo labels ({error.strerror})") from error
    if rows and not {"clip_id", "label", "apex_frames"} <= set(rows[0]):
        raise ApexFramesError(f"{labels_csv}: no clip_id, label and apex_frames columns (not a demo labels.csv)")
    try:
        return {row["clip_id"]: (row["label"], {int(frame) for frame in row["apex_frames"].split()}) for row in rows}
    except ValueError as error:
        raise ApexFramesError(f"{labels_csv}: apex_frames must be frame numbers separated by spaces ({error})") from error


def apex_auroc(predictions: PredictionSet, apex_frames: dict[str, tuple[str, set[int]]]) -> dict[str, float | int]:
    """Mean per-clip AUROC of the influence ranking apex frames first, over the non-neutral clips."""
    missing = [clip for clip in predictions.clip_id if clip not in apex_frames]
    if missing:
        raise ApexFramesError(f"{len(missing)} predicted clip(s) have no apex frames, e.g. {missing[0]!r}")
    scores, lacking = [], 0
    for row, clip in enumerate(predictions.clip_id):
        label, apex = apex_frames[clip]
        if label == NEUTRAL:
            continue
        seen = (predictions.frame_index[row] >= 0) & ~np.isnan(predictions.influence[row])
        influence = predictions.influence[row][seen]
        is_apex = np.isin(predictions.frame_index[row][seen], sorted(apex))
        if is_apex.all() or not is_apex.any():
            lacking += 1
            continue
        scores.append(pair_auroc(influence[is_apex], influence[~is_apex]))
    return {"mean": round(float(np.mean(scores)), 4) if scores else float("nan"), "clips": len(scores),
            "clips_without_both_kinds_of_frame": lacking}
