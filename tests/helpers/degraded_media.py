"""Degraded copies of the real clips in ../shared/media, and how well the opencv detector does on them.

Each degradation turns a clip's sampled frames into a harder copy (dark, flat, green night vision,
a small face, a tilted head) and says where the face went (a 2 x 3 affine map of source pixels).
The reference face of every frame is the frontal cascade's box on the clean frame; frames where it
finds none are left out. ``hit_rates`` writes each copy as a frame folder, runs the library's
``crop_clip`` with ``make_detector("opencv")`` on it and counts the frames with a detection
(score > 0) and the frames whose crop holds the face: the crop centre within a quarter of the face
side from the face's centre, and the crop side 1 to 2 face sides (the crop is 1.3 face boxes).

Only calls that main's code has too, so the same script measures before and after::

    PYTHONPATH=<a checkout of the code>:tests python -m helpers.degraded_media [--frames 16] [--clips cremad/x.flv ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from tg_dfer.detectors import make_detector
from tg_dfer.faces import CropPolicy, crop_clip
from tg_dfer.sampling import segment_indices
from tg_dfer.video import open_video

from helpers import MEDIA

FACE_CLIPS = ("cremad/1001_DFA_ANG_XX.flv", "cremad/1001_DFA_DIS_XX.flv", "cremad/1001_DFA_FEA_XX.flv",
              "cremad/1001_DFA_HAP_XX.flv", "cremad/1001_DFA_NEU_XX.flv", "cremad/1001_DFA_SAD_XX.flv",
              "pyfeat/single_face.mp4", "pyfeat/WolfgangLanger_Pexels.mp4")
# Stretches with no face at all (checked by eye): what the detector finds there is a false alarm.
FACE_FREE = (("pyfeat/no_face.mp4", None), ("pyfeat/face_noface.mov", (76, 169)), ("pyfeat/noface_face.mov", (0, 91)))
SMALL_FACE = 60  # pixels: the face side in the shrunk copies
TILT = 30  # degrees


def reference_faces(frames: np.ndarray) -> list[np.ndarray | None]:
    """The largest frontal-cascade box (x0, y0, x1, y1) on each clean frame, or None."""
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    found = []
    for frame in frames:
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        side = max(16, int(0.1 * min(gray.shape)))
        boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
        found.append(None if len(boxes) == 0 else
                     max((np.array([x, y, x + w, y + h], float) for x, y, w, h in boxes), key=lambda b: b[2] - b[0]))
    return found


def noise(shape, seed: int, sigma: float) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sigma, shape).astype(np.float32)


def as_image(values: np.ndarray) -> np.ndarray:
    return np.clip(values, 0, 255).astype(np.uint8)


IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def dark(frame, face, seed):
    """Under-exposed: a fifth of the light, with sensor noise."""
    return as_image(frame.astype(np.float32) * 0.18 + noise(frame.shape, seed, 2.0)), IDENTITY


def low_contrast(frame, face, seed):
    """Fog or a washed-out transfer: a fifth of the contrast around the mean."""
    values = frame.astype(np.float32)
    return as_image((values - values.mean()) * 0.2 + values.mean() + noise(frame.shape, seed, 1.5)), IDENTITY


def night_vision(frame, face, seed):
    """Green monochrome night vision: the luma at low contrast, grainy and a little soft, in green."""
    luma = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) * 0.3 + 25 + noise(frame.shape[:2], seed, 12.0)
    luma = cv2.GaussianBlur(luma, (3, 3), 0)
    return as_image(np.stack([0.2 * luma, luma, 0.2 * luma], axis=-1)), IDENTITY


def shrunk(frame, face, canvas: float):
    """The frame scaled so the face is SMALL_FACE pixels, centred in a frame ``canvas`` times the size."""
    height, width = frame.shape[:2]
    scale = SMALL_FACE / face
    small = cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    out_h, out_w = round(canvas * height), round(canvas * width)
    top, left = (out_h - small.shape[0]) // 2, (out_w - small.shape[1]) // 2
    image = cv2.copyMakeBorder(small, top, out_h - small.shape[0] - top, left, out_w - small.shape[1] - left,
                               cv2.BORDER_REPLICATE)
    return image, np.array([[scale, 0.0, left], [0.0, scale, top]])


def small(frame, face, seed):
    """A 60 px face in a frame of the clip's size."""
    return shrunk(frame, face, 1.0)


def small_wide(frame, face, seed):
    """A 60 px face in a frame twice as wide and high: a wide shot, 30-40 px once decoded at max_side 640."""
    return shrunk(frame, face, 2.0)


def turned(frame, angle: float):
    height, width = frame.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    return cv2.warpAffine(frame, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE), matrix


def tilted(frame, face, seed):
    """The head tilted 30 degrees clockwise (the whole frame turned)."""
    return turned(frame, -TILT)


