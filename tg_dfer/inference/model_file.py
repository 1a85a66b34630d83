"""The exported model file (schema ``tg-dfer/model/4``, docs/contracts.md).

It bundles one fold or an ensemble of folds with everything inference needs: the weights (X^CP
and X^FP, the cached and learnt text embeddings, are buffers inside them), the model config, class
names, prompt texts, the face and frame settings the features were made with, and the identity
(SHA-256) of the CLIP weights. A zero-shot model file (:mod:`tg_dfer.inference.zero_shot`) has
the same layout with one untrained member and says so in ``zero_shot``. Files of version 1
(before zero-shot files existed) are read as trained ones; files of versions 1 and 2 call the
backbone record "clip", which the reader renames.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from tg_dfer import __version__
from tg_dfer.backbone import Backbone, BackboneSpec
from tg_dfer.detectors import HaarSearch
from tg_dfer.faces import CropPolicy, FaceSettings
from tg_dfer.hashes import WeightsMismatch, check_same_weights, sha256_file
from tg_dfer.io.payload import load_payload
from tg_dfer.training.checkpoint import CHECKPOINT_READABLE

MODEL_FORMAT = "tg-dfer/model/4"
# 2 added zero_shot (a file of 1 is a trained model); 3 renamed the "clip" record "backbone"; 4 added
# coarse_text_gain and init to model_config (earlier files were made with their defaults, 4.0 and identity).
READABLE_FORMATS = ("tg-dfer/model/1", "tg-dfer/model/2", "tg-dfer/model/3", MODEL_FORMAT)


class ModelFileError(Exception):
    """A model file that is missing, unreadable, of another format, or used with other CLIP weights."""


def backbone_record(attrs: dict[str, Any], seed: int) -> dict[str, Any]:
    """What a model file records of the CLIP weights, from the attributes of a features or text file
    made with them (``seed``: the seed of random weights, which the files do not keep)."""
    return {"model": str(attrs["clip_model"]), "sha256": str(attrs["checkpoint_sha256"]),
            "random_weights": bool(attrs["random_weights"]), "demo_weights": bool(attrs.get("demo_weights", False)),
            "source": str(attrs.get("clip_source", "")), "seed": int(seed)}


def build_model_file(checkpoints: dict[int, dict[str, Any]], which: str, faces: FaceSettings,
                     frames_per_clip: int, backbone: dict[str, Any], provenance: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """The content of a trained model file: one member per fold checkpoint, with its ``which`` weights.

    ``faces`` are the face settings the features were made with; ``frames_per_clip`` is F of the
    features the model was trained on; ``backbone`` the :func:`backbone_record` of their CLIP
    weights. Members must agree on classes, CLIP weights and frames per clip. Raises
    ``ValueError`` naming the conflict.
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
        check_same_weights(backbone["sha256"], checkpoint["clip"]["sha256"], "the features", f"the model of fold {fold}")
        if checkpoint["model_config"]["num_frames"] != first["model_config"]["num_frames"]:
            raise ValueError(f"fold {fold} sees {checkpoint['model_config']['num_frames']} frames per clip, fold "
                             f"{folds[0]} {first['model_config']['num_frames']}: an ensemble needs one frame count")
        members.append({"fold": int(fold), "weights": which,
                        "epoch": int(checkpoint["best_epoch"] if which == "best" else checkpoint["epochs"]),
                        "model_config": dict(checkpoint["model_config"]), "prompt_texts": checkpoint["prompt_texts"],
                        "state": checkpoint["states"][which]})
    return model_payload(first["class_names"], backbone, faces, frames_per_clip, members, provenance)


