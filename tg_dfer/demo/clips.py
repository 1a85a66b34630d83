"""The demo dataset: clips of one labelled expression each, its timing (mostly neutral, one short
apex, a weaker and longer confuser of another class), the folds, and the mp4 files with labels.csv."""

from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tg_dfer.demo.face import EXPRESSIONS, PARAM_INDEX, FaceParams, draw_face
from tg_dfer.demo.head import render_head
from tg_dfer.demo.identity import FACE_HEIGHT, sample_look
from tg_dfer.demo.scene import NOISE_MARGIN, compose, render_background, sample_lighting, sample_motion
from tg_dfer.io.atomic import atomic_path
from tg_dfer.video import write_video

DEMO_CLASSES = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")


# The confuser (confuser_track): its peak intensity, below the 0.5 that marks apex_frames, and its
# share of the frames, above the labelled bump's 15-25 %.
CONFUSER_INTENSITY = (0.3, 0.45)
CONFUSER_SHARE = (0.3, 0.45)

# Shorter clips leave no room for a neutral stretch around the expression bump.
MIN_FRAMES = 12


@dataclass
class DemoConfig:
    """Size and seed of a generated demo set."""

    clips_per_class: int = 20
    num_folds: int = 5
    seed: int = 0
    frame_size: int = 256
    min_frames: int = 32
    max_frames: int = 48
    fps: float = 25.0

    def __post_init__(self) -> None:
        for name, minimum in (("clips_per_class", 1), ("num_folds", 1), ("frame_size", 64)):
            if getattr(self, name) < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {getattr(self, name)!r}")
        if not MIN_FRAMES <= self.min_frames <= self.max_frames:
            raise ValueError(f"need {MIN_FRAMES} <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps!r}")


def render_clip(label: int, rng: np.random.Generator, config: DemoConfig
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one clip of class ``DEMO_CLASSES[label]``.

    Returns (frames (T, H, W, 3) uint8 RGB, intensity (T,) float in [0, 1] of the labelled
    expression, intensity (T,) of the confuser). The random draws do not depend on the label, so
    one generator state rendered with two labels gives the same person, motion, noise and
    confuser timing, differing only in the expressions.
    """
    if not 0 <= label < len(DEMO_CLASSES):
        raise ValueError(f"label must be in 0..{len(DEMO_CLASSES) - 1}, got {label}")
    size = config.frame_size
    num_frames = int(rng.integers(config.min_frames, config.max_frames + 1))
    unit = FACE_HEIGHT * size / 2
    look = sample_look(rng)
    head = render_head(look, unit, rng)
    motion = sample_motion(num_frames, size, head.origin, rng)
    background = render_background(size, look, motion, unit, rng)
    gain, offset, noise_sigma = sample_lighting(size, rng)
    backdrop = background * gain + offset
    envelope = _expression_envelope(num_frames, rng)
    distractors = _distractor_tracks(num_frames, rng)
    confuser_name, confuser = confuser_track(label, envelope, rng)

    # Asymmetric expressions (disgust) go either way. The coin is drawn for every class so that
    # the generator's later draws, the noise, do not depend on the label.
    mirrored = rng.random() < 0.5
    # People differ in how strongly they express; intensity 1 is this person's apex.
    target = EXPRESSIONS[DEMO_CLASSES[label]].vector() * rng.uniform(0.85, 1.15)
    if mirrored:
        target[PARAM_INDEX["mouth_asym"]] *= -1
    intensity = envelope if DEMO_CLASSES[label] != "neutral" else np.zeros(num_frames)
    params = intensity[:, None] * target[None, :] + confuser[:, None] * EXPRESSIONS[confuser_name].vector() + distractors
    params[:, PARAM_INDEX["eye_open"]] = np.clip(params[:, PARAM_INDEX["eye_open"]], -1.0, 1.0)

    # Fresh Gaussian noise for every frame costs more than drawing the face; a random window of
    # one larger noise field per clip looks the same and is independent enough between frames.
    noise = rng.standard_normal((size + NOISE_MARGIN, size + NOISE_MARGIN, 3), dtype=np.float32) * noise_sigma
    shifts = rng.integers(0, NOISE_MARGIN, (num_frames, 2))
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for index, (dy, dx) in enumerate(shifts):
        face = draw_face(head, look, FaceParams.from_vector(params[index]))
        frames[index] = compose(face, motion[index], backdrop, gain, offset, noise[dy : dy + size, dx : dx + size])
    return frames, intensity.astype(np.float64), confuser


def generate_demo(out_dir: str | Path, config: DemoConfig, progress: bool = True) -> Path:
    """Write every clip as ``out_dir/<clip_id>.mp4`` plus ``out_dir/labels.csv``; returns ``out_dir``.

    Clip ``n`` (1-based) is rendered from ``np.random.default_rng([seed, n])``, so clips do not
    depend on each other; test folds come from ``np.random.default_rng(seed)`` and spread each
    class's clips evenly over the folds. mp4 files of an earlier run that are not in the new set
    are removed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = _clip_jobs(config)
    # Threads suffice: OpenCV and numpy release the GIL, and encoding runs in an ffmpeg process.
    workers = max(1, min(4, os.cpu_count() or 1))
    rows = []
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(
        total=len(jobs), desc="demo clips", unit="clip", disable=not progress
    ) as bar:
        for row in pool.map(lambda job: _write_clip(out_dir, config, *job), jobs):
            rows.append(row)
            bar.update(1)
    keep = {row["file"] for row in rows}
    for stale in [*out_dir.glob("*.mp4"), *out_dir.glob("*.partial")]:  # and what a killed run left
        if stale.name not in keep:
            stale.unlink()
    with atomic_path(out_dir / "labels.csv") as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["clip_id", "file", "label", "test_fold", "apex_frames"])
        writer.writeheader()
        writer.writerows(rows)
    return out_dir


