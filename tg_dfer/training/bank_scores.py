"""Running a model on rows of a feature bank at test time (segment centres, view 0)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tg_dfer.model import TGDFER
from tg_dfer.training.bank import FeatureBank


@dataclass
class BankPredictions:
    """Test-time outputs for some rows of a cache."""

    rows: np.ndarray  # (N,) rows of the cache
    probs: np.ndarray  # (N, C) float32
    influence: np.ndarray  # (N, T) float32 frame score of the predicted class, NaN on padding
    frame_index: np.ndarray  # (N, T) int64 source frames seen, -1 on padding
    loss: float  # mean cross-entropy over the labelled clips (NaN if none)
    frame_scores: np.ndarray | None = None  # (N, T, C) float32 per-frame score of every class, NaN on padding

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


@torch.no_grad()
def predict_rows(model: TGDFER, bank: FeatureBank, rows: np.ndarray, labels: np.ndarray | None = None,
            batch_size: int = 256, masks: np.ndarray | None = None, all_classes: bool = False) -> BankPredictions:
    """Run ``model`` on the test-time frames of ``rows``. X^FP is computed once for all batches.

    ``masks`` (N, T) bool, optional, further restricts the frames each clip may use (Table 6's
    inference on selected frames); padding stays masked whatever it says. ``all_classes`` also
    keeps the frame scores of every class (an ensemble needs those of the class it predicts).
    """
    model.eval()
    rows = np.asarray(rows, dtype=np.int64)
    T = model.config.num_frames
    text = model.text_features()  # (C, D)
    probs, influence, seen, losses, scores = [], [], [], [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        x, mask, source = bank.batch(chunk, T)
        if masks is not None:
            mask = mask & torch.as_tensor(masks[start:start + batch_size], device=mask.device)
        out = model(x, mask, text)
        probs.append(out.probs.float().cpu().numpy())
        influence.append(out.influence().float().cpu().numpy())
        seen.append(np.where(mask.cpu().numpy(), source, -1))
        if all_classes:
            scores.append(out.frame_scores.float().masked_fill(~out.mask.unsqueeze(-1), float("nan")).cpu().numpy())
        if labels is not None:
            y = torch.as_tensor(labels[chunk], device=x.device)
            known = y >= 0
            if known.any():
                losses.append(F.cross_entropy(out.logits[known], y[known], reduction="sum").item())
    count = 0 if labels is None else int((labels[rows] >= 0).sum())
    C = model.config.num_classes
    return BankPredictions(
        rows=rows,
        probs=np.concatenate(probs) if probs else np.zeros((0, C), np.float32),
        influence=np.concatenate(influence) if influence else np.zeros((0, T), np.float32),
        frame_index=np.concatenate(seen) if seen else np.zeros((0, T), np.int64),
        loss=sum(losses) / count if count else float("nan"),
        frame_scores=(np.concatenate(scores) if scores else np.zeros((0, T, C), np.float32)) if all_classes else None,
    )
