"""Every fold of a finished demo `dvc repro` trained again with other settings, in one process.

Trained and saved as the train stage does, then evaluated as the evaluate stage does (the same
functions, seeds and CPU profile: params.yaml's own settings give the committed metrics to the
bit), so a variant's numbers compare with metrics.json. Used by demo_claims.py and seed_study.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pipeline.loading import Inputs
from tg_dfer import cpu_profile
from tg_dfer.backbone import Backbone
from tg_dfer.demo.apex import apex_auroc
from tg_dfer.evaluate import evaluate_folds
from tg_dfer.model import ModelConfig, TextEncoder
from tg_dfer.training.checkpoint import load_checkpoint, save_checkpoint
from tg_dfer.training.config import TrainConfig
from tg_dfer.training.loop import fit


def retrain(inputs: Inputs, folds: list[int], config: ModelConfig, optim: TrainConfig, encoder: TextEncoder | None,
            loaded: Backbone, apex_truth: dict | None) -> dict[str, Any]:
    """metrics.json's content for the folds trained with ``config`` and ``optim``; with
    ``apex_truth`` (labels.csv's apex frames) also its ``apex_auroc``."""
    features = inputs.features
    checkpoints = {}
    with tempfile.TemporaryDirectory(prefix="retrain-") as folder:
        for fold in folds:
            result = fit(features, inputs.text, inputs.test_fold, fold, config, optim, encoder=encoder, progress=False)
            path = Path(folder) / f"fold{fold}.pt"
            save_checkpoint(path, result, class_names=features.class_names, text=inputs.text, clip_model=loaded.name,
                            clip_sha256=features.attrs.get("checkpoint_sha256", ""),
                            random_weights=features.random_weights, fold=fold, cpu_profile=cpu_profile.record("cpu"))
            checkpoints[fold] = load_checkpoint(path)
    predictions, metrics = evaluate_folds(checkpoints, features, inputs.test_fold)
    if apex_truth is not None:
        metrics["apex_auroc"] = apex_auroc(predictions, apex_truth)
    return metrics
