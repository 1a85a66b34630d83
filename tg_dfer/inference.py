"""Running a trained TG-DFER model on new videos: the exported model file, and faces -> embed -> model.

A model file (schema ``tg-dfer/model/1``, docs/contracts.md) bundles one fold or an ensemble of
folds with everything inference needs: the weights (X^CP and X^FP, the cached and learnt text
embeddings, are buffers inside them), the model config, class names, prompt texts, the face and
frame settings the features were made with, and the identity (SHA-256) of the CLIP weights.

Prediction runs the pipeline's own per-clip code: :func:`tg_dfer.faces.crop_clip` (through
:func:`tg_dfer.faces.guarded`), :func:`tg_dfer.embedding.pending_clip` / ``encode_pending`` and
:func:`tg_dfer.train.predict`. Face detection runs in worker threads (ffmpeg and OpenCV release
the GIL) while the main thread embeds full batches of crops from many clips, so a GPU is fed in
large batches. Test-time sampling is always segment centres, as in evaluation.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from tg_dfer import __version__
from tg_dfer.backbone import LoadedClip, sha256_file
from tg_dfer.cache import FaceRecord
from tg_dfer.embedding import PendingClip, encode_pending, pending_clip
from tg_dfer.faces import CropPolicy, crop_clip, decode_image, guarded
from tg_dfer.model import ModelConfig, TextEncoder
from tg_dfer.parallel import ordered_map, per_thread
from tg_dfer.sampling import segment_indices, subsample
from tg_dfer.train import CHECKPOINT_FORMAT, ClipBank, load_payload, model_from_checkpoint, predict
from tg_dfer.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Clip, ClipInfo, VideoError, open_clip

MODEL_FORMAT = "tg-dfer/model/1"
PREDICTED = ("ok", "partial")  # face statuses that get a prediction (no_face too when asked)


class ModelFileError(Exception):
    """A model file that is missing, unreadable, of another format, or used with other CLIP weights."""


# ------------------------------------------------------------------------------------ model file


def build_model_file(checkpoints: dict[int, dict[str, Any]], which: str, faces: dict[str, Any],
                     frames_per_clip: int, clip: dict[str, Any], provenance: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """The content of a model file: one member per fold checkpoint, with its ``which`` weights.

    ``faces`` holds the crop policy fields plus ``detector`` and ``decode_timeout``;
    ``frames_per_clip`` is F of the features the model was trained on; ``clip`` the ``model``,
    ``sha256``, ``random_weights``, ``source`` and ``seed`` of the CLIP weights. Members must
    agree on classes, CLIP weights and frames per clip. Raises ``ValueError`` naming the conflict.
    """
    if not checkpoints:
        raise ValueError("no fold checkpoints to export")
    if which not in ("best", "last"):
        raise ValueError(f"weights must be best or last, got {which!r}")
    folds = sorted(checkpoints)
    first = checkpoints[folds[0]]
    members = []
    for fold in folds:
        checkpoint = checkpoints[fold]
        if checkpoint["class_names"] != first["class_names"]:
            raise ValueError(f"fold {fold} and fold {folds[0]} have different class lists")
        if checkpoint["clip"]["sha256"] != clip["sha256"]:
            raise ValueError(f"fold {fold} was trained on features of CLIP weights {checkpoint['clip']['sha256']}, "
                             f"not {clip['sha256']}")
        if checkpoint["model_config"]["num_frames"] != first["model_config"]["num_frames"]:
            raise ValueError(f"fold {fold} sees {checkpoint['model_config']['num_frames']} frames per clip, fold "
                             f"{folds[0]} {first['model_config']['num_frames']}: an ensemble needs one frame count")
        members.append({"fold": int(fold), "weights": which,
                        "epoch": int(checkpoint["best_epoch"] if which == "best" else checkpoint["epochs"]),
                        "model_config": dict(checkpoint["model_config"]), "prompt_texts": checkpoint["prompt_texts"],
                        "state": checkpoint["states"][which]})
    if frames_per_clip > int(faces["frames_per_clip"]):
        raise ValueError(f"features of {frames_per_clip} frames per clip from faces of {faces['frames_per_clip']}")
    return {"format": MODEL_FORMAT, "package_version": __version__, "class_names": list(first["class_names"]),
            "clip": dict(clip), "faces": dict(faces), "embed": {"frames_per_clip": int(frames_per_clip)},
            "members": members, "provenance": dict(provenance or {})}


def save_model_file(path: str | Path, payload: dict[str, Any]) -> None:
    """One ``torch.save`` of tensors and plain containers, written under a temporary name first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)


