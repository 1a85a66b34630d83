"""The ``embed`` stage: face crops -> CLIP image embeddings in data/<dataset>/features.h5."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

import tg_dfer.augment
import tg_dfer.backbone
import tg_dfer.cache
import tg_dfer.embedding
from pipeline.params import DEFAULT_PARAMS, clip_settings, dataset_paths, load_params, require, section
from pipeline.shards import (WHOLE, Shard, check_shard_params, code_digest, file_identity, kill_point, shard_from_env,
                             shard_options, shard_paths)
from tg_dfer.backbone import PRECISIONS, LoadedClip, WeightsError, load_clip, pick_device, sha256_file
from tg_dfer.cache import (FEATURES_SCHEMA, ClipJournal, FacesFile, FeaturesWriter, SchemaError, ShardSet,
                           write_text_atomic)
from tg_dfer.datasets.manifest import ManifestError, read_manifest
from tg_dfer.embedding import DECODERS, clip_batches, embed_faces, skip_reason


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
    only), clip.seed, clip.device (auto | cpu | cuda).
    """
    if shard and merge_count:
        raise click.UsageError("--shard and --merge do not go together: run the shards, then merge")
    params = load_params(params_path)
    values = section(params, "embed", params_path)
    frames = require(values, "frames_per_clip", int, "embed", minimum=1)
    views = require(values, "views", int, "embed", minimum=1)
    seed = require(values, "seed", int, "embed")
    batch_size = require(values, "batch_size", int, "embed", minimum=1)
    precision = require(values, "precision", str, "embed", choices=("auto", *PRECISIONS))
    speed = {"workers": require(values, "workers", int, "embed", minimum=0),
             "decoder": require(values, "decoder", str, "embed", choices=DECODERS),
             "compile": require(values, "compile", bool, "embed")}
    settings = clip_settings(params)
    paths = dataset_paths(params)
    try:
        manifest = read_manifest(paths["manifest"])
        faces = FacesFile(paths["faces"])
    except (ManifestError, SchemaError) as error:
        raise click.ClickException(str(error)) from error
    with faces:
        if frames > faces.frames_per_clip:
            raise click.ClickException(f"params: embed.frames_per_clip = {frames} exceeds the "
                                       f"{faces.frames_per_clip} frames per clip stored in {paths['faces']}")
        labels = {row.clip_id: row.label for row in manifest.rows}
        reasons = [skip_reason(faces, row, labels) for row in range(len(faces))]
        rows = [row for row, reason in enumerate(reasons) if not reason]
        skipped = {faces.clip_id[row]: reason for row, reason in enumerate(reasons) if reason}
        upstream = {key: faces.attrs[key] for key in ("detector", "crop_size", "crop_margin", "sampling")}
        stage_params = {"faces": upstream, "embed": values, "clip": section(params, "clip")}
        if merge_count:
            target = merge_features(paths, [faces.clip_id[row] for row in rows], merge_count, stage_params)
        else:
            shard = shard or shard_from_env() or WHOLE
            try:
                loaded = load_clip(settings["name"], settings["checkpoint"], rank_device(settings["device"]),
                                   settings["seed"], precision)
            except WeightsError as error:
                raise click.ClickException(str(error)) from error
            attrs = {**loaded.attrs(), "class_names": manifest.class_names, "views": views, "frames_per_clip": frames,
                     "faces_frames_per_clip": faces.frames_per_clip, "params": stage_params}
            target, undecodable = run_embed(paths, faces, labels, loaded,
                                            shard.take(clip_batches(rows, batch_size, views, frames)), shard, attrs,
                                            seed, batch_size, speed)
            skipped |= undecodable
        candidates = [faces.clip_id[row] for row in rows]
    report_embed(paths, target, skipped, candidates)


