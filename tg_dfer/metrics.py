"""Classification metrics of DFER, in percent: UAR, WAR, per-class recall, confusion matrix.

* WAR (weighted average recall) is plain accuracy: correct clips / all clips.
* UAR (unweighted average recall) is the mean of the per-class recalls over the classes present
  in the labels (balanced accuracy); a class with no test clip has no recall and is left out.

Clips with label -1 (unknown) are ignored everywhere.

:func:`frame_auroc` scores localisation instead: how well per-frame scores (the frame influence)
rank the frames known to carry the expression above the others, as a fraction (chance 0.5), by
the pairwise :func:`pair_auroc`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _checked(labels: Sequence[int], preds: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    if labels.shape != preds.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and predictions {preds.shape} must be 1-d of the same length")
    known = labels >= 0
    return labels[known], preds[known]


def confusion_matrix(labels: Sequence[int], preds: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts (C, C): rows are true classes, columns predicted classes."""
    labels, preds = _checked(labels, preds)
    if len(labels) and (labels.max() >= num_classes or preds.min() < 0 or preds.max() >= num_classes):
        raise ValueError(f"class ids must lie in 0..{num_classes - 1}")
    return np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def per_class_recall(labels: Sequence[int], preds: Sequence[int], num_classes: int) -> np.ndarray:
    """Recall of each class in percent (C,); NaN for a class without clips."""
    matrix = confusion_matrix(labels, preds, num_classes)
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, 100.0 * np.diag(matrix) / support, np.nan)


def uar(labels: Sequence[int], preds: Sequence[int], num_classes: int | None = None) -> float:
    """Unweighted average recall in percent (NaN without labelled clips)."""
    labels, preds = _checked(labels, preds)
    if not len(labels):
        return float("nan")
    if num_classes is None:
        num_classes = int(max(labels.max(), preds.max())) + 1
    return float(np.nanmean(per_class_recall(labels, preds, num_classes)))


def war(labels: Sequence[int], preds: Sequence[int]) -> float:
    """Weighted average recall (accuracy) in percent (NaN without labelled clips)."""
    labels, preds = _checked(labels, preds)
    return float(100.0 * np.mean(labels == preds)) if len(labels) else float("nan")


def pair_auroc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """AUROC of two score samples: the share of (positive, negative) pairs where the positive one
    scores higher, ties counting half (NaN when either sample is empty)."""
    positive, negative = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if not len(positive) or not len(negative):
        return float("nan")
    pairs = positive[:, None] - negative[None, :]
    return float(np.mean((pairs > 0) + 0.5 * (pairs == 0)))


def frame_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mean over clips of the AUROC of ``scores`` (N, T) ranking the ``positive`` (N, T) frames first.

    Per clip: :func:`pair_auroc` of its positive against its other frames. NaN scores (padding)
    take no part; a clip without a positive or without a negative frame has no AUROC and is left
    out (NaN when no clip has one).
    """
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    if scores.shape != positive.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and positive frames {positive.shape} must be 2-d of the same shape")
    per_clip = [pair_auroc(clip_scores[seen & clip_positive], clip_scores[seen & ~clip_positive])
                for clip_scores, clip_positive, seen in zip(scores, positive, ~np.isnan(scores))]
    per_clip = [value for value in per_clip if not np.isnan(value)]
    return float(np.mean(per_clip)) if per_clip else float("nan")


def report(labels: Sequence[int], preds: Sequence[int], class_names: Sequence[str]) -> dict:
    """UAR, WAR, per-class recall (None where a class has no clip), clip count and confusion matrix."""
    C = len(class_names)
    recall = per_class_recall(labels, preds, C)
    known = int((np.asarray(labels) >= 0).sum())
    return {
        "uar": _number(uar(labels, preds, C)),
        "war": _number(war(labels, preds)),
        "per_class": {name: _number(value) for name, value in zip(class_names, recall)},
        "clips": known,
        "confusion": confusion_matrix(labels, preds, C).tolist(),
    }


def summarize(fold_reports: dict[str, dict], class_names: Sequence[str]) -> dict:
    """Mean and standard deviation over folds (sample std, ddof = 1; 0 with one fold).

    ``per_class`` is the mean over the folds where the class has clips; ``confusion`` the sum.
    """
    if not fold_reports:
        raise ValueError("no folds to summarise")
    out: dict = {}
    for key in ("uar", "war"):
        values = np.array([np.nan if r[key] is None else r[key] for r in fold_reports.values()], dtype=float)
        out[key] = _number(np.nanmean(values)) if np.isfinite(values).any() else None
        finite = values[np.isfinite(values)]
        out[f"{key}_std"] = _number(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    out["per_class"] = {}
    for name in class_names:
        values = [r["per_class"][name] for r in fold_reports.values() if r["per_class"].get(name) is not None]
        out["per_class"][name] = _number(np.mean(values)) if values else None
    out["clips"] = int(sum(r["clips"] for r in fold_reports.values()))
    out["confusion"] = np.sum([np.asarray(r["confusion"]) for r in fold_reports.values()], axis=0).tolist()
    return out


def _number(value: float) -> float | None:
    """A JSON-friendly number: rounded to 4 decimals, None for NaN."""
    value = float(value)
    return None if np.isnan(value) else round(value, 4)
