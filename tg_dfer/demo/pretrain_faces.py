"""The demo backbone's pretraining set: rendered faces of people no demo clip shows, cut and captioned.

No image of a demo clip is ever seen
    Demo clip ``n`` (1-based) is rendered from ``np.random.default_rng([demo_seed, n])``. Person
    ``i`` of the pretraining set comes from ``np.random.default_rng([seed, 0, i + 1])``. numpy's
    SeedSequence pads an entropy list with zeros to four 32-bit words, so the two read as
    ``[demo_seed, n, 0, 0]`` and ``[seed, 0, i + 1, 0]``: the second word is ``n >= 1`` for every
    demo clip and 0 here, and the third is 0 there and ``i + 1 >= 1`` here, whatever both seeds are
    (each kept below 2**32, so that it is one word). The streams, hence people, differ.
    (``[s, n]`` and ``[s, n, 0]`` would be the same stream: the middle zero is what separates.)

What a pretraining image looks like
    What the faces stage cuts from a demo video: the renderer's frame (same size, lighting,
    background, sensor noise, and the 4:2:0 chroma of the H.264 clips), the face found by the
    same Haar detector, a square of ``margin`` times the detected box, jittered as a smoothed
    track jitters, resized to the crop size and stored in the crop policy's image format.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from tg_dfer.demo.captions import caption
from tg_dfer.demo.clips import DEMO_CLASSES
from tg_dfer.demo.face import EXPRESSIONS, PARAM_INDEX, FaceParams, draw_face
from tg_dfer.demo.head import HeadCanvas, render_head
from tg_dfer.demo.identity import FACE_HEIGHT, Look, sample_look
from tg_dfer.demo.scene import NOISE_MARGIN, compose, render_background, sample_lighting, sample_motion
from tg_dfer.detectors import HaarSearch, OpenCVDetector
from tg_dfer.faces import CropPolicy, crop_square
from tg_dfer.io.images import decode_image, encode_image
from tg_dfer.parallel import ordered_map, per_thread
from tg_dfer.prompt_sets import PromptSet

SEED_LIMIT = 2**32  # one SeedSequence word: see the module docstring
# Share of non-neutral pretraining faces drawn at their apex (intensity = min(1, U(0, 1 + share / (1 - share)))).
APEX_SHARE = 0.2
BLINK_RATE = 0.1  # share of faces caught in a blink, as the renderer's clips are
TALK_RATE = 0.15  # share of faces with the renderer's small talking movement of the mouth
# A plan: (label, intensity) of each face a person shows, drawn from the person's own stream.
Plan = Callable[[np.random.Generator], list[tuple[int, float]]]


def identity_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of pretraining person ``index``; never one of a demo clip (module docstring)."""
    if not 0 <= seed < SEED_LIMIT or not 0 <= index < SEED_LIMIT - 1:
        raise ValueError(f"seed and person index must lie in [0, 2**32), got {seed}, {index}")
    return np.random.default_rng([seed, 0, index + 1])


@dataclass
class FaceSet:
    """Captioned face crops. N images of S x S pixels."""

    images: np.ndarray  # (N, S, S, 3) uint8 RGB
    captions: list[str]
    label: np.ndarray  # (N,) int64 index into DEMO_CLASSES
    intensity: np.ndarray  # (N,) float, 0 neutral .. 1 apex
    identity: np.ndarray  # (N,) int64 person index
    skipped: int  # people whose neutral face the detector missed (the faces stage would fall back)

    def __len__(self) -> int:
        return len(self.captions)


@dataclass
class _Scene:
    """One person in front of one backdrop, as the first frame of a demo clip draws it."""

    look: Look
    head: HeadCanvas
    motion: np.ndarray  # (2, 3) head canvas -> frame pixels
    backdrop: np.ndarray
    gain: np.ndarray
    offset: float
    noise: np.ndarray  # (size + NOISE_MARGIN, size + NOISE_MARGIN, 3) float32 sensor noise field
    strength: float  # this person's apex strength
    mirrored: bool


def _scene(rng: np.random.Generator, size: int) -> _Scene:
    unit = FACE_HEIGHT * size / 2
    look = sample_look(rng)
    head = render_head(look, unit, rng)
    motion = sample_motion(1, size, head.origin, rng)
    background = render_background(size, look, motion, unit, rng)
    gain, offset, noise_sigma = sample_lighting(size, rng)
    # As the renderer does for a clip: each face a random window of one noise field (much cheaper).
    side = size + NOISE_MARGIN
    noise = rng.standard_normal((side, side, 3), dtype=np.float32) * noise_sigma
    return _Scene(look, head, motion[0], background * gain + offset, gain, offset, noise,
                  strength=float(rng.uniform(0.85, 1.15)), mirrored=bool(rng.random() < 0.5))


