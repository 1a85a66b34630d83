"""The ``faces`` stage: decode, sample, detect and crop every clip of the manifest -> faces.h5."""

from __future__ import annotations

import json
from collections import Counter

import click
import numpy as np
from tqdm import tqdm

from pipeline.params import DEFAULT_PARAMS, dataset_paths, load_params, require, section
from tg_dfer import __version__
from tg_dfer.backbone import WeightsError, pick_device
from tg_dfer.cache import FacesWriter
from tg_dfer.datasets.manifest import ManifestError, read_manifest
from tg_dfer.faces import DETECTORS, IMAGE_FORMATS, CropPolicy, DetectorError, crop_path, make_detector
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
        "decode_timeout": float(require(values, "decode_timeout", (int, float), "faces", minimum=1)),
        "device": require(values, "device", str, "faces"),
    }
    return policy, other


def summarise(records: Counter, frames_with_face: int, frames_total: int) -> dict:
    rate = frames_with_face / frames_total if frames_total else 0.0
    return {"clips": sum(records.values()), **{status: records.get(status, 0) for status in
                                                ("ok", "partial", "no_face", "failed")},
            "face_frame_rate": round(rate, 4)}


@click.command("faces")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
def faces(params_path: str) -> None:
    """Decode each clip once, sample frames, detect and crop the face -> data/<dataset>/faces.h5.

    Reads data/<dataset>/manifest.csv and the clips under dataset.root. Only the sampled frames
    are decoded and searched for a face. A clip that cannot be read is recorded with status
    'failed' and its reason, and the stage goes on; clips without a face get a centred fallback
    crop, score 0 and status 'no_face' ('partial' when some frames have one). Also writes
    metrics/<dataset>/faces.json (counts per status, share of frames with a face, and every
    clip that is not fully ok with the reason).

    Params (section faces): detector (face_alignment | opencv | none), frames_per_clip, sampling
    (centre | random), seed, crop_size, margin, smooth, max_side, image_format (jpeg | png),
    jpeg_quality, decode_timeout (seconds per ffmpeg call), device (auto | cpu | cuda).
    """
    params = load_params(params_path)
    policy, other = read_policy(section(params, "faces", params_path))
    paths = dataset_paths(params)
    try:
        manifest = read_manifest(paths["manifest"])
        detector = make_detector(other["detector"], device=pick_device(other["device"]))
    except (ManifestError, DetectorError, WeightsError) as error:
        raise click.ClickException(str(error)) from error

    attrs = {"detector": other["detector"], "crop_size": policy.crop_size, "crop_margin": policy.margin,
             "crop_smooth": policy.smooth, "image_format": policy.image_format, "sampling": policy.sampling,
             "sampling_seed": other["seed"], "dataset_root": str(paths["root"]), "package_version": __version__,
             "params": {"faces": section(params, "faces")}}
    statuses: Counter = Counter()
    problems = []
    frames_with_face = frames_total = 0
    with FacesWriter(paths["faces"], policy.frames_per_clip, attrs) as writer:
        for row in tqdm(manifest.rows, desc="faces", unit="clip"):
            record = crop_path(paths["root"] / row.path, row.clip_id, detector, policy, other["seed"],
                               other["decode_timeout"])
            writer.append(record)
            statuses[record.status] += 1
            if record.status != "failed":
                frames_with_face += int(np.count_nonzero(record.score))
                frames_total += policy.frames_per_clip
            if record.status != "ok":
                problems.append({"clip_id": row.clip_id, "path": row.path, "status": record.status,
                                 "reason": record.reason})
    summary = summarise(statuses, frames_with_face, frames_total)
    paths["faces_summary"].parent.mkdir(parents=True, exist_ok=True)
    paths["faces_summary"].write_text(json.dumps({**summary, "not_ok": problems}, indent=1) + "\n")
    click.echo(f"faces: {summary['clips']} clips -> {paths['faces']}: {summary['ok']} ok, {summary['partial']} partial, "
               f"{summary['no_face']} no face, {summary['failed']} failed; a face in "
               f"{100 * summary['face_frame_rate']:.1f}% of sampled frames")
    for problem in problems[:20]:
        click.echo(f"  {problem['status']:<8} {problem['clip_id']}: {problem['reason']}")
    if len(problems) > 20:
        click.echo(f"  ... and {len(problems) - 20} more in {paths['faces_summary']}")
