"""The one builder of model files for the stage layer: trained folds (`tg-dfer export`) and the
zero-shot model (`export --zero-shot`, `predict --zero-shot`) get their face settings, frame count
and backbone record the same way, from the same readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from pipeline.settings.dataset import dataset_paths
from pipeline.settings.embed import embed_config
from pipeline.settings.faces import face_settings, faces_section
from pipeline.settings.text import prompt_set as read_prompt_set
from pipeline.settings.train import model_config, train_settings
from tg_dfer.backbone import Backbone
from tg_dfer.embed.text import build_text_cache
from tg_dfer.inference.model_file import backbone_record, build_model_file
from tg_dfer.inference.zero_shot import zero_shot_model_file
from tg_dfer.io.faces_h5 import FACES_SCHEMA
from tg_dfer.io.features_h5 import FEATURES_SCHEMA
from tg_dfer.io.h5 import SchemaError, open_checked
from tg_dfer.prompt_sets import PromptSetError, load_prompt_set
from tg_dfer.training.checkpoint import CheckpointError, load_checkpoint


def _attrs(path: Path, schema: str) -> dict:
    try:
        with open_checked(path, schema) as handle:
            return dict(handle.attrs)
    except SchemaError as error:
        raise click.ClickException(str(error)) from error


def _recorded_params(attrs: dict, path: Path) -> dict:
    """The params sections a cache file recorded when it was made."""
    try:
        return json.loads(attrs["params"])
    except (KeyError, TypeError, ValueError) as error:
        raise click.ClickException(f"{path}: root attribute 'params' is missing or not JSON") from error


def trained_payload(params: dict[str, Any], folds: list[int], weights: str) -> dict[str, Any]:
    """The model file of the trained ``folds`` of ``params``' dataset (``weights``: best | last), with
    the face settings and backbone the cached features were made with (as their files record them)."""
    paths = dataset_paths(params)
    checkpoints = {}
    for fold in sorted(set(folds)):
        try:
            checkpoints[fold] = load_checkpoint(paths.checkpoint(fold))
        except CheckpointError as error:
            raise click.ClickException(f"{error} (tg-dfer train --fold {fold})") from error
    faces_attrs = _attrs(paths.faces, FACES_SCHEMA)
    features_attrs = _attrs(paths.features, FEATURES_SCHEMA)
    faces = faces_section(_recorded_params(faces_attrs, paths.faces)["faces"])
    if int(features_attrs["faces_frames_per_clip"]) != faces.policy.frames_per_clip:
        raise click.ClickException(f"{paths.features} was made from faces of {features_attrs['faces_frames_per_clip']} "
                                   f"frames per clip, {paths.faces} holds {faces.policy.frames_per_clip}: re-run embed")
    seed = int(_recorded_params(features_attrs, paths.features).get("clip", {}).get("seed", 0))
    provenance = {"dataset": paths.name, "faces": str(paths.faces), "features": str(paths.features),
                  "checkpoints": {str(fold): str(paths.checkpoint(fold)) for fold in checkpoints}}
    try:
        return build_model_file(checkpoints, weights, faces, int(features_attrs["frames_per_clip"]),
                                backbone_record(features_attrs, seed), provenance)
    except ValueError as error:
        raise click.ClickException(f"{paths.features}: {error}") from error


def zero_shot_payload(params: dict[str, Any], params_path: str, loaded: Backbone, backbone_seed: int
                      ) -> dict[str, Any]:
    """The zero-shot model file of ``params`` with the CLIP weights ``loaded`` (``backbone_seed``: the seed
    of random ones): the text embeddings of text.prompt_set, the untrained model of train.model, the
    faces settings and embed.frames_per_clip."""
    prompt_set = read_prompt_set(params, params_path)
    faces = face_settings(params, params_path)
    frames = embed_config(params, params_path).frames_per_clip
    try:
        prompts = load_prompt_set(prompt_set)
    except PromptSetError as error:
        raise click.ClickException(str(error)) from error
    config = model_config(train_settings(params, params_path), loaded.embed_dim, len(prompts.class_names),
                          f"the CLIP weights ({loaded.source})")
    try:
        return zero_shot_model_file(build_text_cache(loaded, prompts), config, faces, frames, backbone_seed,
                                    {"params": str(params_path), "prompt_set": prompt_set})
    except ValueError as error:
        raise click.ClickException(f"params: {error} (embed.frames_per_clip, faces.frames_per_clip)") from error
