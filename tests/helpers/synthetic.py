"""Feature caches with a planted signal, for tests and measurements of the learning half.

Each clip is a bag of frame embeddings of one "face" (a shared direction plus a per-clip identity)
and noise; only a few frames per clip (a contiguous run, like the apex of an expression, or
scattered ones) also carry the direction of the clip's class. A model must find those frames to
classify the clip, and its per-frame influence should point at them. A confuser, a longer run of
frames carrying another class more weakly, makes pooling matter: averaged over the clip it can
outweigh the short burst of the label, frame by frame it cannot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from tg_dfer.io.features_h5 import FeatureCache
from tg_dfer.io.text_h5 import TextCache


@dataclass
class Planted:
    features: FeatureCache
    text: TextCache
    test_fold: np.ndarray  # (N,) fold of each clip, 1..num_folds
    signal: np.ndarray  # (N, F) bool, the frames that carry the label
    confuser: np.ndarray  # (N, F) bool, the frames that carry the confuser class (none without a confuser)
    confuser_class: np.ndarray  # (N,) class of the confuser, never the label; -1 without a confuser


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def planted_cache(num_clips: int = 140, num_classes: int = 7, frames: int = 16, dim: int = 512, views: int = 1,
                  signal_frames: int = 3, strength: float = 0.35, identity: float = 0.5, noise: float = 0.6,
                  confuser: float = 0.0, confuser_frames: int = 8, contiguous: bool = True, num_folds: int = 5,
                  short_clips: float = 0.0, seed: int = 0) -> Planted:
    """A features/text cache pair in the project's schemas with the label in ``signal_frames`` frames.

    ``strength``, ``identity`` and ``noise`` are the sizes of the class, clip-identity and per-frame
    noise components next to a unit shared component (before L2 normalisation). ``confuser`` > 0
    adds a random other class, at that strength, to ``confuser_frames`` frames of every clip that
    are not signal frames: a contiguous run when the signal is one (both runs placed uniformly
    among the placements where they do not overlap), else scattered frames. ``short_clips`` is
    the share of clips with fewer valid frames than ``frames`` (the rest is padding, as in the
    schema). Labels are balanced; folds are assigned round-robin within each class.
    """
    confused = confuser > 0
    needed = signal_frames + (confuser_frames if confused else 0)
    if needed > frames:
        raise ValueError(f"{signal_frames} signal and {confuser_frames} confuser frames do not fit in {frames} frames")
    rng = np.random.default_rng(seed)
    labels = np.arange(num_clips) % num_classes
    rng.shuffle(labels)
    shared = _unit(rng.standard_normal(dim))
    classes = _unit(rng.standard_normal((num_classes, dim)))
    features = np.zeros((num_clips, views, frames, dim), dtype=np.float32)
    signal = np.zeros((num_clips, frames), dtype=bool)
    confusing = np.zeros((num_clips, frames), dtype=bool)
    confuser_class = np.full(num_clips, -1, dtype=np.int64)
    valid = np.full(num_clips, frames, dtype=np.int32)
    short = rng.random(num_clips) < short_clips
    valid[short] = rng.integers(max(needed, 2), frames, size=int(short.sum()))
    per_coordinate = 1.0 / np.sqrt(dim)
    for clip, label in enumerate(labels):
        n = int(valid[clip])
        if contiguous and confused:
            starts = [(a, b) for a in range(n - signal_frames + 1) for b in range(n - confuser_frames + 1)
                      if a + signal_frames <= b or b + confuser_frames <= a]
            start, other_start = starts[int(rng.integers(len(starts)))]
            chosen = np.arange(start, start + signal_frames)
            wrong_frames = np.arange(other_start, other_start + confuser_frames)
        elif contiguous:
            start = int(rng.integers(0, n - signal_frames + 1))
            chosen = np.arange(start, start + signal_frames)
        else:
            chosen = np.sort(rng.choice(n, size=signal_frames, replace=False))
            if confused:
                wrong_frames = np.sort(rng.choice(np.setdiff1d(np.arange(n), chosen), size=confuser_frames,
                                                  replace=False))
        signal[clip, chosen] = True
        if confused:
            confusing[clip, wrong_frames] = True
            confuser_class[clip] = (label + 1 + int(rng.integers(num_classes - 1))) % num_classes
        face = shared + identity * _unit(rng.standard_normal(dim))
        for view in range(views):
            x = face + noise * rng.standard_normal((frames, dim)) * per_coordinate
            x[chosen] += strength * classes[label]
            if confused:
                x[wrong_frames] += confuser * classes[confuser_class[clip]]
            x[n:] = x[n - 1]  # padding repeats the last frame, as the embed stage does
            features[clip, view] = _unit(x)
    folds = np.zeros(num_clips, dtype=np.int64)
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        folds[members] = np.arange(len(members)) % num_folds + 1
    names = [f"class{k}" for k in range(num_classes)]
    attrs = {"clip_model": "planted", "checkpoint_sha256": "0" * 64, "random_weights": True, "demo_weights": False, "embed_dim": dim,
             "class_names": json.dumps(names), "views": views, "frames_per_clip": frames}
    cache = FeatureCache(
        clip_id=[f"clip{clip:05d}" for clip in range(num_clips)],
        label=labels.astype(np.int64),
        features=features.astype(np.float16),
        num_frames=valid,
        frame_index=np.tile(np.arange(frames, dtype=np.int32) * 2, (num_clips, 1)),
        face_score=np.ones((num_clips, frames), dtype=np.float32),
        attrs=attrs,
    )
    text = TextCache(
        class_names=names,
        class_prompts=[f"an expression of {name}." for name in names],
        descriptor_prompts=[f"a face showing {name}" for name in names],
        class_embeddings=_unit(rng.standard_normal((num_classes, dim))).astype(np.float32),
        descriptor_embeddings=_unit(rng.standard_normal((num_classes, dim))).astype(np.float32),
        attrs={"clip_model": "planted", "checkpoint_sha256": "0" * 64, "random_weights": True, "demo_weights": False, "embed_dim": dim,
               "prompt_set": "planted"},
    )
    return Planted(cache, text, folds, signal, confusing, confuser_class)
