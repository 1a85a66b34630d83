"""The ``train`` stage: one fold of TG-DFER on the cached features -> models/<dataset>/fold<K>/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from pipeline.params import DEFAULT_PARAMS, clip_settings, dataset_paths, load_params, require, section
from pipeline.text import text_path
from tg_dfer.backbone import WeightsError, load_clip, pick_device
from tg_dfer.cache import FeatureCache, SchemaError, TextCache, read_features, read_text
from tg_dfer.datasets.manifest import ManifestError, read_manifest
from tg_dfer.model import MIL_POOLINGS, TEXT_PROMPTS, VISUAL_PROMPTS, ModelConfig, TextEncoder
from tg_dfer.train import SELECT_METRICS, TrainConfig, fit, save_checkpoint

NUMBER = (int, float)
# train.model.<key>: (type, minimum, choices); every key is required, so params.yaml shows them all.
MODEL_PARAMS: dict[str, tuple[Any, float | None, tuple | None]] = {
    "num_frames": (int, 1, None),
    "fine_depth": (int, 0, None),
    "coarse_depth": (int, 0, None),
    "window": (int, 1, None),
    "stride": (int, 1, None),
    "heads": (int, 1, None),
    "mlp_ratio": (NUMBER, 0, None),
    "dropout": (NUMBER, 0, None),
    "text_prompt": (str, None, TEXT_PROMPTS),
    "learnable_context": (bool, None, None),
    "context_length": (int, 0, None),
    "class_specific_context": (bool, None, None),
    "visual_prompt": (str, None, VISUAL_PROMPTS),
    "mil_pooling": (str, None, MIL_POOLINGS),
    "topk_fraction": (NUMBER, 0, None),
    "tau": (NUMBER, 0, None),
}
OPTIM_PARAMS: dict[str, tuple[Any, float | None, tuple | None]] = {
    "epochs": (int, 1, None),
    "batch_size": (int, 1, None),
    "lr": (NUMBER, 0, None),
    "prompt_lr": (NUMBER, 0, None),
    "momentum": (NUMBER, 0, None),
    "weight_decay": (NUMBER, 0, None),
    "milestones": (list, None, None),
    "gamma": (NUMBER, 0, None),
    "val_fraction": (NUMBER, 0, None),
    "select_metric": (str, None, SELECT_METRICS),
    "seed": (int, None, None),
    "track_test": (bool, None, None),
    "eval_batch_size": (int, 1, None),
}


def _checked(values: dict[str, Any], spec: dict, where: str) -> dict[str, Any]:
    unknown = sorted(set(values) - set(spec))
    if unknown:
        raise click.ClickException(f"params: {where}.{unknown[0]} is not a known setting "
                                   f"(known: {', '.join(spec)})")
    return {key: require(values, key, kind, where, minimum=minimum, choices=choices)
            for key, (kind, minimum, choices) in spec.items()}


def train_settings(params: dict[str, Any], path: str = DEFAULT_PARAMS) -> dict[str, Any]:
    """The ``train`` section, fully checked (types, ranges, choices, cross-field rules) before any work."""
    values = section(params, "train", path)
    folds = require(values, "folds", list, "train")
    if not folds or not all(isinstance(fold, int) and not isinstance(fold, bool) and fold >= 1 for fold in folds):
        raise click.ClickException(f"params: train.folds must be a non-empty list of fold numbers >= 1, got {folds!r}")
    device = require(values, "device", str, "train")
    model = _checked(require(values, "model", dict, "train"), MODEL_PARAMS, "train.model")
    optim = _checked(require(values, "optim", dict, "train"), OPTIM_PARAMS, "train.optim")
    if not all(isinstance(m, int) and not isinstance(m, bool) for m in optim["milestones"]):
        raise click.ClickException(f"params: train.optim.milestones must be a list of epochs, got {optim['milestones']!r}")
    # heads must divide D, which the features fix later: a stand-in D that fits passes this first check.
    for where, build, values in (("train.model", ModelConfig.from_dict, {**model, "embed_dim": model["heads"]}),
                                 ("train.optim", TrainConfig.from_dict, optim)):
        try:
            build(values)  # cross-field rules (window <= num_frames, ...); D and C come from the data later
        except ValueError as error:
            raise click.ClickException(f"params: {where}: {error}") from error
    return {"folds": folds, "device": device, "model": model, "optim": optim}


def fold_dir(dataset: str, fold: int) -> Path:
    return Path("models") / dataset / f"fold{fold}"


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


def load_inputs(params: dict[str, Any]) -> tuple[str, FeatureCache, TextCache, np.ndarray, Path, Path]:
    """Dataset name, features, texts and per-row test folds, with clear errors naming the files."""
    paths = dataset_paths(params)
    name = paths["folder"].name
    prompt_set = require(section(params, "text"), "prompt_set", str, "text")
    text_file = text_path(prompt_set)
    try:
        features = read_features(paths["features"])
        text = read_text(text_file)
        test_fold = test_folds_for(features, paths["manifest"], paths["features"])
    except (SchemaError, ManifestError) as error:
        raise click.ClickException(str(error)) from error
    if features.class_names != text.class_names:
        raise click.ClickException(f"{text_file}: class list {text.class_names} differs from the features' "
                                   f"{features.class_names} ({paths['features']}); check text.prompt_set")
    if features.attrs.get("checkpoint_sha256") != text.attrs.get("checkpoint_sha256"):
        raise click.ClickException(f"{text_file} and {paths['features']} were made with different CLIP weights "
                                   "(checkpoint_sha256 differs); re-run the text and embed stages")
    return name, features, text, test_fold, paths["features"], text_file


def load_text_encoder(params: dict[str, Any], features: FeatureCache, features_path: Path, device: str) -> tuple[TextEncoder, Any]:
    """The frozen CLIP text tower of the ``clip`` section, refusing weights other than the features'."""
    settings = clip_settings(params)
    try:
        loaded = load_clip(settings["name"], settings["checkpoint"], device, settings["seed"])
    except WeightsError as error:
        raise click.ClickException(str(error)) from error
    expected = features.attrs.get("checkpoint_sha256")
    if loaded.sha256 != expected:
        raise click.ClickException(
            f"{features_path}: made with CLIP weights {expected}, but the clip section loads {loaded.sha256} "
            f"({loaded.source}); point clip.* at the weights the features were made with, or re-run embed and text. "
            "Features from elsewhere can be trained without the text tower: train.model.learnable_context = false "
            "and visual_prompt add or none."
        )
    encoder = TextEncoder.from_clip(loaded.model)
    loaded.model.visual = None  # only the text tower is used; free the image tower
    return encoder.to(device), loaded


