"""Every claim of issue 13 about the demo, computed from a finished `dvc repro` of it.

Run from the repository root after `dvc repro` (demo dataset, its own backbone):

    PYTHONPATH=$PWD .venv/bin/python benchmarks/demo_claims.py [--threads 2] [--json OUT]

Prints one JSON object:

* ``pipeline``: best-on-validation UAR/WAR over the 5 folds (metrics/demo/metrics.json).
* ``apex_auroc``: per non-neutral test clip, the AUROC with which the stored frame influence
  (metrics/demo/predictions.h5) ranks the renderer's apex frames (labels.csv apex_frames, matched
  through the source frames seen, frame_index) above the other frames; mean over the clips that
  show both kinds of frame.
* ``table6``: each clip predicted again from its k = 1, 2, 3 highest- and lowest-influence frames
  only (tg_dfer.evaluate.evaluate_folds with FrameSelection, on the trained checkpoints).
* ``mil``: the 5 folds trained again through tg_dfer.train.fit with the pipeline's configs, with
  the default pooling and with train.model.mil_pooling = mean.
* ``zero_shot``: the untrained model (tg_dfer.model.build_model: X^I starts as the frame features
  and X^P as the class-prompt embeddings) on each fold's test clips.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from pipeline.params import clip_settings
from pipeline.text import text_path
from pipeline.train import fold_dir, test_folds_for, train_settings
from tg_dfer.backbone import load_backbone
from tg_dfer.cache import read_features, read_text
from tg_dfer.evaluate import FrameSelection, evaluate_folds, read_predictions
from tg_dfer.metrics import pair_auroc, uar, war
from tg_dfer.model import ModelConfig, TextEncoder, build_model
from tg_dfer.train import FeatureBank, TrainConfig, fit, load_checkpoint, model_config_for, predict

CHANCE = 100.0 / 7


def apex_auroc(predictions_path: Path, labels_path: Path) -> dict:
    predictions = read_predictions(predictions_path)
    with open(labels_path, newline="", encoding="utf-8") as handle:
        rows = {row["clip_id"]: row for row in csv.DictReader(handle)}
    scores, lacking = [], 0
    for index, clip_id in enumerate(predictions.clip_id):
        row = rows[clip_id]
        if row["label"] == "neutral":
            continue
        seen = predictions.frame_index[index] >= 0
        apex_frames = {int(frame) for frame in row["apex_frames"].split()}
        apex = np.array([int(frame) in apex_frames for frame in predictions.frame_index[index][seen]])
        if apex.all() or not apex.any():
            lacking += 1
        else:
            scores.append(pair_auroc(predictions.influence[index][seen][apex],
                                     predictions.influence[index][seen][~apex]))
    return {"mean": round(float(np.mean(scores)), 4), "clips": len(scores),
            "clips_without_both_kinds_of_frame": lacking}


def summary(metrics: dict) -> dict:
    return {"uar": metrics["uar"], "war": metrics["war"], "uar_std": metrics["uar_std"], "war_std": metrics["war_std"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    params = yaml.safe_load(Path(args.params).read_text())
    dataset = params["dataset"]["name"]
    settings = train_settings(params, args.params)
    folds = settings["folds"]
    features_path = Path("data") / dataset / "features.h5"
    features = read_features(features_path)
    text = read_text(text_path(params["text"]["prompt_set"]))
    test_fold = test_folds_for(features, Path("data") / dataset / "manifest.csv", features_path)
    metrics = json.loads((Path("metrics") / dataset / "metrics.json").read_text())
    out: dict = {"dataset": dataset, "clip_sha256": features.attrs.get("checkpoint_sha256"),
                 "demo_weights": bool(features.attrs.get("demo_weights", False)),
                 "random_weights": features.random_weights, "pipeline": summary(metrics)}

    out["apex_auroc"] = apex_auroc(Path("metrics") / dataset / "predictions.h5",
                                   Path(params["dataset"]["root"]) / "labels.csv")

    checkpoints = {fold: load_checkpoint(fold_dir(dataset, fold) / "model.pt") for fold in folds}
    out["table6"] = {}
    for k in (1, 2, 3):
        for mode in ("highest", "lowest"):
            _, selected = evaluate_folds(checkpoints, features, test_fold, frames=FrameSelection(mode, k))
            out["table6"][f"{mode}_{k}"] = summary(selected)

    clip = clip_settings(params)
    loaded = load_backbone(clip["name"], clip["checkpoint"], "cpu", clip["seed"])
    encoder = TextEncoder.from_clip(loaded.model)
    optim = TrainConfig.from_dict(settings["optim"])
    out["mil"] = {}
    for pooling in (settings["model"]["mil_pooling"], "mean"):
        per_fold = []
        for fold in folds:
            result = fit(features, text, test_fold, fold, {**settings["model"], "mil_pooling": pooling}, optim,
                         encoder=encoder, progress=False)
            result.model.load_learned_state_dict(result.best_state)
            rows = result.split.test
            pred = predict(result.model, FeatureBank(features), rows).pred
            per_fold.append((uar(features.label[rows], pred, 7), war(features.label[rows], pred)))
        values = np.array(per_fold)
        out["mil"][pooling] = {"uar": round(float(values[:, 0].mean()), 2), "war": round(float(values[:, 1].mean()), 2),
                               "uar_folds": [round(float(v), 2) for v in values[:, 0]]}

    config = model_config_for(ModelConfig.from_dict({**settings["model"], "embed_dim": 8}), features,
                              len(text.class_names))
    untrained = build_model(config, text.class_names, text.class_prompts, text.descriptor_prompts,
                            torch.from_numpy(text.class_embeddings), torch.from_numpy(text.descriptor_embeddings),
                            encoder=encoder, seed=optim.seed)
    bank, per_fold = FeatureBank(features), []
    for fold in folds:
        rows = np.flatnonzero(test_fold == fold)
        pred = predict(untrained, bank, rows).pred
        per_fold.append((uar(features.label[rows], pred, 7), war(features.label[rows], pred)))
    values = np.array(per_fold)
    out["zero_shot"] = {"uar": round(float(values[:, 0].mean()), 2), "war": round(float(values[:, 1].mean()), 2),
                        "chance": round(CHANCE, 2)}
    out["seconds"] = round(time.perf_counter() - started, 1)
    text_out = json.dumps(out, indent=1)
    print(text_out)
    if args.json:
        Path(args.json).write_text(text_out + "\n")


if __name__ == "__main__":
    main()
