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
import torch.nn.functional as F

from tg_dfer.backbone import LoadedClip, encode_images, load_clip, preprocess
from tg_dfer.cache import FaceRecord, FacesFile, FacesWriter, FeatureCache, FeaturesWriter
from tg_dfer.embedding import embed_faces
from tg_dfer.faces import encode_image


def hardware(device: str) -> dict:
    """What the numbers were measured on."""
    info = {"cpu": _cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "device": device}
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


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def best_time(run: Callable[[], None], repeats: int, sync: Callable[[], None]) -> float:
    """The fastest of ``repeats`` runs after one warm-up: other work on the machine only slows."""
    run()
    sync()
    fastest = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        sync()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest


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


def bench_embed(device: str = "cpu", clips: int = 64, frames: int = 16, batch_size: int = 256, size: int = 224,
                precision: str = "auto", repeats: int = 2, workers: int = 0, decoder: str = "auto",
                compile: bool = False, loaded: LoadedClip | None = None) -> EmbedBench:
    """Images per second of the bare forward and of the whole embed path, on the same model and batch size."""
    loaded = loaded or load_clip("ViT-B/32", "random", device=device, precision=precision)
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
    used = decoder if decoder != "auto" else ("torchvision" if torch.device(device).type == "cuda" else "opencv")
    return EmbedBench(images=clips * frames, batch_size=batch_size, precision=str(loaded.model.dtype),
                      bare_images_per_s=1 / bare_s, embed_images_per_s=1 / embed_s,
                      embed_fraction_of_bare=bare_s / embed_s, decoder=used, workers=workers or os.cpu_count() or 1)
