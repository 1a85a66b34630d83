"""Speed measurements behind ``tg-dfer bench``: each compares a fast path with its baseline in one run.

* embed: the bare image-tower forward on ready pixels vs the whole embed path (read faces.h5,
  decode the crops, resize, normalise, encode, write features.h5) on a synthetic faces file.
* train: a training epoch on cached features vs one with the image encoder in the loop, and the
  cached epoch at full size with the process's peak memory.
* decode: one ffmpeg pass that outputs only the sampled, scaled frames vs decoding every frame.

Sizes are arguments, so the same code runs small on a CPU and large on a GPU. Weights are the
seeded random ViT-B/32 of the real architecture: the same cost as OpenAI's.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from tg_dfer import cpu_profile
from tg_dfer.backbone import Backbone, BackboneSpec, encode_images, load_backbone, preprocess
from tg_dfer.embed.images import JournalSink, embed_faces, write_entries
from tg_dfer.io.atomic import atomic_path
from tg_dfer.io.faces_h5 import FaceRecord, FacesFile, FacesWriter
from tg_dfer.io.features_h5 import FeaturesWriter
from tg_dfer.io.images import encode_image
from tg_dfer.resume.journal import Journal
from tg_dfer.resume.runner import run_resumable


def hardware(device: str) -> dict:
    """What the numbers were measured on."""
    info = {"cpu": _cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "device": device,
            "cpu_profile": cpu_profile.record(str(torch.device(device)))}  # capped kernels are slower (docs/benchmarks.md)
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _status_mib(field: str) -> float | None:
    """A memory figure of this process from /proc/self/status (Linux), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Restart the peak-RSS count here (Linux: VmHWM), so loading the model does not count; False if impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float:
    """Peak resident memory since :func:`reset_peak_rss` (else since the start; ru_maxrss is KiB on Linux)."""
    peak = _status_mib("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def current_rss_mib() -> float:
    current = _status_mib("VmRSS")
    return float("nan") if current is None else current


def elapsed(run: Callable[[], None], sync: Callable[[], None]) -> float:
    """Seconds of one run, up to the device's finishing it."""
    started = time.perf_counter()
    run()
    sync()
    return time.perf_counter() - started


def best_time(run: Callable[[], None], repeats: int, sync: Callable[[], None]) -> float:
    """The fastest of ``repeats`` runs after one warm-up: other work on the machine only slows."""
    elapsed(run, sync)
    return min((elapsed(run, sync) for _ in range(repeats)), default=float("inf"))


def synchroniser(device: str) -> Callable[[], None]:
    if torch.device(device).type == "cuda":
        return lambda: torch.cuda.synchronize(torch.device(device))
    return lambda: None


def smooth_faces(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(count, size, size, 3) uint8 images with smooth structure and grain, which JPEG-compress like photos."""
    ys, xs = np.mgrid[0:size, 0:size] / size
    images = np.empty((count, size, size, 3), np.uint8)
    for i in range(count):
        phase = rng.uniform(0, 2 * np.pi, 3)
        base = np.stack([np.sin(6 * xs + phase[0]), np.cos(5 * ys + phase[1]), np.sin(4 * (xs + ys) + phase[2])], -1)
        images[i] = np.clip(127 + 90 * base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    return images


def synthetic_faces(path: str | Path, clips: int, frames: int, size: int = 224, image_format: str = "jpeg",
                    seed: int = 0, distinct: int = 64) -> list[str]:
    """Write a faces.h5 of ``clips`` clips x ``frames`` crops of ``size`` pixels; returns the clip ids.

    The crops cycle through ``distinct`` generated images: encoding is not what is measured.
    """
    rng = np.random.default_rng(seed)
    encoded = [encode_image(image, image_format) for image in smooth_faces(min(distinct, clips * frames), size, rng)]
    ids = [f"clip{i:06d}" for i in range(clips)]
    attrs = {"detector": "none", "crop_size": size, "crop_margin": 1.0, "crop_smooth": 1, "image_format": image_format,
             "sampling": "centre"}
    with FacesWriter(path, frames, attrs) as writer:
        for i, clip_id in enumerate(ids):
            writer.append(FaceRecord(
                clip_id, "ok", source_frames=frames, frame_index=np.arange(frames), box=np.zeros((frames, 4)),
                score=np.ones(frames), crops=[encoded[(i * frames + k) % len(encoded)] for k in range(frames)]))
    return ids


# ------------------------------------------------------------------------------------------ embed


@dataclass
class EmbedBench:
    images: int  # images through the embed path
    batch_size: int
    precision: str
    bare_images_per_s: float
    embed_images_per_s: float
    embed_fraction_of_bare: float
    decoder: str
    workers: int
    writer_ms_per_clip: float  # the stage's resume journal and features.h5 writes alone, per clip, on the main thread


def journal_then_write(path: Path, features: np.ndarray, per_entry: int, attrs: dict) -> None:
    """What the embed stage adds around embed_faces, by the stage's own code, for ``features``
    (N, V, F, D): every ``per_entry`` clips (a forward pass) through :class:`JournalSink` into the
    resume journal, then ``path`` written from the journal by :func:`run_resumable`."""
    clips, views, frames, dim = features.shape
    ids = [f"clip{row}" for row in range(clips)]
    numbers = list(range((clips + per_entry - 1) // per_entry))

    def compute(todo: list[int], keep) -> None:
        sink = JournalSink(keep, {clip_id: row // per_entry for row, clip_id in enumerate(ids)})
        for number in todo:
            rows = slice(number * per_entry, min((number + 1) * per_entry, clips))
            count = rows.stop - rows.start
            sink.extend(ids[rows], np.zeros(count, np.int64), features[rows], np.full(count, frames, np.int32),
                        np.tile(np.arange(frames, dtype=np.int32), (count, 1)), np.ones((count, frames), np.float32))

    journal = Journal(path.with_name(path.name + ".parts"), {"bench": per_entry})
    run_resumable(journal, numbers, compute, lambda entries: write_entries(path, views, frames, dim, attrs, entries))


def bench_embed(device: str = "cpu", clips: int = 64, frames: int = 16, batch_size: int = 256, size: int = 224,
                precision: str = "auto", repeats: int = 2, workers: int = 0, decoder: str = "auto",
                compile: bool = False, loaded: Backbone | None = None) -> EmbedBench:
    """Images per second of the bare forward and of the whole embed path, on the same model and batch size."""
    loaded = loaded or load_backbone(BackboneSpec("ViT-B/32", "random"), device=device, precision=precision)
    sync = synchroniser(device)
    S = loaded.input_resolution
    pixels = preprocess(torch.from_numpy(smooth_faces(batch_size, size, np.random.default_rng(1))).to(device), S)
    batches = max(1, (clips * frames) // batch_size)

    def bare() -> None:
        for _ in range(batches):
            encode_images(loaded, pixels)

    bare_s = best_time(bare, repeats, sync) / (batches * batch_size)
    with tempfile.TemporaryDirectory(prefix="tg-dfer-bench-") as folder:
        faces_path = Path(folder) / "faces.h5"
        ids = synthetic_faces(faces_path, clips, frames, size)
        labels = {clip_id: 0 for clip_id in ids}
        attrs = {**loaded.attrs(), "class_names": ["any"], "views": 1, "frames_per_clip": frames}

        def embed() -> None:
            with FacesFile(faces_path) as faces, \
                    FeaturesWriter(Path(folder) / "features.h5", 1, frames, loaded.embed_dim, attrs) as out:
                embed_faces(faces, labels, loaded, out, frames, 1, batch_size=batch_size, workers=workers,
                            decoder=decoder, compile=compile)

        embed_s = best_time(embed, repeats, sync) / (clips * frames)
        per_pass = max(1, batch_size // frames)
        written = np.zeros((clips, 1, frames, loaded.embed_dim), np.float16)
        write_s = best_time(lambda: journal_then_write(Path(folder) / "written.h5", written, per_pass, attrs),
                            repeats, synchroniser("cpu")) / clips
    used = decoder if decoder != "auto" else ("torchvision" if torch.device(device).type == "cuda" else "opencv")
    return EmbedBench(images=clips * frames, batch_size=batch_size, precision=str(loaded.model.dtype),
                      bare_images_per_s=1 / bare_s, embed_images_per_s=1 / embed_s,
                      embed_fraction_of_bare=bare_s / embed_s, decoder=used, workers=workers or os.cpu_count() or 1,
                      writer_ms_per_clip=1e3 * write_s)


# ------------------------------------------------------------------------------------------ train












# ----------------------------------------------------------------------------------------- decode


@dataclass
class DecodeBench:
    clips: int
    frames_per_video: int
    sampled: int
    size: str  # width x height of the videos
    one_pass_ms_per_clip: float  # the select filter: only the sampled frames leave ffmpeg
    decode_all_ms_per_clip: float  # every frame decoded, the sampled ones kept
    decode_all_over_one_pass: float
    workers: int
    parallel_ms_per_clip: float  # one-pass decoding of the clips on ``workers`` threads
    parallel_speedup: float


def bench_decode(clips: int = 4, frames: int = 120, sampled: int = 16, width: int = 640, height: int = 480,
                 max_side: int = 640, workers: int = 0, repeats: int = 1) -> DecodeBench:
    """ffmpeg decoding of ``sampled`` segment-centre frames of ``frames``-frame H.264 clips."""
    from tg_dfer.parallel import ordered_map
    from tg_dfer.sampling import segment_indices
    from tg_dfer.video import open_video, scaled_size, write_video

    workers = workers or os.cpu_count() or 1
    indices, _ = segment_indices(frames, sampled, "centre")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="tg-dfer-bench-") as folder:
        # Moving smooth content, so the encoder has real motion to code.
        base = smooth_faces(1, max(width, height), rng)[0][:height, :width]
        video = np.stack([np.roll(base, 4 * t, axis=1) for t in range(frames)])
        paths = [Path(folder) / f"clip{i}.mp4" for i in range(clips)]
        with atomic_path(paths[0]) as temporary:
            write_video(temporary, video, container="mp4")
        for path in paths[1:]:
            with atomic_path(path) as temporary:
                temporary.write_bytes(paths[0].read_bytes())
        opened = [open_video(path) for path in paths]
        w, h = scaled_size(width, height, max_side)
        unique = np.unique(indices)

        def one_pass(clip) -> np.ndarray:
            return clip.read(indices, max_side=max_side)

        def sequential() -> None:
            for clip in opened:
                one_pass(clip)

        def decode_all() -> None:
            for clip in opened:
                clip._decode_all_keep(unique, w, h)

        def parallel() -> None:
            for _ in ordered_map(one_pass, opened, workers):
                pass

        nothing = synchroniser("cpu")
        one = best_time(sequential, repeats, nothing) / clips
        every = best_time(decode_all, repeats, nothing) / clips
        threaded = best_time(parallel, repeats, nothing) / clips
    return DecodeBench(clips=clips, frames_per_video=frames, sampled=sampled, size=f"{width}x{height}",
                       one_pass_ms_per_clip=1e3 * one, decode_all_ms_per_clip=1e3 * every,
                       decode_all_over_one_pass=every / one, workers=workers, parallel_ms_per_clip=1e3 * threaded,
                       parallel_speedup=one / threaded)


def as_dict(result) -> dict:
    return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(result).items()}