@dataclass
class ModelFile:
    """A loaded model file and its own hash (recorded in every prediction made with it)."""

    path: Path
    sha256: str
    payload: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return list(self.payload["class_names"])

    @property
    def clip(self) -> dict[str, Any]:
        return self.payload["clip"]

    @property
    def policy(self) -> CropPolicy:
        """The crop policy of training, with test-time (segment-centre) sampling."""
        fields = {key: value for key, value in self.payload["faces"].items() if key in CropPolicy.__dataclass_fields__}
        return replace(CropPolicy(**fields), sampling="centre")

    def clip_checkpoint(self) -> str | None:
        """Where to load CLIP from by default: random weights again, the file used at export when
        it is still there, else (None) the clip package's cache file."""
        if self.clip["random_weights"]:
            return "random"
        source = self.clip.get("source", "")
        return source if source and Path(source).is_file() else None

    @property
    def detector(self) -> str:
        return self.payload["faces"]["detector"]

    @property
    def frames_per_clip(self) -> int:
        return int(self.payload["embed"]["frames_per_clip"])

    @property
    def num_frames(self) -> int:
        return int(self.payload["members"][0]["model_config"]["num_frames"])

    def describe(self) -> dict[str, Any]:
        """What a prediction file says about the model that made it."""
        members = self.payload["members"]
        return {"file": str(self.path), "sha256": self.sha256, "folds": [m["fold"] for m in members],
                "weights": members[0]["weights"], "class_names": self.class_names, "clip_model": self.clip["model"],
                "clip_sha256": self.clip["sha256"], "random_clip_weights": bool(self.clip["random_weights"]),
                "detector": self.detector, "frames_per_clip": self.frames_per_clip, "num_frames": self.num_frames}


def load_model_file(path: str | Path) -> ModelFile:
    """Read a model file with ``weights_only=True`` (no code runs) and check its format."""
    payload = load_payload(path, MODEL_FORMAT, ModelFileError, "model file", "make one with `tg-dfer export`",
                           {CHECKPOINT_FORMAT: "a fold checkpoint: bundle it with `tg-dfer export`"})
    return ModelFile(Path(path), sha256_file(path), payload)


def check_clip(model: ModelFile, loaded: LoadedClip) -> None:
    """Refuse CLIP weights other than those the model was trained with (their SHA-256)."""
    expected = model.clip["sha256"]
    if loaded.sha256 != expected or loaded.name != model.clip["model"]:
        raise ModelFileError(
            f"{model.path}: trained on features of CLIP {model.clip['model']} weights with SHA-256 {expected}, "
            f"but the CLIP weights given ({loaded.source}, {loaded.name}) have SHA-256 {loaded.sha256}. Predictions "
            "from other weights would be meaningless: pass the weights the model was trained with (--clip-checkpoint)."
        )


# ---------------------------------------------------------------------------------------- inputs


@dataclass
class InputItem:
    """One clip to predict: a video file or a frame folder, or an input that names nothing readable."""

    name: str  # as given, or as found in a folder or by a glob
    path: Path | None
    error: str = ""


def _is_frame_folder(folder: Path) -> bool:
    return any(entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file() for entry in folder.iterdir())


def _folder_clips(folder: Path) -> list[Path]:
    """A folder of frame images is one clip; otherwise its videos and frame folders, recursively."""
    if _is_frame_folder(folder):
        return [folder]
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        base = Path(root)
        for name in sorted(files):
            if Path(name).suffix.lower() in VIDEO_SUFFIXES:
                found.append(base / name)
        for name in list(dirs):
            if _is_frame_folder(base / name):
                found.append(base / name)
                dirs.remove(name)  # its frames are one clip, not a place to look for more
    return sorted(found, key=str)


def collect_inputs(patterns: Iterable[str]) -> list[InputItem]:
    """Video files, frame folders, folders of clips and glob patterns -> the clips, in order.

    A file named directly is tried whatever its suffix (and fails with the reason if it is no
    video); inside folders only files with a video suffix are taken. An input that names
    nothing gives an item with an error, so it is reported like a clip that failed.
    """
    items: list[InputItem] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.exists():
            matches = [path]
        elif glob.has_magic(pattern):
            matches = [Path(match) for match in sorted(glob.glob(pattern, recursive=True))]
            if not matches:
                items.append(InputItem(pattern, None, f"{pattern}: no file matches this pattern"))
                continue
        else:
            items.append(InputItem(pattern, None, f"{pattern}: no such file or folder"))
            continue
        for match in matches:
            clips = _folder_clips(match) if match.is_dir() else [match]
            if not clips:
                items.append(InputItem(str(match), None, f"{match}: folder holds no videos or frame images"))
            items.extend(InputItem(str(clip), clip) for clip in clips)
    return items


