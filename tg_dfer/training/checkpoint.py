"""Fold checkpoints (format ``tg-dfer/checkpoint/3``): writing, reading, and the model they rebuild."""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from tg_dfer import __version__
from tg_dfer.io.payload import load_payload, save_payload
from tg_dfer.io.text_h5 import TextCache
from tg_dfer.model import TGDFER, ModelConfig, PromptLearner, TextEncoder

if TYPE_CHECKING:  # the loop is not needed to read checkpoints (evaluation, inference)
    from tg_dfer.training.loop import TrainResult

CHECKPOINT_FORMAT = "tg-dfer/checkpoint/3"
# /1 lacks cpu_profile (docs/contracts.md); /2 and /1 lack model_config's coarse_text_gain and init and
# train_config's prompt_lr_scope, and were trained with their defaults; they read the same otherwise.
CHECKPOINT_READABLE = (CHECKPOINT_FORMAT, "tg-dfer/checkpoint/2", "tg-dfer/checkpoint/1")


class CheckpointError(Exception):
    """A checkpoint file that is missing, unreadable or of another format."""


def save_checkpoint(path: str | Path, result: TrainResult, *, class_names: Sequence[str], text: TextCache,
                    clip_model: str, clip_sha256: str, random_weights: bool, fold: int, cpu_profile: dict[str, Any],
                    extra: dict[str, Any] | None = None) -> None:
    """One ``torch.save`` of plain tensors, numbers and strings (loads with ``weights_only=True``).

    Holds the best and last weights (without the frozen CLIP tower), the full model and training
    configs, class names, the prompt texts, the X^CP/X^FP text embeddings (inside the weights) and
    the identity of the CLIP weights the features and texts were made with, and the CPU profile
    it was trained under (:func:`tg_dfer.cpu_profile.record`).
    """
    prompt = result.model.prompt
    payload = {
        "format": CHECKPOINT_FORMAT,
        "package_version": __version__,
        "model_config": result.model_config.to_dict(),
        "train_config": asdict(result.train_config),
        "class_names": list(class_names),
        "prompt_texts": {
            "learner": list(prompt.prompts) if prompt is not None else [],
            "learner_texts": _learner_texts(result.model_config, text),
            "class_prompts": list(text.class_prompts),
            "descriptor_prompts": list(text.descriptor_prompts),
        },
        "clip": {"model": clip_model, "sha256": clip_sha256, "random_weights": bool(random_weights)},
        "fold": int(fold),
        "cpu_profile": dict(cpu_profile),
        "best_epoch": int(result.best_epoch),
        "epochs": int(result.train_config.epochs),
        "states": {"best": result.best_state, "last": result.last_state},
        "history": [{key: float(value) for key, value in record.items()} for record in result.history],
        "extra": extra or {},
    }
    save_payload(path, payload)


def _learner_texts(config: ModelConfig, text: TextCache) -> list[str]:
    """The per-class texts after the context, as :func:`tg_dfer.model.build_model` chooses them."""
    descriptors = config.text_prompt == "descriptors"
    if config.learnable_context:
        return list(text.descriptor_prompts) if descriptors else [f"{name}." for name in text.class_names]
    return list(text.descriptor_prompts if descriptors else text.class_prompts)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no code runs) and check its format."""
    return load_payload(path, CHECKPOINT_READABLE, CheckpointError, "checkpoint", "run the train stage for this fold")


def model_from_checkpoint(checkpoint: dict[str, Any], which: str = "best", encoder: TextEncoder | None = None,
                          device: str = "cpu") -> TGDFER:
    """Rebuild the model of a checkpoint for inference, with its ``best`` or ``last`` weights.

    The text tower (``encoder``) is needed only when the visual prompt is prepended; otherwise
    the stored X^FP stands in for the learnt context.
    """
    if which not in checkpoint["states"]:
        raise CheckpointError(f"no {which!r} weights in this checkpoint (has {', '.join(checkpoint['states'])})")
    config = ModelConfig.from_dict(checkpoint["model_config"])
    state = checkpoint["states"][which]
    prompt = None
    if config.needs_text_encoder_at_inference:
        if encoder is None:
            raise CheckpointError("this model prepends the visual prompt to the text: it needs the CLIP text tower")
        texts = checkpoint["prompt_texts"]["learner_texts"]
        length = config.context_length if config.learnable_context else 0
        prompt = PromptLearner(texts, encoder, length, config.class_specific_context, visual_slot=True)
    model = TGDFER(config, state["coarse_text"], state["fixed_text"], prompt)
    model.load_learned_state_dict(copy.copy(state))
    return model.to(device).eval()
