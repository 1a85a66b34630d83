"""``tg-dfer export``: trained folds (or, ``--zero-shot``, the text prompts alone) -> one
self-contained model file for ``tg-dfer predict``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from pipeline.config import (
    DEFAULT_PARAMS,
    clip_settings,
    dataclass_settings,
    load_params,
    require,
    section,
    train_folds,
)
from pipeline.paths import dataset_paths, zero_shot_export
from pipeline.stages.faces import read_settings
from pipeline.stages.train import model_config, train_settings
from tg_dfer.backbone import Backbone, WeightsError, load_backbone, weights_note
from tg_dfer.devices import DeviceError, pick_device
from tg_dfer.embed.images import EmbedConfig
from tg_dfer.embed.text import build_text_cache
from tg_dfer.inference.model_file import build_model_file
from tg_dfer.inference.zero_shot import zero_shot_model_file
from tg_dfer.io.faces_h5 import FACES_SCHEMA
from tg_dfer.io.features_h5 import FEATURES_SCHEMA
from tg_dfer.io.h5 import SchemaError, open_checked
from tg_dfer.io.payload import save_payload
from tg_dfer.prompt_sets import PromptSetError, load_prompt_set
from tg_dfer.training.checkpoint import CheckpointError, load_checkpoint


def _attrs(path: Path, schema: str) -> dict:
    try:
        with open_checked(path, schema) as handle:
            return dict(handle.attrs)
    except SchemaError as error:
        raise click.ClickException(str(error)) from error


def _json(attrs: dict, key: str, path: Path) -> dict:
    try:
        return json.loads(attrs[key])
    except (KeyError, TypeError, ValueError) as error:
        raise click.ClickException(f"{path}: root attribute {key!r} is missing or not JSON") from error


def zero_shot_payload(params: dict[str, Any], params_path: str, loaded: Backbone, clip_seed: int) -> dict[str, Any]:
    """The zero-shot model file of ``params`` with the CLIP weights ``loaded`` (``clip_seed``: the seed of
    random ones): the text embeddings of text.prompt_set, the untrained model of train.model, the faces
    settings and embed.frames_per_clip. The one builder of zero-shot models, for `export --zero-shot`
    and `predict --zero-shot`."""
    prompt_set = require(section(params, "text", params_path), "prompt_set", str, "text")
    policy, detection = read_settings(section(params, "faces", params_path))
    frames = dataclass_settings(EmbedConfig, section(params, "embed", params_path), "embed").frames_per_clip
    try:
        prompts = load_prompt_set(prompt_set)
    except PromptSetError as error:
        raise click.ClickException(str(error)) from error
    config = model_config(train_settings(params, params_path), loaded.embed_dim, len(prompts.class_names),
                          f"the CLIP weights ({loaded.source})")
    faces = {**asdict(policy), "detector": detection.detector, "decode_timeout": detection.decode_timeout}
    try:
        return zero_shot_model_file(build_text_cache(loaded, prompts), config, faces, frames, clip_seed,
                                    {"params": str(params_path), "prompt_set": prompt_set})
    except ValueError as error:
        raise click.ClickException(f"params: {error} (embed.frames_per_clip, faces.frames_per_clip)") from error


@click.command("export")
@click.option("--fold", "folds", type=int, multiple=True,
              help="Fold to bundle (repeat for several); default: every fold of train.folds, as an ensemble.")
@click.option("--weights", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="best: the epoch chosen on validation; last: the last epoch.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Model file to write [default: exports/<dataset>.pt; with --zero-shot "
                   "exports/zero-shot-<prompt set>.pt].")
@click.option("--zero-shot", is_flag=True,
              help="No training: the untrained model over the text prompts of text.prompt_set (CLIP's zero-shot "
                   "frame scores), marked zero-shot in every prediction made with it.")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
def export(folds: tuple[int, ...], weights: str, out_path: str | None, zero_shot: bool, params_path: str) -> None:
    """Bundle trained folds into one model file for `tg-dfer predict` (an ensemble when several).

    \b
    Inputs:  models/<dataset>/fold<K>/model.pt of each fold, data/<dataset>/faces.h5 and
             features.h5 (their root attributes only: the face, frame and CLIP settings the
             model was trained with).
    Output:  one file (schema tg-dfer/model/1, docs/contracts.md): per fold the chosen weights
             (with the cached and learnt text embeddings), model config and prompt texts; the
             class names, the faces settings, frames per clip, and the CLIP model name and
             SHA-256 that `predict` checks. Ensemble members' probabilities are averaged.

    Params:  dataset.name, train.folds (the default folds).

    \b
    --zero-shot: a model file without training (docs/contracts.md): the CLIP weights of the clip
    section (clip.model, clip.checkpoint, clip.seed, clip.device, clip.download) embed the class
    and descriptor prompts of text.prompt_set; the model is TG-DFER of train.model as initialised
    (no learnt context, the additive visual prompt: its frame scores are CLIP's zero-shot scores),
    with the faces section's detector and crops and embed.frames_per_clip.
    """
    params = load_params(params_path)
    if zero_shot:
        if folds:
            raise click.UsageError("--zero-shot trains nothing: it takes no --fold")
        export_zero_shot(params, params_path, out_path)
        return
    paths = dataset_paths(params)
    name = paths.name
    folds = folds or tuple(train_folds(params, params_path))
    checkpoints = {}
    for fold in sorted(set(folds)):
        try:
            checkpoints[fold] = load_checkpoint(paths.checkpoint(fold))
        except CheckpointError as error:
            raise click.ClickException(f"{error} (tg-dfer train --fold {fold})") from error
    faces_attrs = _attrs(paths.faces, FACES_SCHEMA)
    features_attrs = _attrs(paths.features, FEATURES_SCHEMA)
    policy, detection = read_settings(_json(faces_attrs, "params", paths.faces)["faces"])
    if int(features_attrs["faces_frames_per_clip"]) != policy.frames_per_clip:
        raise click.ClickException(f"{paths.features} was made from faces of {features_attrs['faces_frames_per_clip']} "
                                   f"frames per clip, {paths.faces} holds {policy.frames_per_clip}: re-run embed")
    clip_params = _json(features_attrs, "params", paths.features).get("clip", {})
    clip = {"model": str(features_attrs["clip_model"]), "sha256": str(features_attrs["checkpoint_sha256"]),
            "random_weights": bool(features_attrs["random_weights"]),
            "demo_weights": bool(features_attrs.get("demo_weights", False)), "source": str(features_attrs["clip_source"]),
            "seed": int(clip_params.get("seed", 0))}
    faces = {**asdict(policy), "detector": detection.detector, "decode_timeout": detection.decode_timeout,
             "opencv": asdict(detection.opencv)}
    provenance = {"dataset": name, "faces": str(paths.faces), "features": str(paths.features),
                  "checkpoints": {str(fold): str(paths.checkpoint(fold)) for fold in checkpoints}}
    try:
        payload = build_model_file(checkpoints, weights, faces, int(features_attrs["frames_per_clip"]), clip,
                                   provenance)
    except ValueError as error:
        raise click.ClickException(f"{paths.features}: {error}") from error
    out = Path(out_path) if out_path else paths.export
    save_payload(out, payload)
    kind = f"ensemble of folds {', '.join(map(str, checkpoints))}" if len(checkpoints) > 1 else f"fold {folds[0]}"
    note = weights_note(clip)
    click.echo(f"export: {kind} ({weights} weights), {len(payload['class_names'])} classes -> {out}{note}")


def export_zero_shot(params: dict[str, Any], params_path: str, out_path: str | None) -> None:
    """`export --zero-shot`: the zero-shot model of ``params`` -> ``out_path`` (default exports/zero-shot-<set>.pt)."""
    settings = clip_settings(params)
    try:
        loaded = load_backbone(settings["name"], settings["checkpoint"], pick_device(settings["device"]),
                               settings["seed"], download=settings["download"],
                               allow_demo_weights=settings["allow_demo_weights"])
    except (WeightsError, DeviceError) as error:
        raise click.ClickException(str(error)) from error
    payload = zero_shot_payload(params, params_path, loaded, settings["seed"])
    out = Path(out_path) if out_path else zero_shot_export(payload["zero_shot"]["prompt_set"])
    save_payload(out, payload)
    note = weights_note(payload["clip"])
    click.echo(f"export: zero-shot model of prompt set {payload['zero_shot']['prompt_set']}, "
               f"{len(payload['class_names'])} classes -> {out}{note}")
