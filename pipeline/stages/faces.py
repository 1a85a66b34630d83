"""The ``faces`` stage: decode, sample, detect and crop every clip of the manifest -> faces.h5."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import click
from tqdm import tqdm

from pipeline.deps import code_digest
from pipeline.paths import DatasetPaths
from pipeline.settings.dataset import dataset_paths
from pipeline.settings.faces import face_settings
from pipeline.settings.params import DEFAULT_PARAMS, load_params, section
from pipeline.sharding import kill_point, merge, open_journal, shard_from_env, shard_options
from tg_dfer import __version__
from tg_dfer.datasets.manifest import ManifestError, read_manifest
from tg_dfer.detectors import DetectorError, DetectorSettings, make_detector
from tg_dfer.devices import DeviceError, pick_device
from tg_dfer.faces import CropPolicy, crop_path
from tg_dfer.hashes import sha256_file
from tg_dfer.io.atomic import write_text_atomic
from tg_dfer.io.faces_h5 import FACE_STATUSES, FACES_SCHEMA, FILLED, FRAME_STATUSES, FacesFile, FacesWriter, face_row
from tg_dfer.parallel import ordered_map, per_thread
from tg_dfer.resume.runner import run_resumable
from tg_dfer.resume.shards import WHOLE, Shard


def face_report(path, manifest) -> dict:
    """Counts per status, the share of sampled frames with a face (detected) and with a face box
    (detected or filled from the detections around it), sampled frames per frame status, and every
    clip not fully ok."""
    paths_by_id = {row.clip_id: row.path for row in manifest.rows}
    with FacesFile(path) as stored:
        status, reason, frame_status = stored.status, stored.reason, stored.frame_status
        clip_ids = stored.clip_id
    counts = Counter(status)
    frames = Counter(frame_status.ravel().tolist())
    frames_total = frame_status.size - frames["none"]  # the sampled frames of the clips that did not fail

    def rate(names) -> float:
        return round(sum(frames[name] for name in names) / frames_total, 4) if frames_total else 0.0

    problems = [{"clip_id": clip_id, "path": paths_by_id.get(clip_id, ""), "status": value, "reason": why}
                for clip_id, value, why in zip(clip_ids, status, reason) if value != "ok"]
    return {"clips": len(status), **{value: counts.get(value, 0) for value in FACE_STATUSES},
            "face_frame_rate": rate(("detected",)), "face_box_rate": rate(("detected", *FILLED)),
            "frame_status": {name: frames[name] for name in FRAME_STATUSES if name != "none"},
            "not_ok": problems}


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
    metrics/<dataset>/faces.json (counts per status, share of frames with a face and with a face
    box, sampled frames per frame status, and every clip that is not fully ok with the reason).

    Finished clips are kept in data/<dataset>/faces.h5.parts/ until the run completes: a run that
    was killed resumes there with the same params. Scale out with --shard I/N on N machines or
    processes, then --merge N (docs/robustness.md).

    Frames without a detection keep score 0 and take their box from the detections around them:
    where the nearest detection's face is found again by matching (tracked), else interpolated
    between two boxes or held from the nearest at the clip's ends (faces.h5 frame_status says which;
    docs/robustness.md measures how far those boxes lie). The opencv detector
    runs its frontal cascade on every sampled frame and, only where that finds nothing, the passes
    of faces.opencv: equalise (again on the CLAHE-equalised luma, down to 24 px faces), tilt
    (degrees: also on that frame turned by +tilt and -tilt, the crop turned back upright; 0 = off),
    profile (the profile cascade on it and its mirror image; off by default). docs/robustness.md
    has their measured hit rates.

    Params (section faces): detector (face_alignment | opencv | none), frames_per_clip, sampling
    (centre | random), seed, crop_size, margin, smooth, max_side, image_format (jpeg | png),
    jpeg_quality, decode_timeout (seconds per ffmpeg call), device (auto | cpu | cuda), download
    (auto: fetch face_alignment's missing weights, hash-checked | never), opencv (equalise, tilt,
    profile).
    """
    if shard and merge_count:
        raise click.UsageError("--shard and --merge do not go together: run the shards, then merge")
    params = load_params(params_path)
    faces = face_settings(params, params_path)
    policy, settings = faces.policy, faces.detection
    paths = dataset_paths(params)
    try:
        manifest = read_manifest(paths.manifest)
    except ManifestError as error:
        raise click.ClickException(str(error)) from error
    attrs = {"detector": settings.detector, "crop_size": policy.crop_size, "crop_margin": policy.margin,
             "crop_smooth": policy.smooth, "image_format": policy.image_format, "sampling": policy.sampling,
             "sampling_seed": settings.seed, "dataset_root": str(paths.root), "package_version": __version__,
             "params": {"faces": section(params, "faces")}}  # the section as written (docs/contracts.md)
    if merge_count:
        merge(paths.faces, merge_count, FACES_SCHEMA, [row.clip_id for row in manifest.rows], attrs,
              lambda found, rows: write_faces(paths.faces, policy.frames_per_clip, found, rows))
        target = paths.faces
    else:
        shard = shard or shard_from_env() or WHOLE
        try:
            device = pick_device(settings.device)
            # A missing model is fetched (or fails) before any work.
            first = make_detector(settings.detector, device, settings.opencv, settings.download)
        except (DetectorError, DeviceError) as error:
            raise click.ClickException(str(error)) from error
        detector = (per_thread(lambda: make_detector(settings.detector, device, settings.opencv, settings.download))
                    if workers > 1 else lambda: first)
        target = run_faces(paths, manifest, shard, detector, policy, settings, attrs, workers)
    report = face_report(target, manifest)
    if target == paths.faces:
        write_text_atomic(paths.faces_summary, json.dumps(report, indent=1) + "\n")
    click.echo(f"faces: {report['clips']} clips -> {target}: {report['ok']} ok, {report['partial']} partial, "
               f"{report['no_face']} no face, {report['failed']} failed; a face in "
               f"{100 * report['face_frame_rate']:.1f}% of sampled frames, a face box (detected or filled from the "
               f"detections around it) in {100 * report['face_box_rate']:.1f}%")
    problems = report["not_ok"]
    for problem in problems[:20]:
        click.echo(f"  {problem['status']:<8} {problem['clip_id']}: {problem['reason']}")
    if len(problems) > 20:
        click.echo(f"  ... and {len(problems) - 20} more in {paths.faces_summary} (or run tg-dfer qc)")