@click.command("train")
@click.option("--fold", type=int, required=True, help="Test fold K: train on the other folds, test on K.")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Per-epoch progress bar.")
def train(fold: int, params_path: str, progress: bool) -> None:
    """Train TG-DFER for one fold on cached features -> models/<dataset>/fold<K>/.

    \b
    Inputs:  data/<dataset.name>/features.h5, data/<dataset.name>/manifest.csv (+ classes.json),
             data/text/<text.prompt_set>.h5; with learnable context or a prepended visual prompt,
             the CLIP weights of the clip section (text tower only; they must be the weights the
             features and texts were made with: their SHA-256 is checked).
    Outputs: models/<dataset>/fold<K>/model.pt  best-on-validation and last-epoch weights, full
                                                config, class names, prompt texts, CLIP hash
             models/<dataset>/fold<K>/history.json  per-epoch loss, validation (and test) UAR/WAR
             models/<dataset>/fold<K>/split.json    clip ids of the train / val / test parts

    \b
    Params:  train.folds (the folds DVC trains), train.device (auto | cpu | cuda),
             train.model.* (architecture: temporal depths, window, stride, prompts, MIL pooling,
             tau), train.optim.* (SGD, learning rates, MultiStepLR, epochs, batch size,
             validation fraction, selection metric, seed); dataset.name, text.prompt_set, clip.*.

    The clips of test fold K are never used to choose weights: the "best" epoch is chosen on a
    stratified validation part (train.optim.val_fraction) of the training folds.
    """
    params = load_params(params_path)
    settings = train_settings(params, params_path)
    if fold not in settings["folds"]:
        raise click.ClickException(f"--fold {fold} is not in train.folds {settings['folds']}")
    try:
        device = pick_device(settings["device"])
    except WeightsError as error:
        raise click.ClickException(f"params: train.device: {error}") from error
    name, features, text, test_fold, features_path, text_file = load_inputs(params)
    if fold not in set(test_fold.tolist()):
        present = sorted(set(test_fold.tolist()) - {0})
        raise click.ClickException(f"fold {fold} has no test clips in data/{name}/manifest.csv (folds: {present})")
    model_config = ModelConfig.from_dict({**settings["model"], "embed_dim": int(features.features.shape[-1]),
                                          "num_classes": len(features.class_names)})
    try:
        model_config.validate()
    except ValueError as error:
        raise click.ClickException(f"params: train.model: {error} (embed_dim comes from {features_path})") from error
    encoder, clip_model, sha = None, str(features.attrs.get("clip_model")), str(features.attrs.get("checkpoint_sha256"))
    if model_config.needs_text_encoder:
        encoder, loaded = load_text_encoder(params, features, features_path, device)
        clip_model = loaded.name
    optim = TrainConfig.from_dict(settings["optim"])
    if features.random_weights:
        click.echo("train: features come from RANDOM CLIP weights: results only test the pipeline", err=True)
    try:
        result = fit(features, text, test_fold, fold, model_config, optim, encoder, device, progress)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    out = fold_dir(name, fold)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "model.pt", result, class_names=features.class_names, text=text, clip_model=clip_model,
                    clip_sha256=sha, random_weights=features.random_weights, fold=fold,
                    extra={"dataset": name, "features": str(features_path), "text": str(text_file)})
    (out / "history.json").write_text(json.dumps(result.history, indent=1) + "\n")
    (out / "split.json").write_text(json.dumps(result.split.as_dict(features.clip_id), indent=1) + "\n")
    best = result.history[result.best_epoch - 1]
    summary = (f"train: fold {fold}: best epoch {result.best_epoch} of {optim.epochs} "
               f"(val UAR {best.get('val_uar', float('nan')):.1f} WAR {best.get('val_war', float('nan')):.1f}) -> {out}")
    click.echo(summary)
