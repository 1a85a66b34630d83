"""faces.h5 (schema ``tg-dfer/faces/2``): sampled frames, face crops, boxes, landmarks, scores and
status per clip, and how each frame got its box (docs/contracts.md).

Version 2 added the per-frame datasets ``frame_status`` and ``frames_to_detection``; a version 1
file is still read, with those derived from its scores (:func:`statuses_from_score`), since it did
not record them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tg_dfer import __version__
from tg_dfer.io.h5 import BYTES, STRING, AtomicH5, decode_strings, open_checked, read_row, schema_with_earlier, set_attrs

FACES_SCHEMA = schema_with_earlier("tg-dfer/faces/2", "tg-dfer/faces/1")  # 2 added frame_status, frames_to_detection


NUM_LANDMARKS = 68


@dataclass
class FaceRecord:
    """Everything the faces stage keeps of one clip. F = sampled frames per clip."""

    clip_id: str
    status: str  # ok | partial | no_face | failed
    reason: str = ""
    source_frames: int = 0  # frames in the source clip
    frame_index: np.ndarray | None = None  # (F,) int, source frame of each sample; -1 when failed
    box: np.ndarray | None = None  # (F, 4) float, x0 y0 x1 y1 of the crop square in source pixels
    score: np.ndarray | None = None  # (F,) float, detector confidence, 0 where no face was found
    landmarks: np.ndarray | None = None  # (F, 68, 2) float, NaN when the detector gives none
    crops: list[bytes] = field(default_factory=list)  # F encoded images, empty when failed
    # (F,) str of FRAME_STATUSES: how each frame got its box; None (a record made without it): from the score
    frame_status: np.ndarray | None = None


FACE_STATUSES = ("ok", "partial", "no_face", "failed")

# How a sampled frame got its box; a frame_status value is the position in this tuple (an HDF5 enum).
# none: no crop (the clip failed); detected: the tracked face's detection; tracked: no detection,
# the nearest detection's face found again by matching; interpolated: no detection, the box between
# the detections before and after it; held: no detection, the nearest detection's box, before the
# first or after the last; centre: the clip has no detection, centred fallback crop; unknown: not
# recorded and no detection score (a tg-dfer/faces/1 file). 0 is none, what an unwritten row reads as.
FRAME_STATUSES = ("none", "detected", "tracked", "interpolated", "held", "centre", "unknown")
FRAME_STATUS_TYPE = h5py.enum_dtype({name: code for code, name in enumerate(FRAME_STATUSES)}, basetype="i1")
FILLED = ("tracked", "interpolated", "held")  # a face box taken from the detections around the frame


def statuses_from_score(score: np.ndarray, failed: np.ndarray | bool) -> np.ndarray:
    """What frames read as where their status was not recorded: ``detected`` where ``score`` > 0,
    ``unknown`` elsewhere, ``none`` in a failed clip. (..., F) score; ``failed`` per clip, (...,)."""
    return np.where(np.asarray(failed)[..., None], "none", np.where(score > 0, "detected", "unknown"))


def frames_to_detection(detected: np.ndarray) -> np.ndarray:
    """(..., F) int: how many sampled frames away the nearest detected frame of the clip is (0 on a
    detected frame), -1 where the clip has none."""
    frames = detected.shape[-1]
    gaps = np.abs(np.arange(frames)[:, None] - np.arange(frames)[None, :])
    nearest = np.where(detected[..., None, :], gaps, frames).min(axis=-1)
    return np.where(nearest == frames, -1, nearest)


class FacesWriter(AtomicH5):
    """Appends :class:`FaceRecord` s to a new faces.h5 (schema ``tg-dfer/faces/2``)."""

    def __init__(self, path: str | Path, frames_per_clip: int, attrs: dict[str, Any]):
        super().__init__(path)
        self.frames = frames_per_clip
        self.count = 0
        set_attrs(self.handle, {"schema": FACES_SCHEMA, "package_version": __version__, **attrs})
        self.handle.attrs["frames_per_clip"] = frames_per_clip
        F = frames_per_clip
        layout = {
            "clip_id": ((), STRING),
            "status": ((), STRING),
            "reason": ((), STRING),
            "source_frames": ((), np.int32),
            "frame_index": ((F,), np.int32),
            "box": ((F, 4), np.float32),
            "score": ((F,), np.float32),
            "landmarks": ((F, NUM_LANDMARKS, 2), np.float32),
            "crops": ((F,), BYTES),
            "frame_status": ((F,), FRAME_STATUS_TYPE),
            "frames_to_detection": ((F,), np.int16),
        }
        for name, (shape, dtype) in layout.items():
            self.handle.create_dataset(
                name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype, chunks=(64, *shape),
                compression="gzip" if name == "landmarks" else None,
            )

    def append(self, record: FaceRecord) -> None:
        self.append_row(face_row(record, self.frames))

    def append_row(self, values: dict[str, Any]) -> None:
        """Append one row as made by :func:`face_row` (or read back by :func:`read_row`)."""
        row = self.count
        for dataset in self.handle.values():
            dataset.resize(row + 1, axis=0)
        for name, value in values.items():
            if name == "crops":
                for column, crop in enumerate(value):
                    self.handle["crops"][row, column] = np.frombuffer(crop, dtype=np.uint8)
            else:
                self.handle[name][row] = value
        self.count += 1


def face_row(record: FaceRecord, frames: int) -> dict[str, Any]:
    """The values of one faces.h5 row, with the fill values of a failed clip filled in."""
    if record.status not in FACE_STATUSES:
        raise ValueError(f"unknown face status {record.status!r}")
    F = frames
    failed = record.frame_index is None
    crops = record.crops if record.crops else [b""] * F
    if len(crops) != F:
        raise ValueError(f"{record.clip_id}: {len(crops)} crops, expected {F}")
    score = np.zeros(F) if record.score is None else record.score
    frame_status = (statuses_from_score(score, failed) if record.frame_status is None
                    else np.asarray(record.frame_status))
    if not set(frame_status) <= set(FRAME_STATUSES):
        raise ValueError(f"{record.clip_id}: unknown frame status {sorted(set(frame_status) - set(FRAME_STATUSES))}")
    return {
        "clip_id": record.clip_id,
        "status": record.status,
        "reason": record.reason,
        "source_frames": record.source_frames,
        "frame_index": np.full(F, -1) if failed else record.frame_index,
        "box": np.full((F, 4), np.nan) if record.box is None else record.box,
        "score": score,
        "landmarks": np.full((F, NUM_LANDMARKS, 2), np.nan) if record.landmarks is None else record.landmarks,
        "crops": list(crops),
        "frame_status": np.array([FRAME_STATUSES.index(value) for value in frame_status], dtype=np.int8),
        "frames_to_detection": frames_to_detection(frame_status == "detected"),
    }


class FacesFile:
    """Read access to a faces.h5; arrays are loaded lazily, crops decoded per clip.

    ``frame_status`` ((N, F) str) and ``frames_to_detection`` ((N, F) int) are the file's own, or,
    for a ``tg-dfer/faces/1`` file, which did not record them, derived from its scores.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.handle = open_checked(self.path, FACES_SCHEMA)
        self.attrs = dict(self.handle.attrs)
        self.clip_id = decode_strings(self.handle["clip_id"][:])
        self.status = decode_strings(self.handle["status"][:])
        self.reason = decode_strings(self.handle["reason"][:])
        self.frames_per_clip = int(self.attrs["frames_per_clip"])
        if self.attrs["schema"] == FACES_SCHEMA:
            self.frame_status = np.array(FRAME_STATUSES)[self.handle["frame_status"][:]]
            self.frames_to_detection = self.handle["frames_to_detection"][:].astype(int)
        else:
            failed = np.array([value == "failed" for value in self.status], dtype=bool)
            self.frame_status = statuses_from_score(self.handle["score"][:], failed)
            self.frames_to_detection = frames_to_detection(self.frame_status == "detected")

    def __len__(self) -> int:
        return len(self.clip_id)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.handle[name][:]

    def row(self, row: int) -> dict[str, Any]:
        """Every dataset's value for clip ``row``, as :meth:`FacesWriter.append_row` takes them."""
        return read_row(self.handle, row)

    def crops(self, row: int) -> list[bytes]:
        """The encoded crops of clip ``row`` (empty byte strings when the clip failed)."""
        return [bytes(crop) for crop in self.handle["crops"][row]]

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> "FacesFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
