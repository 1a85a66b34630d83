"""The ``evaluate`` stage: every trained fold on its test clips -> metrics/<dataset>/."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.params import DEFAULT_PARAMS, dataset_paths, load_params, require, section
from pipeline.train import fold_dir, load_text_encoder, test_folds_for, train_settings
from tg_dfer.backbone import WeightsError, pick_device
from tg_dfer.cache import SchemaError, read_features
from tg_dfer.datasets.manifest import ManifestError
from tg_dfer.evaluate import FrameSelection, evaluate_folds, write_outputs
from tg_dfer.model import ModelConfig
from tg_dfer.train import CheckpointError, load_checkpoint


@click.command("evaluate")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
def evaluate(params_path: str) -> None:
    """Score the trained folds on their test clips -> metrics/<dataset>/.

    \b
    Inputs:  models/<dataset>/fold<K>/model.pt for every K in train.folds,
             data/<dataset>/features.h5 and manifest.csv (test clips of fold K = test_fold K);
             the CLIP text tower only for models with visual_prompt = prepend.
    Outputs (in metrics/<dataset>/):
             metrics.json      uar, war (percent, mean over folds), uar_std, war_std, per_class,
                               folds.<K>.*, last_epoch.* (the other weights, extra), test_picked.*
                               (epoch chosen on the test fold: labelled extra for comparison with
                               published numbers only), random_clip_weights (+ warning),
                               clip_sha256 (of the CLIP weights behind the features)
             predictions.h5    schema tg-dfer/predictions/1: clip_id, label, fold, probs, pred,
                               frame_index and per-frame influence of the predicted class
             confusion.json    confusion-matrix counts, summed and per fold
             plots/confusion/{all,fold<K>}.csv  actual,predicted per clip (DVC confusion plots)
             plots/curves/fold<K>.csv           per-epoch training curves (DVC line plots)

    \b
    Params:  evaluate.weights (best: chosen on validation | last: last epoch),
             evaluate.batch_size, evaluate.device (auto | cpu | cuda); train.folds, dataset.name;
             evaluate.frames (all | highest | lowest) with evaluate.frames_k: predict each clip
             again from only its k highest- or lowest-influence frames (the paper's Table 6);
             metrics.json then records frame_selection.
    """
    params = load_params(params_path)
    values = section(params, "evaluate", params_path)
    weights = require(values, "weights", str, "evaluate", choices=("best", "last"))
    batch_size = require(values, "batch_size", int, "evaluate", minimum=1)
    device_name = require(values, "device", str, "evaluate")
    frames = FrameSelection(require(values, "frames", str, "evaluate", choices=("all", "highest", "lowest")),
                            require(values, "frames_k", int, "evaluate", minimum=1))
    folds = train_settings(params, params_path)["folds"]
    try:
        device = pick_device(device_name)
    except WeightsError as error:
        raise click.ClickException(f"params: evaluate.device: {error}") from error
    paths = dataset_paths(params)
    name = paths["folder"].name
    try:
        features = read_features(paths["features"])
        test_fold = test_folds_for(features, paths["manifest"], paths["features"])
    except (SchemaError, ManifestError) as error:
        raise click.ClickException(str(error)) from error
    checkpoints = {}
    for fold in folds:
        try:
            checkpoints[fold] = load_checkpoint(fold_dir(name, fold) / "model.pt")
        except CheckpointError as error:
            raise click.ClickException(f"{error} (tg-dfer train --fold {fold})") from error
    encoder = None
    if any(ModelConfig.from_dict(c["model_config"]).needs_text_encoder_at_inference for c in checkpoints.values()):
        encoder, _ = load_text_encoder(params, features, paths["features"], device)
    try:
        predictions, metrics = evaluate_folds(checkpoints, features, test_fold, weights, encoder, device, batch_size,
                                              frames)
    except ValueError as error:
        raise click.ClickException(f"{paths['features']}: {error}") from error
    metrics = {"dataset": name, **metrics}
    out = Path("metrics") / name
    write_outputs(out, predictions, metrics, {fold: c.get("history", []) for fold, c in checkpoints.items()})
    click.echo(f"evaluate: {name}, {len(folds)} fold(s), {metrics['clips']} labelled test clips: "
               f"UAR {metrics['uar']:.2f} +- {metrics['uar_std']:.2f}, WAR {metrics['war']:.2f} +- "
               f"{metrics['war_std']:.2f} ({weights} weights{_frames_note(frames)}) -> {out}/metrics.json")
    if metrics["random_clip_weights"]:
        click.echo(f"evaluate: WARNING: {metrics['warning']}", err=True)


def _frames_note(frames: FrameSelection) -> str:
    return "" if frames.mode == "all" else f", only the {frames.k} {frames.mode}-influence frames"
