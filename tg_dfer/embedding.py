"""From face crops and prompt texts to cached CLIP embeddings (features.h5 and the text h5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from tg_dfer.augment import apply_view, draw_view
from tg_dfer.backbone import LoadedClip, encode_images, encode_texts, preprocess
from tg_dfer.cache import FacesFile, FeaturesWriter, TextCache
from tg_dfer.faces import decode_image
from tg_dfer.prompt_sets import PromptSet
from tg_dfer.sampling import subsample


@dataclass
class EmbedSummary:
    embedded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (clip_id, reason)


@dataclass
class PendingClip:
    """One clip's preprocessed crops, waiting for a batched CLIP forward pass."""

    clip_id: str
    label: int
    valid: int  # frames that are not padding (1..F)
    frame_index: np.ndarray  # (F,) source frame of each embedded frame
    face_score: np.ndarray  # (F,) detector confidence, 0 where no face was found
    pixels: torch.Tensor  # (V * F, 3, S, S)


def clip_views(crops: list[bytes], positions: np.ndarray, clip_id: str, views: int, seed: int,
               resolution: int) -> torch.Tensor:
    """The preprocessed pixels of every view of one clip: (V * F, 3, S, S), view-major."""
    frames = torch.from_numpy(np.stack([decode_image(crops[int(p)]) for p in positions]))  # (F, H, W, 3)
    size = frames.shape[1]
    seen = [frames] + [apply_view(frames, draw_view(size, clip_id, view, seed)) for view in range(1, views)]
    return preprocess(torch.cat(seen), resolution)


def pending_clip(clip_id: str, label: int, crops: list[bytes], frame_index: np.ndarray, face_score: np.ndarray,
                 source_frames: int, positions: np.ndarray, views: int, seed: int, resolution: int) -> PendingClip:
    """The crops of one faces record at ``positions`` (segment-centre picks of its stored frames), ready to embed."""
    stored = len(crops)
    valid = int(np.sum(positions < min(int(source_frames), stored)))
    pixels = clip_views(crops, positions, clip_id, views, seed, resolution)
    return PendingClip(clip_id, label, max(valid, 1), np.asarray(frame_index)[positions],
                       np.asarray(face_score)[positions], pixels)


def encode_pending(loaded: LoadedClip, pending: list[PendingClip], views: int, frames: int) -> list[np.ndarray]:
    """One CLIP forward pass over the crops of several clips: (V, F, D) float32 embeddings per clip."""
    device = loaded.model.text_projection.device
    pixels = torch.cat([clip.pixels for clip in pending]).to(device, non_blocking=True)
    embedded = encode_images(loaded, pixels).cpu().numpy()
    starts = np.cumsum([0] + [clip.pixels.shape[0] for clip in pending])
    return [embedded[start:stop].reshape(views, frames, -1) for start, stop in zip(starts[:-1], starts[1:])]


def skip_reason(faces: FacesFile, row: int, labels: dict[str, int]) -> str:
    """Why clip ``row`` of ``faces`` cannot be embedded; empty when it can."""
    if faces.status[row] == "failed":
        return faces.reason[row]
    if faces.clip_id[row] not in labels:
        return "not in the manifest"
    return ""


def embed_faces(faces: FacesFile, labels: dict[str, int], loaded: LoadedClip, writer: FeaturesWriter,
                frames: int, views: int, seed: int = 0, batch_size: int = 256,
                progress: Callable[[int], None] | None = None, rows: Sequence[int] | None = None) -> EmbedSummary:
    """Embed every clip of ``faces`` (or its ``rows``) that has crops, in batches of about ``batch_size`` images.

    ``frames`` of the ``faces.frames_per_clip`` stored crops are kept by segment-centre picks.
    Clips whose face stage failed are skipped and listed in the summary with the reason.
    """
    stored = faces.frames_per_clip
    if frames > stored:
        raise ValueError(f"embed.frames_per_clip = {frames} exceeds the {stored} frames per clip in {faces.path}")
    positions = subsample(stored, frames)
    frame_index, score, source_frames = faces["frame_index"], faces["score"], faces["source_frames"]
    summary = EmbedSummary()
    pending: list[PendingClip] = []

    def flush() -> None:
        for clip, block in zip(pending, encode_pending(loaded, pending, views, frames)):
            writer.append(clip.clip_id, clip.label, block, clip.valid, clip.frame_index, clip.face_score)
            summary.embedded += 1
        pending.clear()

    for row in range(len(faces)) if rows is None else rows:
        clip_id = faces.clip_id[row]
        if progress:
            progress(1)
        reason = skip_reason(faces, row, labels)
        if reason:
            summary.skipped.append((clip_id, reason))
            continue
        pending.append(pending_clip(clip_id, labels[clip_id], faces.crops(row), frame_index[row], score[row],
                                    int(source_frames[row]), positions, views, seed, loaded.input_resolution))
        if sum(clip.pixels.shape[0] for clip in pending) >= batch_size:
            flush()
    if pending:
        flush()
    return summary


def build_text_cache(loaded: LoadedClip, prompts: PromptSet) -> TextCache:
    """Embeddings of the plain class prompts (X^CP) and the descriptor prompts of ``prompts``."""
    return TextCache(
        class_names=prompts.class_names,
        class_prompts=prompts.class_prompts,
        descriptor_prompts=prompts.descriptor_prompts,
        class_embeddings=encode_texts(loaded, prompts.class_prompts),
        descriptor_embeddings=encode_texts(loaded, prompts.descriptor_prompts),
        attrs={**loaded.attrs(), "prompt_set": prompts.name, "prompt_source": prompts.source,
               "class_prompt_template": prompts.class_prompt_template},
    )
