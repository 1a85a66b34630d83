"""The ``demo`` stage: generate the embedded default dataset of synthetic face videos."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.params import DEFAULT_PARAMS, load_params, require, section
from tg_dfer.datasets.demo import DemoConfig, generate_demo


@click.command("demo")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
@click.option("--out", default="data/demo/videos", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the videos and labels.csv.")
def demo(params_path: str, out: str) -> None:
    """Render the demo dataset: synthetic faces in 7 expressions, encoded as mp4 with ffmpeg.

    Each clip is mostly neutral and shows its labelled expression at the apex in a few frames
    only (weak supervision, like DFEW). Writes OUT/<clip_id>.mp4 and OUT/labels.csv
    (clip_id,file,label,test_fold,apex_frames).

    Params (section demo): clips_per_class, num_folds, seed, frame_size, min_frames, max_frames, fps.
    """
    values = section(load_params(params_path), "demo", params_path)
    config = DemoConfig(
        clips_per_class=require(values, "clips_per_class", int, "demo", minimum=1),
        num_folds=require(values, "num_folds", int, "demo", minimum=1),
        seed=require(values, "seed", int, "demo"),
        frame_size=require(values, "frame_size", int, "demo", minimum=64),
        min_frames=require(values, "min_frames", int, "demo", minimum=1),
        max_frames=require(values, "max_frames", int, "demo", minimum=1),
        fps=float(require(values, "fps", (int, float), "demo", minimum=1)),
    )
    if config.max_frames < config.min_frames:
        raise click.ClickException("params: demo.max_frames must be >= demo.min_frames")
    folder = generate_demo(Path(out), config)
    click.echo(f"demo: {config.clips_per_class * 7} clips in {folder}")
