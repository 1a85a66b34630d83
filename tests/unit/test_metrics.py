"""UAR, WAR, per-class recall, confusion matrices and frame AUROC against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tg_dfer.metrics import confusion_matrix, frame_auroc, pair_auroc, per_class_recall, report, summarize, uar, war

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


def rank_sum_auroc(scores, positive):
    """AUROC from the Mann-Whitney rank sum, with average ranks of ties counted in a loop."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    hits = sum(positive)
    misses = len(positive) - hits
    return (sum(r for r, p in zip(ranks, positive) if p) - hits * (hits + 1) / 2) / (hits * misses)


def test_pair_auroc_against_the_rank_sum():
    rng = np.random.default_rng(1)
    positive, negative = rng.integers(0, 6, size=20).astype(float), rng.integers(0, 4, size=35).astype(float)
    labels = [True] * len(positive) + [False] * len(negative)
    assert pair_auroc(positive, negative) == pytest.approx(rank_sum_auroc(list(positive) + list(negative), labels))
    assert pair_auroc([2.0], [1.0, 3.0]) == 0.5
    assert math.isnan(pair_auroc([], [1.0]))


def test_frame_auroc():
    positive = np.array([[True, True, False, False], [False, True, False, False]])
    assert frame_auroc(np.array([[4.0, 3.0, 2.0, 1.0], [0.0, 9.0, 1.0, 2.0]]), positive) == 1.0
    assert frame_auroc(np.array([[1.0, 2.0, 3.0, 4.0], [9.0, 0.0, 1.0, 2.0]]), positive) == 0.0
    assert frame_auroc(np.ones((2, 4)), positive) == 0.5  # ties count half
    # padding (NaN) takes no part; a clip with no negative frame left has no AUROC and is skipped
    padded = np.array([[4.0, 1.0, 2.0, np.nan], [np.nan, 5.0, np.nan, np.nan]])
    assert frame_auroc(padded, positive) == pytest.approx(rank_sum_auroc([4.0, 1.0, 2.0], [True, True, False]))
    assert math.isnan(frame_auroc(np.full((1, 4), np.nan), positive[:1]))
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(30, 16)).astype(float)  # many ties
    positive = rng.random((30, 16)) < 0.3
    positive[:, 0], positive[:, 1] = True, False
    expected = np.mean([rank_sum_auroc(list(s), list(p)) for s, p in zip(scores, positive)])
    assert frame_auroc(scores, positive) == pytest.approx(expected)
    with pytest.raises(ValueError, match="same shape"):
        frame_auroc(scores, positive[:, :3])