def tilted_mirrored(frame, face, seed):
    """Mirror image, tilted 30 degrees the other way."""
    image, matrix = turned(frame, TILT)
    width = frame.shape[1]
    mirror = np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return np.ascontiguousarray(image[:, ::-1]), (mirror @ np.vstack([matrix, [0, 0, 1]]))[:2]


DEGRADATIONS: dict[str, Callable] = {"clean": lambda frame, face, seed: (frame, IDENTITY), "dark": dark,
                                     "low_contrast": low_contrast, "night_vision": night_vision, "small": small,
                                     "small_wide": small_wide, "tilted": tilted, "tilted_mirrored": tilted_mirrored}


def write_frames(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for number, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{number:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def crop_holds_face(box: np.ndarray, centre: np.ndarray, side: float) -> bool:
    crop_side = box[2] - box[0]
    offset = np.hypot(*((box[:2] + box[2:]) / 2 - centre))
    return offset <= 0.25 * side and side <= crop_side <= 2.0 * side


def hit_rates(media: Path, work: Path, clips=FACE_CLIPS, frames: int = 16, names=tuple(DEGRADATIONS),
              detector=None) -> dict:
    """{degradation: {"frames", "detected", "crop_holds_face"}} over the sampled frames of ``clips``."""
    detector = detector or make_detector("opencv")
    counts = {name: {"frames": 0, "detected": 0, "crop_holds_face": 0} for name in names}
    for number, clip in enumerate(clips):
        source = open_video(media / clip)
        indices, _ = segment_indices(source.info.num_frames, frames, "centre", None)
        clean = source.read(indices)
        faces = [(frame, box) for frame, box in zip(clean, reference_faces(clean)) if box is not None]
        face_side = float(np.median([box[2] - box[0] for _, box in faces]))
        for name in names:
            made = [DEGRADATIONS[name](frame, face_side, seed) for seed, (frame, _) in enumerate(faces)]
            folder = write_frames(work / f"{number}-{name}", [image for image, _ in made])
            record = crop_clip(folder.name, open_video(folder), detector, CropPolicy(frames_per_clip=len(made)))
            for row, ((_, matrix), (_, box)) in enumerate(zip(made, faces)):
                centre = matrix @ np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 1.0])
                side = (box[2] - box[0]) * np.sqrt(abs(np.linalg.det(matrix[:, :2])))
                counts[name]["frames"] += 1
                counts[name]["detected"] += int(record.score[row] > 0)
                counts[name]["crop_holds_face"] += int(crop_holds_face(record.box[row], centre, side))
    return counts


def false_alarms(media: Path, detector, frames: int = 16) -> dict:
    """{"frames", "with_detection"} over ``frames`` evenly spread frames of each FACE_FREE stretch."""
    count = {"frames": 0, "with_detection": 0}
    for clip, stretch in FACE_FREE:
        source = open_video(media / clip)
        first, end = stretch or (0, source.info.num_frames)
        found = detector.detect(source.read(np.linspace(first, end - 1, frames).round().astype(int), max_side=640))
        count["frames"] += frames
        count["with_detection"] += sum(bool(boxes) for boxes in found)
    return count


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16, help="sampled frames per clip")
    parser.add_argument("--media", type=Path, default=MEDIA)
    parser.add_argument("--clips", nargs="+", default=FACE_CLIPS, help="clips under the media folder")
    parser.add_argument("--search", help="HaarSearch fields instead of the default, e.g. equalise=0,tilt=0,profile=1 "
                                         "(code that has HaarSearch only)")
    args = parser.parse_args()
    if not args.media.is_dir():
        sys.exit(f"{args.media}: the shared media folder is not there")
    detector = make_detector("opencv")
    if args.search:
        from tg_dfer.detectors import HaarSearch

        fields = dict(item.split("=") for item in args.search.split(","))
        detector = make_detector("opencv", search=HaarSearch(**{key: float(value) if key == "tilt" else bool(int(value))
                                                                for key, value in fields.items()}))
    with tempfile.TemporaryDirectory(prefix="tg-dfer-degraded-") as work:
        counts = hit_rates(args.media, Path(work), args.clips, args.frames, detector=detector)
    alarms = false_alarms(args.media, detector, args.frames)
    print(json.dumps({"degradations": counts, "face_free": alarms}, indent=1))
    print("| degradation | frames | detected | crop holds the face |\n|---|---|---|---|")
    for name, count in counts.items():
        print(f"| {name} | {count['frames']} | {100 * count['detected'] / count['frames']:.1f} % | "
              f"{100 * count['crop_holds_face'] / count['frames']:.1f} % |")
    print(f"\nface-free frames with a detection (false alarms): {alarms['with_detection']} of {alarms['frames']}")


if __name__ == "__main__":
    main()
