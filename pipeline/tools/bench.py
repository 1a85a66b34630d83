"""``tg-dfer bench``: speed of the fast paths against their baselines, with the hardware they ran on."""

from __future__ import annotations

import json
from pathlib import Path

import click

PARTS = ("embed", "train", "decode")


@click.command("bench")
@click.argument("part", type=click.Choice([*PARTS, "all"]), default="all")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda (embed and train).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto", show_default=True,
              help="CLIP weights for embed: auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16.")
@click.option("--embed-clips", default=64, show_default=True, help="embed: clips in the synthetic faces.h5.")
@click.option("--frames", default=16, show_default=True, help="embed and train: frames per clip.")
@click.option("--batch-size", default=256, show_default=True, help="embed: images per forward pass.")
@click.option("--workers", default=0, show_default=True, help="embed and decode: CPU threads (0 = one per core).")
@click.option("--decoder", type=click.Choice(["auto", "opencv", "torchvision"]), default="auto", show_default=True,
              help="embed: crop decoder (auto: batched nvJPEG on CUDA, OpenCV threads on CPU).")
@click.option("--compile/--no-compile", "compile_", default=False, show_default=True,
              help="embed: torch.compile the image tower.")
@click.option("--train-clips", default=9400, show_default=True, help="train: clips in the cached epoch (DFEW: ~9,400).")
@click.option("--loop-clips", default=8, show_default=True,
              help="train: clips of each round's epoch with the image encoder in the loop.")
@click.option("--rounds", default=4, show_default=True,
              help="train: rounds of 12 cached steps, then a loop epoch, taken in turn after one to warm up "
                   "(--repeats applies to the whole epochs only).")
