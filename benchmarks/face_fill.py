"""Faces where the detector blinks: the boxes of frames without a detection, on degraded copies of real clips.

In-the-wild footage loses the face in some frames (a hand over the eyes, a blur, a dark stretch).
The crop policy gives those frames a box from the detections around them (``tg_dfer.faces``:
``interpolated`` between two, ``held`` from the nearest at the clip's ends). This measures how
often the default offline detector finds the face, how often a frame gets a face box, and how far
the filled boxes lie from the boxes the detector finds on the clean copy of the same frame.

For each clip of the shared media with a face (``--clips``) and each camera, every source frame
is decoded and written again as H.264 (``tg_dfer.video.write_video``): a clean copy, and one copy
per degradation and pattern, with the degradation applied to the source frames of the pattern:

* cameras: ``still``, the clip as recorded (the shared clips' heads move little); ``panning``,
  every frame shifted sideways by half a face side times sin(4 pi t), t the place in the clip from
  0 to 1 (the face sways left and right twice over the clip), edges repeated: what linear
  interpolation between detections cannot follow exactly.

* degradations: ``occluded``, a grey bar over eyes and nose, 1.6 face sides wide (a hand or an
  object in front of the face); ``blurred``, a Gaussian blur of sigma a fifth of the face side
  (out of focus, fast motion); ``dark``, 3 % of the light with sensor noise (a light going out).
  The face's place and size in each source frame are the clean copy's crop boxes, interpolated
  between its sampled frames.
* patterns: ``middle``, the middle 40 % of the clip (the frames there fall between detections);
  ``ends``, the first and the last quarter (before the first and after the last detection);
  ``bursts``, every other eighth of the clip (short gaps).

Every copy is cropped by ``crop_clip`` with the library's defaults (``CropPolicy()``: 16
centre-sampled frames, margin 1.3, smooth 3; the ``opencv`` detector with its default passes), as
the faces stage crops a clip, and once more without matching (``follow=False``: filled boxes only
interpolated or held), which is what matching is measured against. Reported over the sampled
frames of the degraded copies:

* ``hit_rate``: frames with a detection / sampled frames; ``box_rate``: frames with a face box
  (detected, tracked, interpolated or held) / sampled frames; per degradation and pattern and in all;
* ``copies``: the degraded copies, those with a face in some but not all frames, and how many of
  them have a face box in every sampled frame;
* ``error, with matching`` and ``error, interpolation only``: each box against the clean copy's box of the same frame, where that one is a
  detection: the distance of the centres in face sides (the clean crop side / margin) and the IoU
  of the two crop squares; median and 90th percentile of the distance, median and 10th percentile
  of the IoU (the same tail: 90 % of the boxes overlap at least that much). By frame status
  (``detected`` frames show what the degradation and smoothing alone move a box), for the filled
  frames by ``frames_to_detection``, and, for comparison, the centred fallback crop that the
  filled frames would have had.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/face_fill.py [--media ../shared/media] \\
        [--json metrics/bench-face-fill.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from tg_dfer.detectors import make_detector
from tg_dfer.faces import CropPolicy, box_iou, crop_clip
from tg_dfer.io.atomic import atomic_path
from tg_dfer.io.faces_h5 import FILLED, FaceRecord, frames_to_detection
from tg_dfer.video import open_video, write_video

from benchmarks.output import emit

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
FACE_CLIPS = ("cremad/1001_DFA_ANG_XX.flv", "cremad/1001_DFA_DIS_XX.flv", "cremad/1001_DFA_FEA_XX.flv",
              "cremad/1001_DFA_HAP_XX.flv", "cremad/1001_DFA_NEU_XX.flv", "cremad/1001_DFA_SAD_XX.flv",
              "pyfeat/single_face.mp4", "pyfeat/WolfgangLanger_Pexels.mp4")


def occluded(frame: np.ndarray, centre: np.ndarray, side: float, seed: int) -> np.ndarray:
    """A grey bar over eyes and nose (a hand or an object in front of the face)."""
    out = frame.copy()
    x0, x1 = (int(round(centre[0] + offset * side)) for offset in (-0.8, 0.8))
    y0, y1 = (int(round(centre[1] + offset * side)) for offset in (-0.4, 0.15))
    out[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = (128, 120, 110)
    return out


def blurred(frame: np.ndarray, centre: np.ndarray, side: float, seed: int) -> np.ndarray:
    """Out of focus, or fast motion: a Gaussian blur of sigma a fifth of the face side."""
    return cv2.GaussianBlur(frame, (0, 0), sigmaX=0.2 * side)


def dark(frame: np.ndarray, centre: np.ndarray, side: float, seed: int) -> np.ndarray:
    """A light going out: 3 % of the light, with sensor noise."""
    noise = np.random.default_rng(seed).normal(0.0, 2.0, frame.shape)
    return np.clip(frame * 0.03 + noise, 0, 255).astype(np.uint8)


DEGRADATIONS = {"occluded": occluded, "blurred": blurred, "dark": dark}
# Which source frames a pattern degrades, from their place in the clip (0 <= t < 1).
PATTERNS = {"middle": lambda t: (t >= 0.3) & (t < 0.7),
            "ends": lambda t: (t < 0.25) | (t >= 0.75),
            "bursts": lambda t: np.floor(t * 8) % 2 == 1}


def panned(frames: np.ndarray, face_side: float) -> np.ndarray:
    """The ``panning`` camera: frame t shifted by 0.5 face sides x sin(4 pi t / T)."""
    height, width = frames.shape[1:3]
    shift = 0.5 * face_side * np.sin(4 * np.pi * np.arange(len(frames)) / len(frames))
    return np.stack([cv2.warpAffine(frame, np.array([[1.0, 0.0, dx], [0.0, 1.0, 0.0]]), (width, height),
                                    borderMode=cv2.BORDER_REPLICATE) for frame, dx in zip(frames, shift)])


CAMERAS = ("still", "panning")
VARIANTS = {"with matching": True, "interpolation only": False}  # crop_clip's follow


def face_track(record: FaceRecord, frames: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) face centre and (T,) face side in every source frame: the crop boxes of ``record``'s
    detected frames, interpolated between them."""
    rows = record.frame_status == "detected"
    index, box = record.frame_index[rows], record.box[rows]
    every = np.arange(frames)
    centre = np.stack([np.interp(every, index, (box[:, 0] + box[:, 2]) / 2),
                       np.interp(every, index, (box[:, 1] + box[:, 3]) / 2)], axis=1)
    return centre, np.interp(every, index, (box[:, 2] - box[:, 0]) / margin)


