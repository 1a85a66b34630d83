"""What the reference CPU profile costs: embedding and training with it and without, in one run.

Run from the repository root after `dvc repro` of the demo:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/cpu_profile_cost.py --rounds 2 --json metrics/bench-cpu-profile.json

Each round runs, in fresh processes (the profile is set before torch loads) and in turn,
TG_DFER_CPU_PROFILE=native and then =reference for:

* embed: `tg-dfer bench embed` (a bare seeded-random ViT-B/32 forward on ready pixels, and the
  whole embed path), images per second;
* train: `tg-dfer train --fold 1` of the demo (50 epochs on its cached features), the mean epoch
  time from logs/demo/train_fold1.json.

The reference run goes last, so the demo's fold-1 model is left as `dvc repro` made it. The cost
is the ratio native / reference of each, in the same round (so both saw the same machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.measure import hardware

from output import emit  # benchmarks/, beside this script

PROFILES = ("native", "reference")


def run(profile: str, *args: str) -> None:
    env = {**os.environ, "TG_DFER_CPU_PROFILE": profile}
    command = [sys.executable, "-c", "from pipeline.cli import main; main()", *args]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


def measure(profile: str, folder: Path) -> dict[str, float]:
    out = folder / f"embed-{profile}.json"
    run(profile, "bench", "embed", "--device", "cpu", "--embed-clips", "16", "--batch-size", "64", "--json", str(out))
    embed = json.loads(out.read_text())["embed"]
    run(profile, "train", "--fold", "1", "--no-progress")
    epochs = json.loads(Path("logs/demo/train_fold1.json").read_text())["epoch_seconds"]
    return {"bare_images_per_s": embed["bare_images_per_s"], "embed_images_per_s": embed["embed_images_per_s"],
            "train_epoch_s": round(statistics.mean(epochs), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="profile-cost-") as folder:
        for number in range(args.rounds):
            measured = {profile: measure(profile, Path(folder)) for profile in PROFILES}
            native, reference = measured["native"], measured["reference"]
            rounds.append({**measured, "cost": {
                "bare_embed": round(native["bare_images_per_s"] / reference["bare_images_per_s"], 3),
                "embed": round(native["embed_images_per_s"] / reference["embed_images_per_s"], 3),
                "train_epoch": round(reference["train_epoch_s"] / native["train_epoch_s"], 3)}})
            print(f"round {number + 1}: {json.dumps(rounds[-1]['cost'])}", file=sys.stderr)
    machine = hardware("cpu")
    out = {"cpu": machine["cpu"], "avx512": " avx512f" in Path("/proc/cpuinfo").read_text(), "cores": machine["cores"],
           "torch": machine["torch"],
           "note": "cost = how many times slower the reference profile is than native (>1: slower)",
           "rounds": rounds}
    emit(out, args.json)


if __name__ == "__main__":
    main()
