"""``tg-dfer export``: trained folds -> one self-contained model file for ``tg-dfer predict``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from pipeline.config import DEFAULT_PARAMS, load_params, train_folds
from pipeline.paths import dataset_paths
from pipeline.stages.faces import read_settings
from tg_dfer.inference.model_file import build_model_file
from tg_dfer.io.faces_h5 import FACES_SCHEMA
from tg_dfer.io.features_h5 import FEATURES_SCHEMA
from tg_dfer.io.h5 import SchemaError, open_checked
from tg_dfer.io.payload import save_payload
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


@click.command("export")
@click.option("--fold", "folds", type=int, multiple=True,
              help="Fold to bundle (repeat for several); default: every fold of train.folds, as an ensemble.")
@click.option("--weights", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="best: the epoch chosen on validation; last: the last epoch.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Model file to write [default: exports/<dataset>.pt].")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
def export(folds: tuple[int, ...], weights: str, out_path: str | None, params_path: str) -> None:
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
    """
    params = load_params(params_path)
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
            "random_weights": bool(features_attrs["random_weights"]), "source": str(features_attrs["clip_source"]),
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
    note = " (RANDOM CLIP WEIGHTS: for testing only)" if clip["random_weights"] else ""
    click.echo(f"export: {kind} ({weights} weights), {len(payload['class_names'])} classes -> {out}{note}")