def write_faces(path: Path, frames: int, attrs: dict, rows: Iterator[dict]) -> None:
    """faces.h5 (or a shard of it) from rows as :func:`tg_dfer.io.faces_h5.face_row` makes them."""
    with FacesWriter(path, frames, attrs) as writer:
        for values in rows:
            writer.append_row(values)


def run_faces(paths: DatasetPaths, manifest, shard: Shard, detector: Callable[[], Any], policy: CropPolicy,
              settings: DetectorSettings, attrs: dict, workers: int = 1) -> Path:
    """Crop this shard's clips (``workers`` at a time; ``detector()`` gives the calling thread's), resuming
    from its journal; returns the file written."""
    target = shard.path(paths.faces)
    rows = shard.take(range(len(manifest.rows)))
    fingerprint = {"attrs": attrs, "frames_per_clip": policy.frames_per_clip, "shard": shard.label,
                   "manifest": sha256_file(paths.manifest), "code": code_digest("faces")}
    journal = open_journal("faces", target, fingerprint, rows, "clips")

    def compute(todo: list[int], keep) -> None:
        records = ordered_map(lambda row: crop_path(paths.root / manifest.rows[row].path, manifest.rows[row].clip_id,
                                                    detector(), policy, settings.seed, settings.decode_timeout),
                              todo, workers)
        for row, record in zip(tqdm(todo, desc="faces", unit="clip"), records):
            keep(row, face_row(record, policy.frames_per_clip))

    run_resumable(journal, rows, compute, lambda entries: write_faces(target, policy.frames_per_clip,
                                                                      {**attrs, **shard.attrs}, entries),
                  unit_event="clip", event=kill_point)
    return target
