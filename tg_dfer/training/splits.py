"""Which clips of a cache train, validate and test one fold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class Split:
    """Rows of the feature cache in each part of one fold."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def as_dict(self, clip_ids: Sequence[str]) -> dict[str, list[str]]:
        return {part: [clip_ids[row] for row in getattr(self, part)] for part in ("train", "val", "test")}


def stratified_holdout(rows: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` into (kept, held out) with about ``fraction`` of every class held out.

    A class keeps at least one clip for training; a class of two or more clips gives at least
    one to the held-out part, so every class can be validated.
    """
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for label in np.unique(labels[rows]):
        members = rows[labels[rows] == label]
        members = members[rng.permutation(len(members))]
        count = int(np.floor(fraction * len(members) + 0.5))
        if fraction > 0 and len(members) >= 2:
            count = max(count, 1)
        held.extend(members[: min(count, len(members) - 1)].tolist())
    held_out = np.array(sorted(held), dtype=np.int64)
    return np.setdiff1d(rows, held_out), held_out


def fold_split(labels: np.ndarray, test_fold: np.ndarray, fold: int, val_fraction: float, seed: int) -> Split:
    """Test = clips of ``test_fold == fold``; the labelled rest is training, minus a stratified validation part."""
    labels, test_fold = np.asarray(labels), np.asarray(test_fold)
    test = np.flatnonzero(test_fold == fold)
    training = np.flatnonzero((test_fold != fold) & (labels >= 0))
    if not len(test):
        raise ValueError(f"fold {fold} has no test clips (test_fold values present: {sorted(set(test_fold.tolist()))})")
    if not len(training):
        raise ValueError(f"fold {fold} has no labelled training clips")
    train, val = stratified_holdout(training, labels, val_fraction, seed)
    return Split(train=train, val=val, test=test)
