"""The ``train`` stage: one fold of TG-DFER on the cached features -> models/<dataset>/fold<K>/."""

from __future__ import annotations

import json

import click

from pipeline.loading import load_inputs, load_text_encoder
from pipeline.paths import train_log
from pipeline.settings.dataset import dataset_paths
from pipeline.settings.params import DEFAULT_PARAMS, load_params
from pipeline.settings.train import model_config, train_settings
from tg_dfer import cpu_profile
from tg_dfer.devices import DeviceError, pick_device
from tg_dfer.io.atomic import write_text_atomic
from tg_dfer.memory import release_freed_memory
from tg_dfer.training.checkpoint import save_checkpoint
from tg_dfer.training.loop import fit


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
             logs/<dataset>/train_fold<K>.json      seconds per epoch (outside models/ and git: the
                                                   tracked outputs of a run repeat exactly)

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
    if settings.optim.activation_checkpointing:  # the memory-lean mode: RSS stays at what is live (tg_dfer/memory.py)
        release_freed_memory()
    if fold not in settings.folds:
        raise click.ClickException(f"--fold {fold} is not in train.folds {settings.folds}")
    try:
        device = pick_device(settings.device)
    except DeviceError as error:
        raise click.ClickException(f"params: train.device: {error}") from error
    inputs = load_inputs(params, with_text=True, frames_in_memory=settings.optim.features_in_memory(device))
    features, text, test_fold = inputs.features, inputs.text, inputs.test_fold
    if fold not in set(test_fold.tolist()):
        present = sorted(set(test_fold.tolist()) - {0})
        raise click.ClickException(f"fold {fold} has no test clips in data/{inputs.name}/manifest.csv (folds: {present})")
    config = model_config(settings, int(features.features.shape[-1]), len(features.class_names), str(inputs.features_path))
    encoder, clip_model, sha = None, str(features.attrs.get("clip_model")), str(features.attrs.get("checkpoint_sha256"))
    if config.needs_text_encoder:
        encoder, loaded = load_text_encoder(params, inputs, device)
        clip_model = loaded.name
    if features.random_weights:
        click.echo("train: features come from RANDOM CLIP weights: results only test the pipeline", err=True)
    try:
        result = fit(features, text, test_fold, fold, config, settings.optim, encoder, device, progress)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    paths = dataset_paths(params)
    out = paths.fold_dir(fold)
    save_checkpoint(paths.checkpoint(fold), result, class_names=features.class_names, text=text, clip_model=clip_model,
                    clip_sha256=sha, random_weights=features.random_weights, fold=fold,
                    cpu_profile=cpu_profile.combined({"features": cpu_profile.from_attrs(features.attrs),
                                                      "text": cpu_profile.from_attrs(text.attrs),
                                                      "train": cpu_profile.record(device)}),
                    extra={"dataset": inputs.name, "features": str(inputs.features_path), "text": str(inputs.text_path)})
    write_text_atomic(out / "history.json", json.dumps(result.history, indent=1) + "\n")
    write_text_atomic(out / "split.json", json.dumps(result.split.as_dict(features.clip_id), indent=1) + "\n")
    seconds = sum(result.epoch_seconds)
    log = train_log(inputs.name, fold)
    write_text_atomic(log, json.dumps({"fold": fold, "device": device, "seconds": round(seconds, 3),
                                       "epoch_seconds": [round(value, 3) for value in result.epoch_seconds]},
                                      indent=1) + "\n")
    best = result.history[result.best_epoch - 1]
    click.echo(f"train: fold {fold}: best epoch {result.best_epoch} of {settings.optim.epochs} "
               f"(val UAR {best.get('val_uar', float('nan')):.1f} WAR {best.get('val_war', float('nan')):.1f}) -> {out}; "
               f"{seconds:.1f} s ({seconds / max(len(result.epoch_seconds), 1):.1f} s per epoch, {log})")
