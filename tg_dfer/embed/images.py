"""Face crops -> CLIP image embeddings, batched, in whole clips per forward pass (features.h5)."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from tg_dfer.augment import apply_view, draw_view
from tg_dfer.backbone import PRECISIONS, Backbone, preprocess
from tg_dfer.io.faces_h5 import FacesFile
from tg_dfer.io.features_h5 import FeaturesWriter
from tg_dfer.io.images import decode_image
from tg_dfer.parallel import prefetch as prefetch_batches
from tg_dfer.sampling import subsample


@dataclass
class EmbedSummary:
    embedded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (clip_id, reason)


DECODERS = ("auto", "opencv", "torchvision")


@dataclass(frozen=True)
class EmbedConfig:
    """The ``embed`` params section: what is cached per clip, and how fast it is computed."""

    frames_per_clip: int = 16  # F in features.h5 (<= the frames per clip faces.h5 stores)
    views: int = 1  # view 0 clean, views 1.. augmented (tg_dfer.augment)
    seed: int = 0  # of the augmented views
    batch_size: int = 256  # images per CLIP forward pass (whole clips)
    precision: str = "auto"  # auto (fp16 on a CUDA GPU, fp32 on CPU) | fp32 | fp16 | bf16
    workers: int = 0  # CPU threads decoding the crops; 0 = one per core
    decoder: str = "auto"  # auto | opencv | torchvision (batched nvJPEG on CUDA)
    compile: bool = False  # torch.compile the image tower

    def __post_init__(self) -> None:
        for name, minimum in (("frames_per_clip", 1), ("views", 1), ("batch_size", 1), ("workers", 0)):
            if getattr(self, name) < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {getattr(self, name)!r}")
        if self.precision not in ("auto", *PRECISIONS):
            raise ValueError(f"precision must be one of auto, {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")

    @property
    def speed(self) -> dict:
        """The options of :func:`embed_faces` that change its speed, never its result."""
        return {"workers": self.workers, "decoder": self.decoder, "compile": self.compile}


@dataclass
class ClipCrops:
    """One clip's chosen crops on their way through a CLIP forward pass; ``frames`` once decoded."""

    clip_id: str
    label: int
    valid: int  # frames that are not padding (1..F)
    frame_index: np.ndarray  # (F,) source frame of each embedded frame
    face_score: np.ndarray  # (F,) detector confidence, 0 where no face was found
    crops: list  # F encoded images (bytes or uint8 arrays)
    frames: torch.Tensor | None = None  # (F, H, W, 3) uint8


def view_frames(frames: torch.Tensor, clip_id: str, views: int, seed: int) -> torch.Tensor:
    """Every view of one clip's uint8 frames (F, H, W, 3) -> (V * F, H, W, 3), view-major, same device."""
    size = frames.shape[1]
    seen = [frames] + [apply_view(frames, draw_view(size, clip_id, view, seed)) for view in range(1, views)]
    return torch.cat(seen)


def valid_frames(positions: np.ndarray, source_frames: int, stored: int) -> int:
    """How many of the picks at ``positions`` are real frames, not padding (at least 1)."""
    return max(int(np.sum(positions < min(int(source_frames), stored))), 1)


def clip_crops(clip_id: str, label: int, crops: Sequence, frame_index: np.ndarray, face_score: np.ndarray,
               source_frames: int, positions: np.ndarray) -> ClipCrops:
    """The crops of one faces record at ``positions`` (segment-centre picks of its stored frames)."""
    return ClipCrops(clip_id, label, valid_frames(positions, source_frames, len(crops)),
                     np.asarray(frame_index)[positions], np.asarray(face_score)[positions],
                     [crops[int(p)] for p in positions])


def encode_clips(backbone: Backbone, clips: list[ClipCrops], views: int = 1, seed: int = 0) -> list[np.ndarray]:
    """One CLIP forward pass over the crops of ``clips`` (decoded here if they are not yet): (V, F, D)
    float32 embeddings per clip, by the steps :func:`embed_faces` takes. A crop that does not
    decode raises ``ValueError``."""
    for clip in clips:
        if clip.frames is None:
            clip.frames = _stack(clip, [torch.from_numpy(decode_image(crop)) for crop in clip.crops])
    device = backbone.model.text_projection.device
    embedded, event = _launch(clips, _image_encoder(backbone, False), device, views, seed, backbone.input_resolution, 0)
    if event is not None:
        event.synchronize()
    return list(embedded.numpy().reshape(len(clips), views, len(clips[0].crops), -1))


