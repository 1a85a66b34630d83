"""The ``evaluate`` stage: every trained fold on its test clips -> metrics/<dataset>/."""

from __future__ import annotations

import click

from pipeline.loading import load_inputs, load_text_encoder
from pipeline.settings.dataset import dataset_paths, is_demo
from pipeline.settings.evaluate import evaluate_config
from pipeline.settings.params import DEFAULT_PARAMS, load_params
from pipeline.settings.train import train_folds
from tg_dfer import cpu_profile
from tg_dfer.demo.apex import ApexFramesError, apex_auroc, read_apex_frames
from tg_dfer.devices import DeviceError, pick_device
from tg_dfer.evaluate import FrameSelection, evaluate_folds, write_outputs
from tg_dfer.model import ModelConfig
from tg_dfer.training.checkpoint import CheckpointError, load_checkpoint


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
                               demo_clip_weights (+ note), clip_sha256 (of the CLIP weights
                               behind the features); for the demo, apex_auroc: how well the
                               stored influence ranks the renderer's apex frames (labels.csv
                               apex_frames) first, mean per-clip AUROC over non-neutral clips
             predictions.h5    schema tg-dfer/predictions/1: clip_id, label, fold, probs, pred,
                               frame_index and per-frame influence of the predicted class
             confusion.json    confusion-matrix counts, summed and per fold
             plots/confusion/{all,fold<K>}.csv  actual,predicted per clip (DVC confusion plots)
             plots/curves/fold<K>.csv           per-epoch training curves (DVC line plots)

    \b
    Params:  evaluate.weights (best: chosen on validation | last: last epoch),
             evaluate.batch_size, evaluate.device (auto | cpu | cuda); train.folds, dataset.name,
             dataset.adapter and dataset.root (the demo's labels.csv);
             evaluate.frames (all | highest | lowest) with evaluate.frames_k: predict each clip
             again from only its k highest- or lowest-influence frames (the paper's Table 6);
             metrics.json then records frame_selection.
    """
    params = load_params(params_path)
    config = evaluate_config(params, params_path)
    frames = config.selection
    folds = train_folds(params, params_path)
    try:
        device = pick_device(config.device)
    except DeviceError as error:
        raise click.ClickException(f"params: evaluate.device: {error}") from error
    paths = dataset_paths(params)
    inputs = load_inputs(params)
    checkpoints = {}
    for fold in folds:
        try:
            checkpoints[fold] = load_checkpoint(paths.checkpoint(fold))
        except CheckpointError as error:
            raise click.ClickException(f"{error} (tg-dfer train --fold {fold})") from error
    encoder = None
    if any(ModelConfig.from_dict(c["model_config"]).needs_text_encoder_at_inference for c in checkpoints.values()):
        encoder, _ = load_text_encoder(params, inputs, device)
    try:
        predictions, metrics = evaluate_folds(checkpoints, inputs.features, inputs.test_fold, config.weights, encoder,
                                              device, config.batch_size, frames)
    except ValueError as error:
        raise click.ClickException(f"{paths.features}: {error}") from error
    runs = {"features": cpu_profile.from_attrs(inputs.features.attrs), "evaluate": cpu_profile.record(device)}
    runs |= {f"fold{fold}": cpu_profile.from_attrs(checkpoint) for fold, checkpoint in checkpoints.items()}
    metrics = {"dataset": paths.name, **metrics, "cpu_profile": cpu_profile.combined(runs)}
    if is_demo(params):
        labels_csv = str(paths.root / "labels.csv")
        try:
            truth = read_apex_frames(labels_csv)
            metrics["apex_auroc"] = apex_auroc(predictions, truth)
        except ApexFramesError as error:
            message = str(error)
            raise click.ClickException(message if message.startswith(labels_csv) else f"{labels_csv}: {message}") from error
    write_outputs(paths.metrics, predictions, metrics, {fold: c.get("history", []) for fold, c in checkpoints.items()})
    click.echo(f"evaluate: {paths.name}, {len(folds)} fold(s), {metrics['clips']} labelled test clips: "
               f"UAR {metrics['uar']:.2f} +- {metrics['uar_std']:.2f}, WAR {metrics['war']:.2f} +- "
               f"{metrics['war_std']:.2f} ({config.weights} weights{_frames_note(frames)}) -> {paths.metrics_file}")
    if "apex_auroc" in metrics:
        click.echo(f"evaluate: frame influence ranks the demo's apex frames first with a mean per-clip AUROC of "
                   f"{metrics['apex_auroc']['mean']:.3f} ({metrics['apex_auroc']['clips']} non-neutral clips)")
    if metrics["random_clip_weights"]:
        click.echo(f"evaluate: WARNING: {metrics['warning']}", err=True)


def _frames_note(frames: FrameSelection) -> str:
    return "" if frames.mode == "all" else f", only the {frames.k} {frames.mode}-influence frames"
