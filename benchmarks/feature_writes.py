"""What the embed stage's writes cost per clip: clip by clip, or a forward pass at a time.

The embed stage keeps its finished work in a resume journal (``tg_dfer.cache.ClipJournal``) and
then writes features.h5 from it. This times both halves for ``--clips`` clips of ``--frames`` x
512 float16 features, once with one journal entry and one ``FeaturesWriter.append`` per clip (the
stage before 2026-11-30), once with one entry and one ``FeaturesWriter.extend`` per pass of
``--per-pass`` clips (the stage now; 64 clips = the GPU batch of 1,024 images), in one run.

    .venv/bin/python benchmarks/feature_writes.py [--clips 1024] [--frames 16] [--per-pass 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from tg_dfer.cache import ClipJournal, FeaturesWriter

DIM = 512
ATTRS = {"clip_model": "ViT-B/32", "checkpoint_sha256": "0" * 64, "random_weights": True, "embed_dim": DIM,
         "class_names": ["any"], "views": 1}


def columns(features: np.ndarray, first: int, count: int) -> dict[str, np.ndarray]:
    frames = features.shape[2]
    return {"clip_id": np.asarray([f"clip{row}" for row in range(first, first + count)]),
            "label": np.zeros(count, np.int64), "features": features[first:first + count],
            "num_frames": np.full(count, frames, np.int32), "frame_index": np.tile(np.arange(frames), (count, 1)),
            "face_score": np.ones((count, frames), np.float32)}


def seconds_per_clip(folder: Path, features: np.ndarray, per_entry: int) -> float:
    """Journal every entry of ``per_entry`` clips, write features.h5 from the journal, remove it."""
    clips, frames = features.shape[0], features.shape[2]
    started = time.perf_counter()
    journal = ClipJournal(folder / f"by{per_entry}.h5.parts", {"per_entry": per_entry})
    for number, first in enumerate(range(0, clips, per_entry)):
        journal.put(number, columns(features, first, min(per_entry, clips - first)))
    with FeaturesWriter(folder / f"by{per_entry}.h5", 1, frames, DIM, {**ATTRS, "frames_per_clip": frames}) as out:
        for number in sorted(journal.done()):
            block = journal.get(number)
            if per_entry == 1:
                out.append(**{name: values[0] for name, values in block.items()})
            else:
                out.extend(**block)
    journal.remove()
    return (time.perf_counter() - started) / clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--per-pass", type=int, default=64)
    args = parser.parse_args()
    features = np.random.default_rng(0).standard_normal((args.clips, 1, args.frames, DIM)).astype(np.float16)
    with tempfile.TemporaryDirectory(prefix="tg-dfer-bench-") as folder:
        by_clip = seconds_per_clip(Path(folder), features, 1)
        by_pass = seconds_per_clip(Path(folder), features, args.per_pass)
    print(json.dumps({"clips": args.clips, "frames": args.frames, "per_pass": args.per_pass,
                      "clip_by_clip_ms_per_clip": round(1e3 * by_clip, 3),
                      "pass_at_a_time_ms_per_clip": round(1e3 * by_pass, 3),
                      "ratio": round(by_clip / by_pass, 1)}))


if __name__ == "__main__":
    main()