def degraded_copy(frames: np.ndarray, centre: np.ndarray, side: np.ndarray, degradation: str,
                  pattern: str) -> np.ndarray:
    """``frames`` with ``degradation`` applied to the source frames that ``pattern`` picks."""
    picked = PATTERNS[pattern](np.arange(len(frames)) / len(frames))
    degrade = DEGRADATIONS[degradation]
    return np.stack([degrade(frame, centre[row], side[row], row) if picked[row] else frame
                     for row, frame in enumerate(frames)])


def encoded(path: Path, frames: np.ndarray, fps: float) -> Path:
    with atomic_path(path) as temporary:
        write_video(temporary, frames, fps=fps, container="mp4")
    return path


def quantiles(values: list[float], low_is_bad: bool = False) -> dict:
    """Count, median and the bad tail (90th percentile; 10th where lower is worse) of ``values``."""
    if not values:
        return {"frames": 0}
    tail = ("p10", 10) if low_is_bad else ("p90", 90)
    return {"frames": len(values), "median": round(float(np.median(values)), 3),
            tail[0]: round(float(np.percentile(values, tail[1])), 3)}


def errors(pairs: list[tuple[np.ndarray, np.ndarray, float]]) -> dict:
    """Centre distance in face sides and IoU of (box, clean box, clean face side) pairs."""
    distance = [float(np.hypot(*((box[:2] + box[2:]) / 2 - (clean[:2] + clean[2:]) / 2))) / side
                for box, clean, side in pairs]
    return {"centre_distance_faces": quantiles(distance), "iou": quantiles([box_iou(box, clean) for box, clean, _ in
                                                                            pairs], low_is_bad=True)}


def gap_name(gap: int) -> str:
    return f"{gap}" if gap < 4 else "4+"


def cropped(path: Path, detector, policy: CropPolicy, follow: bool = True) -> FaceRecord:
    """The faces stage's record of the clip ``path`` (``follow``: see crop_clip)."""
    return crop_clip(path.stem, open_video(path), detector, policy, follow=follow)


