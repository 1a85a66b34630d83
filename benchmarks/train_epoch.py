"""Time per training epoch: cached CLIP features versus the CLIP image encoder in the loop.

Both runs train the same TG-DFER model (default config: learnable context through the frozen
text tower, add visual prompt) with the same optimiser on the same clips. The cached run reads
frame embeddings from memory, as the train stage does; the other one embeds every frame with the
frozen image encoder (seeded random ViT-B/32 weights: same cost as the real ones) at every step,
as training end to end on frames would. Prints both times and their ratio from one run.

    .venv/bin/python benchmarks/train_epoch.py [--clips 24] [--batch-size 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from tg_dfer.backbone import encode_images, load_clip, preprocess
from tg_dfer.cache import FeatureCache
from tg_dfer.model import ModelConfig, TextEncoder, build_model
from tg_dfer.train import ClipBank, Split, TrainConfig, parameter_groups, train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--classes", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="epochs timed per run; the fastest counts")
    args = parser.parse_args()
    torch.manual_seed(0)
    N, T, C, device = args.clips, args.frames, args.classes, args.device

    started = time.perf_counter()
    clip = load_clip("ViT-B/32", "random", device=device, seed=0)
    print(f"loaded random ViT-B/32 in {time.perf_counter() - started:.1f} s")
    D = clip.embed_dim
    rng = np.random.default_rng(0)
    # The "clips": fixed random face-sized images, preprocessed once (decoding is not timed in either run).
    images = torch.from_numpy(rng.integers(0, 256, size=(N * T, 160, 160, 3), dtype=np.uint8))
    pixels = preprocess(images, clip.input_resolution).reshape(N, T, 3, clip.input_resolution, clip.input_resolution)
    labels = np.arange(N) % C

    with torch.no_grad():
        features = torch.cat([encode_images(clip, pixels[i].to(device)).cpu() for i in range(N)]).reshape(N, 1, T, D)
    cache = FeatureCache(clip_id=[f"c{i}" for i in range(N)], label=labels.astype(np.int64),
                         features=features.numpy().astype(np.float16), num_frames=np.full(N, T, np.int32),
                         frame_index=np.tile(np.arange(T, dtype=np.int32), (N, 1)),
                         face_score=np.ones((N, T), np.float32), attrs={})
    text = torch.nn.functional.normalize(torch.randn(C, D), dim=-1)
    names = [f"class{k}" for k in range(C)]
    encoder = TextEncoder.from_clip(clip.model).to(device)

    def fresh_model():
        config = ModelConfig(embed_dim=D, num_classes=C, num_frames=T)
        return build_model(config, names, [f"an expression of {n}." for n in names], names, text, text,
                           encoder=encoder, seed=0).to(device)

    optim = TrainConfig(epochs=1, batch_size=args.batch_size, val_fraction=0.0, track_test=False)
    split = Split(train=np.arange(N), val=np.zeros(0, np.int64), test=np.zeros(0, np.int64))

    # Cached features: what the train stage does.
    model = fresh_model()
    bank = ClipBank(cache, device)
    train_model(model, bank, labels, split, optim, progress=False)  # warm-up epoch
    cached = float("inf")
    for _ in range(args.repeats):  # the fastest of a few: other work on a shared machine only slows
        started = time.perf_counter()
        train_model(model, bank, labels, split, optim, progress=False)
        cached = min(cached, time.perf_counter() - started)

    # The image encoder in the loop on the same clips.
    model = fresh_model().train()
    optimizer = torch.optim.SGD(parameter_groups(model, optim), lr=optim.lr, momentum=optim.momentum,
                                weight_decay=optim.weight_decay)
    y = torch.from_numpy(labels).to(device)
    mask = torch.ones(args.batch_size, T, dtype=torch.bool, device=device)
    in_loop = float("inf")
    for _ in range(args.repeats):
        started = time.perf_counter()
        order = rng.permutation(N)
        for start in range(0, N, args.batch_size):
            rows = order[start:start + args.batch_size]
            batch = pixels[rows].reshape(-1, *pixels.shape[2:]).to(device)
            with torch.no_grad():  # the image tower is frozen, as in the paper
                x = encode_images(clip, batch).reshape(len(rows), T, D)
            loss = F.cross_entropy(model(x, mask[: len(rows)]).logits, y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        in_loop = min(in_loop, time.perf_counter() - started)

    result = {"clips": N, "frames": T, "batch_size": args.batch_size, "device": device,
              "threads": torch.get_num_threads(), "cached_epoch_s": round(cached, 3),
              "image_encoder_epoch_s": round(in_loop, 3), "ratio": round(in_loop / cached, 1)}
    print(f"one epoch over {N} clips x {T} frames: cached features {cached:.2f} s, "
          f"CLIP image encoder in the loop {in_loop:.2f} s -> {in_loop / cached:.1f}x slower")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
