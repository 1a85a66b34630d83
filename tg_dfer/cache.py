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
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

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


def decode_strings(values: np.ndarray) -> list[str]:
    """An HDF5 string dataset's values (bytes or str) as str."""
    return [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in values]


def _set_attrs(handle: h5py.File, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        handle.attrs[key] = json.dumps(value, default=_plain) if isinstance(value, (dict, list, tuple)) else value


def _plain(value: Any) -> Any:
    """JSON for the numpy scalars and arrays that attributes read back from HDF5 come as."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} cannot be stored as a JSON attribute")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a small text file under a temporary name and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


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
    return {
        "clip_id": record.clip_id,
        "status": record.status,
        "reason": record.reason,
        "source_frames": record.source_frames,
        "frame_index": np.full(F, -1) if failed else record.frame_index,
        "box": np.full((F, 4), np.nan) if record.box is None else record.box,
        "score": np.zeros(F) if record.score is None else record.score,
        "landmarks": np.full((F, NUM_LANDMARKS, 2), np.nan) if record.landmarks is None else record.landmarks,
        "crops": list(crops),
    }


def read_row(handle: h5py.File, row: int) -> dict[str, Any]:
    """Every dataset's value at ``row`` of a faces or features file: strings as str, crops as bytes."""
    values: dict[str, Any] = {}
    for name, dataset in handle.items():
        value = dataset[row]
        if h5py.check_string_dtype(dataset.dtype):
            value = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        elif h5py.check_vlen_dtype(dataset.dtype):
            value = [bytes(item) for item in value]
        values[name] = value
    return values


class FacesFile:
    """Read access to a faces.h5; arrays are loaded lazily, crops decoded per clip."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.handle = open_checked(self.path, FACES_SCHEMA)
        self.attrs = dict(self.handle.attrs)
        self.clip_id = decode_strings(self.handle["clip_id"][:])
        self.status = decode_strings(self.handle["status"][:])
        self.reason = decode_strings(self.handle["reason"][:])
        self.frames_per_clip = int(self.attrs["frames_per_clip"])

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


def read_features(path: str | Path) -> FeatureCache:
    """Load a features.h5 into memory, checking its schema and the consistency of its shapes."""
    with open_checked(path, FEATURES_SCHEMA) as handle:
        attrs = dict(handle.attrs)
        missing = [key for key in FEATURE_ATTRS if key not in attrs]
        if missing:
            raise SchemaError(f"{path}: root attributes missing: {', '.join(missing)}")
        cache = FeatureCache(
            clip_id=decode_strings(handle["clip_id"][:]),
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


# ------------------------------------------------------------------------- resumable and sharded runs


class ClipJournal:
    """The finished work of a run that has not completed yet: one small ``.npz`` file per numbered
    entry (faces: a clip; embed: the clips of one forward pass).

    HDF5 is not safe against SIGKILL (a kill during a metadata write can leave the whole file
    unreadable), so a run keeps its results here and writes the HDF5 file in one go at the
    end. Each entry's file is written under a temporary name and renamed, so a file that exists is
    complete. The ``fingerprint`` (params, inputs, code) is stored beside them: a journal left by
    a run with another fingerprint is discarded, never mixed in. Values are strings, numbers,
    arrays, or lists of bytes (encoded crops); nothing is pickled.
    """

    def __init__(self, folder: str | Path, fingerprint: dict[str, Any]):
        self.folder = Path(folder)
        meta = self.folder / "fingerprint.json"
        wanted = json.dumps(fingerprint, sort_keys=True, default=_plain)
        self.discarded = self.folder.is_dir() and not (meta.is_file() and meta.read_text() == wanted)
        if self.discarded:
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if not meta.is_file():
            write_text_atomic(meta, wanted)

    def _file(self, number: int) -> Path:
        return self.folder / f"{number:09d}.npz"

    def done(self) -> set[int]:
        """Numbers of the entries stored."""
        return {int(path.stem) for path in self.folder.glob("*.npz")}

    def put(self, number: int, values: dict[str, Any]) -> None:
        arrays = {}
        for name, value in values.items():
            if isinstance(value, list):  # encoded images: one flat buffer and their lengths
                arrays[f"{name}.bytes"] = np.frombuffer(b"".join(value), dtype=np.uint8)
                arrays[f"{name}.lengths"] = np.array([len(item) for item in value], dtype=np.int64)
            else:
                arrays[name] = np.asarray(value)
        temporary = self._file(number).with_suffix(".npz.tmp")
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(temporary, self._file(number))

    def get(self, number: int) -> dict[str, Any]:
        values: dict[str, Any] = {}
        with np.load(self._file(number), allow_pickle=False) as stored:
            for name in stored.files:
                base, _, part = name.partition(".")
                if part == "lengths":
                    continue
                if part == "bytes":
                    data = stored[name].tobytes()
                    ends = np.cumsum(stored[f"{base}.lengths"])
                    values[base] = [data[end - length:end] for end, length in zip(ends, stored[f"{base}.lengths"])]
                else:
                    array = stored[name]
                    values[name] = array.item() if array.ndim == 0 else array
        return values

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class ShardSet:
    """The shard files of one sharded run (``shard`` attribute ``i/n``), opened for merging.

    They must hold the same schema and, but for ``shard``, the same root attributes (the same
    params, weights and inputs), and no clip twice.
    """

    def __init__(self, paths: list[Path], schema: str):
        self.handles = []
        try:
            for index, path in enumerate(paths):
                self.handles.append(open_checked(path, schema))
                found = self.handles[-1].attrs.get("shard")
                if found != f"{index}/{len(paths)}":
                    raise SchemaError(f"{path}: shard attribute is {found!r}, expected {index}/{len(paths)}")
            self.attrs = {key: value for key, value in self.handles[0].attrs.items() if key != "shard"}
            first = _json_values(self.attrs)
            self.where: dict[str, tuple[h5py.File, int]] = {}
            for path, handle in zip(paths, self.handles):
                ours = _json_values({key: value for key, value in handle.attrs.items() if key != "shard"})
                differ = sorted(key for key in set(first) | set(ours) if first.get(key) != ours.get(key))
                if differ:
                    raise SchemaError(f"{path}: attributes {', '.join(differ)} differ from {paths[0]}: "
                                      "the shards were made with different params or inputs")
                for row, clip_id in enumerate(decode_strings(handle["clip_id"][:])):
                    if clip_id in self.where:
                        raise SchemaError(f"{path}: clip {clip_id!r} is also in {self.where[clip_id][0].filename}")
                    self.where[clip_id] = (handle, row)
        except BaseException:
            self.close()
            raise

    def rows(self, order: list[str], allow_missing: bool = False) -> Iterator[dict[str, Any]]:
        """The rows of the clips ``order``, which must be exactly the clips of the shards; with
        ``allow_missing``, clips of ``order`` that no shard holds are left out (embed skips a clip
        whose crops do not decode)."""
        missing = [clip_id for clip_id in order if clip_id not in self.where]
        extra = sorted(set(self.where) - set(order))
        if (missing and not allow_missing) or extra:
            raise SchemaError(f"shards do not match the clips expected: {len(missing)} missing "
                              f"({', '.join(missing[:5])}), {len(extra)} unexpected ({', '.join(extra[:5])})")
        for clip_id in order:
            if clip_id in self.where:
                handle, row = self.where[clip_id]
                yield read_row(handle, row)

    def close(self) -> None:
        for handle in self.handles:
            handle.close()

    def __enter__(self) -> "ShardSet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _json_values(attrs: dict[str, Any]) -> dict[str, str]:
    return {key: json.dumps(value, default=_plain) for key, value in attrs.items()}


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
            class_names=decode_strings(handle["class_names"][:]),
            class_prompts=decode_strings(handle["class_prompts"][:]),
            descriptor_prompts=decode_strings(handle["descriptor_prompts"][:]),
            class_embeddings=handle["class_embeddings"][:],
            descriptor_embeddings=handle["descriptor_embeddings"][:],
            attrs=dict(handle.attrs),
        )
    C = len(cache.class_names)
    for name in ("class_embeddings", "descriptor_embeddings"):
        if getattr(cache, name).shape[0] != C:
            raise SchemaError(f"{path}: {name} has {getattr(cache, name).shape[0]} rows for {C} classes")
    return cache

