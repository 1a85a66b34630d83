"""UAR, WAR, per-class recall and confusion matrices against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tg_dfer.metrics import confusion_matrix, per_class_recall, report, summarize, uar, war

NAMES = ["a", "b", "c", "d"]


def hand_confusion(labels, preds, classes):
    """A loop over clips, nothing shared with the library's bincount."""
    matrix = [[0] * classes for _ in range(classes)]
    for label, pred in zip(labels, preds):
        if label >= 0:
            matrix[label][pred] += 1
    return np.array(matrix)


def balanced_accuracy(labels, preds):
    """Balanced accuracy written from its definition: mean over present classes of hits / support."""
    recalls = []
    for cls in sorted({label for label in labels if label >= 0}):
        members = [pred for label, pred in zip(labels, preds) if label == cls]
        recalls.append(sum(pred == cls for pred in members) / len(members))
    return 100.0 * sum(recalls) / len(recalls)


def test_known_example():
    labels = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    preds = [0, 0, 0, 1, 1, 0, 2, 2, 0, 1]
    assert war(labels, preds) == pytest.approx(60.0)  # 6 of 10
    assert uar(labels, preds) == pytest.approx(100 * (3 / 4 + 1 / 2 + 2 / 4) / 3)
    recall = per_class_recall(labels, preds, 4)
    assert recall[:3] == pytest.approx([75.0, 50.0, 50.0])
    assert math.isnan(recall[3])  # class 3 has no clip: no recall, and not in the UAR


def test_random_cases_agree_with_independent_formulas():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n, classes = int(rng.integers(1, 60)), int(rng.integers(2, 8))
        labels = rng.integers(-1, classes, size=n)
        preds = rng.integers(0, classes, size=n)
        known = labels >= 0
        assert np.array_equal(confusion_matrix(labels, preds, classes), hand_confusion(labels, preds, classes))
        if not known.any():
            assert math.isnan(uar(labels, preds, classes)) and math.isnan(war(labels, preds))
            continue
        assert war(labels, preds) == pytest.approx(100.0 * np.mean(labels[known] == preds[known]))
        assert uar(labels, preds, classes) == pytest.approx(balanced_accuracy(labels.tolist(), preds.tolist()))
        # WAR from the matrix: trace over total; UAR: mean of diagonal over row sums
        matrix = hand_confusion(labels, preds, classes)
        assert war(labels, preds) == pytest.approx(100.0 * np.trace(matrix) / matrix.sum())
        rows = matrix.sum(axis=1)
        assert uar(labels, preds, classes) == pytest.approx(100.0 * np.mean(np.diag(matrix)[rows > 0] / rows[rows > 0]))


def test_perfect_and_balanced_cases():
    labels = [0, 1, 2, 3, 3, 3]
    assert uar(labels, labels) == 100.0 and war(labels, labels) == 100.0
    always_three = [3] * 6
    assert war(labels, always_three) == pytest.approx(50.0)
    assert uar(labels, always_three) == pytest.approx(25.0)  # majority guessing gets 1/C


def test_report_and_fold_summary():
    fold1 = report([0, 1, 2, 3], [0, 1, 2, 0], NAMES)
    fold2 = report([0, 0, 1, 1, -1], [0, 1, 1, 1, 2], NAMES)
    assert fold1["war"] == 75.0 and fold1["uar"] == 75.0 and fold1["clips"] == 4
    assert fold2["clips"] == 4  # the unlabelled clip is not counted
    assert fold2["per_class"]["c"] is None  # no clip of class c in fold 2
    summary = summarize({"1": fold1, "2": fold2}, NAMES)
    assert summary["war"] == pytest.approx((75.0 + 75.0) / 2)
    assert summary["uar"] == pytest.approx((75.0 + 75.0) / 2)
    assert summary["uar_std"] == pytest.approx(0.0)
    assert summary["per_class"]["a"] == pytest.approx((100.0 + 50.0) / 2)
    assert summary["per_class"]["c"] == pytest.approx(100.0)  # only fold 1 has class c
    assert np.array_equal(summary["confusion"], np.add(fold1["confusion"], fold2["confusion"]))
    three = summarize({"1": {**fold1, "uar": 60.0}, "2": {**fold1, "uar": 70.0}, "3": {**fold1, "uar": 80.0}}, NAMES)
    assert three["uar_std"] == pytest.approx(10.0)  # sample standard deviation (ddof = 1)


def test_bad_inputs():
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 2)
    with pytest.raises(ValueError):
        confusion_matrix([0, 5], [0, 1], 2)
