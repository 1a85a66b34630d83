"""What the embed stage's writes cost per clip: clip by clip, or a forward pass at a time.

The embed stage keeps its finished work in a resume journal (``tg_dfer.resume.journal.Journal``) and
then writes features.h5 from it (``benchmarks.measure.journal_then_write`` runs the stage's own code on synthetic
features). This times it for ``--clips`` clips of ``--frames`` x 512 float16 features, once with
one journal entry and one features.h5 write per clip (the stage before 2026-11-30), once with one
entry and one write per pass of ``--per-pass`` clips (the stage now; 64 clips = the GPU batch of
1,024 images), in one run.

    .venv/bin/python benchmarks/feature_writes.py [--clips 1024] [--frames 16] [--per-pass 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.measure import best_time, journal_then_write

DIM = 512
ATTRS = {"clip_model": "ViT-B/32", "checkpoint_sha256": "0" * 64, "random_weights": True, "embed_dim": DIM,
         "class_names": ["any"], "views": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--per-pass", type=int, default=64)
    args = parser.parse_args()
    features = np.random.default_rng(0).standard_normal((args.clips, 1, args.frames, DIM)).astype(np.float16)
    attrs = {**ATTRS, "frames_per_clip": args.frames}
    with tempfile.TemporaryDirectory(prefix="tg-dfer-bench-") as folder:
        seconds = {per_entry: best_time(lambda: journal_then_write(Path(folder) / "features.h5", features, per_entry,
                                                                   attrs), 1, lambda: None) / args.clips
                   for per_entry in (1, args.per_pass)}
    by_clip, by_pass = seconds[1], seconds[args.per_pass]
    print(json.dumps({"clips": args.clips, "frames": args.frames, "per_pass": args.per_pass,
                      "clip_by_clip_ms_per_clip": round(1e3 * by_clip, 3),
                      "pass_at_a_time_ms_per_clip": round(1e3 * by_pass, 3),
                      "ratio": round(by_clip / by_pass, 1)}))


if __name__ == "__main__":
    main()
