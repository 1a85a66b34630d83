"""predictions.h5 (schema ``tg-dfer/predictions/1``), written by evaluate: per test clip the fold
that predicted it, the class probabilities and the per-frame influence (docs/contracts.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from tg_dfer import __version__
from tg_dfer.io.h5 import AtomicH5, SchemaError, open_checked

PREDICTIONS_SCHEMA = "tg-dfer/predictions/1"


@dataclass
class PredictionSet:
    """Contents of a predictions.h5. N clips, C classes, T frames seen per clip."""

    clip_id: list[str]
    label: np.ndarray  # (N,) int64, -1 unknown
    fold: np.ndarray  # (N,) int32, the fold whose model predicted the clip
    probs: np.ndarray  # (N, C) float32, rows sum to 1
    pred: np.ndarray  # (N,) int64
    frame_index: np.ndarray  # (N, T) int32, source frames seen at test time, -1 on padding
    influence: np.ndarray  # (N, T) float32, raw per-frame score of the predicted class, NaN on padding
    class_names: list[str]
    attrs: dict[str, Any]

    def __len__(self) -> int:
        return len(self.clip_id)

    def select(self, rows: np.ndarray) -> "PredictionSet":
        """The clips at ``rows`` (an index array or a boolean mask)."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, dtype=np.int64)
        return PredictionSet([self.clip_id[row] for row in rows], self.label[rows], self.fold[rows],
                             self.probs[rows], self.pred[rows], self.frame_index[rows], self.influence[rows],
                             self.class_names, dict(self.attrs))

    @staticmethod
    def concatenate(parts: Sequence["PredictionSet"]) -> "PredictionSet":
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        return PredictionSet(
            clip_id=[clip for part in parts for clip in part.clip_id],
            label=np.concatenate([part.label for part in parts]),
            fold=np.concatenate([part.fold for part in parts]),
            probs=np.concatenate([part.probs for part in parts]),
            pred=np.concatenate([part.pred for part in parts]),
            frame_index=np.concatenate([part.frame_index for part in parts]),
            influence=np.concatenate([part.influence for part in parts]),
            class_names=first.class_names,
            attrs=first.attrs,
        )


def check_predictions(preds: PredictionSet, where: str = "predictions") -> None:
    """Raise :class:`SchemaError` unless shapes, types and values follow the schema."""
    N, C = len(preds.clip_id), len(preds.class_names)
    if preds.probs.ndim != 2 or preds.probs.shape != (N, C):
        raise SchemaError(f"{where}: probs has shape {preds.probs.shape}, expected ({N}, {C})")
    T = preds.frame_index.shape[1] if preds.frame_index.ndim == 2 else -1
    for name, shape in (("label", (N,)), ("fold", (N,)), ("pred", (N,)), ("frame_index", (N, T)),
                        ("influence", (N, T))):
        if getattr(preds, name).shape != shape:
            raise SchemaError(f"{where}: {name} has shape {getattr(preds, name).shape}, expected {shape}")
    if N and not np.allclose(preds.probs.sum(axis=1), 1.0, atol=1e-3):
        raise SchemaError(f"{where}: probs rows do not sum to 1")
    if N and (preds.pred.min() < 0 or preds.pred.max() >= C):
        raise SchemaError(f"{where}: pred holds ids outside 0..{C - 1}")
    if N and (preds.label.min() < -1 or preds.label.max() >= C):
        raise SchemaError(f"{where}: label holds ids outside -1..{C - 1}")
    padding = preds.frame_index < 0
    if np.isnan(preds.influence[~padding]).any() or not np.isnan(preds.influence[padding]).all():
        raise SchemaError(f"{where}: influence must be NaN exactly where frame_index is -1 (padding)")


def write_predictions(path: str | Path, preds: PredictionSet) -> None:
    """Write a predictions.h5 (schema ``tg-dfer/predictions/1``), atomically."""
    check_predictions(preds, str(path))
    string = h5py.string_dtype("utf-8")
    with AtomicH5(path) as atomic:
        handle = atomic.handle
        attrs = {"schema": PREDICTIONS_SCHEMA, "package_version": __version__, **preds.attrs,
                 "class_names": json.dumps(list(preds.class_names))}
        for key, value in attrs.items():
            handle.attrs[key] = json.dumps(value) if isinstance(value, (dict, list, tuple)) else value
        handle["clip_id"] = np.array(preds.clip_id, dtype=object).astype(string)
        handle["label"] = preds.label.astype(np.int64)
        handle["fold"] = preds.fold.astype(np.int32)
        handle["probs"] = preds.probs.astype(np.float32)
        handle["pred"] = preds.pred.astype(np.int64)
        handle["frame_index"] = preds.frame_index.astype(np.int32)
        handle["influence"] = preds.influence.astype(np.float32)


def read_predictions(path: str | Path) -> PredictionSet:
    """Read a predictions.h5, checking its schema attribute, shapes and values."""
    with open_checked(path, PREDICTIONS_SCHEMA) as handle:
        attrs = dict(handle.attrs)
        missing = [name for name in ("clip_id", "label", "fold", "probs", "pred", "frame_index", "influence")
                   if name not in handle]
        if missing:
            raise SchemaError(f"{path}: datasets missing: {', '.join(missing)}")
        preds = PredictionSet(
            clip_id=[v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in handle["clip_id"][:]],
            label=handle["label"][:].astype(np.int64),
            fold=handle["fold"][:].astype(np.int32),
            probs=handle["probs"][:].astype(np.float32),
            pred=handle["pred"][:].astype(np.int64),
            frame_index=handle["frame_index"][:].astype(np.int32),
            influence=handle["influence"][:].astype(np.float32),
            class_names=json.loads(attrs.get("class_names", "[]")),
            attrs={key: value for key, value in attrs.items() if key not in ("schema", "class_names")},
        )
    check_predictions(preds, str(path))
    return preds
