"""The ``faces`` stage: decode, sample, detect and crop every clip of the manifest -> faces.h5."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np
from tqdm import tqdm

import tg_dfer.cache
import tg_dfer.faces
import tg_dfer.sampling
import tg_dfer.video
from pipeline.params import DEFAULT_PARAMS, dataset_paths, load_params, require, section
from pipeline.shards import (WHOLE, Shard, check_shard_params, code_digest, kill_point, shard_from_env, shard_options,
                             shard_paths)
from tg_dfer import __version__
from tg_dfer.backbone import WeightsError, pick_device, sha256_file
from tg_dfer.cache import (FACE_STATUSES, FACES_SCHEMA, ClipJournal, FaceRecord, FacesFile, FacesWriter, SchemaError,
                           ShardSet, face_row, write_text_atomic)
from tg_dfer.datasets.manifest import ManifestError, read_manifest
from tg_dfer.faces import DETECTORS, IMAGE_FORMATS, CropPolicy, DetectorError, crop_path, make_detector
from tg_dfer.parallel import ordered_map, per_thread
from tg_dfer.sampling import MODES


def read_policy(values: dict) -> tuple[CropPolicy, dict]:
    """The crop policy and the other faces params, all checked before any work starts."""
    policy = CropPolicy(
        frames_per_clip=require(values, "frames_per_clip", int, "faces", minimum=1),
        sampling=require(values, "sampling", str, "faces", choices=MODES),
        crop_size=require(values, "crop_size", int, "faces", minimum=16),
        margin=float(require(values, "margin", (int, float), "faces", minimum=0.5)),
        smooth=require(values, "smooth", int, "faces", minimum=1),
        max_side=require(values, "max_side", int, "faces", minimum=64),
        image_format=require(values, "image_format", str, "faces", choices=IMAGE_FORMATS),
        jpeg_quality=require(values, "jpeg_quality", int, "faces", minimum=1),
    )
    other = {
        "detector": require(values, "detector", str, "faces", choices=DETECTORS),
        "seed": require(values, "seed", int, "faces"),
        "decode_timeout": float(require(values, "decode_timeout", (int, float), "faces", minimum=0.001)),
        "device": require(values, "device", str, "faces"),
    }
    return policy, other


def face_report(path, manifest) -> dict:
    """Counts per status, the share of sampled frames with a face, and every clip not fully ok."""
    paths_by_id = {row.clip_id: row.path for row in manifest.rows}
    with FacesFile(path) as stored:
        status, reason, score = stored.status, stored.reason, stored["score"]
        clip_ids = stored.clip_id
    counts = Counter(status)
    usable = np.array([value != "failed" for value in status], dtype=bool)
    frames_total = int(usable.sum()) * score.shape[1] if len(status) else 0
    rate = int(np.count_nonzero(score[usable])) / frames_total if frames_total else 0.0
    problems = [{"clip_id": clip_id, "path": paths_by_id.get(clip_id, ""), "status": value, "reason": why}
                for clip_id, value, why in zip(clip_ids, status, reason) if value != "ok"]
    return {"clips": len(status), **{value: counts.get(value, 0) for value in FACE_STATUSES},
            "face_frame_rate": round(rate, 4), "not_ok": problems}


def crop_row(row, root: Path, detector, policy: CropPolicy, other: dict) -> FaceRecord:
    """One manifest row -> its record; whatever goes wrong becomes a 'failed' record with the reason."""
    return crop_path(root / row.path, row.clip_id, detector, policy, other["seed"], other["decode_timeout"])


@click.command("faces")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
@shard_options("faces")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), envvar="TG_DFER_FACES_WORKERS",
              help="Clips decoded and searched in parallel threads, each with its own detector; the output is "
                   "the same for any number (env TG_DFER_FACES_WORKERS, e.g. under dvc repro).")
def faces(params_path: str, shard: Shard | None, merge_count: int | None, workers: int) -> None:
    """Decode each clip once, sample frames, detect and crop the face -> data/<dataset>/faces.h5.

    Reads data/<dataset>/manifest.csv and the clips under dataset.root. Only the sampled frames
    are decoded and searched for a face. A clip that cannot be read is recorded with status
    'failed' and its reason, and the stage goes on; clips without a face get a centred fallback
    crop, score 0 and status 'no_face' ('partial' when some frames have one). Also writes
    metrics/<dataset>/faces.json (counts per status, share of frames with a face, and every
    clip that is not fully ok with the reason).

    Finished clips are kept in data/<dataset>/faces.h5.parts/ until the run completes: a run that
    was killed resumes there with the same params. Scale out with --shard I/N on N machines or
    processes, then --merge N (docs/robustness.md).

    Params (section faces): detector (face_alignment | opencv | none), frames_per_clip, sampling
    (centre | random), seed, crop_size, margin, smooth, max_side, image_format (jpeg | png),
    jpeg_quality, decode_timeout (seconds per ffmpeg call), device (auto | cpu | cuda).
    """
    if shard and merge_count:
        raise click.UsageError("--shard and --merge do not go together: run the shards, then merge")
    params = load_params(params_path)
    policy, other = read_policy(section(params, "faces", params_path))
    paths = dataset_paths(params)
    try:
        manifest = read_manifest(paths["manifest"])
    except ManifestError as error:
        raise click.ClickException(str(error)) from error
    attrs = {"detector": other["detector"], "crop_size": policy.crop_size, "crop_margin": policy.margin,
             "crop_smooth": policy.smooth, "image_format": policy.image_format, "sampling": policy.sampling,
             "sampling_seed": other["seed"], "dataset_root": str(paths["root"]), "package_version": __version__,
             "params": {"faces": section(params, "faces")}}
    if merge_count:
        merge_faces(paths, manifest, merge_count, policy.frames_per_clip, attrs)
        target = paths["faces"]
    else:
        shard = shard or shard_from_env() or WHOLE
        try:
            device = pick_device(other["device"])
            first = make_detector(other["detector"], device=device)  # a missing model fails before any work
        except (DetectorError, WeightsError) as error:
            raise click.ClickException(str(error)) from error
        detector = per_thread(lambda: make_detector(other["detector"], device=device)) if workers > 1 else lambda: first
        target = run_faces(paths, manifest, shard, detector, policy, other, attrs, workers)
    report = face_report(target, manifest)
    if target == paths["faces"]:
        write_text_atomic(paths["faces_summary"], json.dumps(report, indent=1) + "\n")
    click.echo(f"faces: {report['clips']} clips -> {target}: {report['ok']} ok, {report['partial']} partial, "
               f"{report['no_face']} no face, {report['failed']} failed; a face in "
               f"{100 * report['face_frame_rate']:.1f}% of sampled frames")
    problems = report["not_ok"]
    for problem in problems[:20]:
        click.echo(f"  {problem['status']:<8} {problem['clip_id']}: {problem['reason']}")
    if len(problems) > 20:
        click.echo(f"  ... and {len(problems) - 20} more in {paths['faces_summary']} (or run tg-dfer qc)")


def run_faces(paths: dict, manifest, shard: Shard, detector: Callable[[], Any], policy: CropPolicy, other: dict,
              attrs: dict, workers: int = 1) -> Path:
    """Crop this shard's clips (``workers`` at a time; ``detector()`` gives the calling thread's), resuming
    from its journal; returns the file written."""
    target = shard.path(paths["faces"])
    rows = shard.take(range(len(manifest.rows)))
    fingerprint = {"attrs": attrs, "frames_per_clip": policy.frames_per_clip, "shard": shard.label,
                   "manifest": sha256_file(paths["manifest"]),
                   "code": code_digest(tg_dfer.faces, tg_dfer.video, tg_dfer.sampling, tg_dfer.cache)}
    journal = ClipJournal(target.with_name(target.name + ".parts"), fingerprint)
    if journal.discarded:
        click.echo(f"faces: {journal.folder} was left by a run with other params, inputs or code: starting afresh")
    done = journal.done()
    todo = [row for row in rows if row not in done]
    if len(todo) < len(rows):
        click.echo(f"faces: resuming: {len(rows) - len(todo)} of {len(rows)} clips already done in {journal.folder}")
    records = ordered_map(lambda row: crop_row(manifest.rows[row], paths["root"], detector(), policy, other), todo,
                          workers)
    for count, (row, record) in enumerate(zip(tqdm(todo, desc="faces", unit="clip"), records), start=1):
        journal.put(row, face_row(record, policy.frames_per_clip))
        kill_point("clip", count)
    shard_attrs = {"shard": shard.label} if shard.count > 1 else {}
    with FacesWriter(target, policy.frames_per_clip, {**attrs, **shard_attrs}) as writer:
        for count, row in enumerate(rows, start=1):
            writer.append_row(journal.get(row))
            kill_point("assemble", count)
    journal.remove()
    return target


def merge_faces(paths: dict, manifest, count: int, frames: int, attrs: dict) -> None:
    """Join the shard files into faces.h5 in manifest order, then delete them."""
    files = shard_paths(paths["faces"], count)
    try:
        with ShardSet(files, FACES_SCHEMA) as shards:
            check_shard_params(shards.attrs, attrs, files[0])
            with FacesWriter(paths["faces"], frames, shards.attrs) as writer:
                for values in shards.rows([row.clip_id for row in manifest.rows]):
                    writer.append_row(values)
    except SchemaError as error:
        raise click.ClickException(str(error)) from error
    for file in files:
        file.unlink()