def model_payload(class_names: list[str], backbone: dict[str, Any], faces: FaceSettings, frames_per_clip: int,
                  members: list[dict[str, Any]], provenance: dict[str, Any] | None = None,
                  zero_shot: dict[str, Any] | None = None) -> dict[str, Any]:
    """The content of every model file, trained (:func:`build_model_file`) or zero-shot
    (:func:`tg_dfer.inference.zero_shot.zero_shot_model_file`); ``zero_shot`` describes the prompts
    of an untrained model, None for a trained one."""
    if frames_per_clip > faces.policy.frames_per_clip:
        raise ValueError(f"features of {frames_per_clip} frames per clip from faces of {faces.policy.frames_per_clip}")
    return {"format": MODEL_FORMAT, "package_version": __version__, "class_names": list(class_names),
            "backbone": dict(backbone), "faces": faces.record(), "embed": {"frames_per_clip": int(frames_per_clip)},
            "members": members, "provenance": dict(provenance or {}),
            "zero_shot": dict(zero_shot) if zero_shot is not None else None}


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
    def zero_shot(self) -> dict[str, Any] | None:
        """The prompts of a zero-shot model (nothing trained); None for a trained one."""
        return self.payload.get("zero_shot")

    @property
    def backbone(self) -> dict[str, Any]:
        """The :func:`backbone_record` of the CLIP weights the model was trained with."""
        return self.payload["backbone"]

    @property
    def faces(self) -> FaceSettings:
        """The face settings of training (the detector, its passes, the crops)."""
        return FaceSettings.from_record(self.payload["faces"])

    @property
    def policy(self) -> CropPolicy:
        """The crop policy of training, with test-time (segment-centre) sampling."""
        return replace(self.faces.policy, sampling="centre")

    def backbone_spec(self, checkpoint: str | None = None, download: str = "never") -> BackboneSpec:
        """The CLIP weights to load: ``checkpoint`` when given, else random weights again, the file used
        at export when it is still there, or the clip package's cache file."""
        if checkpoint is None and self.backbone["random_weights"]:
            checkpoint = "random"
        elif checkpoint is None:
            source = self.backbone.get("source", "")
            checkpoint = source if source and Path(source).is_file() else None
        return BackboneSpec(self.backbone["model"], checkpoint, int(self.backbone.get("seed", 0)), download,
                            allow_demo_weights=self.demo_weights)

    @property
    def demo_weights(self) -> bool:
        """Made on the demo's own backbone (model files from before it existed were not)."""
        return bool(self.backbone.get("demo_weights", False))

    @property
    def detector(self) -> str:
        return self.faces.detection.detector

    @property
    def search(self) -> HaarSearch:
        """The opencv detector's passes of training; files from before they existed used none."""
        return self.faces.detection.opencv

    @property
    def frames_per_clip(self) -> int:
        return int(self.payload["embed"]["frames_per_clip"])

    @property
    def num_frames(self) -> int:
        return int(self.payload["members"][0]["model_config"]["num_frames"])

    def describe(self) -> dict[str, Any]:
        """What a prediction file says about the model that made it."""
        members, zero_shot = self.payload["members"], self.zero_shot
        return {"file": str(self.path), "sha256": self.sha256,
                "folds": [] if zero_shot else [m["fold"] for m in members],
                "weights": members[0]["weights"], "class_names": self.class_names, "clip_model": self.backbone["model"],
                "clip_sha256": self.backbone["sha256"], "random_clip_weights": bool(self.backbone["random_weights"]),
                "demo_clip_weights": self.demo_weights,
                "detector": self.detector, "frames_per_clip": self.frames_per_clip, "num_frames": self.num_frames,
                "zero_shot": zero_shot is not None, "prompt_set": zero_shot["prompt_set"] if zero_shot else None}


def load_model_file(path: str | Path) -> ModelFile:
    """Read a model file with ``weights_only=True`` (no code runs) and check its format."""
    payload = load_payload(path, READABLE_FORMATS, ModelFileError, "model file", "make one with `tg-dfer export`",
                           {version: "a fold checkpoint: bundle it with `tg-dfer export`" for version in CHECKPOINT_READABLE})
    if "clip" in payload:  # before tg-dfer/model/3 the backbone record was called "clip"
        payload["backbone"] = payload.pop("clip")
    return ModelFile(Path(path), sha256_file(path), payload)


def model_in_memory(payload: dict[str, Any], name: str) -> ModelFile:
    """A model file that was built, not read (``name`` stands for its path); its hash is that of the
    bytes ``torch.save`` makes of it."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return ModelFile(Path(name), hashlib.sha256(buffer.getvalue()).hexdigest(), payload)


def check_backbone(model: ModelFile, loaded: Backbone) -> None:
    """Refuse CLIP weights other than those the model was trained with (their SHA-256)."""
    try:
        check_same_weights(model.backbone["sha256"], loaded.sha256,
                           f"{model.path} (CLIP {model.backbone['model']}, SHA-256)",
                           f"the CLIP weights given ({loaded.source}, {loaded.name})",
                           "predictions from other weights would be meaningless: pass the weights the model was "
                           "trained with (--clip-checkpoint)")
    except WeightsMismatch as error:
        raise ModelFileError(str(error)) from error
    if loaded.name != model.backbone["model"]:
        raise ModelFileError(f"{model.path}: made with CLIP {model.backbone['model']}, given {loaded.name} "
                             f"({loaded.source})")
