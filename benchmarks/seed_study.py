"""The demo's spread over training seeds: every fold trained again under each seed, in one process.

Run from the repository root after `dvc repro` of the demo:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/seed_study.py --seeds 0 1 2 3 4 --json metrics/demo/seeds.json

For each seed K, params.yaml with train.optim.seed = K (all else as it is) is trained and
evaluated as the train and evaluate stages do (benchmarks/retrain.py); the seed params.yaml holds
gives metrics.json's numbers to the bit, which the study checks. It writes UAR, WAR and the apex
AUROC of every seed, their mean and sample standard deviation, and the CPU profile it ran under:
`tg-dfer check-metrics` takes its band from this file where the profile does not make the run
exact, and the README reports the demo as this mean +- std.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace

from pipeline.settings.params import load_params
from pipeline.loading import load_inputs, load_text_encoder
from pipeline.settings.dataset import dataset_paths
from pipeline.settings.train import model_config, train_settings
from tg_dfer import cpu_profile
from tg_dfer.demo.apex import read_apex_frames

from output import emit  # benchmarks/, beside this script
from retrain import retrain

METRICS = ("uar", "war", "apex_auroc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--json", help="also write the result here (metrics/demo/seeds.json for check-metrics)")
    args = parser.parse_args()
    if len(set(args.seeds)) < 2:
        parser.error("a spread needs at least two different seeds")
    cpu_profile.activate()  # the train stage's threads and kernels
    started = time.perf_counter()
    params = load_params(args.params)
    paths = dataset_paths(params)
    settings = train_settings(params, args.params)
    inputs = load_inputs(params, with_text=True)
    features = inputs.features
    encoder, loaded = load_text_encoder(params, inputs, "cpu")
    truth = read_apex_frames(dataset_paths(params).root / "labels.csv")
    config = model_config(settings, int(features.features.shape[-1]), len(features.class_names))
    committed = json.loads(paths.metrics_file.read_text())
    per_seed = {}
    for seed in args.seeds:
        metrics = retrain(inputs, settings.folds, config, replace(settings.optim, seed=seed), encoder, loaded, truth)
        per_seed[str(seed)] = {"uar": metrics["uar"], "war": metrics["war"], "apex_auroc": metrics["apex_auroc"]["mean"],
                               "folds_uar": {fold: values["uar"] for fold, values in metrics["folds"].items()}}
        print(f"seed {seed}: UAR {metrics['uar']:.2f} WAR {metrics['war']:.2f} apex AUROC "
              f"{metrics['apex_auroc']['mean']:.3f}", file=sys.stderr)
        if seed == settings.optim.seed and metrics["uar"] != committed["uar"]:
            raise SystemExit(f"seed {seed} (params.yaml's) gives UAR {metrics['uar']}, {paths.metrics_file} says "
                             f"{committed['uar']}: run `dvc repro` first, under the same CPU profile")
    out = {"dataset": paths.name, "varied": "train.optim.seed", "seeds": per_seed,
           "mean": {key: round(statistics.mean(run[key] for run in per_seed.values()), 4) for key in METRICS},
           "std": {key: round(statistics.stdev(run[key] for run in per_seed.values()), 4) for key in METRICS},
           "min": {key: min(run[key] for run in per_seed.values()) for key in METRICS},
           "cpu_profile": cpu_profile.record("cpu"),
           "command": "PYTHONPATH=$PWD .venv/bin/python benchmarks/seed_study.py --seeds "
                      + " ".join(map(str, args.seeds)) + (f" --json {args.json}" if args.json else ""),
           "seconds": round(time.perf_counter() - started, 1)}
    emit(out, args.json)


if __name__ == "__main__":
    main()
