"""Evaluation of trained folds: predictions.h5, metrics.json, confusion matrices and training curves.

Each clip of test fold k is predicted by the model trained for fold k (its best-on-validation
weights by default). Metrics are computed per fold and then averaged over folds (mean and sample
standard deviation), in percent.

Files written by :func:`write_outputs` into ``out`` (``metrics/<dataset>/`` in the pipeline):

* ``metrics.json``: UAR, WAR (mean over folds), ``uar_std``, ``war_std``, ``per_class`` recall,
  ``folds`` (the same per fold), and the labelled extras ``last_epoch`` and ``test_picked``.
* ``predictions.h5``: schema ``tg-dfer/predictions/1`` (see :func:`write_predictions`).
* ``confusion.json``: confusion-matrix counts, summed over folds and per fold.
* ``plots/confusion/all.csv`` and ``plots/confusion/fold<k>.csv``: one row per labelled test clip
  (``actual,predicted`` class names), the input of DVC's ``confusion`` plot template.
* ``plots/curves/fold<k>.csv``: the training history per epoch (loss, validation and tracked
  test UAR/WAR, learning rate), for DVC line plots.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tg_dfer.hashes import check_same_weights
from tg_dfer.io.atomic import atomic_path, write_text_atomic
from tg_dfer.io.features_h5 import FeatureCache
from tg_dfer.io.predictions_h5 import PredictionSet, write_predictions
from tg_dfer.metrics import report, summarize
from tg_dfer.model import TextEncoder
from tg_dfer.training.bank import FeatureBank
from tg_dfer.training.checkpoint import model_from_checkpoint
from tg_dfer.training.bank_scores import predict_rows

RANDOM_WEIGHTS_WARNING = ("features (and texts) came from RANDOM CLIP weights: these numbers test the pipeline "
                          "and mean nothing about facial expressions")
DEMO_WEIGHTS_NOTE = ("features (and texts) came from the demo's own small CLIP, pretrained on rendered faces "
                     "(tg-dfer backbone): these numbers show the method on the demo only and are not comparable "
                     "with results on CLIP ViT-B/32 features")
# DFER-CLIP's main.py (zengqunzhao/DFER-CLIP at cdec287) scores its test list every epoch and keeps the
# first epoch of highest top-1 accuracy (WAR), then reports that epoch's UAR and WAR.
TEST_PICKED_NOTE = ("epoch of best TEST-fold WAR (first of equals), as DFER-CLIP selects: optimistic, for "
                    "comparison with published results only, never a model-selection result")
CURVE_COLUMNS = ("epoch", "train_loss", "train_war", "val_loss", "val_uar", "val_war", "test_loss", "test_uar",
                 "test_war", "lr", "prompt_lr")


# --------------------------------------------------------------------------------- predictions.h5










# ----------------------------------------------------------------------------------- evaluation


def select_frames(influence: np.ndarray, k: int, highest: bool = True) -> np.ndarray:
    """(N, T) bool masks keeping the ``k`` valid frames of highest (or lowest) influence per clip.

    For the paper's Table 6: pass them as ``masks`` to :func:`tg_dfer.training.bank_scores.predict_rows`. Clips with
    fewer than ``k`` valid frames keep all of them.
    """
    valid = ~np.isnan(influence)
    key = np.where(valid, influence if highest else -influence, -np.inf)
    order = np.argsort(-key, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(influence.shape[1])[None].repeat(len(influence), 0), axis=1)
    return valid & (ranks < k)


FRAME_MODES = ("all", "highest", "lowest")


@dataclass(frozen=True)
class FrameSelection:
    """Inference on only the ``k`` frames of highest (or lowest) influence of each clip (Table 6).

    The influence is that of the class predicted from all frames; the clip is then predicted again
    from the selected frames alone.
    """

    mode: str = "all"  # all | highest | lowest
    k: int = 4

    def __post_init__(self) -> None:
        if self.mode not in FRAME_MODES:
            raise ValueError(f"frame selection must be all, highest or lowest, got {self.mode!r}")
        if self.k < 1:
            raise ValueError(f"the number of selected frames must be >= 1, got {self.k}")

    def describe(self) -> dict[str, Any] | None:
        return None if self.mode == "all" else {"mode": self.mode, "k": self.k}


ALL_FRAMES = FrameSelection()


@dataclass(frozen=True)
class EvaluateConfig:
    """The ``evaluate`` params section."""

    weights: str = "best"  # best (chosen on validation) | last (last epoch); the other is reported too
    batch_size: int = 256
    device: str = "auto"  # auto | cpu | cuda
    frames: str = "all"  # Table 6: all | highest | lowest
    frames_k: int = 4  # how many frames highest / lowest keeps

    def __post_init__(self) -> None:
        if self.weights not in ("best", "last"):
            raise ValueError(f"weights must be one of best, last, got {self.weights!r}")
        if self.frames not in FRAME_MODES:
            raise ValueError(f"frames must be one of {', '.join(FRAME_MODES)}, got {self.frames!r}")
        for name in ("batch_size", "frames_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")

    @property
    def selection(self) -> FrameSelection:
        return FrameSelection(self.frames, self.frames_k)


def predict_fold(checkpoint: dict[str, Any], features: FeatureCache, rows: np.ndarray, fold: int,
                 which: str = "best", encoder: TextEncoder | None = None, device: str = "cpu",
                 batch_size: int = 256, bank: FeatureBank | None = None,
                 frames: FrameSelection = ALL_FRAMES) -> PredictionSet:
    """Predictions of one fold's model (``best`` or ``last`` weights) on cache ``rows``."""
    names = features.class_names
    if checkpoint["class_names"] != names:
        raise ValueError(f"the model knows classes {checkpoint['class_names']}, the features {names}")
    check_same_weights(checkpoint["clip"]["sha256"], str(features.attrs.get("checkpoint_sha256")),
                       f"the model of fold {fold}", "the features", "re-run train on these features")
    model = model_from_checkpoint(checkpoint, which, encoder, device)
    bank = bank or FeatureBank(features, device)
    rows = np.asarray(rows, dtype=np.int64)
    out = predict_rows(model, bank, rows, features.label, batch_size)
    if frames.mode != "all":
        masks = select_frames(out.influence, frames.k, highest=frames.mode == "highest")
        out = predict_rows(model, bank, rows, features.label, batch_size, masks=masks)
    return PredictionSet(
        clip_id=[features.clip_id[row] for row in rows],
        label=features.label[rows].astype(np.int64),
        fold=np.full(len(rows), fold, dtype=np.int32),
        probs=out.probs,
        pred=out.pred.astype(np.int64),
        frame_index=out.frame_index.astype(np.int32),
        influence=out.influence.astype(np.float32),
        class_names=list(names),
        attrs={"weights": which},
    )


