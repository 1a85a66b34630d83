"""Face detectors, each finding faces on a clip's sampled frames (``make_detector``):

* ``face_alignment``: S3FD boxes and 68 FAN landmarks from the face_alignment package; crops are
  rotated so that the eyes are level. Its weights are read from the torch hub cache, fetched
  there and verified on first use when downloads are allowed (:mod:`tg_dfer.weights`).
* ``opencv``: OpenCV's Haar frontal-face cascade, shipped inside opencv-python: works offline,
  no landmarks. Frames it misses get the passes of :class:`HaarSearch` (contrast-equalised,
  smaller faces, tilted heads, optionally profiles), so clean footage costs one pass a frame.
* ``none``: the input already is face crops (e.g. DFEW's ``clip_224x224`` frame folders)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tg_dfer.weights import DOWNLOADS, WeightFile, WeightsError, ensure_file, name_sha256_prefix

DETECTORS = ("face_alignment", "opencv", "none")


class DetectorError(Exception):
    """A detector that cannot be set up (missing weights, unknown name)."""


@dataclass
class Detection:
    box: np.ndarray  # (4,) x0 y0 x1 y1 in the pixels of the frame given to the detector
    score: float
    landmarks: np.ndarray | None = None  # (68, 2)
    angle: float = 0.0  # degrees the crop turns (counter-clockwise) to make the face upright, as eye_angle


@dataclass(frozen=True)
class HaarSearch:
    """What the ``opencv`` detector tries on a frame where the plain frontal pass found nothing.

    Measured on degraded copies of real clips (docs/robustness.md); switching all three off gives
    the plain frontal detector.
    """

    equalise: bool = True  # frontal cascade on the CLAHE-equalised luma, down to the cascade's 24 px window
    tilt: float = 30.0  # degrees: also on that frame turned by +tilt and -tilt (0: no turned passes)
    profile: bool = False  # profile cascade on that frame and its mirror image, when the passes above miss

    def __post_init__(self):
        if not 0 <= self.tilt <= 90:
            raise ValueError(f"tilt must be 0..90 degrees, got {self.tilt}")


@dataclass(frozen=True)
class DetectorSettings:
    """Which detector finds the faces, and how a clip is read (the rest of the ``faces`` section)."""

    detector: str = "opencv"  # face_alignment | opencv | none
    seed: int = 0  # of the random sampling mode
    decode_timeout: float = 120.0  # seconds per ffmpeg call before a clip is recorded as failed
    device: str = "auto"  # for face_alignment
    download: str = "auto"  # auto | never: fetch face_alignment's weights when they are missing
    opencv: HaarSearch = field(default_factory=HaarSearch)  # the opencv detector's passes on missed frames

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}")
        if self.download not in DOWNLOADS:
            raise ValueError(f"download must be one of {', '.join(DOWNLOADS)}, got {self.download!r}")
        if not self.decode_timeout > 0:
            raise ValueError(f"decode_timeout must be > 0, got {self.decode_timeout!r}")


def haar_cascade(name: str) -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / name
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise DetectorError(f"{path}: OpenCV's Haar cascade is missing (opencv-python 5.x ships none; "
                            "install opencv-python<5)")
    return cascade


def drop_contained(found: list[Detection], share: float = 0.5) -> list[Detection]:
    """The detections, less those lying mostly (``share`` of their area) inside a larger one.

    An upright pass on a tilted face finds only a part of it (a smaller box inside the face) where
    the turned pass finds the whole; two faces side by side both stay.
    """
    def area(box):
        return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])

    def inside(small, large):
        width = min(small[2], large[2]) - max(small[0], large[0])
        height = min(small[3], large[3]) - max(small[1], large[1])
        return width > 0 and height > 0 and width * height >= share * area(small)

    ordered = sorted(found, key=lambda d: area(d.box), reverse=True)
    return [d for i, d in enumerate(ordered) if not any(inside(d.box, larger.box) for larger in ordered[:i])]


class OpenCVDetector:
    """Haar cascades (Viola-Jones); the offline detector.

    The frontal cascade runs on every frame's luma; only frames where it finds nothing get the
    passes of ``search``, so footage it already handles costs what one pass costs.
    """

    name = "opencv"

    def __init__(self, search: HaarSearch = HaarSearch(), scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_size_fraction: float = 0.1):
        self.frontal = haar_cascade("haarcascade_frontalface_default.xml")
        self.profile = haar_cascade("haarcascade_profileface.xml") if search.profile else None
        # Clip limit 2 on 8 x 8 tiles: lifts faces in dark, flat or tinted frames without the noise
        # that global histogram equalisation amplifies (which is why the first pass runs without it).
        self.clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
        self.search = search
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size_fraction = min_size_fraction

    def detect(self, frames: np.ndarray) -> list[list[Detection]]:
        return [self.detect_frame(frame) for frame in frames]

    def detect_frame(self, frame: np.ndarray) -> list[Detection]:
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        # The first pass skips faces under a tenth of the short side: few false alarms, low cost.
        side = max(16, int(self.min_size_fraction * min(gray.shape)))
        found = self.cascade(self.frontal, gray, side)
        if found:
            return found
        search = self.search
        base = self.clahe.apply(gray) if search.equalise else gray
        if search.equalise:
            found += self.cascade(self.frontal, base, min(side, *self.frontal.getOriginalWindowSize()))
        if search.tilt:
            found += self.turned(base, search.tilt, side) + self.turned(base, -search.tilt, side)
        if not found and self.profile is not None:
            width = base.shape[1]
            mirrored = self.cascade(self.profile, np.ascontiguousarray(base[:, ::-1]), side)
            found = self.cascade(self.profile, base, side) + [
                Detection(np.array([width - d.box[2], d.box[1], width - d.box[0], d.box[3]]), d.score)
                for d in mirrored]
        return drop_contained(found)

    def turned(self, gray: np.ndarray, angle: float, side: int) -> list[Detection]:
        """Frontal faces in ``gray`` turned by ``angle`` degrees about its centre, boxes mapped back."""
        height, width = gray.shape
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        turned = cv2.warpAffine(gray, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        back = cv2.invertAffineTransform(matrix)
        found = []
        for d in self.cascade(self.frontal, turned, side):
            x, y = back @ np.array([(d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2, 1.0])
            half = (d.box[2] - d.box[0]) / 2
            found.append(Detection(np.array([x - half, y - half, x + half, y + half]), d.score, angle=angle))
        return found

    def cascade(self, cascade: cv2.CascadeClassifier, gray: np.ndarray, side: int) -> list[Detection]:
        boxes, _, weights = cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side),
            outputRejectLevels=True,
        )
        # Haar level weights are unbounded margins; squash them into (0, 1) as a confidence.
        return [Detection(np.array([x, y, x + w, y + h], dtype=np.float64), float(1.0 - math.exp(-max(weight, 0.0))))
                for (x, y, w, h), weight in zip(boxes, np.ravel(weights))]


def face_alignment_weights() -> dict[str, WeightFile]:
    """The weight files face_alignment loads from the torch hub cache, by model, at the addresses
    face_alignment downloads them from."""
    import torch.hub
    from face_alignment.api import models_urls
    from face_alignment.detection.sfd.sfd_detector import models_urls as detector_urls

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    urls = {"s3fd": detector_urls["s3fd"], "2DFAN-4": models_urls["2DFAN-4"]}
    return {model: WeightFile(f"face_alignment {model} weights", folder / os.path.basename(url), url,
                              name_sha256_prefix(url), "published by the face_alignment project")
            for model, url in urls.items()}


class FaceAlignmentDetector:
    """S3FD detection (batched over the sampled frames) and 2D FAN landmarks on the kept face."""

    name = "face_alignment"

    def __init__(self, device: str = "cpu", threshold: float = 0.5, download: str = "never"):
        import face_alignment
        import torch

        problems = []
        for file in face_alignment_weights().values():
            try:
                ensure_file(file, download)
            except WeightsError as error:
                problems.append(str(error))
        if problems:
            raise DetectorError(" ".join(problems) + " (TORCH_HOME sets another cache folder; the opencv detector "
                                "needs no weights)")
        self.torch = torch
        self.device = device
        self.model = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D, device=device, flip_input=False, compile=False,
            face_detector_kwargs={"filter_threshold": threshold},
        )

    def detect(self, frames: np.ndarray) -> list[list[Detection]]:
        batch = self.torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().to(self.device)
        with self.torch.no_grad():
            boxes = self.model.face_detector.detect_from_batch(batch)
        return [[Detection(np.asarray(box[:4], dtype=np.float64), float(box[4])) for box in frame_boxes]
                for frame_boxes in boxes]

    def landmarks(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        found = self.model.get_landmarks_from_image(frame, detected_faces=[np.append(box, 1.0)])
        if not found:
            return None
        return np.asarray(found[0][:, :2], dtype=np.float64)


class WholeFrameDetector:
    """For inputs that are already face crops: the whole frame is the face."""

    name = "none"

    def detect(self, frames: np.ndarray) -> list[list[Detection]]:
        height, width = frames.shape[1:3]
        return [[Detection(np.array([0.0, 0.0, width, height]), 1.0)] for _ in frames]


def make_detector(name: str, device: str = "cpu", search: HaarSearch = HaarSearch(), download: str = "never",
                  **options):
    """The detector ``name``; ``search`` is what ``opencv`` tries on frames its first pass misses,
    ``download`` (auto | never) whether face_alignment's missing weights are fetched."""
    if name == "opencv":
        return OpenCVDetector(search, **options)
    if name == "face_alignment":
        return FaceAlignmentDetector(device=device, download=download, **options)
    if name == "none":
        return WholeFrameDetector()
    raise DetectorError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")
