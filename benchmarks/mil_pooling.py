"""Does the model find the frames that carry the label? MIL pooling on planted bags (docs/model.md).

The label of each clip is planted in a few of its 16 frames (``helpers.synthetic.planted_cache``),
so the truth is known and two things are measured per test fold:

* test WAR of the best-on-validation weights (and of the last epoch), next to the training WAR,
  the recall of each label, and how many wrong predictions name the clip's confuser class;
* localisation: the per-clip AUROC (``tg_dfer.metrics.frame_auroc``) with which the frame
  influence of the predicted class ranks the signal frames above the others, also against the
  confuser frames, the plain ones and the two next to the burst alone (where a branch that mixes
  frames spreads it), on the correctly predicted clips alone, and per label; and ``top_signal``,
  the share of each clip's highest-influence frames (as many as it has signal frames) that are
  signal frames.

Two data sets (``--data``, overrides of its planted_cache arguments with ``--planted``):

* ``confuser``: 1,400 clips, 7 classes, D = 512; a 3-frame burst carries the label, a contiguous
  run of 8 other frames another class more weakly (8 x 0.36 outweighs 3 x 0.6 in the clip's mean,
  frame by frame the burst wins), noise 1.0, so that a from-scratch temporal network can overfit;
* ``sparse``: the demo-like 140 clips with 3 signal frames and no confuser (the pooling table of
  docs/paper-deviations.md, there with ``--folds 1 --model '{"learnable_context": false}'``).

The model is TG-DFER with ``ModelConfig`` defaults (the params.yaml ``train.model`` section;
learnable context through the frozen text tower of seeded random ViT-B/32) with the overrides of
``--model``, once per pooling of ``--poolings``, trained with ``TrainConfig`` defaults (the paper's
optimiser) except ``--epochs`` and the overrides of ``--optim`` (the norm of X^CP in Eq. 10:
``--model '{"coarse_text_gain": 1}'``). References on the same split (``--baselines``): a per-frame linear model
whose bag score is a MIL pooling of its frame scores (``mean``: what ignoring where the label is
gets; ``max``: what the planted structure allows a model that finds the burst).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mil_pooling.py [--data confuser] [--folds 1,2]
        [--epochs 20] [--poolings topk,max] [--model '{"topk_fraction": 0.125}']
        [--optim '{"weight_decay": 0.001}'] [--baselines mean,max] [--no-model]

Prints one JSON line per fold and baseline or model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tg_dfer.backbone import BackboneSpec, load_backbone
from tg_dfer.metrics import frame_auroc, per_class_recall, war
from tg_dfer.model import ModelConfig, TextEncoder, mil_pool
from tg_dfer.training.bank import FeatureBank
from tg_dfer.training.bank_scores import predict_rows
from tg_dfer.training.config import TrainConfig
from tg_dfer.training.loop import fit
from tg_dfer.training.splits import Split, fold_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the planted caches are test support
from helpers.synthetic import Planted, planted_cache  # noqa: E402

LINEAR_TOPK_FRACTION = 0.25  # docs/model.md's table: "linear, topk 0.25 over frames"
DATASETS = {
    # Calibrated with the baselines: the mean-pooled linear model fails, the max-pooled one is
    # right on (nearly) every test clip.
    "confuser": dict(num_clips=1400, num_classes=7, frames=16, dim=512, signal_frames=3, strength=0.6,
                     identity=0.5, noise=1.0, confuser=0.36, confuser_frames=8, seed=0),
    "sparse": dict(seed=0),
}


def localisation(influence: np.ndarray, planted: Planted, rows: np.ndarray, correct: np.ndarray) -> dict:
    """AUROCs of ``influence`` (N, F) over the signal frames of ``rows``; ``correct`` (N,) marks the
    clips predicted right (a clip predicted wrong is scored by another class's frames)."""
    signal, confuser = planted.signal[rows], planted.confuser[rows]
    labels = planted.features.label[rows]
    adjacent = (np.roll(signal, 1, axis=1) | np.roll(signal, -1, axis=1)) & ~signal
    adjacent[:, 0] &= ~signal[:, -1]  # np.roll wraps around; the first and last frames are not neighbours
    adjacent[:, -1] &= ~signal[:, 0]

    def against(negatives: np.ndarray) -> float | None:
        value = frame_auroc(np.where(signal | negatives, influence, np.nan), signal)
        return None if np.isnan(value) else round(value, 3)

    per_clip = int(signal[0].sum())  # planted_cache gives every clip as many signal frames
    top = np.argsort(-np.nan_to_num(influence, nan=-np.inf), axis=1)[:, :per_clip]
    return {"auroc": round(frame_auroc(influence, signal), 3),
            "auroc_correct": round(frame_auroc(influence[correct], signal[correct]), 3),
            "vs_confuser": against(confuser), "vs_plain": against(~signal & ~confuser),
            "vs_adjacent": against(adjacent),
            "top_signal": round(float(np.take_along_axis(signal, top, axis=1).mean()), 3),
            "auroc_by_label": [round(frame_auroc(influence[labels == k], signal[labels == k]), 3)
                               for k in range(len(planted.features.class_names))]}


def score_model(planted: Planted, fold: int, settings: dict, config: TrainConfig, encoder: TextEncoder | None) -> dict:
    started = time.perf_counter()
    result = fit(planted.features, planted.text, planted.test_fold, fold, settings, config, encoder=encoder,
                 progress=False)
    seconds = time.perf_counter() - started
    labels = planted.features.label
    rows = result.split.test
    bank = FeatureBank(planted.features)
    scores = {}
    for which, state in (("best", result.best_state), ("last", result.last_state)):
        result.model.load_learned_state_dict(state)
        out = predict_rows(result.model, bank, rows, labels)
        if not np.array_equal(out.frame_index, planted.features.frame_index[rows]):
            raise ValueError("the model did not see every cached frame in order (num_frames must equal the "
                             "cached frames); the signal mask would not align with the influence")
        correct = out.pred == labels[rows]
        recall = per_class_recall(labels[rows], out.pred, len(planted.features.class_names))
        scores[which] = {"test_war": round(war(labels[rows], out.pred), 1),
                         "recall_by_label": [round(float(value), 1) for value in recall],
                         "wrong": int((~correct).sum()),
                         "wrong_as_confuser": int((~correct & (out.pred == planted.confuser_class[rows])).sum()),
                         **localisation(out.influence, planted, rows, correct)}
    curve = [{key: round(record[key], 4) for key in ("epoch", "train_loss", "train_war", "val_war", "test_war")}
             for record in result.history]
    return {"fold": fold, "model": settings, **scores["best"], "best_epoch": result.best_epoch,
            "train_war": curve[-1]["train_war"], "last": scores["last"], "seconds": round(seconds), "epochs": curve}


def linear_baseline(planted: Planted, split: Split, pooling: str, steps: int = 300, seed: int = 0) -> dict:
    """A per-frame linear classifier, bag score = ``mil_pool`` of its frame scores, trained full-batch with Adam."""
    features = torch.from_numpy(planted.features.features[:, 0].astype(np.float32))  # (N, F, D) view 0
    labels = torch.from_numpy(planted.features.label)
    mask = torch.arange(features.shape[1])[None, :] < torch.from_numpy(planted.features.num_frames)[:, None]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = torch.nn.Linear(features.shape[-1], len(planted.features.class_names))
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2, weight_decay=1e-4)

    def frame_logits(rows: np.ndarray) -> torch.Tensor:
        # unit embeddings have coordinates of about 1/sqrt(D); unit coordinates keep Adam's lr meaningful
        return layer(features[rows] * features.shape[-1] ** 0.5)  # (B, F, C)

    def bag(rows: np.ndarray, logits: torch.Tensor) -> torch.Tensor:
        # the linear baseline's top-k keeps the fraction docs/model.md measured it with
        return mil_pool(logits, mask[rows], pooling, topk_fraction=LINEAR_TOPK_FRACTION)

    train = split.train
    for _ in range(steps):
        loss = F.cross_entropy(bag(train, frame_logits(train)), labels[train])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        logits = frame_logits(split.test)
        pred = bag(split.test, logits).argmax(dim=1)
        influence = logits.gather(2, pred.view(-1, 1, 1).expand(-1, logits.shape[1], 1)).squeeze(2)
        influence = influence.masked_fill(~mask[split.test], float("nan")).numpy()
        train_war = war(labels[train].numpy(), bag(train, frame_logits(train)).argmax(dim=1).numpy())
    correct = pred.numpy() == labels[split.test].numpy()
    return {"baseline": f"linear, {pooling} over frames", "test_war": round(war(labels[split.test].numpy(), pred.numpy()), 1),
            "train_war": round(train_war, 1), **localisation(influence, planted, split.test, correct)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(DATASETS), default="confuser")
    parser.add_argument("--planted", default="{}", help="JSON of planted_cache overrides of the data set")
    parser.add_argument("--folds", default="1,2")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--poolings", default="", help="mil_pooling values to train one model each ('' = the model's)")
    parser.add_argument("--model", default="{}", help="JSON of ModelConfig overrides")
    parser.add_argument("--optim", default="{}", help="JSON of TrainConfig overrides (besides --epochs)")
    parser.add_argument("--baselines", default="mean,max",
                        help="MIL poolings of the linear baselines (mean,max,topk,...); '' for none")
    parser.add_argument("--no-model", action="store_true", help="baselines only (to calibrate the data)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    planted = planted_cache(**{**DATASETS[args.data], **json.loads(args.planted)})
    optim = {"epochs": args.epochs, **json.loads(args.optim)}
    config = TrainConfig(**optim)
    overrides = json.loads(args.model)
    models = [{**overrides, "mil_pooling": pooling} for pooling in args.poolings.split(",")] if args.poolings \
        else [overrides]
    needs_text = any(ModelConfig(**settings).needs_text_encoder for settings in models)
    encoder = TextEncoder.from_clip(load_backbone(BackboneSpec("ViT-B/32", "random")).model) if needs_text and not args.no_model \
        else None
    extra = {"data": args.data, "planted": json.loads(args.planted), "optim": optim}
    for fold in (int(f) for f in args.folds.split(",")):
        if args.baselines:
            split = fold_split(planted.features.label, planted.test_fold, fold, config.val_fraction, config.seed)
            for pooling in args.baselines.split(","):
                print(json.dumps({"fold": fold, **linear_baseline(planted, split, pooling), "data": args.data}),
                      flush=True)
        if not args.no_model:
            for settings in models:
                print(json.dumps({**score_model(planted, fold, settings, config, encoder), **extra}), flush=True)


if __name__ == "__main__":
    main()