def _decode_opencv(clips: list[ClipCrops], pool: ThreadPoolExecutor) -> list[tuple[str, str]]:
    """Decode every crop of ``clips`` on CPU threads (OpenCV releases the GIL); returns the failures."""
    def one(clip: ClipCrops) -> str | None:
        try:
            clip.frames = _stack(clip, [torch.from_numpy(decode_image(crop)) for crop in clip.crops])
        except ValueError as error:
            return str(error)
        return None

    return [(clip.clip_id, reason) for clip, reason in zip(clips, pool.map(one, clips)) if reason]


def _decode_torchvision(clips: list[ClipCrops], device: torch.device) -> list[tuple[str, str]]:
    """Decode all crops of ``clips`` in one call on ``device`` (batched nvJPEG on a CUDA GPU)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    def decode(crops: list[np.ndarray]) -> list[torch.Tensor]:
        data = [torch.from_numpy(crop) for crop in crops]
        with warnings.catch_warnings():
            # torchvision 0.29 points to TorchCodec, which has no batched nvJPEG image decoder to offer here.
            warnings.filterwarnings("ignore", message="The image decoding", category=DeprecationWarning)
            return [image.permute(1, 2, 0) for image in decode_jpeg(data, mode=ImageReadMode.RGB, device=device)]

    if not clips:
        return []
    try:
        images = decode([crop for clip in clips for crop in clip.crops])
    except RuntimeError:  # one bad crop fails the whole call: find it clip by clip
        failed = []
        for clip in clips:
            try:
                clip.frames = _stack(clip, decode(clip.crops))
            except (RuntimeError, ValueError) as error:
                failed.append((clip.clip_id, f"undecodable crop ({str(error).splitlines()[0]})"))
        return failed
    failed, start = [], 0
    for clip in clips:
        try:
            clip.frames = _stack(clip, images[start:start + len(clip.crops)])
        except ValueError as error:
            failed.append((clip.clip_id, str(error)))
        start += len(clip.crops)
    return failed


def _stack(clip: ClipCrops, images: list[torch.Tensor]) -> torch.Tensor:
    if len({tuple(image.shape) for image in images}) > 1:
        raise ValueError(f"crops of different sizes {sorted({tuple(i.shape[:2]) for i in images})}")
    return torch.stack(images)  # (F, H, W, 3)


def skip_reason(faces: FacesFile, row: int, labels: dict[str, int]) -> str:
    """Why clip ``row`` of ``faces`` cannot be embedded; empty when it can."""
    if faces.status[row] == "failed":
        return faces.reason[row]
    if faces.clip_id[row] not in labels:
        return "not in the manifest"
    return ""


def clip_batches(rows: Sequence[int], batch_size: int, views: int, frames: int) -> list[list[int]]:
    """``rows`` in batches of whole clips, at most ``batch_size`` images (at least one clip) each.

    Batches depend on the list of clips alone: every run, resumed or sharded, puts the same images
    through each forward pass, so the numbers come out the same.
    """
    per_batch = max(1, batch_size // (views * frames))
    return [list(rows[start:start + per_batch]) for start in range(0, len(rows), per_batch)]


def embed_faces(faces: FacesFile, labels: dict[str, int], loaded: Backbone, writer: FeaturesWriter,
                frames: int, views: int, seed: int = 0, batch_size: int = 256,
                progress: Callable[[int], None] | None = None, workers: int = 0, decoder: str = "auto",
                prefetch: int = 2, compile: bool = False,
                batches: Sequence[Sequence[int]] | None = None) -> EmbedSummary:
    """Embed every clip of ``faces`` that has crops, in forward passes of at most ``batch_size`` images.

    ``batches`` (rows of ``faces``, whole clips per forward pass) restricts and fixes the passes,
    as resumed and sharded runs need; default: every row, by :func:`clip_batches`. ``writer``
    (a :class:`FeaturesWriter` or anything with its ``extend``) gets each pass's clips in one call.

    ``frames`` of the crops stored per clip are kept by segment-centre picks.
    Clips whose face stage failed, or whose crops do not decode, are skipped and listed in the
    summary with the reason.

    Speed (none of it changes the features beyond float tolerance): a background thread reads and
    decodes the next ``prefetch`` batches while the current one is encoded; ``workers`` CPU
    threads decode JPEG/PNG crops with OpenCV (0 = one per core); ``decoder`` auto picks batched
    nvJPEG (torchvision) on a CUDA GPU for JPEG crops, OpenCV otherwise. Augmented views, resizing
    and normalisation run on the model's device; the weights' dtype is the precision
    (:func:`tg_dfer.backbone.load_backbone`). ``compile`` runs the image tower through torch.compile
    (batches are then padded to one fixed size so it compiles once).
    """
    stored = faces.frames_per_clip
    if frames > stored:
        raise ValueError(f"{frames} frames per clip asked for, but {faces.path} stores {stored}")
    if decoder not in DECODERS:
        raise ValueError(f"unknown crop decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    device = loaded.model.text_projection.device
    if decoder == "auto":
        decoder = "torchvision" if device.type == "cuda" and faces.attrs.get("image_format") == "jpeg" else "opencv"
    positions = subsample(stored, frames)
    if batches is None:
        batches = clip_batches(range(len(faces)), batch_size, views, frames)
    clips_per_batch = max(len(batch) for batch in batches) if batches else 1
    summary = EmbedSummary()
    encode = _image_encoder(loaded, compile)
    pad_to = clips_per_batch * views * frames if compile else 0

    def report(count: int) -> None:
        if progress and count:
            progress(count)

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1, thread_name_prefix="embed-decode") as pool:
        def decoded_batches() -> Iterator[tuple[list[ClipCrops], list[tuple[str, str]]]]:
            for batch, skipped in _read_batches(faces, labels, positions, batches):
                if decoder == "opencv":
                    skipped += _decode_opencv(batch, pool)
                    if device.type == "cuda":  # pinned pages let the copy to the GPU run asynchronously
                        for clip in batch:
                            if clip.frames is not None:
                                clip.frames = clip.frames.pin_memory()
                yield batch, skipped

        pending = None
        for batch, skipped in prefetch_batches(decoded_batches(), prefetch):
            if decoder == "torchvision":
                skipped += _decode_torchvision(batch, device)
            summary.skipped.extend(skipped)
            report(len(skipped))
            ready = [clip for clip in batch if clip.frames is not None]
            launched = _launch(ready, encode, device, views, seed, loaded.input_resolution, pad_to) if ready else None
            if pending:  # the previous batch finishes copying back while this one computes
                _finish(*pending, writer, views, frames, summary, report)
            pending = (ready, launched) if ready else None
        if pending:
            _finish(*pending, writer, views, frames, summary, report)
    return summary


def _read_batches(faces: FacesFile, labels: dict[str, int], positions: np.ndarray, batches: Sequence[Sequence[int]]
                  ) -> Iterator[tuple[list[ClipCrops], list[tuple[str, str]]]]:
    """Each batch's clips to embed with their chosen crops, and those of its rows that are skipped.

    The crops of a batch come in one HDF5 read of the row range it spans: one call per clip
    costs about twice as much, and the whole dataset is never read at once (gigabytes).
    """
    frame_index, score, source_frames = faces["frame_index"], faces["score"], faces["source_frames"]
    crops = faces.handle["crops"]  # (N, frames stored per clip) encoded images
    for rows in batches:
        first = min(rows, default=0)
        block = crops[first:max(rows, default=-1) + 1]
        batch: list[ClipCrops] = []
        skipped: list[tuple[str, str]] = []
        for row in rows:
            clip_id = faces.clip_id[row]
            reason = skip_reason(faces, row, labels)
            if reason:
                skipped.append((clip_id, reason))
                continue
            batch.append(clip_crops(clip_id, labels[clip_id], block[row - first], frame_index[row], score[row],
                                    source_frames[row], positions))
        yield batch, skipped


def _image_encoder(loaded: Backbone, compile: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """Preprocessed pixels (B, 3, S, S) -> L2-normalised float32 embeddings (B, D), without autograd."""
    model = loaded.model
    forward = torch.compile(model.encode_image, dynamic=False) if compile else model.encode_image

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return F.normalize(forward(pixels.to(model.dtype)).float(), dim=-1)

    return encode


def _launch(clips: list[ClipCrops], encode: Callable, device: torch.device, views: int, seed: int, resolution: int,
            pad_to: int) -> tuple[torch.Tensor, torch.cuda.Event | None]:
    """Start encoding every view of ``clips``; returns the embeddings (on their way to the CPU) and an event."""
    # Only the valid frames pass through CLIP: padding repeats the last frame (docs/contracts.md), so its
    # embedding is copied below. A clip cut short of F frames (16-frame DFEW crops cached at 48) costs
    # its own frames, not F.
    seen = [view_frames(clip.frames[:clip.valid].to(device, non_blocking=True), clip.clip_id, views, seed)
            for clip in clips]
    if len({tuple(frames.shape) for frames in seen}) == 1:
        pixels = preprocess(torch.cat(seen), resolution)  # (n * V * F, 3, S, S)
    else:  # crop sizes differ between clips: resize each clip on its own
        pixels = torch.cat([preprocess(frames, resolution) for frames in seen])
    count = pixels.shape[0]
    if count < pad_to:
        pixels = torch.cat([pixels, pixels.new_zeros(pad_to - count, *pixels.shape[1:])])
    distinct = encode(pixels)[:count]  # (sum over clips of V * valid, D)
    frames = len(clips[0].crops)
    padded = []
    for clip, rows in zip(clips, distinct.split([views * clip.valid for clip in clips])):
        rows = rows.reshape(views, clip.valid, -1)  # (V, valid, D)
        padded.append(torch.cat([rows, rows[:, -1:].expand(-1, frames - clip.valid, -1)], dim=1).flatten(0, 1))
    embedded = torch.cat(padded).to("cpu", non_blocking=True)  # (n * V * F, D)
    event = None
    if device.type == "cuda":
        event = torch.cuda.Event()
        event.record()
    return embedded, event


def _finish(clips: list[ClipCrops], launched: tuple[torch.Tensor, torch.cuda.Event | None], writer: FeaturesWriter,
            views: int, frames: int, summary: EmbedSummary, report: Callable[[int], None]) -> None:
    embedded, event = launched
    if event is not None:
        event.synchronize()
    writer.extend([clip.clip_id for clip in clips], [clip.label for clip in clips],
                  embedded.numpy().reshape(len(clips), views, frames, -1), [clip.valid for clip in clips],
                  [clip.frame_index for clip in clips], [clip.face_score for clip in clips])
    summary.embedded += len(clips)
    report(len(clips))


class JournalSink:
    """Takes each forward pass's clips as :meth:`FeaturesWriter.extend` does, and hands them on as one
    entry of a resume journal (``keep(entry number, columns)``): what the embed stage gives
    :func:`embed_faces` instead of a writer, so that a killed run resumes pass by pass."""

    def __init__(self, keep: Callable[[int, dict], None], entry_of: dict[str, int]):
        self.keep = keep
        self.entry_of = entry_of  # clip id -> the number of its forward pass

    def extend(self, clip_id: Sequence[str], label, features: np.ndarray, num_frames, frame_index, face_score) -> None:
        columns = {"clip_id": np.asarray(clip_id, dtype=str), "label": label, "features": features.astype("float16"),
                   "num_frames": num_frames, "frame_index": frame_index, "face_score": face_score}
        self.keep(self.entry_of[clip_id[0]], {name: np.asarray(values) for name, values in columns.items()})


def write_entries(path: str | Path, views: int, frames: int, dim: int, attrs: dict, entries: Iterable[dict]) -> None:
    """features.h5 (or a shard of it) from the journal entries of :class:`JournalSink`, one write per entry."""
    with FeaturesWriter(path, views, frames, dim, attrs) as writer:
        for entry in entries:
            writer.extend(**entry)
