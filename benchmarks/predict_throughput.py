"""Throughput of `tg-dfer predict` on a folder of clips, and how busy it keeps the CLIP device.

Runs the predict command's library path (threads decoding and detecting faces, CLIP embedding in
batches across clips, the model) on the given inputs and prints JSON: clips per second, face crops
embedded per second, and the share of the wall time the CLIP image encoder was computing (measured
around each batched forward pass, synchronised on a GPU). A share near 1 means the face threads
keep the device fed; a low share means decoding and detection are the bottleneck (raise --workers).

    .venv/bin/python benchmarks/predict_throughput.py exports/demo.pt data/demo/videos \\
        [--device cuda] [--workers 8] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

import tg_dfer.inference.predictor as predictor_module
from tg_dfer.backbone import load_backbone
from tg_dfer.detectors import make_detector
from tg_dfer.devices import pick_device
from tg_dfer.inference.inputs import collect_inputs
from tg_dfer.inference.model_file import load_model_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    device = pick_device(args.device)
    model = load_model_file(args.model)
    loaded = load_backbone(model.backbone_spec(), device)
    predictor = predictor_module.Predictor(model, loaded, device, args.batch_size)
    busy, images = [0.0], [0]
    encode = predictor_module.encode_clips

    def timed(loaded, pending, views=1, seed=0):
        started = time.perf_counter()
        out = encode(loaded, pending, views, seed)  # waits for the copy back: the device has finished
        busy[0] += time.perf_counter() - started
        images[0] += sum(len(clip.crops) for clip in pending)
        return out

    predictor_module.encode_clips = timed
    items, _ = collect_inputs(args.inputs)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    found = predictor_module.faces_in_threads(items, lambda: make_detector(model.detector, device, model.search), model.policy,
                                       args.workers)
    videos = predictor.run(found)
    wall = time.perf_counter() - started
    predicted = sum(video.clip.predicted for video in videos)
    print(json.dumps({"device": device, "workers": args.workers, "batch_size": args.batch_size, "clips": len(items),
                      "predicted": predicted, "seconds": round(wall, 2), "clips_per_s": round(len(items) / wall, 2),
                      "crops_per_s": round(images[0] / wall, 1), "clip_busy_share": round(busy[0] / wall, 3)},
                     indent=1))


if __name__ == "__main__":
    main()
