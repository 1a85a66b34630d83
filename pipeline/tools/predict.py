"""``tg-dfer predict``: an exported model (or, ``--zero-shot``, the text prompts alone) on new videos ->
probabilities, frame influence, figures."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from pipeline.model_files import zero_shot_payload
from pipeline.settings.clip import backbone_spec
from pipeline.settings.params import DEFAULT_PARAMS, load_params
from tg_dfer import __version__
from tg_dfer.backbone import Backbone, WeightsError, load_backbone
from tg_dfer.detectors import DetectorError, make_detector
from tg_dfer.devices import pick_device
from tg_dfer.inference.inputs import SkippedFile, collect_inputs
from tg_dfer.inference.model_file import ModelFile, ModelFileError, load_model_file, model_in_memory
from tg_dfer.inference.predictor import Predictor, faces_in_threads
from tg_dfer.inference.records import VideoPrediction, decoded_crops, video_record
from tg_dfer.io.atomic import atomic_path, write_text_atomic
from tg_dfer.weights import DOWNLOADS

PREDICT_SCHEMA = "tg-dfer/predict/3"
ZERO_SHOT_NOTE = "ZERO-SHOT: CLIP scores of the text prompts, no trained model"


def _slug(name: str, taken: set[str]) -> str:
    """A file-name-safe stem for an input's figures: its file name, numbered when two inputs share one."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("_") or "clip"
    slug, number = base, 2
    while slug in taken:
        slug, number = f"{base}-{number}", number + 1
    taken.add(slug)
    return slug


def _frame_labels(video: VideoPrediction) -> list[str]:
    """Time (or frame number) under each crop; frames whose crop was interpolated say they had no face."""
    unit = video.clip
    when = ([f"{index / video.fps:.2f} s" for index in unit.frame_index] if video.fps > 0
            else [f"frame {index}" for index in unit.frame_index])
    return [label if score > 0 else f"{label}, no face" for label, score in zip(when, unit.face_score)]


def _notes(model: ModelFile) -> str:
    """What a figure title says about the model beyond the prediction."""
    notes = [f"zero-shot, prompt set {model.zero_shot['prompt_set']}"] if model.zero_shot else []
    notes += ["random CLIP weights: illustration only"] if model.backbone["random_weights"] else []
    notes += ["the demo's own backbone, trained on rendered faces"] if model.demo_weights else []
    return "".join(f"  [{note}]" for note in notes)


def _title(video: VideoPrediction, model: ModelFile) -> str:
    unit = video.clip
    return f"{Path(video.name).name}: {model.class_names[unit.pred]} (p = {unit.probs[unit.pred]:.2f}){_notes(model)}"


def _write_timeline(video: VideoPrediction, class_names: list[str], folder: Path, slug: str, title: str) -> dict:
    """The per-window probabilities as CSV (one row per window) and a plot; NaN where a window has no prediction."""
    from tg_dfer.explain import emotion_timeline

    folder.mkdir(parents=True, exist_ok=True)
    table, plot = folder / f"{slug}.sliding.csv", folder / f"{slug}.sliding.png"
    rows, centres, probs = [], [], []
    for start, stop, unit in video.windows:
        centre = (start + stop) / 2 / video.fps
        values = unit.probs if unit.predicted else np.full(len(class_names), np.nan)
        centres.append(centre)
        probs.append(values)
        rows.append([start, stop, f"{start / video.fps:.4f}", f"{stop / video.fps:.4f}", unit.status,
                     class_names[unit.pred] if unit.predicted else "",
                     *("" if np.isnan(p) else f"{p:.6f}" for p in values)])
    with atomic_path(table) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["start_frame", "end_frame", "start_s", "end_s", "status", "prediction",
                         *(f"p_{name}" for name in class_names)])
        writer.writerows(rows)
    emotion_timeline(np.array(centres), np.array(probs), class_names, title, plot)
    return {"csv": str(table), "png": str(plot)}


