"""The ``embed`` stage: face crops -> CLIP image embeddings in data/<dataset>/features.h5."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from tqdm import tqdm

from pipeline.deps import code_digest
from pipeline.paths import DatasetPaths
from pipeline.settings.clip import backbone_device, backbone_spec
from pipeline.settings.dataset import dataset_paths
from pipeline.settings.embed import embed_config
from pipeline.settings.params import DEFAULT_PARAMS, load_params, section
from pipeline.sharding import file_identity, kill_point, merge, open_journal, shard_from_env, shard_options
from tg_dfer import cpu_profile
from tg_dfer.backbone import Backbone, WeightsError, load_backbone, weights_note
from tg_dfer.datasets.manifest import ManifestError, read_manifest
from tg_dfer.devices import DeviceError, pick_device
from tg_dfer.embed.images import JournalSink, clip_batches, embed_faces, skip_reason, write_entries
from tg_dfer.hashes import sha256_file
from tg_dfer.io.atomic import write_text_atomic
from tg_dfer.io.faces_h5 import FacesFile
from tg_dfer.io.features_h5 import FEATURES_SCHEMA, FeaturesWriter
from tg_dfer.io.h5 import SchemaError, decode_strings, open_checked
from tg_dfer.resume.runner import run_resumable
from tg_dfer.resume.shards import WHOLE, Shard


@click.command("embed")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
@shard_options("features")
def embed(params_path: str, shard: Shard | None, merge_count: int | None) -> None:
    """Embed the face crops with the frozen CLIP image encoder -> data/<dataset>/features.h5.

    Reads data/<dataset>/faces.h5 and manifest.csv. Features are L2-normalised, stored as float16
    (N, views, frames_per_clip, D); computed in embed.precision (auto: fp16 on a CUDA GPU, fp32 on
    CPU) while the next batches are read and decoded in the background.
    Clips whose faces stage failed are skipped and listed in data/<dataset>/embed_skipped.json.

    Finished clips are kept in data/<dataset>/features.h5.parts/ until the run completes: a run
    that was killed resumes there with the same params and inputs. Scale out with --shard I/N
    (or torchrun --nproc_per_node N --no-python tg-dfer embed), then --merge N (docs/robustness.md).

    Params: embed.frames_per_clip (<= faces.frames_per_clip; segment-centre picks of the stored
    crops), embed.views (1 = clean only; views 1.. add a random crop, flip, rotation and colour
    jitter per clip), embed.seed, embed.batch_size (images per forward pass, in whole clips),
    embed.precision (auto: fp16 on CUDA, fp32 on CPU | fp32 | fp16 | bf16), embed.workers (CPU
    threads decoding crops, 0 = one per core), embed.decoder (auto | opencv | torchvision:
    batched nvJPEG on CUDA), embed.compile (torch.compile the image tower);
    clip.model, clip.checkpoint (path, empty for the clip package's cache file, or random: demo
    only), clip.seed, clip.device (auto | cpu | cuda), clip.download (auto: fetch a missing cache
    file from OpenAI, SHA-256 checked | never).
    """
    if shard and merge_count:
        raise click.UsageError("--shard and --merge do not go together: run the shards, then merge")
    params = load_params(params_path)
    config = embed_config(params, params_path)
    frames, views, batch_size = config.frames_per_clip, config.views, config.batch_size
    spec = backbone_spec(params, params_path)
    paths = dataset_paths(params)
    try:
        manifest = read_manifest(paths.manifest)
        faces = FacesFile(paths.faces)
    except (ManifestError, SchemaError) as error:
        raise click.ClickException(str(error)) from error
    with faces:
        if frames > faces.frames_per_clip:
            raise click.ClickException(f"params: embed.frames_per_clip = {frames} exceeds the "
                                       f"{faces.frames_per_clip} frames per clip stored in {paths.faces}")
        labels = {row.clip_id: row.label for row in manifest.rows}
        reasons = [skip_reason(faces, row, labels) for row in range(len(faces))]
        rows = [row for row, reason in enumerate(reasons) if not reason]
        skipped = {faces.clip_id[row]: reason for row, reason in enumerate(reasons) if reason}
        upstream = {key: faces.attrs[key] for key in ("detector", "crop_size", "crop_margin", "sampling")}
        # The sections as written, recorded with the features (docs/contracts.md).
        stage_params = {"faces": upstream, "embed": section(params, "embed"), "clip": section(params, "clip")}
        if merge_count:
            # Clips whose crops did not decode are in no shard: report_embed lists them.
            merge(paths.features, merge_count, FEATURES_SCHEMA, [faces.clip_id[row] for row in rows],
                  {"params": stage_params}, lambda found, shard_rows: write_rows(paths.features, found, shard_rows),
                  allow_missing=True)
            target = paths.features
        else:
            shard = shard or shard_from_env() or WHOLE
            try:
                device = rank_device(backbone_device(params, params_path))
                loaded = load_backbone(spec, device, config.precision)
            except (WeightsError, DeviceError) as error:
                raise click.ClickException(str(error)) from error
            attrs = {**loaded.attrs(), "class_names": manifest.class_names, "views": views, "frames_per_clip": frames,
                     "faces_frames_per_clip": faces.frames_per_clip, "params": stage_params,
                     "cpu_profile": cpu_profile.record(device)}
            target, undecodable = run_embed(paths, faces, labels, loaded,
                                            shard.take(clip_batches(rows, batch_size, views, frames)), shard, attrs,
                                            config.seed, batch_size, config.speed)
            skipped |= undecodable
        candidates = [faces.clip_id[row] for row in rows]
    report_embed(paths, target, skipped, candidates)


def rank_device(requested: str) -> str:
    """The device; under torchrun each process takes the GPU of its LOCAL_RANK."""
    device = pick_device(requested)
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def run_embed(paths: DatasetPaths, faces: FacesFile, labels: dict, backbone: Backbone, batches: list[list[int]],
              shard: Shard, attrs: dict, seed: int, batch_size: int, speed: dict) -> tuple[Path, dict[str, str]]:
    """Embed this shard's batches, resuming from its journal; returns the file written and the
    clips whose crops did not decode in this run, with the reason."""
    target = shard.path(paths.features)
    views, frames = attrs["views"], attrs["frames_per_clip"]
    fingerprint = {"attrs": attrs, "shard": shard.label, "batches": batches, "seed": seed,
                   "faces": file_identity(paths.faces), "manifest": sha256_file(paths.manifest),
                   "code": code_digest("embed")}
    numbers = list(range(len(batches)))
    journal = open_journal("embed", target, fingerprint, numbers, "forward passes")
    entry_of = {faces.clip_id[row]: number for number, batch in enumerate(batches) for row in batch}
    skipped: dict[str, str] = {}

    def compute(todo: list[int], keep) -> None:
        clips = sum(map(len, batches))
        with tqdm(total=clips, initial=clips - sum(len(batches[n]) for n in todo), desc="embed", unit="clip") as bar:
            summary = embed_faces(faces, labels, backbone, JournalSink(keep, entry_of), frames, views, seed, batch_size,
                                  progress=bar.update, batches=[batches[n] for n in todo], **speed)
        skipped.update(summary.skipped)

    run_resumable(journal, numbers, compute,
                  lambda entries: write_entries(target, views, frames, backbone.embed_dim, {**attrs, **shard.attrs},
                                                entries),
                  unit_event="batch", event=kill_point)
    return target, skipped


def write_rows(path: Path, attrs: dict, rows) -> None:
    """features.h5 from the rows of shard files, clip by clip."""
    with FeaturesWriter(path, int(attrs["views"]), int(attrs["frames_per_clip"]), int(attrs["embed_dim"]),
                        attrs) as writer:
        for values in rows:
            writer.append(**values)


def report_embed(paths: dict, target: Path, skipped: dict[str, str], candidates: list[str]) -> None:
    """Print what was embedded; for the whole file, list every clip that is not in it, with the reason.

    ``candidates`` are the clips that had crops to embed: one of them missing from the file had
    crops that did not decode (in this run, whose reason is in ``skipped``, or in an earlier run
    that was interrupted and resumed, or in a shard).
    """
    with open_checked(target, FEATURES_SCHEMA) as handle:
        clips, views, frames = len(handle["clip_id"]), int(handle.attrs["views"]), int(handle.attrs["frames_per_clip"])
        note = weights_note(dict(handle.attrs))
        embedded = set(decode_strings(handle["clip_id"][:]))
    click.echo(f"embed: {clips} clips x {views} views x {frames} frames -> {target}{note}")
    if target != paths.features:
        return
    for clip_id in candidates:
        if clip_id not in embedded:
            skipped.setdefault(clip_id, "undecodable crop (reported by an earlier, resumed run or a shard)")
    for clip_id, reason in skipped.items():
        click.echo(f"  skipped {clip_id}: {reason}")
    write_text_atomic(paths.embed_skipped, json.dumps(skipped, indent=1) + "\n")