def rank_device(requested: str) -> str:
    """The device; under torchrun each process takes the GPU of its LOCAL_RANK."""
    device = pick_device(requested)
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def run_embed(paths: dict, faces: FacesFile, labels: dict, loaded: LoadedClip, batches: list[list[int]],
              shard: Shard, attrs: dict, seed: int, batch_size: int, speed: dict) -> tuple[Path, dict[str, str]]:
    """Embed this shard's batches, resuming from its journal; returns the file written and the
    clips whose crops did not decode in this run, with the reason."""
    target = shard.path(paths["features"])
    views, frames = attrs["views"], attrs["frames_per_clip"]
    mine = [row for batch in batches for row in batch]
    fingerprint = {"attrs": attrs, "shard": shard.label, "batches": batches, "seed": seed,
                   "faces": file_identity(paths["faces"]), "manifest": sha256_file(paths["manifest"]),
                   "code": code_digest(tg_dfer.embedding, tg_dfer.backbone, tg_dfer.augment, tg_dfer.cache)}
    journal = ClipJournal(target.with_name(target.name + ".parts"), fingerprint)
    if journal.discarded:
        click.echo(f"embed: {journal.folder} was left by a run with other params, inputs or code: starting afresh")
    done = journal.done()  # numbers of the batches whose clips are stored
    if done:
        click.echo(f"embed: resuming: {sum(len(batches[number]) for number in done)} of {len(mine)} clips already "
                   f"done in {journal.folder}")
    batch_of = {faces.clip_id[row]: number for number, batch in enumerate(batches) for row in batch}

    class JournalWriter:
        """Takes each forward pass's clips as FeaturesWriter.extend does, and keeps them in the journal as one entry."""

        written = 0

        def extend(self, clip_id, label, features, num_frames, frame_index, face_score) -> None:
            columns = {"clip_id": np.asarray(clip_id, dtype=str), "label": label, "features": features.astype("float16"),
                       "num_frames": num_frames, "frame_index": frame_index, "face_score": face_score}
            journal.put(batch_of[clip_id[0]], {name: np.asarray(values) for name, values in columns.items()})
            self.written += 1
            kill_point("batch", self.written)

    todo = [batch for number, batch in enumerate(batches) if number not in done]
    with tqdm(total=len(mine), initial=len(mine) - sum(map(len, todo)), desc="embed", unit="clip") as bar:
        summary = embed_faces(faces, labels, loaded, JournalWriter(), frames, views, seed, batch_size,
                              progress=bar.update, batches=todo, **speed)
    shard_attrs = {"shard": shard.label} if shard.count > 1 else {}
    with FeaturesWriter(target, views, frames, loaded.embed_dim, {**attrs, **shard_attrs}) as out:
        for count, number in enumerate(sorted(journal.done()), start=1):
            out.extend(**journal.get(number))
            kill_point("assemble", count)
    journal.remove()
    return target, dict(summary.skipped)


def merge_features(paths: dict, order: list[str], count: int, stage_params: dict) -> Path:
    """Join the shard files into features.h5 in faces.h5 order, then delete them."""
    files = shard_paths(paths["features"], count)
    try:
        with ShardSet(files, FEATURES_SCHEMA) as shards:
            check_shard_params(shards.attrs, {"params": stage_params}, files[0])
            attrs = shards.attrs
            with FeaturesWriter(paths["features"], int(attrs["views"]), int(attrs["frames_per_clip"]),
                                int(attrs["embed_dim"]), attrs) as writer:
                for values in shards.rows(order, allow_missing=True):  # listed by report_embed
                    writer.append(**values)
    except SchemaError as error:
        raise click.ClickException(str(error)) from error
    for file in files:
        file.unlink()
    return paths["features"]


def report_embed(paths: dict, target: Path, skipped: dict[str, str], candidates: list[str]) -> None:
    """Print what was embedded; for the whole file, list every clip that is not in it, with the reason.

    ``candidates`` are the clips that had crops to embed: one of them missing from the file had
    crops that did not decode (in this run, whose reason is in ``skipped``, or in an earlier run
    that was interrupted and resumed, or in a shard).
    """
    with tg_dfer.cache.open_checked(target, FEATURES_SCHEMA) as handle:
        clips, views, frames = len(handle["clip_id"]), int(handle.attrs["views"]), int(handle.attrs["frames_per_clip"])
        random_weights = bool(handle.attrs.get("random_weights", False))
        embedded = set(tg_dfer.cache.decode_strings(handle["clip_id"][:]))
    note = " (RANDOM CLIP WEIGHTS: features are for testing only)" if random_weights else ""
    click.echo(f"embed: {clips} clips x {views} views x {frames} frames -> {target}{note}")
    if target != paths["features"]:
        return
    for clip_id in candidates:
        if clip_id not in embedded:
            skipped.setdefault(clip_id, "undecodable crop (reported by an earlier, resumed run or a shard)")
    for clip_id, reason in skipped.items():
        click.echo(f"  skipped {clip_id}: {reason}")
    write_text_atomic(paths["folder"] / "embed_skipped.json", json.dumps(skipped, indent=1) + "\n")
