"""The ``backbone`` stage: the demo's own small CLIP, pretrained on rendered faces -> data/backbone/."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from pipeline.paths import DEMO_BACKBONE, backbone_log, uses_demo_backbone
from pipeline.settings.backbone import backbone_config
from pipeline.settings.clip import backbone_spec
from pipeline.settings.dataset import dataset_paths
from pipeline.settings.demo import demo_config
from pipeline.settings.faces import face_settings
from pipeline.settings.params import DEFAULT_PARAMS, load_params
from pipeline.settings.text import prompt_set as read_prompt_set
from tg_dfer.demo.pretrain import (BackboneConfig, check_pretrained, held_out_checks, held_out_faces, save_backbone,
                                   train_backbone, training_faces)
from tg_dfer.faces import CropPolicy
from tg_dfer.io.atomic import atomic_path, write_text_atomic
from tg_dfer.prompt_sets import PromptSet, PromptSetError, load_prompt_set

FOLDER = DEMO_BACKBONE.parent
CHECKPOINT = DEMO_BACKBONE
UNUSED = FOLDER / "UNUSED"
# Constant, so that a run for a dataset that does not use the demo backbone changes nothing downstream.
UNUSED_TEXT = f"clip.checkpoint does not point at {CHECKPOINT.as_posix()}: the demo backbone was not trained.\n"


def _clear() -> None:
    """Drop what an earlier run left, so that the folder holds exactly this run's output."""
    FOLDER.mkdir(parents=True, exist_ok=True)
    for stale in (CHECKPOINT, UNUSED):
        stale.unlink(missing_ok=True)


@click.command("backbone")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
def backbone(params_path: str) -> None:
    """Pretrain the demo's small CLIP on rendered, captioned faces -> data/backbone/clip.pt.

    \b
    Only when clip.checkpoint points at data/backbone/clip.pt (the demo). Otherwise it writes the
    constant marker data/backbone/UNUSED and nothing else, so for real datasets a change of the
    backbone code or params re-runs nothing downstream. With backbone.pretrained (the demo's
    default: assets/demo-backbone.pt, which this stage trained) it checks that the file was
    trained with these settings and copies it and its record instead of training: training is
    deterministic on one kind of CPU only, and the shipped weights give every machine the same
    features. backbone.pretrained '' trains (about 16 min on 2 cores).
    Outputs: data/backbone/clip.pt  a plain CLIP state_dict marked demo_weights (load_backbone
                                    reads it; it is refused for any dataset adapter but demo)
             metrics/<dataset>/backbone.json  per epoch: loss and the held-out checks (zero-shot
                                    accuracy of the class prompts and descriptors on apex faces
                                    of unseen people, apex-over-neutral AUROC, caption retrieval)
             logs/<dataset>/backbone.json  wall times (outside git) and torch threads

    \b
    Params:  backbone.* (pretraining set: identities, images_per_identity, held_out_identities,
             seed, crop_jitter, render_workers; clip.model.CLIP size: embed_dim, vision_width,
             vision_layers, text_width, text_layers; AdamW: epochs, batch_size, lr,
             text_lr_scale, text_frozen_steps, weight_decay, warmup_steps, torch_threads;
             pretrained);
             clip.checkpoint; demo.frame_size (the
             rendered frames); faces.crop_size, faces.margin, faces.image_format,
             faces.jpeg_quality (the crops look like the faces stage's); text.prompt_set (the
             captions' vocabulary).
    """
    params = load_params(params_path)
    config = backbone_config(params, params_path)
    checkpoint = backbone_spec(params, params_path).checkpoint
    frame_size = demo_config(params, params_path).frame_size
    policy = face_settings(params, params_path).policy
    prompt_set = read_prompt_set(params, params_path)
    paths = dataset_paths(params)
    metrics_file = paths.backbone_summary
    _clear()
    if not uses_demo_backbone(checkpoint):
        write_text_atomic(UNUSED, UNUSED_TEXT)
        write_text_atomic(metrics_file, json.dumps({"trained": False, "reason": UNUSED_TEXT.strip()}, indent=1) + "\n")
        click.echo(f"backbone: {UNUSED_TEXT.strip()} -> {UNUSED}")
        return
    trained_with = {"demo.frame_size": frame_size, "faces.crop_size": policy.crop_size, "faces.margin": policy.margin,
                    "faces.image_format": policy.image_format, "faces.jpeg_quality": policy.jpeg_quality,
                    "text.prompt_set": prompt_set}
    if config.pretrained:
        use_pretrained(Path(config.pretrained), config, trained_with, metrics_file)
        return
    try:
        prompts = load_prompt_set(prompt_set)
    except PromptSetError as error:
        raise click.ClickException(str(error)) from error
    metrics, timing = pretrain_backbone(config, frame_size, policy, prompts)
    metrics["trained_with"] = trained_with
    write_text_atomic(metrics_file, json.dumps(metrics, indent=1) + "\n")
    write_text_atomic(backbone_log(paths.name), json.dumps(timing, indent=1) + "\n")
    checks = metrics["held_out"]
    click.echo(f"backbone: {metrics['training_faces']} faces, {config.epochs} epochs in "
               f"{timing['seconds']['total']:.0f} s ({timing['torch_threads']} threads); held-out zero-shot "
               f"{checks['zero_shot_class_prompts']:.1f} % (class prompts), apex-over-neutral AUROC "
               f"{checks['apex_over_neutral_auroc']:.3f} -> {CHECKPOINT}")