def _epoch_extra(history: list[dict[str, float]], key: str) -> dict[str, Any] | None:
    """UAR/WAR of the epoch that maximises ``key`` in a training history (first on ties)."""
    scored = [record for record in history if np.isfinite(record.get(key, float("nan")))]
    if not scored:
        return None
    best = max(scored, key=lambda record: record[key])  # max keeps the first of equals
    prefix = key.split("_")[0]
    return {"uar": round(best[f"{prefix}_uar"], 4), "war": round(best[f"{prefix}_war"], 4), "epoch": int(best["epoch"])}


def _mean_std(per_fold: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("uar", "war"):
        values = np.array([fold[key] for fold in per_fold.values() if fold.get(key) is not None], dtype=float)
        out[key] = round(float(values.mean()), 4) if len(values) else None
        out[f"{key}_std"] = round(float(values.std(ddof=1)), 4) if len(values) > 1 else 0.0
    out["folds"] = per_fold
    return out


def evaluate_folds(checkpoints: dict[int, dict[str, Any]], features: FeatureCache, test_fold: np.ndarray,
                   which: str = "best", encoder: TextEncoder | None = None, device: str = "cpu",
                   batch_size: int = 256, frames: FrameSelection = ALL_FRAMES) -> tuple[PredictionSet, dict[str, Any]]:
    """Predict every fold's test clips with its own model; return the predictions and metrics.json content.

    ``test_fold`` (N,) aligns with the cache rows. ``frames`` restricts inference to each clip's
    k highest- or lowest-influence frames (Table 6), for both the reported and the extra weights. The second return value is the metrics
    dictionary (see the module docstring); its ``confusion`` key holds the count matrices.
    """
    if which not in ("best", "last"):
        raise ValueError(f"weights must be best or last, got {which!r}")
    names = features.class_names
    test_fold = np.asarray(test_fold)
    bank = FeatureBank(features, device)
    parts, fold_reports, last, picked = [], {}, {}, {}
    for fold in sorted(checkpoints):
        checkpoint = checkpoints[fold]
        rows = np.flatnonzero(test_fold == fold)
        if not len(rows):
            raise ValueError(f"fold {fold} has no test clips in the features")
        part = predict_fold(checkpoint, features, rows, fold, which, encoder, device, batch_size, bank, frames)
        parts.append(part)
        fold_report = report(part.label, part.pred, names)
        fold_report["epoch"] = int(checkpoint["best_epoch"] if which == "best" else checkpoint["epochs"])
        fold_reports[str(fold)] = fold_report
        other = "last" if which == "best" else "best"
        other_part = predict_fold(checkpoint, features, rows, fold, other, encoder, device, batch_size, bank, frames)
        other_report = report(other_part.label, other_part.pred, names)
        epoch = int(checkpoint["epochs"] if other == "last" else checkpoint["best_epoch"])
        last[str(fold)] = {"uar": other_report["uar"], "war": other_report["war"], "epoch": epoch}
        test = _epoch_extra(checkpoint.get("history", []), "test_war")
        if test is not None:
            picked[str(fold)] = test
    predictions = PredictionSet.concatenate(parts)
    summary = summarize(fold_reports, names)
    random_weights = bool(features.random_weights or any(c["clip"]["random_weights"] for c in checkpoints.values()))
    demo_weights = features.demo_weights
    metrics: dict[str, Any] = {
        "uar": summary["uar"],
        "war": summary["war"],
        "uar_std": summary["uar_std"],
        "war_std": summary["war_std"],
        "per_class": summary["per_class"],
        "clips": summary["clips"],
        "weights": which,
        "folds": {fold: {key: value for key, value in rep.items() if key != "confusion"}
                  for fold, rep in fold_reports.items()},
        ("last_epoch" if which == "best" else "best_on_validation"): _mean_std(last),
        "random_clip_weights": random_weights,
        "demo_clip_weights": demo_weights,
        "clip_sha256": features.attrs.get("checkpoint_sha256", ""),
    }
    if frames.describe():
        metrics["frame_selection"] = frames.describe()
    if picked and frames.mode == "all":  # the training history scored all frames: no Table 6 counterpart
        metrics["test_picked"] = {"note": TEST_PICKED_NOTE, **_mean_std(picked)}
    if random_weights:
        metrics["warning"] = RANDOM_WEIGHTS_WARNING
    if demo_weights:
        metrics["note"] = DEMO_WEIGHTS_NOTE
    metrics["confusion"] = {"class_names": list(names), "all": summary["confusion"],
                            "folds": {fold: rep["confusion"] for fold, rep in fold_reports.items()}}
    predictions.attrs = {"weights": which, "random_weights": random_weights, "demo_weights": demo_weights,
                         "clip_model": features.attrs.get("clip_model", ""),
                         "checkpoint_sha256": features.attrs.get("checkpoint_sha256", ""),
                         "folds": json.dumps(sorted(int(fold) for fold in checkpoints))}
    return predictions, metrics


def write_outputs(out: str | Path, predictions: PredictionSet, metrics: dict[str, Any],
                  histories: dict[int, list[dict[str, float]]]) -> list[Path]:
    """Write metrics.json, predictions.h5, confusion.json and the plot CSVs into ``out``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = dict(metrics)
    confusion = metrics.pop("confusion")
    written = [out / "metrics.json", out / "predictions.h5", out / "confusion.json"]
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    write_predictions(out / "predictions.h5", predictions)
    write_text_atomic(out / "confusion.json", json.dumps(confusion, indent=1) + "\n")
    names = predictions.class_names
    for sub in ("confusion", "curves"):
        folder = out / "plots" / sub
        folder.mkdir(parents=True, exist_ok=True)
        # folds no longer evaluated must not linger in the plots, nor what a killed run left
        for stale in [*folder.glob("*.csv"), *folder.glob("*.partial")]:
            stale.unlink()
    labelled = predictions.label >= 0
    groups = {"all": labelled, **{f"fold{fold}": labelled & (predictions.fold == fold)
                                  for fold in sorted(set(predictions.fold.tolist()))}}
    for name, keep in groups.items():
        path = out / "plots" / "confusion" / f"{name}.csv"
        with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(("actual", "predicted"))
            for label, pred in zip(predictions.label[keep], predictions.pred[keep]):
                writer.writerow((names[label], names[pred]))
        written.append(path)
    for fold, history in sorted(histories.items()):
        path = out / "plots" / "curves" / f"fold{fold}.csv"
        with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(CURVE_COLUMNS)
            for record in history:
                writer.writerow([_cell(record.get(column)) for column in CURVE_COLUMNS])
        written.append(path)
    return written


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