# ------------------------------------------------------------------------------ faces per input


class WindowClip(Clip):
    """Frames ``start`` to ``stop`` of a clip, served from frames decoded beforehand (at ``max_side``)."""

    def __init__(self, path: Path, info: ClipInfo, frames: dict[int, np.ndarray], start: int, stop: int):
        self.path = path
        self.info = replace(info, num_frames=stop - start)
        self.frames = frames
        self.start = start

    def read(self, indices, max_side: int | None = None) -> np.ndarray:
        return np.stack([self.frames[self.start + int(index)] for index in indices])


def window_bounds(num_frames: int, fps: float, seconds: float, hop: float) -> list[tuple[int, int]]:
    """(start, stop) frames of windows of ``seconds`` every ``hop`` seconds; the last one ends at the clip's end."""
    length = max(1, int(round(seconds * fps)))
    step = max(1, int(round(hop * fps)))
    if num_frames <= length:
        return [(0, num_frames)]
    starts = list(range(0, num_frames - length + 1, step))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return [(start, start + length) for start in starts]


def crop_windows(clip: Clip, name: str, bounds: list[tuple[int, int]], detector, policy: CropPolicy
                 ) -> list[FaceRecord]:
    """One faces record per window, from a single decoding pass; only frames later windows need are kept."""
    picks = [segment_indices(stop - start, policy.frames_per_clip, "centre")[0] + start for start, stop in bounds]
    frames: dict[int, np.ndarray] = {}
    records: list[FaceRecord] = []
    for index, frame in clip.stream(np.concatenate(picks), max_side=policy.max_side):
        frames[index] = frame
        while len(records) < len(bounds) and picks[len(records)][-1] <= index:
            start, stop = bounds[len(records)]
            window_id = f"{name}@{start}-{stop}"
            window = WindowClip(clip.path, clip.info, frames, start, stop)
            record = guarded(clip.path, window_id, lambda: crop_clip(window_id, window, detector, policy))
            if record.frame_index is not None:
                record.frame_index = record.frame_index + start
            records.append(record)
            if len(records) < len(bounds):
                first = picks[len(records)][0]
                for old in [kept for kept in frames if kept < first]:
                    del frames[old]
    return records


@dataclass
class ClipFaces:
    """The faces of one input: the whole clip, and each sliding window when asked."""

    item: InputItem
    record: FaceRecord
    fps: float = 0.0
    num_frames: int = 0
    windows: list[tuple[int, int, FaceRecord]] = field(default_factory=list)
    window_error: str = ""


def faces_of(item: InputItem, detector, policy: CropPolicy, timeout: float | None = None,
             window: tuple[float, float] | None = None) -> ClipFaces:
    """Open, sample, detect and crop one input (and its ``(seconds, hop)`` windows); never raises."""
    if item.path is None:
        return ClipFaces(item, FaceRecord(item.name, "failed", item.error))
    opened: list[Clip] = []

    def whole() -> FaceRecord:
        opened.append(open_clip(item.path, timeout=timeout))
        return crop_clip(item.name, opened[0], detector, policy)

    result = ClipFaces(item, guarded(item.path, item.name, whole))
    if not opened:
        return result
    clip = opened[0]
    result.fps, result.num_frames = clip.info.fps, clip.info.num_frames
    if window is not None and result.record.status != "failed":
        if clip.info.fps <= 0:
            result.window_error = f"{item.path}: no frame rate known (a frame folder?): sliding windows need one"
        else:
            bounds = window_bounds(clip.info.num_frames, clip.info.fps, *window)
            try:
                records = crop_windows(clip, item.name, bounds, detector, policy)
            except VideoError as error:  # the whole-clip prediction stands
                result.window_error = str(error)
            except Exception as error:  # one bad clip must not lose the work on the others
                result.window_error = f"{item.path}: {type(error).__name__}: {error}"
            else:
                result.windows = [(start, stop, record) for (start, stop), record in zip(bounds, records)]
    return result


def faces_in_threads(items: list[InputItem], make_detector: Callable[[], Any], policy: CropPolicy, workers: int,
                     timeout: float | None = None, window: tuple[float, float] | None = None) -> Iterator[ClipFaces]:
    """:func:`faces_of` for every item, ``workers`` at a time, yielded in input order.

    Each thread builds its own detector: OpenCV's cascade and face_alignment keep state per call.
    At most 4 x ``workers`` results wait in memory for the consumer.
    """
    detector = per_thread(make_detector)
    return ordered_map(lambda item: faces_of(item, detector(), policy, timeout, window), items, workers,
                       ahead=4 * workers)


