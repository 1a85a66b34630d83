"""Small projects for tests that run stage commands: params, feature caches, the command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import yaml

from tg_dfer.io.features_h5 import FeatureCache

from helpers import REPO

MODEL_ATTRS = {"clip_model": "ViT-B/32", "checkpoint_sha256": "ab" * 32, "random_weights": True, "demo_weights": False,
               "embed_dim": 8}


def tiny_params(**changes) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["demo"].update(clips_per_class=1, num_folds=2, min_frames=12, max_frames=20)
    # The real ViT-B/32 architecture with random weights: the backbone stage then only writes its marker.
    params["clip"].update(model="ViT-B/32", checkpoint="random")
    params["backbone"].update(identities=3, images_per_identity=3, held_out_identities=1, embed_dim=16,
                              vision_width=2, vision_layers=[1, 1, 1, 1], epochs=1, batch_size=4, pretrained="")
    params["faces"]["frames_per_clip"] = 6
    params["embed"].update(frames_per_clip=4, views=2, batch_size=32)
    params["train"]["folds"] = [1, 2]
    params["train"]["model"].update(num_frames=4, window=2)
    params["train"]["optim"].update(epochs=2, milestones=[1], batch_size=4)
    for key, value in changes.items():
        *sections, name = key.split(".")
        target = params
        for section in sections:
            target = target[section]
        target[name] = value
    return params


def feature_cache(n=5, views=2, frames=4, dim=8, seed=0) -> FeatureCache:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, views, frames, dim))
    features /= np.linalg.norm(features, axis=-1, keepdims=True)
    return FeatureCache(
        clip_id=[f"clip_{i}" for i in range(n)], label=rng.integers(-1, 3, n), features=features.astype(np.float16),
        num_frames=rng.integers(1, frames + 1, n).astype(np.int32),
        frame_index=np.sort(rng.integers(0, 100, (n, frames)), axis=1).astype(np.int32),
        face_score=rng.random((n, frames)).astype(np.float32),
        attrs={**MODEL_ATTRS, "class_names": ["a", "b", "c"], "views": views, "frames_per_clip": frames},
    )


def write_project(folder: Path, root: Path, labels: dict[str, str], **changes) -> Path:
    """params.yaml for the csv adapter over ``root`` with ``labels`` (path -> label) in labels.csv."""
    rows = "".join(f'"{path}",{label},{1 + index % 2}\n' for index, (path, label) in enumerate(labels.items()))
    (root / "labels.csv").write_text("path,label,test_fold\n" + rows, encoding="utf-8")
    params = tiny_params(**{"dataset.adapter": "csv", "dataset.name": "mine", "dataset.root": str(root),
                            "faces.frames_per_clip": 4, "faces.crop_size": 64, "embed.frames_per_clip": 2,
                            "embed.views": 1, "embed.batch_size": 4, **changes})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder


PREDICT_SCHEMA = json.loads((REPO / "docs" / "predict.schema.json").read_text())


def invoke(*args: str):
    """``tg-dfer ARGS`` in this process, through click's test runner; exceptions propagate."""
    from click.testing import CliRunner

    from pipeline.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def cli(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``tg-dfer ARGS`` in a fresh Python process, with this checkout's code."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                   "TG_DFER_ALLOW_RANDOM_WEIGHTS": "1", **(env or {})}
    command = [sys.executable, "-c", "from pipeline.cli import main; main()", *args]
    return subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True, timeout=600)


def h5_contents(path: Path) -> dict:
    """Every root attribute and dataset of an HDF5 file, in a form that compares with ==."""
    with h5py.File(path, "r") as handle:
        attrs = {key: json.dumps(value, default=lambda item: item.tolist()) for key, value in handle.attrs.items()}
        data = {}
        for name, dataset in handle.items():
            values = dataset[()]
            if h5py.check_vlen_dtype(dataset.dtype) is not None and not h5py.check_string_dtype(dataset.dtype):
                data[name] = [[bytes(item) for item in row] for row in values]
            else:
                data[name] = (str(dataset.dtype), values.shape, np.nan_to_num(values, nan=-12345.0).tobytes()
                              if values.dtype.kind != "O" else values.tolist())
    return {"attrs": attrs, "data": data}