def _frame(scene: _Scene, params: FaceParams, rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB, with the 4:2:0 chroma that the demo's H.264 clips carry."""
    dy, dx = rng.integers(0, NOISE_MARGIN, 2)
    noise = scene.noise[dy:dy + size, dx:dx + size]
    face = draw_face(scene.head, scene.look, params)
    frame = compose(face, scene.motion, scene.backdrop, scene.gain, scene.offset, noise)
    ycrcb = cv2.cvtColor(frame, cv2.COLOR_RGB2YCrCb)
    half = cv2.resize(ycrcb[..., 1:], (size // 2, size // 2), interpolation=cv2.INTER_AREA)
    ycrcb[..., 1:] = cv2.resize(half, (size, size), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def face_params(label: int, intensity: float, scene: _Scene, rng: np.random.Generator) -> FaceParams:
    """The renderer's parameters of a face: the class target at ``intensity``, plus its blinks and talking."""
    values = EXPRESSIONS[DEMO_CLASSES[label]].vector() * scene.strength * intensity
    if scene.mirrored:
        values[PARAM_INDEX["mouth_asym"]] *= -1
    if rng.random() < BLINK_RATE:
        values[PARAM_INDEX["eye_open"]] += float(rng.choice([-0.7, -2.0]))
    if rng.random() < TALK_RATE:
        values[PARAM_INDEX["mouth_open"]] += float(rng.uniform(0.0, 0.16))
    values[PARAM_INDEX["eye_open"]] = np.clip(values[PARAM_INDEX["eye_open"]], -1.0, 1.0)
    return FaceParams.from_vector(values)


def training_plan(rng: np.random.Generator, count: int) -> list[tuple[int, float]]:
    """(label, intensity) of ``count`` training faces of one person, every class and intensity possible."""
    neutral = DEMO_CLASSES.index("neutral")
    plan = []
    for label in rng.integers(0, len(DEMO_CLASSES), count):
        intensity = min(1.0, float(rng.uniform(0.0, 1.0 / (1.0 - APEX_SHARE))))
        plan.append((int(label), 0.0 if label == neutral else intensity))
    return plan


def held_out_plan() -> list[tuple[int, float]]:
    """Every class at its apex (neutral included): the faces each held-out person shows."""
    return [(label, 1.0) for label in range(len(DEMO_CLASSES))]


# One Haar cascade per rendering thread: OpenCV's classifier is not shared safely between threads.
# The plain frontal pass: a person whose neutral face it misses is left out (pretraining needs no
# hard faces), and the pretraining set stays the one the committed backbone was trained on.
_detector = per_thread(lambda: OpenCVDetector(HaarSearch(equalise=False, tilt=0.0)))


def render_person(index: int, plan: Plan, seed: int,
                  frame_size: int, policy: CropPolicy, jitter: float, prompts: PromptSet
                  ) -> list[tuple[np.ndarray, str, int, float]] | None:
    """(crop, caption, label, intensity) of every face that ``plan`` asks of person ``index``.

    The crop box is where the Haar detector finds the person's neutral face; None when it finds
    none (the faces stage would then fall back to a centred crop, which pretraining need not copy).
    """
    rng = identity_rng(seed, index)
    scene = _scene(rng, frame_size)
    found = _detector().detect(_frame(scene, FaceParams(), rng, frame_size)[None])[0]
    if not found:
        return None
    x0, y0, x1, y1 = max(found, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1])).box
    side = max(x1 - x0, y1 - y0) * policy.margin
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    faces = []
    for label, intensity in plan(rng):
        params = face_params(label, intensity, scene, rng)
        frame = _frame(scene, params, rng, frame_size)
        shifted = centre + rng.normal(0.0, jitter, 2) * side
        scaled = side * math.exp(rng.normal(0.0, jitter))
        crop = crop_square(frame, (float(shifted[0]), float(shifted[1])), scaled, 0.0, policy.crop_size)
        crop = decode_image(encode_image(crop, policy.image_format, policy.jpeg_quality))
        text = caption(DEMO_CLASSES[label], intensity, params, prompts, rng)
        faces.append((crop, text, label, intensity))
    return faces


def render_faces(people: range, plan: Plan, seed: int, jitter: float, workers: int, frame_size: int,
                 policy: CropPolicy, prompts: PromptSet,
                 progress: Callable[[int], None] | None = None) -> FaceSet:
    """Render and caption the faces of ``people`` (person indices) in parallel threads, in order.

    Threads suffice: OpenCV and numpy release the GIL. Every person has its own random stream, so
    the set does not depend on the number of threads.
    """
    if prompts.class_names != list(DEMO_CLASSES):
        raise ValueError(f"prompt set {prompts.name} has classes {prompts.class_names}; the demo renders "
                         f"{list(DEMO_CLASSES)}")
    workers = workers or max(1, min(4, os.cpu_count() or 1))

    def one(index: int):
        faces = render_person(index, plan, seed, frame_size, policy, jitter, prompts)
        if progress:
            progress(1)
        return index, faces

    rows, skipped = [], 0
    for index, faces in ordered_map(one, people, workers):
        if faces is None:
            skipped += 1
            continue
        rows.extend((index, *face) for face in faces)
    size = policy.crop_size
    return FaceSet(
        images=np.stack([row[1] for row in rows]) if rows else np.zeros((0, size, size, 3), np.uint8),
        captions=[row[2] for row in rows],
        label=np.array([row[3] for row in rows], dtype=np.int64),
        intensity=np.array([row[4] for row in rows], dtype=np.float64),
        identity=np.array([row[0] for row in rows], dtype=np.int64),
        skipped=skipped,
    )