def _clip_jobs(config: DemoConfig) -> list[tuple[int, int, int]]:
    """(clip number, label, test fold) for every clip, class after class."""
    fold_rng = np.random.default_rng(config.seed)
    jobs = []
    for label in range(len(DEMO_CLASSES)):
        folds = fold_rng.permutation(np.arange(config.clips_per_class) % config.num_folds) + 1
        for position, fold in enumerate(folds):
            jobs.append((label * config.clips_per_class + position + 1, label, int(fold)))
    return jobs


def _write_clip(out_dir: Path, config: DemoConfig, number: int, label: int, fold: int) -> dict:
    clip_id = f"demo_{number:04d}"
    frames, intensity, _ = render_clip(label, np.random.default_rng([config.seed, number]), config)
    # An interrupted run never leaves a truncated clip behind under a real clip name.
    with atomic_path(out_dir / f"{clip_id}.mp4") as temporary:
        write_video(temporary, frames, fps=config.fps, container="mp4")
    apex = " ".join(str(index) for index in np.flatnonzero(intensity >= 0.5))
    return {
        "clip_id": clip_id,
        "file": f"{clip_id}.mp4",
        "label": DEMO_CLASSES[label],
        "test_fold": fold,
        "apex_frames": apex,
    }


def _expression_envelope(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Zero except one bump (raised-cosine rise, apex plateau at 1, fall) at a random time."""
    width = max(5, int(round(rng.uniform(0.15, 0.25) * num_frames)))
    ramp = max(1, int(round(width * rng.uniform(0.25, 0.35))))
    start = int(rng.integers(1, num_frames - width))
    envelope = np.zeros(num_frames)
    envelope[start : start + width] = _bump(width, ramp)
    return envelope


def _bump(width: int, ramp: int) -> np.ndarray:
    """(width,) raised-cosine rise over ``ramp`` frames, a plateau at 1, and the mirrored fall."""
    rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, ramp + 1) / (ramp + 1))
    return np.concatenate([rise, np.ones(width - 2 * ramp), rise[::-1]])


def confuser_track(label: int, envelope: np.ndarray, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """A weaker, longer expression of another class, apart from the labelled bump: (its class name,
    its (T,) intensity).

    In-the-wild clips mix expressions; a pooling that averages every frame lets this one outweigh
    the short apex, where picking the strongest frames does not. Its timing comes from the
    envelope, which every label shares, and neutral clips get one too, so it carries no label.
    """
    others = [name for k, name in enumerate(DEMO_CLASSES) if k != label and name != "neutral"]
    name = others[int(rng.random() * len(others))]
    strength = rng.uniform(*CONFUSER_INTENSITY)
    T = len(envelope)
    shown = np.flatnonzero(envelope)
    before, after = shown[0], T - 1 - shown[-1]  # neutral frames on either side of the bump
    room = max(before, after) - 1  # one neutral frame between the two expressions
    length = min(room, max(4, int(round(rng.uniform(*CONFUSER_SHARE) * T))))
    offset = int(rng.integers(0, room - length + 1))
    start = offset if before >= after else shown[-1] + 2 + offset
    track = np.zeros(T)
    track[start : start + length] = strength * _bump(length, max(1, length // 4))
    return name, track


def _distractor_tracks(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Blinks and small talking movements, given to every class so they carry no label."""
    tracks = np.zeros((num_frames, len(PARAM_INDEX)))
    for _ in range(int(rng.integers(0, 3))):
        start = int(rng.integers(0, num_frames - 3))
        tracks[start : start + 3, PARAM_INDEX["eye_open"]] += (-0.7, -2.0, -0.7)
    if rng.random() < 0.4:
        length = int(rng.integers(6, 12))
        start = int(rng.integers(0, num_frames - length))
        phase = np.linspace(0, 2 * np.pi, length)
        tracks[start : start + length, PARAM_INDEX["mouth_open"]] += 0.08 * (1 - np.cos(phase))
    return tracks
