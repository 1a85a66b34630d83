"""The crop policy: from a clip's sampled frames and their detections to square face crops.

The detectors are in :mod:`tg_dfer.detectors`.

Policy for one clip: detect on the sampled frames only, keep one face track (the detection that
best overlaps the median of each frame's largest face), fill frames without a face from their
neighbours, smooth centre, size and angle over time, and cut square crops of ``crop_size``.
Frames without a detection take their box from the detections around them. First the face of
the nearest detection is looked for there (:func:`follow_face`: its grey levels matched by
normalised cross-correlation near where the track would put it); where it is found, the box moves
there (frame status ``tracked``). The box of a frame where it is not found is interpolated
linearly in time between the boxes (detected or tracked) before and after it (``interpolated``),
or is the nearest one's before the first and after the last (``held``). Size and angle always
come from the detections around.
Filled frames record score 0 (a filled box is not a detection). Only a clip with no face anywhere
gets a centred fallback crop (``centre``). How far filled boxes lie from the detector's on clean
footage, with matching and without: docs/robustness.md (benchmarks/face_fill.py).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from tg_dfer.detectors import Detection, DetectorSettings, HaarSearch
from tg_dfer.io.faces_h5 import FILLED, NUM_LANDMARKS, FaceRecord
from tg_dfer.io.images import IMAGE_FORMATS, encode_image
from tg_dfer.sampling import MODES, segment_indices
from tg_dfer.video import Clip, VideoError, open_video


@dataclass(frozen=True)
class CropPolicy:
    """How frames are sampled and faces cropped (the ``faces`` params section with :class:`DetectorSettings`)."""

    frames_per_clip: int = 16
    sampling: str = "centre"  # centre | random (random needs a seed per clip)
    crop_size: int = 224
    margin: float = 1.3  # crop side / detected face box side
    smooth: int = 3  # frames in the moving average of track centre, size and angle
    max_side: int = 640  # frames are decoded no larger than this for detection
    image_format: str = "jpeg"
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        for name, minimum in (("frames_per_clip", 1), ("crop_size", 16), ("margin", 0.5), ("smooth", 1),
                              ("max_side", 64), ("jpeg_quality", 1)):
            if getattr(self, name) < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {getattr(self, name)!r}")
        if self.sampling not in MODES:
            raise ValueError(f"sampling must be one of {', '.join(MODES)}, got {self.sampling!r}")
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}, got {self.image_format!r}")


@dataclass(frozen=True)
class FaceSettings:
    """The whole ``faces`` section: how frames are sampled and cropped, and how faces are found.

    A model file keeps its :meth:`record`, so that ``predict`` finds and crops faces as the
    training data was made; the record leaves out what only a run on this machine needs (seed,
    device, download).
    """

    policy: CropPolicy = field(default_factory=CropPolicy)
    detection: DetectorSettings = field(default_factory=DetectorSettings)

    def record(self) -> dict:
        """The crop policy's fields, ``detector``, ``decode_timeout`` and ``opencv`` (the HaarSearch passes)."""
        return {**asdict(self.policy), "detector": self.detection.detector,
                "decode_timeout": self.detection.decode_timeout, "opencv": asdict(self.detection.opencv)}

    @classmethod
    def from_record(cls, record: dict) -> FaceSettings:
        """The settings of a :meth:`record`; one written before the opencv passes existed ran none."""
        policy = CropPolicy(**{key: value for key, value in record.items() if key in CropPolicy.__dataclass_fields__})
        passes = record.get("opencv")
        search = HaarSearch(**passes) if passes else HaarSearch(equalise=False, tilt=0.0, profile=False)
        found = {key: record[key] for key in ("detector", "decode_timeout") if key in record}
        return cls(policy, DetectorSettings(**found, opencv=search))


# ------------------------------------------------------------------------------------- detectors


# ---------------------------------------------------------------------------------- track policy


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def choose_track(detections: list[list[Detection]], min_iou: float = 0.1) -> list[Detection | None]:
    """One detection per frame that belongs to the clip's main face, or None.

    The main face is the median box of each frame's largest detection; in every frame the
    detection overlapping it most is kept, so a passer-by in a few frames does not steal the track.
    """
    largest = [max(frame, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1])) for frame in detections if frame]
    if not largest:
        return [None] * len(detections)
    reference = np.median(np.stack([d.box for d in largest]), axis=0)
    track: list[Detection | None] = []
    for frame in detections:
        best = max(frame, key=lambda d: box_iou(d.box, reference), default=None)
        track.append(best if best is not None and box_iou(best.box, reference) >= min_iou else None)
    return track


