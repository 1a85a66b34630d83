"""The zero-shot model file: TG-DFER as initialised, over the text embeddings of a prompt set alone.

An untrained TG-DFER scores each frame as CLIP does zero-shot: the temporal network starts as the
identity on the CLIP frame embeddings (its residual branches are zero-initialised and the fusion
FC averages the branches), and the enhanced label features X^P start as X^CP, the embeddings of
the class prompts (the prompt MLP's last layer is zero), so a frame's class scores are
cos(frame, class prompt) / tau, with tau = 0.01 CLIP's own logit scale of 100. The one part that
starts random is the temporal network's positional embeddings (std 0.01, about 1 % of a frame
embedding, enough to move a score by about one logit): they are zeroed here, so the scores are
exactly CLIP's. Everything after the frame scores, the MIL pooling, the frame influence and the
outputs, is the trained model's own code, run by :class:`tg_dfer.inference.predictor.Predictor`
like any model file.

Nothing is learnt, so the context is not learnable and the visual prompt is ``add`` (zero at
initialisation); a prepended visual prompt would feed an untrained token through the text tower.
The other settings (frames, windows, depths, MIL pooling, tau) are those given.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from tg_dfer.faces import FaceSettings
from tg_dfer.inference.model_file import backbone_record, model_payload
from tg_dfer.io.text_h5 import TextCache
from tg_dfer.model import ModelConfig, build_model
from tg_dfer.model.temporal import Encoder

ZERO_SHOT_WEIGHTS = "zero-shot"  # a member's ``weights``: nothing was trained


def zero_shot_config(config: ModelConfig, embed_dim: int, num_classes: int) -> ModelConfig:
    """``config`` with what an untrained model can use: no learnt context, the additive visual prompt."""
    return replace(config, embed_dim=embed_dim, num_classes=num_classes, learnable_context=False,
                   class_specific_context=False, visual_prompt="add")


def zero_shot_model_file(texts: TextCache, config: ModelConfig, faces: FaceSettings, frames_per_clip: int,
                         backbone_seed: int = 0, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The content of a zero-shot model file over ``texts``, the text embeddings of a prompt set
    (:func:`tg_dfer.embed.text.build_text_cache`), whose attributes name the CLIP weights that made
    them (``backbone_seed``: the seed of random ones); ``faces`` and ``frames_per_clip`` as in
    :func:`tg_dfer.inference.model_file.build_model_file`."""
    attrs = texts.attrs
    embed_dim = int(texts.class_embeddings.shape[1])
    config = zero_shot_config(config, embed_dim, len(texts.class_names))
    model = build_model(config, texts.class_names, texts.class_prompts, texts.descriptor_prompts,
                        torch.from_numpy(texts.class_embeddings), torch.from_numpy(texts.descriptor_embeddings),
                        for_inference=True)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, Encoder):
                module.positional_embedding.zero_()
    member = {"fold": 0, "weights": ZERO_SHOT_WEIGHTS, "epoch": 0, "model_config": config.to_dict(),
              "prompt_texts": {"learner": [], "learner_texts": list(texts.class_prompts),
                               "class_prompts": list(texts.class_prompts),
                               "descriptor_prompts": list(texts.descriptor_prompts)},
              "state": model.learned_state_dict()}
    zero_shot = {"prompt_set": str(attrs.get("prompt_set", "")), "prompt_source": str(attrs.get("prompt_source", "")),
                 "class_prompts": list(texts.class_prompts)}
    return model_payload(texts.class_names, backbone_record(attrs, backbone_seed), faces, frames_per_clip, [member],
                         provenance, zero_shot)
