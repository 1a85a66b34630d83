"""features.h5 (schema ``tg-dfer/features/2``): the cached CLIP image embeddings (docs/contracts.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from tg_dfer import __version__
from tg_dfer.io.h5 import STRING, AtomicH5, SchemaError, decode_strings, open_checked, schema_with_earlier, set_attrs

# /1 lacks the cpu_profile attribute (docs/contracts.md); it reads the same otherwise.
FEATURES_SCHEMA = schema_with_earlier("tg-dfer/features/2", "tg-dfer/features/1")


class FeatureRows:
    """The ``features`` dataset of a features.h5 left in the file and read a batch of clips at a time.

    Training holds one step's clips instead of the whole cache: the file stays in the operating
    system's page cache, which is not the process's resident memory, and a cache larger than the
    memory still trains.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._handle = h5py.File(self.path, "r")
        self._dataset = self._handle["features"]
        self.shape: tuple[int, ...] = tuple(self._dataset.shape)
        self.dtype = self._dataset.dtype

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The (B, V, F, D) features of ``rows`` (B,), in their order; repeats allowed."""
        unique, inverse = np.unique(np.asarray(rows, dtype=np.int64), return_inverse=True)
        return self._dataset[unique][inverse]  # h5py reads increasing, distinct rows only

    def close(self) -> None:
        self._handle.close()


@dataclass
class FeatureCache:
    """Contents of a features.h5 (schema ``tg-dfer/features/2``). N clips, V views, F frames."""

    clip_id: list[str]
    label: np.ndarray  # (N,) int64, -1 unknown
    features: np.ndarray | FeatureRows  # (N, V, F, D) float16, L2-normalised; FeatureRows: left in the file
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

    @property
    def demo_weights(self) -> bool:
        """Made with the demo's own backbone (absent in files written before it existed: False)."""
        return bool(self.attrs.get("demo_weights", False))


FEATURE_ATTRS = (
    "clip_model", "checkpoint_sha256", "random_weights", "demo_weights", "embed_dim", "class_names", "views",
    "frames_per_clip",
)


class FeaturesWriter(AtomicH5):
    """Appends clips to a new features.h5; ``attrs`` must hold every key of ``FEATURE_ATTRS``."""

    def __init__(self, path: str | Path, views: int, frames: int, dim: int, attrs: dict[str, Any]):
        missing = [key for key in FEATURE_ATTRS if key not in attrs]
        if missing:
            raise ValueError(f"features.h5 attributes missing: {missing}")
        super().__init__(path)
        set_attrs(self.handle, {"schema": FEATURES_SCHEMA, "package_version": __version__, **attrs})
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
        """One clip: ``features`` (V, F, D)."""
        self.extend([clip_id], [label], features[None], [num_frames], [frame_index], [face_score])

    def extend(self, clip_id: Sequence[str], label: Sequence[int], features: np.ndarray, num_frames: Sequence[int],
               frame_index: Sequence[np.ndarray], face_score: Sequence[np.ndarray]) -> None:
        """A block of n clips, in one resize and one write per dataset: ``features`` (n, V, F, D).

        Per clip, the six resizes and writes cost far more than the data does (about 27x with the
        resume journal, benchmarks/feature_writes.py); the embed stage writes a forward pass's
        clips at once.
        """
        start, count = self.count, len(clip_id)
        columns = {"clip_id": np.asarray(clip_id, dtype=object), "label": np.asarray(label),
                   "features": np.asarray(features).astype(np.float16, copy=False),
                   "num_frames": np.asarray(num_frames), "frame_index": np.asarray(frame_index),
                   "face_score": np.asarray(face_score)}
        for name, values in columns.items():
            if len(values) != count:
                raise ValueError(f"features.h5 block: {len(values)} rows of {name} for {count} clip ids")
            dataset = self.handle[name]
            dataset.resize(start + count, axis=0)
            dataset[start:start + count] = values
        self.count += count


def write_features(path: str | Path, cache: FeatureCache) -> None:
    """Write a whole :class:`FeatureCache` (used by tests and by tools that make features elsewhere)."""
    N, V, F, D = cache.features.shape
    with FeaturesWriter(path, V, F, D, cache.attrs) as writer:
        writer.extend(cache.clip_id, cache.label, cache.features, cache.num_frames, cache.frame_index,
                      cache.face_score)


def read_features(path: str | Path, frames_in_memory: bool = True) -> FeatureCache:
    """Load a features.h5 into memory, checking its schema and the consistency of its shapes.

    ``frames_in_memory`` False leaves the features themselves in the file (:class:`FeatureRows`);
    the per-clip columns are read either way.
    """
    with open_checked(path, FEATURES_SCHEMA) as handle:
        attrs = dict(handle.attrs)
        missing = [key for key in FEATURE_ATTRS if key not in attrs]
        if missing:
            raise SchemaError(f"{path}: root attributes missing: {', '.join(missing)}")
        cache = FeatureCache(
            clip_id=decode_strings(handle["clip_id"][:]),
            label=handle["label"][:].astype(np.int64),
            features=handle["features"][:] if frames_in_memory else FeatureRows(path),
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