def _csv_text(records: list[dict], class_names: list[str], skipped: list[SkippedFile], kind: str) -> str:
    """One row per input, then one per skipped file (status ``skipped``, the reason, nothing else);
    ``kind`` (trained | zero-shot) fills the last column, ``model``, of every input's row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["input", "status", "reason", "prediction", *(f"p_{name}" for name in class_names),
                     "frame_index", "time_s", "influence", "face_score", "figure", "model"])
    for record in records:
        probs = record["probabilities"] or {}
        frames = record["frames"]

        def column(key: str) -> str:
            return " ".join("" if frame[key] is None else str(frame[key]) for frame in frames)

        writer.writerow([record["input"], record["status"], record["reason"], record["prediction"] or "",
                         *(f"{probs[name]:.6f}" if name in probs else "" for name in class_names),
                         column("frame_index"), column("time_s"), column("influence"), column("face_score"),
                         record.get("figure") or "", kind])
    for file in skipped:
        writer.writerow([file.path, "skipped", file.reason, *[""] * (len(class_names) + 7)])
    return out.getvalue()


def zero_shot_model(params_path: str, clip_checkpoint: str | None, device: str, download: str
                    ) -> tuple[ModelFile, Backbone]:
    """The zero-shot model of the params file (built in memory, as `export --zero-shot` writes it) and its CLIP."""
    params = load_params(params_path)
    spec = replace(backbone_spec(params, params_path), download=download)
    if clip_checkpoint:
        spec = replace(spec, checkpoint=clip_checkpoint)
    loaded = load_backbone(spec, device)
    payload = zero_shot_payload(params, params_path, loaded, spec.seed)
    name = f"zero-shot model of prompt set {payload['zero_shot']['prompt_set']} ({params_path}, built in memory)"
    return model_in_memory(payload, name), loaded


@click.command("predict")
@click.argument("paths", metavar="MODEL INPUTS...", nargs=-1, required=True)
@click.option("--zero-shot", is_flag=True,
              help="No model file (every path is an input): CLIP's zero-shot scores of the text prompts of "
                   "text.prompt_set through the untrained model, with the faces, embed, clip and train.model "
                   "settings of --params; marked zero-shot in every output.")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True,
              help="Parameter file of --zero-shot.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, allow_dash=True), default="-", show_default=True,
              help="Output file; - writes to standard output.")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True,
              help="json (docs/predict.schema.json) or csv (one row per input).")
@click.option("--figure", "figure_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for one PNG per predicted input: its face crops coloured by frame influence.")
@click.option("--sliding", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Also predict windows of this many seconds over each video (emotion over time).")
@click.option("--hop", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Step between sliding windows [default: half the window].")
@click.option("--sliding-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the per-window CSV and plot of each video [default: the --figure folder, else "
                   "the folder of --out, else the current one].")
@click.option("--predict-faceless", is_flag=True,
              help="Also predict clips in which no face was found (on the centred fallback crop, as training does).")
@click.option("--strict", is_flag=True, help="Exit with status 1 when any input got no prediction.")
@click.option("--clip-checkpoint", default=None,
              help="CLIP weights (path, or 'random' for a model trained on random weights) [default: the file "
                   "recorded at export if it exists, else the clip package's cache file; with --zero-shot "
                   "clip.checkpoint]. Their SHA-256 must match the model's.")
@click.option("--download", type=click.Choice(DOWNLOADS), default="auto", show_default=True,
              help="auto: fetch a missing CLIP cache file or face_alignment weights from their official "
                   "addresses, hash-checked; never: only files already in place.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda (CLIP, face detector, model).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Face crops per CLIP forward pass and clips per model pass, across videos.")
@click.option("--workers", type=click.IntRange(min=1), default=min(4, os.cpu_count() or 1),
              show_default="min(4, CPU cores)",
              help="Threads decoding videos and detecting faces while CLIP embeds.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on standard error.")
def predict(paths: tuple[str, ...], zero_shot: bool, params_path: str, out_path: str, fmt: str,
            figure_dir: str | None, sliding: float | None, hop: float | None, sliding_dir: str | None,
            predict_faceless: bool, strict: bool, clip_checkpoint: str | None, download: str, device: str,
            batch_size: int, workers: int, progress: bool) -> None:
    """Predict the emotion of new videos with a model file from `tg-dfer export`.

    \b
    MODEL is the model file; with --zero-shot there is none and every path is an input: the
    prompts of text.prompt_set alone, through the same faces -> CLIP -> model path (the model is
    TG-DFER as initialised, whose frame scores are CLIP's zero-shot scores; `tg-dfer export
    --zero-shot` writes the same model to a file). Zero-shot predictions say so in the JSON
    (`model.zero_shot`), the CSV (`model` column) and the figure titles.

    \b
    INPUTS are video files, folders of frame images (one clip), folders of clips (searched
    recursively for videos and frame folders) or glob patterns. Each clip goes through the
    pipeline's own code with the model's training settings: decode and sample (segment
    centres), detect and crop the face, CLIP image embeddings, the model (the mean of the
    members of an ensemble).

    \b
    Output, per input: class probabilities, the predicted class, the frames the model saw
    (source frame index, time in seconds, raw and min-max-normalised influence of the predicted
    class, face detector score) and a status: ok, partial (a face in some frames), no_face (not
    predicted unless --predict-faceless) or failed (unreadable; the reason names the file). Files
    inside folders that are not clips (no video suffix, an image beside videos) are listed as
    skipped, with the reason. One bad input never stops the others; --strict makes it the exit
    status (skipped files are not inputs and do not count).
    """
    if hop is not None and sliding is None:
        raise click.ClickException("--hop needs --sliding")
    model_path, inputs = (None, paths) if zero_shot else (paths[0], paths[1:])
    if not inputs:
        raise click.UsageError("no INPUTS: give the model file, then the videos (or --zero-shot and the videos)")
    try:
        device = pick_device(device)
        if zero_shot:
            model, loaded = zero_shot_model(params_path, clip_checkpoint, device, download)
        else:
            model = load_model_file(model_path)
            loaded = load_backbone(model.backbone_spec(clip_checkpoint, download), device)
        predictor = Predictor(model, loaded, device, batch_size, with_face_only=not predict_faceless)
        # A missing detector model is fetched (or fails) before any clip is read.
        make_detector(model.detector, device, model.search, download)
    except (ModelFileError, WeightsError, DetectorError) as error:
        raise click.ClickException(str(error)) from error
    if model.zero_shot:
        click.echo(f"predict: {ZERO_SHOT_NOTE} (prompt set {model.zero_shot['prompt_set']})", err=True)
    if model.backbone["random_weights"]:
        click.echo("predict: the model was made with RANDOM CLIP weights: predictions are for testing only", err=True)
    if model.demo_weights:
        click.echo("predict: the model was made on the demo's own backbone, trained on rendered faces: its predictions "
                   "mean something for demo-style clips only", err=True)
    items, skipped = collect_inputs(inputs)
    window = (sliding, hop or sliding / 2) if sliding else None
    found = faces_in_threads(items, lambda: make_detector(model.detector, device, model.search, download),
                             model.policy, workers, model.faces.detection.decode_timeout, window)
    with tqdm(total=len(items), desc="predict", unit="clip", disable=not progress, file=sys.stderr) as bar:
        videos = predictor.run(found, progress=bar.update, keep_crops=figure_dir is not None)

    names = model.class_names
    taken: set[str] = set()
    records = []
    timeline_dir = Path(sliding_dir or figure_dir or (Path(out_path).parent if out_path != "-" else "."))
    for video in videos:
        record = video_record(video, names, sliding is not None)
        slug = _slug(video.name, taken)
        record["figure"] = None
        if figure_dir and video.clip.predicted:
            from tg_dfer.explain import influence_strip

            record["figure"] = str(influence_strip(decoded_crops(video.clip), video.clip.influence,
                                                   _frame_labels(video), _title(video, model),
                                                   Path(figure_dir) / f"{slug}.png"))
        if sliding is not None:
            record["timeline"] = (_write_timeline(video, names, timeline_dir, slug,
                                                  f"{Path(video.name).name}: emotion over time{_notes(model)}")
                                  if video.windows else None)
        records.append(record)
    counts = Counter(record["status"] for record in records)
    missed = [record for record in records if not record["predicted"]]
    document = {"schema": PREDICT_SCHEMA, "package_version": __version__, "model": model.describe(),
                "summary": {"inputs": len(records), "predicted": len(records) - len(missed),
                            **{status: counts.get(status, 0) for status in ("ok", "partial", "no_face", "failed")},
                            "skipped": len(skipped)},
                "videos": records, "skipped": [{"file": file.path, "reason": file.reason} for file in skipped]}
    kind = "zero-shot" if model.zero_shot else "trained"
    text = json.dumps(document, indent=1) + "\n" if fmt == "json" else _csv_text(records, names, skipped, kind)
    if out_path == "-":
        click.echo(text, nl=False)
    else:
        write_text_atomic(out_path, text)
    summary = document["summary"]
    click.echo(f"predict: {summary['inputs']} inputs, {summary['predicted']} predicted ({summary['ok']} ok, "
               f"{summary['partial']} partial, {summary['no_face']} no face, {summary['failed']} failed)"
               + (f", {len(skipped)} files in folders skipped" if skipped else "")
               + ("" if out_path == "-" else f" -> {out_path}"), err=True)
    for record in missed:
        click.echo(f"  {record['status']:<8} {record['input']}: {record['reason']}", err=True)
    for file in skipped:
        click.echo(f"  {'skipped':<8} {file.path}: {file.reason}", err=True)
    if strict and missed:
        sys.exit(1)
