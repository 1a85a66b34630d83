"""Readers and writers of the HDF5 files passed between stages, with schema checks.

The layouts are contracts relied on outside this repository (docs/contracts.md). Every file
carries a ``schema`` root attribute such as ``tg-dfer/features/1``; a reader refuses a file of
another kind or version with an error that names the file, what it holds and what was expected.

Writers fill a temporary file beside the target and rename it into place when closed without
error, so a later stage never reads a half-written file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tg_dfer import __version__

FACES_SCHEMA = "tg-dfer/faces/1"
FEATURES_SCHEMA = "tg-dfer/features/1"
TEXT_SCHEMA = "tg-dfer/text/1"

NUM_LANDMARKS = 68
STRING = h5py.string_dtype("utf-8")
BYTES = h5py.vlen_dtype(np.uint8)


class SchemaError(Exception):
    """A file that is missing, of the wrong kind, or of an unsupported schema version."""


def open_checked(path: str | Path, expected: str) -> h5py.File:
    """Open an HDF5 file for reading after checking that its ``schema`` attribute is ``expected``."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path}: no such file (expected a {expected} file; run the stage that writes it)")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise SchemaError(f"{path}: not a readable HDF5 file ({error})") from error
    found = handle.attrs.get("schema")
    if found != expected:
        handle.close()
        kind, _, version = expected.rpartition("/")
        if isinstance(found, str) and found.rpartition("/")[0] == kind:
            raise SchemaError(
                f"{path}: schema {found} is not supported (this version reads {expected}); "
                "re-run the stage that wrote it"
            )
        raise SchemaError(f"{path}: holds schema {found!r}, expected {expected}")
    return handle


def _decode(values: np.ndarray) -> list[str]:
    return [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in values]


def _set_attrs(handle: h5py.File, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        handle.attrs[key] = json.dumps(value, default=_plain) if isinstance(value, (dict, list, tuple)) else value


def _plain(value: Any) -> Any:
    """JSON for the numpy scalars and arrays that attributes read back from HDF5 come as."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} cannot be stored as a JSON attribute")


class _AtomicH5:
    """An HDF5 file written under a temporary name and renamed into place on a clean close."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.temporary = self.path.with_name(self.path.name + ".partial")
        self.handle = h5py.File(self.temporary, "w")

    def close(self) -> None:
        self.handle.close()
        os.replace(self.temporary, self.path)

    def abort(self) -> None:
        self.handle.close()
        self.temporary.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


# --------------------------------------------------------------------------------------- faces.h5


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


FACE_STATUSES = ("ok", "partial", "no_face", "failed")


class FacesWriter(_AtomicH5):
    """Appends :class:`FaceRecord` s to a new faces.h5 (schema ``tg-dfer/faces/1``)."""

    def __init__(self, path: str | Path, frames_per_clip: int, attrs: dict[str, Any]):
        super().__init__(path)
        self.frames = frames_per_clip
        self.count = 0
        _set_attrs(self.handle, {"schema": FACES_SCHEMA, "package_version": __version__, **attrs})
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
        }
        for name, (shape, dtype) in layout.items():
            self.handle.create_dataset(
                name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype, chunks=(64, *shape),
                compression="gzip" if name == "landmarks" else None,
            )

    def append(self, record: FaceRecord) -> None:
        if record.status not in FACE_STATUSES:
            raise ValueError(f"unknown face status {record.status!r}")
        F = self.frames
        row = self.count
        for dataset in self.handle.values():
            dataset.resize(row + 1, axis=0)
        failed = record.frame_index is None
        self.handle["clip_id"][row] = record.clip_id
        self.handle["status"][row] = record.status
        self.handle["reason"][row] = record.reason
        self.handle["source_frames"][row] = record.source_frames
        self.handle["frame_index"][row] = np.full(F, -1) if failed else record.frame_index
        self.handle["box"][row] = np.full((F, 4), np.nan) if record.box is None else record.box
        self.handle["score"][row] = np.zeros(F) if record.score is None else record.score
        landmarks = record.landmarks
        self.handle["landmarks"][row] = np.full((F, NUM_LANDMARKS, 2), np.nan) if landmarks is None else landmarks
        crops = record.crops if record.crops else [b""] * F
        if len(crops) != F:
            raise ValueError(f"{record.clip_id}: {len(crops)} crops, expected {F}")
        for column, crop in enumerate(crops):
            self.handle["crops"][row, column] = np.frombuffer(crop, dtype=np.uint8)
        self.count += 1


