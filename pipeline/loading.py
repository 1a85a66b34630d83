"""Reading the caches a training or evaluation stage needs, with errors that name the files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from pipeline.paths import text_path
from pipeline.settings.clip import backbone_spec
from pipeline.settings.dataset import dataset_paths
from pipeline.settings.text import prompt_set
from tg_dfer.backbone import Backbone, WeightsError, load_backbone
from tg_dfer.datasets.manifest import ManifestError, read_manifest
from tg_dfer.hashes import WeightsMismatch, check_same_weights
from tg_dfer.io.features_h5 import FeatureCache, read_features
from tg_dfer.io.h5 import SchemaError
from tg_dfer.io.text_h5 import TextCache, read_text
from tg_dfer.model import TextEncoder


@dataclass
class Inputs:
    """A dataset's feature cache with the test fold of every row; its text embeddings when asked."""

    name: str  # dataset.name
    features: FeatureCache
    features_path: Path
    test_fold: np.ndarray  # (N,) the manifest's test_fold of each feature row
    text: TextCache | None = None
    text_path: Path | None = None


def test_folds_for(features: FeatureCache, manifest_path: Path, features_path: Path) -> np.ndarray:
    """The manifest's test_fold of every feature row (joined on clip_id), checking labels agree."""
    manifest = read_manifest(manifest_path)
    rows = {row.clip_id: row for row in manifest.rows}
    missing = [clip for clip in features.clip_id if clip not in rows]
    if missing:
        raise click.ClickException(f"{features_path}: {len(missing)} clip(s) are not in {manifest_path}, "
                                   f"e.g. {missing[0]!r}; re-run the embed stage")
    disagree = [clip for clip, label in zip(features.clip_id, features.label) if rows[clip].label != label]
    if disagree:
        raise click.ClickException(f"{features_path}: labels differ from {manifest_path} for {len(disagree)} clip(s), "
                                   f"e.g. {disagree[0]!r}; re-run the embed stage")
    if features.class_names != manifest.class_names:
        raise click.ClickException(f"{features_path}: class list {features.class_names} differs from "
                                   f"{manifest_path.with_name('classes.json')} {manifest.class_names}")
    return np.array([rows[clip].test_fold for clip in features.clip_id], dtype=np.int64)


def load_inputs(params: dict[str, Any], with_text: bool = False, frames_in_memory: bool = True) -> Inputs:
    """The features (and, ``with_text``, the text embeddings) of the dataset of ``params``;
    ``frames_in_memory`` False leaves the frame features in the file (read per batch)."""
    paths = dataset_paths(params)
    try:
        features = read_features(paths.features, frames_in_memory)
        inputs = Inputs(paths.name, features, paths.features, test_folds_for(features, paths.manifest, paths.features))
        if with_text:
            inputs.text_path = text_path(prompt_set(params))
            inputs.text = read_text(inputs.text_path)
    except (SchemaError, ManifestError) as error:
        raise click.ClickException(str(error)) from error
    if inputs.text is not None:
        if features.class_names != inputs.text.class_names:
            raise click.ClickException(f"{inputs.text_path}: class list {inputs.text.class_names} differs from the "
                                       f"features' {features.class_names} ({paths.features}); check text.prompt_set")
        try:
            check_same_weights(str(features.attrs.get("checkpoint_sha256")),
                               str(inputs.text.attrs.get("checkpoint_sha256")), str(paths.features),
                               str(inputs.text_path), "re-run the text and embed stages")
        except WeightsMismatch as error:
            raise click.ClickException(str(error)) from error
    return inputs


def load_text_encoder(params: dict[str, Any], inputs: Inputs, device: str) -> tuple[TextEncoder, Backbone]:
    """The frozen CLIP text tower of the ``clip`` section, refusing weights other than the features'."""
    try:
        loaded = load_backbone(backbone_spec(params), device)
        check_same_weights(str(inputs.features.attrs.get("checkpoint_sha256")), loaded.sha256,
                           str(inputs.features_path), f"the clip section's weights ({loaded.source})",
                           "point clip.* at the weights the features were made with, or re-run embed and text. "
                           "Features from elsewhere can be trained without the text tower: "
                           "train.model.learnable_context = false and visual_prompt add or none")
    except (WeightsError, WeightsMismatch) as error:
        raise click.ClickException(str(error)) from error
    encoder = TextEncoder.from_clip(loaded.model)
    loaded.model.visual = None  # only the text tower is used; free the image tower
    return encoder.to(device), loaded