@click.option("--train-batch-size", default=48, show_default=True, help="train: clips per step.")
@click.option("--decode-clips", default=4, show_default=True, help="decode: H.264 clips.")
@click.option("--video-frames", default=120, show_default=True, help="decode: frames per clip.")
@click.option("--video-size", default="640x480", show_default=True, help="decode: WIDTHxHEIGHT of the clips.")
@click.option("--repeats", default=1, show_default=True, help="Timed runs after a warm-up; the fastest counts.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results here as JSON.")
def bench(part: str, device: str, precision: str, embed_clips: int, frames: int, batch_size: int, workers: int,
          decoder: str, compile_: bool, train_clips: int, loop_clips: int, rounds: int, train_batch_size: int,
          decode_clips: int, video_frames: int, video_size: str, repeats: int, json_path: Path | None) -> None:
    """Measure PART (embed | train | decode | all), each fast path against its baseline in one run.

    embed: bare ViT-B/32 forward on ready pixels vs the whole embed path (faces.h5 -> decode ->
    resize/normalise -> encode -> features.h5). train: training steps on cached features vs the
    image encoder in the loop, per clip, in rounds that take each in turn, so both see the same
    machine; their FLOPs against the device's matmul rate; a whole cached epoch's time and peak
    memory with the cache held as the train stage holds it on the device (file on the CPU, memory
    on a GPU), plain and with activation checkpointing, then held the other way. decode: one ffmpeg pass that outputs
    only the sampled frames vs decoding all frames, and clips on threads vs one after another.
    Uses seeded random ViT-B/32 weights (the real architecture) and synthetic data; nothing is
    written outside a temporary folder except --json. Numbers depend on what else the machine
    runs: measure on an idle one.
    """
    from benchmarks import measure as lib
    from benchmarks.measure_train import bench_train
    from tg_dfer.backbone import WeightsError
    from tg_dfer.devices import pick_device
    from tg_dfer.io.atomic import write_text_atomic

    checks = {"--embed-clips": embed_clips, "--frames": frames, "--batch-size": batch_size, "--train-clips": train_clips,
              "--loop-clips": loop_clips, "--rounds": rounds, "--train-batch-size": train_batch_size, "--decode-clips": decode_clips,
              "--video-frames": video_frames, "--repeats": repeats}
    for name, value in checks.items():
        if value < 1:
            raise click.BadParameter(f"must be >= 1, got {value}", param_hint=name)
    try:
        width, height = (int(side) for side in video_size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT, got {video_size!r}", param_hint="--video-size") from None
    try:
        device = pick_device(device)
    except WeightsError as error:
        raise click.BadParameter(str(error), param_hint="--device") from error
    parts = PARTS if part == "all" else (part,)
    results: dict = {"hardware": lib.hardware(device)}
    click.echo("hardware: " + ", ".join(f"{key} {value}" for key, value in results["hardware"].items()))
    # Decode and train first: the train part's peak memory must not include the embed part's model.
    for name in sorted(parts, key=("decode", "train", "embed").index):
        try:
            if name == "decode":
                result = lib.bench_decode(decode_clips, video_frames, frames, width, height, workers=workers,
                                          repeats=repeats)
            elif name == "train":
                result = bench_train(device, train_clips, loop_clips, frames, batch_size=train_batch_size,
                                     repeats=repeats, rounds=rounds)
            else:
                result = lib.bench_embed(device, embed_clips, frames, batch_size, precision=precision,
                                         repeats=repeats, workers=workers, decoder=decoder, compile=compile_)
        except ValueError as error:
            raise click.ClickException(f"bench {name}: {error}") from error
        results[name] = lib.as_dict(result)
        click.echo(f"{name}: " + SUMMARIES[name](results[name]))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(json_path, json.dumps(results, indent=1) + "\n")
        click.echo(f"results -> {json_path}")


SUMMARIES = {
    "embed": lambda r: (f"bare forward {r['bare_images_per_s']:.1f} images/s, embed path {r['embed_images_per_s']:.1f} "
                        f"images/s = {100 * r['embed_fraction_of_bare']:.0f}% of bare ({r['images']} images, batch "
                        f"{r['batch_size']}, {r['precision']}, decoder {r['decoder']}, {r['workers']} workers); resume "
                        f"journal + features.h5 writer alone {r['writer_ms_per_clip']:.2f} ms/clip"),
    "train": lambda r: (f"in {r['rounds']} rounds taken in turn, cached steps {r['round_cached_ms_per_clip']:.3f} ms/clip, "
                        f"the image encoder in the loop {r['loop_ms_per_clip']:.1f} ms/clip = {r['loop_over_cached']:.0f}x "
                        f"slower (rounds: {', '.join(f'{x:.0f}x' for x in r['round_ratios'])}; its FLOPs per clip "
                        f"are {r['flop_ratio']:.0f}x: the ratio if both ran at one rate); "
                        f"a step is {r['step_gflop']:.1f} GFLOP (the encoder adds {r['loop_gflop_per_clip']:.0f} GFLOP "
                        f"per clip) at {r['step_gflop_per_s']:.0f} GFLOP/s = {100 * r['share_of_matmul_rate']:.0f}% of "
                        f"the device's matmul rate ({r['matmul_gflop_per_s']:.0f} GFLOP/s, the mean of "
                        f"{', '.join(f'{x:.0f}' for x in r['round_matmul_gflop_per_s'])}; the loop reaches "
                        f"{100 * r['loop_share_of_matmul_rate']:.0f}%); a whole cached epoch of {r['clips']} clips "
                        f"{r['cached_epoch_s']:.2f} s ({r['cached_ms_per_clip']:.3f} ms/clip; x250 = "
                        f"{r['projected_5_folds_x_50_epochs_s']:.0f} s for 5 folds x 50 epochs); features "
                        f"{r['features_mib']:.0f} MiB, held in {r['feature_storage']} (feature_storage auto) +"
                        f"{r['cache_held_mib']:.0f} MiB; peak RSS +{r['rss_increase_mib']:.0f} MiB from opening the "
                        f"cache on = {r['peak_over_features']:.2f}x the file; with activation checkpointing +"
                        f"{r['checkpointed_rss_increase_mib']:.0f} MiB = {r['checkpointed_peak_over_features']:.2f}x, "
                        f"epoch {r['checkpointed_epoch_s']:.2f} s; held in {r['other_storage']} instead: held +"
                        f"{r['other_held_mib']:.0f} MiB, peak +{r['other_rss_increase_mib']:.0f} MiB = "
                        f"{r['other_peak_over_features']:.2f}x, epoch {r['other_epoch_s']:.2f} s"),
    "decode": lambda r: (f"{r['sampled']} of {r['frames_per_video']} frames at {r['size']}: one pass "
                         f"{r['one_pass_ms_per_clip']:.0f} ms/clip, decode all {r['decode_all_ms_per_clip']:.0f} "
                         f"ms/clip = {r['decode_all_over_one_pass']:.1f}x slower; {r['workers']} threads over clips "
                         f"{r['parallel_ms_per_clip']:.0f} ms/clip = {r['parallel_speedup']:.1f}x"),
}
