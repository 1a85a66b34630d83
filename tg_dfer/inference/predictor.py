"""Prediction on new videos through the pipeline's own per-clip code.

Faces (:func:`tg_dfer.faces.crop_clip` through :func:`tg_dfer.faces.guarded`) run in worker
threads (ffmpeg and OpenCV release the GIL) while the main thread embeds full batches of crops
from many clips (:mod:`tg_dfer.embed.images`), so a GPU is fed in large batches; the members of
the model file then classify them (:func:`tg_dfer.training.bank_scores.predict_rows`). Test-time
sampling is always segment centres, as in evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from tg_dfer.backbone import Backbone
from tg_dfer.embed.images import ClipCrops, clip_crops, encode_clips
from tg_dfer.faces import CropPolicy, crop_clip, guarded
from tg_dfer.inference.inputs import InputItem
from tg_dfer.inference.model_file import ModelFile, check_backbone
from tg_dfer.inference.records import UnitPrediction, VideoPrediction
from tg_dfer.inference.windows import crop_windows, window_bounds
from tg_dfer.io.faces_h5 import FaceRecord
from tg_dfer.model import ModelConfig, TextEncoder
from tg_dfer.parallel import ordered_map, per_thread
from tg_dfer.sampling import subsample
from tg_dfer.training.bank import FeatureBank
from tg_dfer.training.checkpoint import model_from_checkpoint
from tg_dfer.training.bank_scores import predict_rows
from tg_dfer.video import Clip, VideoError, open_video

PREDICTED = ("ok", "partial")  # face statuses that get a prediction (no_face too when asked)


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
        opened.append(open_video(item.path, timeout=timeout))
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


class Predictor:
    """The members of a model file on a device, with the CLIP weights they were trained with."""

    def __init__(self, model: ModelFile, loaded: Backbone, device: str = "cpu", batch_size: int = 256,
                 with_face_only: bool = True):
        check_backbone(model, loaded)
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
        bank = FeatureBank.from_arrays(features, num_frames, device=self.device)  # frame_index = position 0..F-1
        rows = np.arange(len(features))
        outs = [predict_rows(member, bank, rows, batch_size=self.batch_size, all_classes=True) for member in self.members]
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
        units: list[_Unit] = []
        videos: list[tuple] = []  # (item, fps, num_frames, window bounds, window error, unit rows)
        pending: list[ClipCrops] = []
        features: dict[int, np.ndarray] = {}
        waiting = 0  # inputs whose crops wait in ``pending``: progress counts embedded inputs

        def flush() -> None:
            nonlocal waiting
            for clip, block in zip(pending, encode_clips(self.loaded, pending)):
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
                    clip = clip_crops(str(len(units)), -1, record.crops, record.frame_index, record.score,
                                      record.source_frames, self.positions)
                    pending.append(clip)
                    unit = _Unit(record.status, record.reason, clip.valid, clip.frame_index, clip.face_score,
                                 clip.crops if keep_crops else [])
                unit_rows.append(len(units))
                units.append(unit)
                if sum(len(item.crops) for item in pending) >= self.batch_size:
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