def use_pretrained(path: Path, config: BackboneConfig, trained_with: dict[str, Any], metrics_file: Path) -> None:
    """Copy a backbone this stage trained before (``backbone.pretrained``) and its record (the .json
    beside it), after checking that it was trained with these settings."""
    record_path = path.with_suffix(".json")
    try:
        check_pretrained(path, config)
        record_text = record_path.read_text()
        record = json.loads(record_text)
    except (ValueError, OSError) as error:
        reason = error if isinstance(error, ValueError) else f"{record_path}: {error.strerror}"
        raise click.ClickException(f"params: backbone.pretrained: {reason}. Set backbone.pretrained to '' to "
                                   "train this config (about 16 min on 2 CPU cores)") from error
    differ = [f"{key} {record.get('trained_with', {}).get(key)!r} there, {value!r} here"
              for key, value in trained_with.items() if record.get("trained_with", {}).get(key) != value]
    if differ:
        raise click.ClickException(f"params: backbone.pretrained: {path} was trained on other faces: "
                                   f"{'; '.join(differ)}. Set backbone.pretrained to '' to train for these")
    with atomic_path(CHECKPOINT) as temporary:
        shutil.copyfile(path, temporary)
    write_text_atomic(metrics_file, record_text)
    click.echo(f"backbone: {path}, trained by this stage with these settings (record: {record_path}), "
               f"not trained again -> {CHECKPOINT}")


def _rounded(record: dict[str, Any]) -> dict[str, Any]:
    """A metrics record at 4 decimals: what reproduces across machines, not the float noise under it."""
    return {key: _rounded(value) if isinstance(value, dict) else round(value, 4) if isinstance(value, float) else value
            for key, value in record.items()}


def pretrain_backbone(config: BackboneConfig, frame_size: int, policy: CropPolicy, prompts: PromptSet
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Render, train, check and save; returns the content of backbone.json and of its log (wall times)."""
    started = time.perf_counter()
    try:
        with tqdm(total=config.identities + config.held_out_identities, desc="backbone faces", unit="person") as bar:
            train_set = training_faces(config, frame_size, policy, prompts, bar.update)
            held_out = held_out_faces(config, frame_size, policy, prompts, bar.update)
    except ValueError as error:
        raise click.ClickException(f"params: text.prompt_set: {error}") from error
    rendered = time.perf_counter()
    epoch_seconds = []

    def after_epoch(model, record: dict) -> None:
        epoch_seconds.append(round(record.pop("seconds"), 2))
        record["held_out"] = held_out_checks(model, held_out, prompts)
        click.echo(f"backbone: epoch {record['epoch']}: loss {record['loss']:.4f} ({epoch_seconds[-1]:.1f} s), "
                   f"held-out zero-shot {record['held_out']['zero_shot_class_prompts']:.1f} %")

    model, history = train_backbone(train_set, config, after_epoch)
    trained = time.perf_counter()
    save_backbone(CHECKPOINT, model, config)
    finished = time.perf_counter()
    metrics = {
        "trained": True,
        "demo_weights": True,
        "config": asdict(config),
        "training_faces": len(train_set),
        "people_skipped": {"training": train_set.skipped, "held_out": held_out.skipped},
        "history": [_rounded(record) for record in history],
        "held_out": _rounded(history[-1]["held_out"]),
    }
    timing = {"torch_threads": config.torch_threads, "epoch_seconds": epoch_seconds,
              "seconds": {"render": round(rendered - started, 2), "train": round(trained - rendered, 2),
                          "save": round(finished - trained, 2), "total": round(finished - started, 2)}}
    return metrics, timing
