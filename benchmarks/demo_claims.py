"""What the demo shows about TG-DFER, computed from a finished `dvc repro` of it (issue 13's claims).

Run from the repository root after `dvc repro` (the demo dataset on its own backbone):

    PYTHONPATH=$PWD .venv/bin/python benchmarks/demo_claims.py [--json OUT] [--skip-mean]

Prints one JSON object:

* ``pipeline``: best-on-validation UAR/WAR over the folds and the apex AUROC, as metrics.json has
  them (``apex_auroc``: how well the stored frame influence ranks the renderer's apex frames first).
* ``table6``: each clip predicted again from its k = 1, 2, 3 highest- and lowest-influence frames
  only (the committed checkpoints, tg_dfer.evaluate.evaluate_folds with FrameSelection).
* ``mil_mean``: every fold trained again with train.model.mil_pooling = mean, all else as params.yaml
  (the same training and evaluation the train and evaluate stages run), with its apex AUROC;
  `--skip-mean` leaves it out.
* ``zero_shot``: the untrained model of `tg-dfer predict --zero-shot` (TG-DFER as initialised
  over the class prompts' embeddings) on every fold's test clips, from the cached features.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np

from pipeline.settings.clip import backbone_spec
from pipeline.settings.params import load_params
from pipeline.loading import load_inputs, load_text_encoder
from pipeline.settings.dataset import dataset_paths
from pipeline.settings.train import model_config, train_settings
from pipeline.model_files import zero_shot_payload
from tg_dfer import cpu_profile
from tg_dfer.backbone import load_backbone
from tg_dfer.demo.apex import read_apex_frames
from tg_dfer.evaluate import FrameSelection, evaluate_folds
from tg_dfer.inference.model_file import model_in_memory
from tg_dfer.inference.predictor import Predictor
from tg_dfer.metrics import report, summarize
from tg_dfer.training.checkpoint import load_checkpoint

from output import emit  # benchmarks/, beside this script
from retrain import retrain


def headline(metrics: dict) -> dict:
    return {key: metrics[key] for key in ("uar", "war", "uar_std", "war_std")}


def fold_summary(per_fold: dict[str, tuple[np.ndarray, np.ndarray]], names: list[str]) -> dict:
    """Mean +- std over folds of (labels, predictions) per fold, as metrics.json reports them."""
    return headline(summarize({fold: report(labels, pred, names) for fold, (labels, pred) in per_fold.items()}, names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument("--skip-mean", action="store_true", help="leave out the mean-pooling retraining")
    args = parser.parse_args()
    cpu_profile.activate()  # the train stage's threads and kernels, so the numbers match its
    started = time.perf_counter()
    params = load_params(args.params)
    paths = dataset_paths(params)
    settings = train_settings(params, args.params)
    inputs = load_inputs(params, with_text=True)
    features, names = inputs.features, inputs.features.class_names
    metrics = json.loads(paths.metrics_file.read_text())
    out: dict = {"dataset": paths.name, "clip_sha256": features.attrs.get("checkpoint_sha256"),
                 "demo_weights": features.demo_weights, "random_weights": features.random_weights,
                 "pipeline": {**headline(metrics), "apex_auroc": metrics.get("apex_auroc")}}

    checkpoints = {fold: load_checkpoint(paths.checkpoint(fold)) for fold in settings.folds}
    out["table6"] = {f"{mode}_{k}": headline(evaluate_folds(checkpoints, features, inputs.test_fold,
                                                            frames=FrameSelection(mode, k))[1])
                     for k in (1, 2, 3) for mode in ("highest", "lowest")}

    if not args.skip_mean:
        truth = read_apex_frames(dataset_paths(params).root / "labels.csv")
        encoder, loaded = load_text_encoder(params, inputs, "cpu")
        config = replace(model_config(settings, int(features.features.shape[-1]), len(names)), mil_pooling="mean")
        mean_metrics = retrain(inputs, settings.folds, config, settings.optim, encoder, loaded, truth)
        out["mil_mean"] = {**headline(mean_metrics), "apex_auroc": mean_metrics["apex_auroc"]}

    spec = backbone_spec(params, args.params)
    loaded = load_backbone(spec, "cpu")
    predictor = Predictor(model_in_memory(zero_shot_payload(params, args.params, loaded, spec.seed), "zero-shot"),
                          loaded)
    probs, _, _ = predictor.classify(features.features[:, 0].astype(np.float32), features.num_frames)
    pred = probs.argmax(axis=1)
    out["zero_shot"] = {**fold_summary({str(fold): (features.label[inputs.test_fold == fold],
                                                    pred[inputs.test_fold == fold]) for fold in settings.folds}, names),
                        "chance": round(100.0 / len(names), 2)}
    out["seconds"] = round(time.perf_counter() - started, 1)
    emit(out, args.json)


if __name__ == "__main__":
    main()
