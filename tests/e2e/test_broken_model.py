"""check-metrics catches a broken model: the frame attention of Eq. 8 taken over classes instead of frames.

Trained on planted-signal features (helpers.synthetic), where the label sits in a few frames and
the truth is known, the same run twice gives the same metrics, and the broken model's metrics are
out of check-metrics' tolerance, as they are for the demo's committed metrics (README).
"""

from __future__ import annotations

import tg_dfer.model.tgdfer as tgdfer
from tg_dfer.compare import compare_numbers
from tg_dfer.metrics import report
from tg_dfer.training.bank import FeatureBank
from tg_dfer.training.bank_scores import predict_rows
from tg_dfer.training.config import TrainConfig
from tg_dfer.training.loop import fit

from helpers.synthetic import planted_cache

TOLERANCE = 0.5  # check-metrics' default, in points of UAR / WAR


def metrics_of_a_run() -> dict:
    planted = planted_cache(num_clips=140, dim=128, strength=0.6, seed=0)
    result = fit(planted.features, planted.text, planted.test_fold, 1, {"learnable_context": False},
                 TrainConfig(epochs=15, milestones=[30, 40], track_test=False), progress=False)
    result.model.load_learned_state_dict(result.best_state)
    rows = result.split.test
    out = predict_rows(result.model, FeatureBank(planted.features), rows)
    scores = report(planted.features.label[rows], out.pred, planted.features.class_names)
    return {"uar": scores["uar"], "war": scores["war"]}


def attention_over_classes(similarity, mask):
    return similarity.masked_fill(~mask.unsqueeze(-1), float("-inf")).softmax(dim=2)


def test_a_model_with_attention_over_classes_moves_the_metrics_out_of_tolerance(one_thread, monkeypatch):
    reference = metrics_of_a_run()
    assert compare_numbers(reference, metrics_of_a_run(), TOLERANCE)[1] == []  # reproducible
    monkeypatch.setattr(tgdfer, "frame_attention", attention_over_classes)
    broken = metrics_of_a_run()
    problems = compare_numbers(reference, broken, TOLERANCE)[1]
    assert {problem.split(":")[0] for problem in problems} == {"uar", "war"}, (reference, broken)