# ------------------------------------------------------------------------------------ prediction


@dataclass
class UnitPrediction:
    """The prediction for a clip or one window of it. T = frames the model sees."""

    status: str  # a faces status: ok | partial | no_face | failed
    reason: str
    probs: np.ndarray | None = None  # (C,) float, sums to 1; None when not predicted
    frame_index: np.ndarray | None = None  # (T',) source frames the model saw (padding dropped)
    influence: np.ndarray | None = None  # (T',) raw per-frame score of the predicted class
    face_score: np.ndarray | None = None  # (T',) detector confidence of those frames
    crops: list[bytes] = field(default_factory=list)  # (T',) the encoded face crops of those frames

    @property
    def predicted(self) -> bool:
        return self.probs is not None

    @property
    def pred(self) -> int:
        return int(np.argmax(self.probs))


@dataclass
class VideoPrediction:
    name: str
    path: str | None
    fps: float
    num_frames: int
    clip: UnitPrediction
    windows: list[tuple[int, int, UnitPrediction]] = field(default_factory=list)
    window_error: str = ""


def min_max(values: np.ndarray) -> np.ndarray:
    """Values scaled to [0, 1] over the clip, as the paper's Figure 4; all 0.5 when they are all equal."""
    values = np.asarray(values, dtype=np.float64)
    low, high = float(np.min(values)), float(np.max(values))
    return np.full_like(values, 0.5) if high - low <= 1e-12 else (values - low) / (high - low)


