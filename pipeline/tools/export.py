"""``tg-dfer export``: trained folds (or, ``--zero-shot``, the text prompts alone) -> one
self-contained model file for ``tg-dfer predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.model_files import trained_payload, zero_shot_payload
from pipeline.paths import zero_shot_export
from pipeline.settings.clip import backbone_device, backbone_spec
from pipeline.settings.dataset import dataset_paths
from pipeline.settings.params import DEFAULT_PARAMS, load_params
from pipeline.settings.train import train_folds
from tg_dfer.backbone import WeightsError, load_backbone, weights_note
from tg_dfer.devices import DeviceError, pick_device
from tg_dfer.io.payload import save_payload


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
    Output:  one file (schema tg-dfer/model/4, docs/contracts.md): per fold the chosen weights
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
    folds = folds or tuple(train_folds(params, params_path))
    payload = trained_payload(params, list(folds), weights)
    out = Path(out_path) if out_path else paths.export
    save_payload(out, payload)
    members = [member["fold"] for member in payload["members"]]
    kind = f"ensemble of folds {', '.join(map(str, members))}" if len(members) > 1 else f"fold {members[0]}"
    note = weights_note(payload["backbone"])
    click.echo(f"export: {kind} ({weights} weights), {len(payload['class_names'])} classes -> {out}{note}")


def export_zero_shot(params: dict[str, Any], params_path: str, out_path: str | None) -> None:
    """`export --zero-shot`: the zero-shot model of ``params`` -> ``out_path`` (default exports/zero-shot-<set>.pt)."""
    spec = backbone_spec(params, params_path)
    try:
        loaded = load_backbone(spec, pick_device(backbone_device(params, params_path)))
    except (WeightsError, DeviceError) as error:
        raise click.ClickException(str(error)) from error
    payload = zero_shot_payload(params, params_path, loaded, spec.seed)
    out = Path(out_path) if out_path else zero_shot_export(payload["zero_shot"]["prompt_set"])
    save_payload(out, payload)
    note = weights_note(payload["backbone"])
    click.echo(f"export: zero-shot model of prompt set {payload['zero_shot']['prompt_set']}, "
               f"{len(payload['class_names'])} classes -> {out}{note}")