def add_errors(found: dict[str, list], record: FaceRecord, clean: FaceRecord, fallback: np.ndarray,
               margin: float) -> None:
    """Pairs (box, clean box, clean face side) of ``record``'s frames where the clean copy has a
    detection, by frame status, by frames to a detection for the filled ones, and the centred
    fallback box beside each filled one."""
    gaps = frames_to_detection(record.frame_status == "detected")
    for frame, status in enumerate(record.frame_status):
        if clean.frame_status[frame] != "detected":
            continue  # no clean detection to measure against
        truth = (clean.box[frame], (clean.box[frame][2] - clean.box[frame][0]) / margin)
        found.setdefault(status, []).append((record.box[frame], *truth))
        if status in FILLED:
            found.setdefault(f"filled, {gap_name(gaps[frame])} from a detection", []).append((record.box[frame], *truth))
            found.setdefault("centred fallback in the filled frames", []).append((fallback, *truth))


def rates(count: Counter) -> dict:
    boxed = count["detected"] + sum(count[name] for name in FILLED)
    return {"frames": count["frames"], "hit_rate": round(count["detected"] / count["frames"], 4),
            "box_rate": round(boxed / count["frames"], 4), **{name: count[name] for name in ("detected", *FILLED, "centre")}}


def measure(media: Path, clips: tuple[str, ...], work: Path) -> dict:
    """Rates, copies and errors (module docstring) per camera, and the rates of both."""
    policy, detector = CropPolicy(), make_detector("opencv")
    rows = {camera: {} for camera in CAMERAS}
    copies = {camera: Counter() for camera in CAMERAS}
    pairs = {camera: {variant: {} for variant in VARIANTS} for camera in CAMERAS}
    for number, name in enumerate(clips):
        source = open_video(media / name)
        recorded = source.read(range(source.info.num_frames))
        fps = source.info.fps or 25.0
        height, width = recorded.shape[1:3]
        short = min(width, height)
        fallback = np.array([width - short, height - short, width + short, height + short], float) / 2
        face_side = None
        for camera in CAMERAS:
            frames = recorded if camera == "still" else panned(recorded, face_side)
            clean = cropped(encoded(work / f"{number}-{camera}-clean.mp4", frames, fps), detector, policy)
            if not (clean.frame_status == "detected").any():
                sys.exit(f"{media / name}: no face found in the clean copy; pick clips with a face")
            centre, side = face_track(clean, len(frames), policy.margin)
            face_side = face_side or float(np.median(side))  # the still camera's, which the panning one sways by
            for degradation in DEGRADATIONS:
                for pattern in PATTERNS:
                    path = encoded(work / f"{number}-{camera}-{degradation}-{pattern}.mp4",
                                   degraded_copy(frames, centre, side, degradation, pattern), fps)
                    records = {variant: cropped(path, detector, policy, follow) for variant, follow in VARIANTS.items()}
                    for variant, record in records.items():
                        add_errors(pairs[camera][variant], record, clean, fallback, policy.margin)
                    record = records["with matching"]  # rates and copies: the policy as it is
                    row = rows[camera].setdefault(f"{degradation}/{pattern}", Counter())
                    row.update(record.frame_status.tolist())
                    row["frames"] += len(record.frame_status)
                    copies[camera]["all"] += 1
                    if record.status == "partial":
                        copies[camera]["some_but_not_all"] += 1
                        copies[camera]["with_a_box_in_every_frame"] += int(
                            np.isin(record.frame_status, ("detected", *FILLED)).all())
        print(f"{name}: done", file=sys.stderr)
    every = [count for camera in CAMERAS for count in rows[camera].values()]
    return {"rates": rates(sum(every, Counter())),
            "cameras": {camera: {"rates": {"all": rates(sum(rows[camera].values(), Counter())),
                                           **{key: rates(count) for key, count in rows[camera].items()}},
                                 "copies": dict(copies[camera]),
                                 **{f"error, {variant}": {key: errors(found) for key, found in sorted(by.items())}
                                    for variant, by in pairs[camera].items()}}
                        for camera in CAMERAS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=MEDIA, help="the shared media folder")
    parser.add_argument("--clips", nargs="+", default=FACE_CLIPS, help="clips with a face, under the media folder")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    if not args.media.is_dir():
        sys.exit(f"{args.media}: the shared media folder is not there")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tg-dfer-face-fill-") as work:
        result = measure(args.media, tuple(args.clips), Path(work))
    emit({"clips": list(args.clips), "policy": "CropPolicy() defaults, opencv detector with its default passes",
          **result, "seconds": round(time.perf_counter() - started, 1)}, args.json)


if __name__ == "__main__":
    main()