class Predictor:
    """The members of a model file on a device, with the CLIP weights they were trained with."""

    def __init__(self, model: ModelFile, loaded: LoadedClip, device: str = "cpu", batch_size: int = 256,
                 with_face_only: bool = True):
        check_clip(model, loaded)
        self.model = model
        self.loaded = loaded
        self.device = device
        self.batch_size = batch_size
        self.predictable = PREDICTED if with_face_only else PREDICTED + ("no_face",)
        configs = [ModelConfig.from_dict(member["model_config"]) for member in model.payload["members"]]
        encoder = None
        if any(config.needs_text_encoder_at_inference for config in configs):
            encoder = TextEncoder.from_clip(loaded.model).to(device)
        self.members = [
            model_from_checkpoint({"model_config": member["model_config"], "states": {member["weights"]: member["state"]},
                                   "prompt_texts": member["prompt_texts"]}, member["weights"], encoder, device)
            for member in model.payload["members"]]
        self.positions = subsample(model.policy.frames_per_clip, model.frames_per_clip)

    def classify(self, features: np.ndarray, num_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ensemble mean of the members: probs (N, C), influence (N, T) of the predicted class, NaN on
        padding, and the position among the F embedded frames of each frame seen (N, T), -1 on padding."""
        bank = ClipBank.from_arrays(features, num_frames, device=self.device)  # frame_index = position 0..F-1
        rows = np.arange(len(features))
        outs = [predict(member, bank, rows, batch_size=self.batch_size, all_classes=True) for member in self.members]
        probs = np.mean([out.probs for out in outs], axis=0)  # (N, C)
        scores = np.mean([out.frame_scores for out in outs], axis=0)  # (N, T, C)
        pred = probs.argmax(axis=1)
        influence = np.take_along_axis(scores, pred[:, None, None], axis=2)[..., 0]  # (N, T)
        return probs, influence, outs[0].frame_index

    def run(self, faces: Iterable[ClipFaces], progress: Callable[[int], None] | None = None,
            keep_crops: bool = False) -> list[VideoPrediction]:
        """Embed the crops of every predictable clip and window in batches across clips, then classify.

        Only small per-clip facts are kept between the two steps (the crops of the frames seen
        too with ``keep_crops``, for figures), so a folder of many clips fits in memory.
        """
        F = self.model.frames_per_clip
        units: list[_Unit] = []
        videos: list[tuple] = []  # (item, fps, num_frames, window bounds, window error, unit rows)
        pending: list[PendingClip] = []
        features: dict[int, np.ndarray] = {}
        waiting = 0  # inputs whose crops wait in ``pending``: progress counts embedded inputs

        def flush() -> None:
            nonlocal waiting
            for clip, block in zip(pending, encode_pending(self.loaded, pending, 1, F)):
                features[int(clip.clip_id)] = block[0].astype(np.float16)  # (F, D), as cached
            pending.clear()
            if progress:
                progress(waiting)
            waiting = 0

        for found in faces:
            unit_rows = []
            for record in [found.record] + [record for _, _, record in found.windows]:
                unit = _Unit(record.status, record.reason)
                if record.status in self.predictable:
                    clip = pending_clip(str(len(units)), -1, record.crops, record.frame_index, record.score,
                                        record.source_frames, self.positions, 1, 0, self.loaded.input_resolution)
                    pending.append(clip)
                    unit = _Unit(record.status, record.reason, clip.valid, clip.frame_index, clip.face_score,
                                 [record.crops[int(p)] for p in self.positions] if keep_crops else [])
                unit_rows.append(len(units))
                units.append(unit)
                if sum(item.pixels.shape[0] for item in pending) >= self.batch_size:
                    flush()
            bounds = [(start, stop) for start, stop, _ in found.windows]
            videos.append((found.item, found.fps, found.num_frames, bounds, found.window_error, unit_rows))
            if pending:
                waiting += 1
            elif progress:
                progress(1)
        if pending:
            flush()
        done = sorted(features)
        results: dict[int, UnitPrediction] = {}
        if done:
            stacked = np.stack([features.pop(row) for row in done])  # (N, F, D)
            probs, influence, positions = self.classify(stacked, np.array([units[row].valid for row in done]))
            for i, row in enumerate(done):
                unit = units[row]
                picked = positions[i][positions[i] >= 0]
                results[row] = UnitPrediction(unit.status, unit.reason, probs[i], unit.frame_index[picked].astype(np.int64),
                                              influence[i][positions[i] >= 0], unit.face_score[picked],
                                              [unit.crops[int(p)] for p in picked] if unit.crops else [])
        for row, unit in enumerate(units):
            if row not in results:
                reason = unit.reason if unit.status == "failed" else f"{unit.reason}; not predicted without a face"
                results[row] = UnitPrediction(unit.status, reason)
        out = []
        for item, fps, num_frames, bounds, window_error, rows in videos:
            windows = [(start, stop, results[row]) for (start, stop), row in zip(bounds, rows[1:])]
            out.append(VideoPrediction(item.name, str(item.path) if item.path else None, fps, num_frames,
                                       results[rows[0]], windows, window_error))
        return out


@dataclass
class _Unit:
    """What :meth:`Predictor.run` keeps of a clip or window while the others are embedded. F frames."""

    status: str
    reason: str
    valid: int = 0
    frame_index: np.ndarray | None = None  # (F,) source frames embedded
    face_score: np.ndarray | None = None  # (F,)
    crops: list[bytes] = field(default_factory=list)  # (F,) encoded crops of the embedded frames, for figures


# --------------------------------------------------------------------------------------- records


def _seconds(frame: int, fps: float) -> float | None:
    return round(frame / fps, 4) if fps > 0 else None


def unit_record(unit: UnitPrediction, class_names: list[str], fps: float) -> dict[str, Any]:
    """The JSON form of a clip's or a window's prediction (docs/predict.schema.json)."""
    record: dict[str, Any] = {"status": unit.status, "reason": unit.reason, "predicted": unit.predicted,
                              "prediction": None, "probabilities": None, "frames": []}
    if not unit.predicted:
        return record
    record["prediction"] = class_names[unit.pred]
    record["probabilities"] = {name: float(p) for name, p in zip(class_names, unit.probs)}
    normalised = min_max(unit.influence)
    record["frames"] = [{"frame_index": int(index), "time_s": _seconds(int(index), fps), "influence": float(raw),
                         "influence_normalised": round(float(norm), 6), "face_score": round(float(score), 6)}
                        for index, raw, norm, score in zip(unit.frame_index, unit.influence, normalised,
                                                           unit.face_score)]
    return record


def video_record(video: VideoPrediction, class_names: list[str], sliding: bool) -> dict[str, Any]:
    record = {"input": video.name, "fps": video.fps or None, "num_frames": video.num_frames or None,
              **unit_record(video.clip, class_names, video.fps)}
    if sliding:
        record["windows"] = [{"start_frame": start, "end_frame": stop, "start_s": _seconds(start, video.fps),
                              "end_s": _seconds(stop, video.fps), **unit_record(unit, class_names, video.fps)}
                             for start, stop, unit in video.windows]
        record["windows_error"] = video.window_error
    return record


def decoded_crops(unit: UnitPrediction) -> list[np.ndarray]:
    return [decode_image(crop) for crop in unit.crops]

