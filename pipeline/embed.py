"""The ``embed`` stage: face crops -> CLIP image embeddings in data/<dataset>/features.h5."""

from __future__ import annotations

import json

import click
from tqdm import tqdm

from pipeline.params import DEFAULT_PARAMS, clip_settings, dataset_paths, load_params, require, section
from tg_dfer.backbone import WeightsError, load_clip, pick_device
from tg_dfer.cache import FacesFile, FeaturesWriter, SchemaError
from tg_dfer.datasets.manifest import ManifestError, read_manifest
from tg_dfer.embedding import embed_faces


@click.command("embed")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
def embed(params_path: str) -> None:
    """Embed the face crops with the frozen CLIP image encoder -> data/<dataset>/features.h5.

    Reads data/<dataset>/faces.h5 and manifest.csv. Features are L2-normalised, stored as float16
    (N, views, frames_per_clip, D); computed in fp16 on a CUDA GPU when there is one, fp32 on CPU.
    Clips whose faces stage failed are skipped and listed.

    Params: embed.frames_per_clip (<= faces.frames_per_clip; segment-centre picks of the stored
    crops), embed.views (1 = clean only; views 1.. add a random crop, flip, rotation and colour
    jitter per clip), embed.seed, embed.batch_size (images per forward pass); clip.model,
    clip.checkpoint (path, empty for the clip package's cache file, or random: demo only),
    clip.seed, clip.device (auto | cpu | cuda).
    """
    params = load_params(params_path)
    values = section(params, "embed", params_path)
    frames = require(values, "frames_per_clip", int, "embed", minimum=1)
    views = require(values, "views", int, "embed", minimum=1)
    seed = require(values, "seed", int, "embed")
    batch_size = require(values, "batch_size", int, "embed", minimum=1)
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
        try:
            loaded = load_clip(settings["name"], settings["checkpoint"], pick_device(settings["device"]),
                               settings["seed"])
        except WeightsError as error:
            raise click.ClickException(str(error)) from error
        labels = {row.clip_id: row.label for row in manifest.rows}
        upstream = {key: faces.attrs[key] for key in ("detector", "crop_size", "crop_margin", "sampling")}
        attrs = {**loaded.attrs(), "class_names": manifest.class_names, "views": views, "frames_per_clip": frames,
                 "faces_frames_per_clip": faces.frames_per_clip,
                 "params": {"faces": upstream, "embed": values, "clip": section(params, "clip")}}
        D = loaded.embed_dim
        with FeaturesWriter(paths["features"], views, frames, D, attrs) as writer, \
                tqdm(total=len(faces), desc="embed", unit="clip") as bar:
            summary = embed_faces(faces, labels, loaded, writer, frames, views, seed, batch_size, progress=bar.update)
    note = " (RANDOM CLIP WEIGHTS: features are for testing only)" if loaded.random_weights else ""
    click.echo(f"embed: {summary.embedded} clips x {views} views x {frames} frames -> {paths['features']}{note}")
    for clip_id, reason in summary.skipped:
        click.echo(f"  skipped {clip_id}: {reason}")
    (paths["folder"] / "embed_skipped.json").write_text(json.dumps(dict(summary.skipped), indent=1) + "\n")
