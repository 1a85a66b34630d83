"""The ``demo`` stage: generate the embedded default dataset of synthetic face videos."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.settings.demo import demo_config
from pipeline.settings.params import DEFAULT_PARAMS, load_params
from tg_dfer.demo.clips import generate_demo


@click.command("demo")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
@click.option("--out", default="data/demo/videos", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the videos and labels.csv.")
def demo(params_path: str, out: str) -> None:
    """Render the demo dataset: synthetic faces in 7 expressions, encoded as mp4 with ffmpeg.

    Each clip is mostly neutral and shows its labelled expression at the apex in a few frames
    only (weak supervision, like DFEW), and a weaker, longer expression of another class elsewhere
    (a confuser, which averaging every frame falls for). Writes OUT/<clip_id>.mp4 and
    OUT/labels.csv (clip_id,file,label,test_fold,apex_frames).

    Params (section demo): clips_per_class, num_folds, seed, frame_size, min_frames, max_frames, fps.
    """
    config = demo_config(load_params(params_path), params_path)
    folder = generate_demo(Path(out), config)
    click.echo(f"demo: {config.clips_per_class * 7} clips in {folder}")
