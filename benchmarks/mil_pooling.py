"""Which MIL pooling? Accuracy and frame localisation on planted-signal features (docs/model.md).

Demo-like data (140 clips, 7 classes, 16 frames, D = 512, 5 folds) where only 3 frames per clip
carry the class direction (``tg_dfer.synthetic.planted_cache``). Each pooling trains the default
model on fold 1 with the paper's optimiser for ``--epochs`` epochs, without learnable context
(no CLIP text tower needed; the pooling is what is compared), and reports test accuracy and the
share of each test clip's 3 highest-influence frames that are signal frames (chance 3/16).

    .venv/bin/python benchmarks/mil_pooling.py [--poolings mean,max,lse,attention,topk] [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from tg_dfer.synthetic import planted_cache
from tg_dfer.training.bank import FeatureBank
from tg_dfer.training.config import TrainConfig
from tg_dfer.training.loop import fit
from tg_dfer.training.predict import predict_rows


def score(pooling: str, seed: int, contiguous: bool, epochs: int) -> dict:
    planted = planted_cache(seed=seed, contiguous=contiguous)
    started = time.perf_counter()
    result = fit(planted.features, planted.text, planted.test_fold, 1,
                 {"learnable_context": False, "mil_pooling": pooling},
                 TrainConfig(epochs=epochs, milestones=[30, 40], track_test=False), progress=False)
    model = result.model
    model.load_learned_state_dict(result.best_state)
    rows = result.split.test
    out = predict_rows(model, FeatureBank(planted.features), rows)
    accuracy = float(np.mean(out.pred == planted.features.label[rows]))
    top = np.argsort(-np.nan_to_num(out.influence, nan=-np.inf), axis=1)[:, :3]
    precision = float(np.take_along_axis(planted.signal[rows], top, axis=1).mean())
    return {"pooling": pooling, "seed": seed, "contiguous": contiguous, "accuracy": round(100 * accuracy, 1),
            "top3_signal": round(100 * precision, 1), "best_epoch": result.best_epoch,
            "seconds": round(time.perf_counter() - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poolings", default="mean,max,lse,attention,topk")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for pooling in args.poolings.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            print(json.dumps(score(pooling, seed, contiguous=seed % 2 == 0, epochs=args.epochs)), flush=True)


if __name__ == "__main__":
    main()