def fill_and_smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Fill NaN rows of (F, K) ``values`` by interpolation, then a centred moving average."""
    frames = np.arange(len(values))
    known = ~np.isnan(values).any(axis=1)
    filled = np.stack([np.interp(frames, frames[known], column[known]) for column in values.T], axis=1)
    if window <= 1 or len(values) < 2:
        return filled
    half = window // 2
    padded = np.pad(filled, ((half, half), (0, 0)), mode="edge")
    kernel = np.ones(window) / window
    return np.stack([np.convolve(column, kernel, mode="valid")[: len(values)] for column in padded.T], axis=1)


def fill_status(found: np.ndarray) -> np.ndarray:
    """(F,) str frame status of a track whose tracked face was ``found`` in these frames: detected,
    interpolated (between two detections), held (before the first or after the last) or centre
    (no detection at all), as :func:`fill_and_smooth` fills them."""
    if not found.any():
        return np.full(len(found), "centre")
    rows, frames = np.flatnonzero(found), np.arange(len(found))
    return np.where(found, "detected", np.where((frames > rows[0]) & (frames < rows[-1]), "interpolated", "held"))


MIN_CORRELATION = 0.5  # of a match in follow_face; measured in docs/robustness.md
SEARCH = 0.75  # face sides around the filled box's centre that follow_face searches, each way


def follow_face(frames: np.ndarray, track: list[Detection | None], guess: np.ndarray) -> np.ndarray:
    """(F, 2) centre of the tracked face in the frames without a detection, NaN where it is not found.

    The face of the nearest detection (its box's grey levels) is matched by normalised
    cross-correlation (``cv2.TM_CCOEFF_NORMED``, invariant to brightness and contrast, so a frame
    gone dark still matches) within SEARCH face sides of ``guess`` ((F, 2), the filled box's
    centre), and kept where the best match reaches MIN_CORRELATION. A flat frame correlates with
    nothing and keeps its filled box, and so does the face of a flat detection.
    """
    found = np.flatnonzero([detection is not None for detection in track])
    centres = np.full((len(frames), 2), np.nan)
    height, width = frames.shape[1:3]
    for row in np.flatnonzero([detection is None for detection in track]):
        nearest = found[np.argmin(np.abs(found - row))]
        x0, y0, x1, y1 = np.clip(np.round(track[nearest].box).astype(int), 0, [width, height, width, height])
        face_w, face_h = x1 - x0, y1 - y0
        if min(face_w, face_h) < 8:
            continue
        template = cv2.cvtColor(frames[nearest, y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
        if template.std() < 1.0:  # no texture to match: it would correlate with anything (or nothing)
            continue
        left = max(int(guess[row, 0] - (0.5 + SEARCH) * face_w), 0)
        top = max(int(guess[row, 1] - (0.5 + SEARCH) * face_h), 0)
        right = min(int(guess[row, 0] + (0.5 + SEARCH) * face_w), width)
        bottom = min(int(guess[row, 1] + (0.5 + SEARCH) * face_h), height)
        if right - left < face_w or bottom - top < face_h:
            continue
        region = cv2.cvtColor(frames[row, top:bottom, left:right], cv2.COLOR_RGB2GRAY)
        _, peak, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(region, template, cv2.TM_CCOEFF_NORMED))
        if peak >= MIN_CORRELATION:
            centres[row] = (left + x + face_w / 2, top + y + face_h / 2)
    return centres


def eye_angle(landmarks: np.ndarray) -> float:
    """Degrees to rotate by so that the eye centres (68-point scheme) are level."""
    left, right = landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
    return math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))


def crop_square(frame: np.ndarray, centre: tuple[float, float], side: float, angle: float, size: int) -> np.ndarray:
    """The square of ``side`` pixels around ``centre``, rotated by ``angle`` degrees, as size x size.

    Parts outside the frame are black, so crops near the border keep the face's scale.
    """
    matrix = cv2.getRotationMatrix2D(centre, angle, size / side)
    matrix[:, 2] += (size / 2.0 - centre[0], size / 2.0 - centre[1])
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def crop_clip(clip_id: str, clip: Clip, detector, policy: CropPolicy,
              rng: np.random.Generator | None = None, follow: bool = True) -> FaceRecord:
    """Sample, detect, track and crop one clip. Decoding errors propagate as ``VideoError``.

    ``follow=False`` leaves out :func:`follow_face` (the boxes of frames without a detection are
    then interpolated or held only): what benchmarks/face_fill.py measures matching against.
    """
    F = policy.frames_per_clip
    indices, _ = segment_indices(clip.info.num_frames, F, policy.sampling, rng)
    frames = clip.read(indices, max_side=policy.max_side)  # (F, h, w, 3), possibly downscaled
    scale = clip.info.width / frames.shape[2]  # decoded pixels -> source pixels
    track = choose_track(detector.detect(frames))
    found = np.array([d is not None for d in track])

    geometry = np.full((F, 4), np.nan)  # centre x, centre y, side, angle
    landmarks = np.full((F, NUM_LANDMARKS, 2), np.nan)
    score = np.zeros(F, dtype=np.float32)
    for row, detection in enumerate(track):
        if detection is None:
            continue
        x0, y0, x1, y1 = detection.box
        angle = detection.angle
        if hasattr(detector, "landmarks"):
            points = detector.landmarks(frames[row], detection.box)
            if points is not None:
                landmarks[row] = points * scale
                angle = eye_angle(points)
        side = max(x1 - x0, y1 - y0) * (policy.margin if detector.name != "none" else 1.0)
        geometry[row] = ((x0 + x1) / 2, (y0 + y1) / 2, side, angle)
        score[row] = detection.score
    frame_status = fill_status(found)
    if not found.any():
        height, width = frames.shape[1:3]
        geometry[:] = (width / 2, height / 2, min(width, height), 0.0)
    elif follow and not found.all():
        filled = fill_and_smooth(geometry, 1)
        centres = follow_face(frames, track, filled[:, :2])
        tracked = ~np.isnan(centres[:, 0])
        geometry[tracked] = np.column_stack([centres[tracked], filled[tracked, 2:]])
        # The frames still without a box are filled between (or held from) detected and tracked ones.
        frame_status = np.where(tracked, "tracked", fill_status(found | tracked))
    geometry = fill_and_smooth(geometry, policy.smooth)

    crops, boxes = [], np.zeros((F, 4), dtype=np.float32)
    for row, (cx, cy, side, angle) in enumerate(geometry):
        crop = crop_square(frames[row], (cx, cy), side, angle, policy.crop_size)
        crops.append(encode_image(crop, policy.image_format, policy.jpeg_quality))
        boxes[row] = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]) * scale
    if found.all():
        status, reason = "ok", ""
    elif found.any():
        tracked, interpolated, held = (int(np.count_nonzero(frame_status == name)) for name in FILLED)
        status, reason = "partial", (f"face found in {found.sum()} of {F} sampled frames; the others' boxes from "
                                     f"the detections around them ({tracked} tracked, {interpolated} interpolated, "
                                     f"{held} held)")
    else:
        status, reason = "no_face", f"no face found in any of {F} sampled frames; centre crop used"
    return FaceRecord(clip_id=clip_id, status=status, reason=reason, source_frames=clip.info.num_frames,
                      frame_index=indices, box=boxes, score=score, landmarks=landmarks, crops=crops,
                      frame_status=frame_status)


def clip_rng(seed: int, clip_id: str) -> np.random.Generator:
    """The random stream of one clip: the same for a clip whatever the order or subset of clips."""
    return np.random.default_rng([seed, zlib.crc32(clip_id.encode("utf-8"))])


def guarded(path: str | Path, clip_id: str, work: Callable[[], FaceRecord]) -> FaceRecord:
    """``work()``, or a ``failed`` record naming ``path`` and the reason: one bad clip never stops a run."""
    try:
        return work()
    except VideoError as error:
        return FaceRecord(clip_id, "failed", str(error))
    except Exception as error:  # one bad clip must not lose the work on the others
        return FaceRecord(clip_id, "failed", f"{path}: {type(error).__name__}: {error}")


def crop_path(path: str | Path, clip_id: str, detector, policy: CropPolicy, seed: int = 0,
              timeout: float | None = None) -> FaceRecord:
    """Open, sample, detect and crop the clip at ``path`` (a video file or a frame folder).

    Never raises for a bad clip: an unreadable one gives status ``failed`` with the reason.
    """
    return guarded(path, clip_id, lambda: crop_clip(clip_id, open_video(path, timeout=timeout), detector, policy,
                                                    clip_rng(seed, clip_id)))