class FacesFile:
    """Read access to a faces.h5; arrays are loaded lazily, crops decoded per clip."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.handle = open_checked(self.path, FACES_SCHEMA)
        self.attrs = dict(self.handle.attrs)
        self.clip_id = _decode(self.handle["clip_id"][:])
        self.status = _decode(self.handle["status"][:])
        self.reason = _decode(self.handle["reason"][:])
        self.frames_per_clip = int(self.attrs["frames_per_clip"])

    def __len__(self) -> int:
        return len(self.clip_id)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.handle[name][:]

    def crops(self, row: int) -> list[bytes]:
        """The encoded crops of clip ``row`` (empty byte strings when the clip failed)."""
        return [bytes(crop) for crop in self.handle["crops"][row]]

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> "FacesFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------ features.h5


@dataclass
class FeatureCache:
    """Contents of a features.h5 (schema ``tg-dfer/features/1``). N clips, V views, F frames."""

    clip_id: list[str]
    label: np.ndarray  # (N,) int64, -1 unknown
    features: np.ndarray  # (N, V, F, D) float16, L2-normalised
    num_frames: np.ndarray  # (N,) int32, valid frames, the rest is padding
    frame_index: np.ndarray  # (N, F) int32
    face_score: np.ndarray  # (N, F) float32
    attrs: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return json.loads(self.attrs["class_names"])

    @property
    def random_weights(self) -> bool:
        return bool(self.attrs.get("random_weights", False))


FEATURE_ATTRS = (
    "clip_model", "checkpoint_sha256", "random_weights", "embed_dim", "class_names", "views", "frames_per_clip",
)


class FeaturesWriter(_AtomicH5):
    """Appends clips to a new features.h5; ``attrs`` must hold every key of ``FEATURE_ATTRS``."""

    def __init__(self, path: str | Path, views: int, frames: int, dim: int, attrs: dict[str, Any]):
        missing = [key for key in FEATURE_ATTRS if key not in attrs]
        if missing:
            raise ValueError(f"features.h5 attributes missing: {missing}")
        super().__init__(path)
        _set_attrs(self.handle, {"schema": FEATURES_SCHEMA, "package_version": __version__, **attrs})
        self.count = 0
        layout = {
            "clip_id": ((), STRING),
            "label": ((), np.int64),
            "features": ((views, frames, dim), np.float16),
            "num_frames": ((), np.int32),
            "frame_index": ((frames,), np.int32),
            "face_score": ((frames,), np.float32),
        }
        for name, (shape, dtype) in layout.items():
            self.handle.create_dataset(
                name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype, chunks=(16 if shape else 1024, *shape)
            )

    def append(self, clip_id: str, label: int, features: np.ndarray, num_frames: int,
               frame_index: np.ndarray, face_score: np.ndarray) -> None:
        row = self.count
        for dataset in self.handle.values():
            dataset.resize(row + 1, axis=0)
        self.handle["clip_id"][row] = clip_id
        self.handle["label"][row] = label
        self.handle["features"][row] = features.astype(np.float16)
        self.handle["num_frames"][row] = num_frames
        self.handle["frame_index"][row] = frame_index
        self.handle["face_score"][row] = face_score
        self.count += 1


def write_features(path: str | Path, cache: FeatureCache) -> None:
    """Write a whole :class:`FeatureCache` (used by tests and by tools that make features elsewhere)."""
    N, V, F, D = cache.features.shape
    with FeaturesWriter(path, V, F, D, cache.attrs) as writer:
        for row in range(N):
            writer.append(cache.clip_id[row], int(cache.label[row]), cache.features[row], int(cache.num_frames[row]),
                          cache.frame_index[row], cache.face_score[row])


def read_features(path: str | Path) -> FeatureCache:
    """Load a features.h5 into memory, checking its schema and the consistency of its shapes."""
    with open_checked(path, FEATURES_SCHEMA) as handle:
        attrs = dict(handle.attrs)
        missing = [key for key in FEATURE_ATTRS if key not in attrs]
        if missing:
            raise SchemaError(f"{path}: root attributes missing: {', '.join(missing)}")
        cache = FeatureCache(
            clip_id=_decode(handle["clip_id"][:]),
            label=handle["label"][:].astype(np.int64),
            features=handle["features"][:],
            num_frames=handle["num_frames"][:].astype(np.int32),
            frame_index=handle["frame_index"][:].astype(np.int32),
            face_score=handle["face_score"][:].astype(np.float32),
            attrs=attrs,
        )
    N, V, F, D = cache.features.shape
    if cache.features.dtype != np.float16:
        raise SchemaError(f"{path}: features are {cache.features.dtype}, the schema says float16")
    for name, shape in (("label", (N,)), ("num_frames", (N,)), ("frame_index", (N, F)), ("face_score", (N, F))):
        if getattr(cache, name).shape != shape:
            raise SchemaError(f"{path}: dataset {name} has shape {getattr(cache, name).shape}, expected {shape}")
    if len(cache.clip_id) != N:
        raise SchemaError(f"{path}: {len(cache.clip_id)} clip ids for {N} feature rows")
    if int(attrs["embed_dim"]) != D or int(attrs["views"]) != V or int(attrs["frames_per_clip"]) != F:
        raise SchemaError(f"{path}: root attributes disagree with the features shape {cache.features.shape}")
    if N and (cache.num_frames.min() < 1 or cache.num_frames.max() > F):
        raise SchemaError(f"{path}: num_frames must lie in 1..{F}")
    return cache


# ---------------------------------------------------------------------------------------- text h5


@dataclass
class TextCache:
    """Contents of a text h5 (schema ``tg-dfer/text/1``). C classes, D embedding size."""

    class_names: list[str]
    class_prompts: list[str]
    descriptor_prompts: list[str]
    class_embeddings: np.ndarray  # (C, D) float32, L2-normalised
    descriptor_embeddings: np.ndarray  # (C, D) float32, L2-normalised
    attrs: dict[str, Any]


TEXT_ATTRS = ("clip_model", "checkpoint_sha256", "random_weights", "embed_dim", "prompt_set")


def write_text(path: str | Path, cache: TextCache) -> None:
    missing = [key for key in TEXT_ATTRS if key not in cache.attrs]
    if missing:
        raise ValueError(f"text h5 attributes missing: {missing}")
    with _AtomicH5(path) as atomic:
        handle = atomic.handle
        _set_attrs(handle, {"schema": TEXT_SCHEMA, "package_version": __version__, **cache.attrs})
        handle["class_names"] = np.array(cache.class_names, dtype=object).astype(STRING)
        handle["class_prompts"] = np.array(cache.class_prompts, dtype=object).astype(STRING)
        handle["descriptor_prompts"] = np.array(cache.descriptor_prompts, dtype=object).astype(STRING)
        handle["class_embeddings"] = cache.class_embeddings.astype(np.float32)
        handle["descriptor_embeddings"] = cache.descriptor_embeddings.astype(np.float32)


def read_text(path: str | Path) -> TextCache:
    with open_checked(path, TEXT_SCHEMA) as handle:
        cache = TextCache(
            class_names=_decode(handle["class_names"][:]),
            class_prompts=_decode(handle["class_prompts"][:]),
            descriptor_prompts=_decode(handle["descriptor_prompts"][:]),
            class_embeddings=handle["class_embeddings"][:],
            descriptor_embeddings=handle["descriptor_embeddings"][:],
            attrs=dict(handle.attrs),
        )
    C = len(cache.class_names)
    for name in ("class_embeddings", "descriptor_embeddings"):
        if getattr(cache, name).shape[0] != C:
            raise SchemaError(f"{path}: {name} has {getattr(cache, name).shape[0]} rows for {C} classes")
    return cache

