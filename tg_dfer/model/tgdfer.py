"""The full TG-DFER model: temporal network, text prompt, visual prompt and MIL bag prediction.

Shapes: B clips, T frames, C classes, D embedding size, W width of the CLIP text tower.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tg_dfer.model.config import ModelConfig
from tg_dfer.model.prompt import PromptLearner, TextEncoder
from tg_dfer.model.temporal import MultiGrainedTemporal


@dataclass
class Output:
    """What one forward pass gives. ``frame_scores[b, t, k]`` is the influence of frame t on class k."""

    logits: torch.Tensor  # (B, C) bag logits (Eq. 11 before the softmax over classes)
    probs: torch.Tensor  # (B, C) softmax over classes
    frame_scores: torch.Tensor  # (B, T, C) cos(X^I_t, X^P_k) / tau; 0 on padding
    attention: torch.Tensor  # (B, T, C) text-guided frame attention A (Eq. 8); 0 on padding
    mask: torch.Tensor  # (B, T) bool, True on real frames

    def influence(self, classes: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) frame scores of ``classes`` (default: the predicted class), NaN on padding."""
        if classes is None:
            classes = self.probs.argmax(dim=-1)
        index = classes.view(-1, 1, 1).expand(-1, self.frame_scores.shape[1], 1)
        scores = self.frame_scores.gather(2, index).squeeze(2)  # (B, T)
        return scores.masked_fill(~self.mask, float("nan"))


def frame_attention(similarity: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 8: the text-guided attention A (B, T, C) from ``similarity`` = cos(X^I, X^FP) / tau (B, T, C).

    The softmax over the valid frames (``mask`` (B, T)) is our reading (the paper normalises only
    V^P), so that A . X^I in Eq. 7 is a weighted mean of a clip's frames for each class.
    """
    return similarity.masked_fill(~mask.unsqueeze(-1), float("-inf")).softmax(dim=1)


def mil_pool(scores: torch.Tensor, mask: torch.Tensor, how: str, attention: torch.Tensor | None = None,
             topk_fraction: float = ModelConfig.topk_fraction) -> torch.Tensor:
    """Bag scores (B, C) from per-frame scores (B, T, C) over the valid frames of ``mask`` (B, T).

    mean: average frame; max: best frame; lse: log-mean-exp, a smooth max; attention: weighted by
    the text-guided attention A of Eq. 8; topk: average of the best ``topk_fraction`` of the frames.
    """
    valid = mask.unsqueeze(-1)  # (B, T, 1)
    count = valid.sum(dim=1).clamp(min=1)  # (B, 1)
    if how == "mean":
        return (scores * valid).sum(dim=1) / count
    if how == "max":
        return scores.masked_fill(~valid, float("-inf")).amax(dim=1)
    if how == "lse":
        return torch.logsumexp(scores.masked_fill(~valid, float("-inf")), dim=1) - count.log()
    if how == "attention":
        if attention is None:
            raise ValueError("attention pooling needs the attention weights")
        return (attention * scores).sum(dim=1)
    if how == "topk":
        k = (count * topk_fraction).ceil().clamp(min=1)  # (B, 1) frames kept per clip
        ranked = scores.masked_fill(~valid, float("-inf")).sort(dim=1, descending=True).values  # (B, T, C)
        keep = torch.arange(scores.shape[1], device=scores.device).view(1, -1, 1) < k.unsqueeze(1)  # (B, T, 1)
        return ranked.masked_fill(~keep, 0.0).sum(dim=1) / k
    raise ValueError(f"unknown MIL pooling {how!r}")


class TGDFER(nn.Module):
    """TG-DFER on cached frame embeddings.

    ``coarse_text`` is X^CP (C, D), the embeddings of the plain class prompts. ``fixed_text`` is
    X^FP when no :class:`PromptLearner` is attached: the cached class or descriptor embeddings
    when the context is not learnable, or, in a model loaded for inference, the X^FP computed
    with the learned context when it was saved (:meth:`learned_state_dict` refreshes it).
    """

    def __init__(self, config: ModelConfig, coarse_text: torch.Tensor, fixed_text: torch.Tensor,
                 prompt: PromptLearner | None = None):
        super().__init__()
        config.validate()
        C, D = config.num_classes, config.embed_dim
        for name, text in (("coarse_text", coarse_text), ("fixed_text", fixed_text)):
            if tuple(text.shape) != (C, D):
                raise ValueError(f"{name} has shape {tuple(text.shape)}, expected ({C}, {D})")
        if config.needs_text_encoder_at_inference and prompt is None:
            raise ValueError("visual_prompt = prepend runs the CLIP text tower: give a PromptLearner")
        if prompt is not None and prompt.num_classes != C:
            raise ValueError(f"the prompt learner has {prompt.num_classes} classes, the model {C}")
        self.config = config
        self.temporal = MultiGrainedTemporal(config)
        self.register_buffer("coarse_text", F.normalize(coarse_text.float(), dim=-1))  # X^CP (C, D)
        self.register_buffer("fixed_text", F.normalize(fixed_text.float(), dim=-1))  # X^FP when frozen (C, D)
        self.prompt = prompt
        if config.visual_prompt == "add":
            self.prompt_mlp = nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.Linear(D, D))
            if config.init == "identity":
                # Zero-init the last layer: X^P starts as X^CP, the zero-shot CLIP classifier, and the
                # visual prompt is learnt as a correction to it.
                nn.init.zeros_(self.prompt_mlp[2].weight)
                nn.init.zeros_(self.prompt_mlp[2].bias)
        elif config.visual_prompt == "prepend":
            self.visual_proj = nn.Linear(D, prompt.encoder.width)  # V^P -> one token of the text tower

    def use_activation_checkpointing(self, enabled: bool = True) -> None:
        """Recompute the temporal transformer layers in the backward pass (less memory, more compute)."""
        for module in self.temporal.modules():
            if hasattr(module, "checkpointing"):
                module.checkpointing = enabled

    # ------------------------------------------------------------------------------------ text

    @property
    def learns_text(self) -> bool:
        return self.prompt is not None and self.prompt.context is not None

    def text_features(self) -> torch.Tensor:
        """X^FP (C, D), L2-normalised: through the text tower when the context is learnt (Eq. 6)."""
        return self.prompt() if self.learns_text else self.fixed_text

    # ------------------------------------------------------------------------------------ model

    def forward(self, frames: torch.Tensor, mask: torch.Tensor, text: torch.Tensor | None = None,
                pooling: str | None = None) -> Output:
        """Bag and frame predictions of clips ``frames`` (B, T, D) with valid frames ``mask`` (B, T).

        ``text`` is X^FP (C, D) when the caller has computed it (once per step, or once for a whole
        evaluation); otherwise it is computed here. ``pooling`` replaces the config's MIL pooling
        (a training warm-up, ``TrainConfig.mean_pooling_epochs``).
        """
        cfg = self.config
        if text is None:
            text = self.text_features()
        mask = mask.bool()
        instances = self.temporal(frames, mask)  # X^I (B, T, D), Eq. 5
        unit = F.normalize(instances, dim=-1)  # (B, T, D)

        similarity = unit @ text.T / cfg.tau  # (B, T, C)
        attention = frame_attention(similarity, mask)  # A (B, T, C), Eq. 8
        # Eq. 7: V^P = N(A . X^I) with N the L2 normalisation; one visual prompt per class (each X^FP_k
        # attends to the frames on its own).
        visual = F.normalize(torch.einsum("btc,btd->bcd", attention, instances), dim=-1)  # V^P (B, C, D)

        # Eqs. 9-10: the enhanced fine-grained label features X^P
        if cfg.visual_prompt == "add":
            prompts = self.prompt_mlp(text + visual) + self.config.coarse_text_gain * self.coarse_text  # (B, C, D)
        elif cfg.visual_prompt == "prepend":
            tokens = self.visual_proj(visual)  # (B, C, W)
            prompts = self.prompt(tokens) + self.config.coarse_text_gain * self.coarse_text  # (B, C, D)
        else:
            prompts = text.unsqueeze(0).expand(frames.shape[0], -1, -1)  # (B, C, D)

        # Eq. 11: per-frame class scores cos(X^I_t, X^P_k) / tau, pooled over the bag of frames (the pooling
        # is our choice: the paper writes the cosine of X^I, all T frames, with X^P_k)
        scores = torch.einsum("btd,bcd->btc", unit, F.normalize(prompts, dim=-1)) / cfg.tau  # (B, T, C)
        scores = scores * mask.unsqueeze(-1)
        logits = mil_pool(scores, mask, pooling or cfg.mil_pooling, attention, cfg.topk_fraction)  # (B, C)
        return Output(logits=logits, probs=logits.softmax(dim=-1), frame_scores=scores,
                      attention=attention, mask=mask)

    # ------------------------------------------------------------------------------- checkpoints

    @torch.no_grad()
    def learned_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything trained, on the CPU, without the frozen CLIP text tower.

        ``fixed_text`` is set to the current X^FP first, so a model loaded without the text tower
        predicts exactly as this one (unless the visual prompt is prepended into the text).
        """
        if self.learns_text:
            self.fixed_text.copy_(self.text_features())
        return {name: tensor.detach().cpu().clone() for name, tensor in self.state_dict().items()
                if not name.startswith("prompt.encoder.")}

    def load_learned_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load what :meth:`learned_state_dict` gave; the context is skipped when no learner is attached."""
        if self.prompt is None:
            state = {name: tensor for name, tensor in state.items() if not name.startswith("prompt.")}
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [name for name in missing if not name.startswith("prompt.encoder.")]
        if missing or unexpected:
            raise ValueError(f"weights do not fit this model: missing {missing}, unexpected {unexpected}")


def build_model(config: ModelConfig, class_names: list[str], class_prompts: list[str], descriptor_prompts: list[str],
                class_embeddings: torch.Tensor, descriptor_embeddings: torch.Tensor,
                encoder: TextEncoder | None = None, seed: int = 0, for_inference: bool = False) -> TGDFER:
    """The model of ``config`` over the texts of a text cache.

    ``encoder`` (the frozen CLIP text tower) is needed when ``config.needs_text_encoder``; with
    ``for_inference`` only when the visual prompt is prepended, since a checkpoint stores X^FP.
    Weights are drawn from ``seed``.
    """
    use_descriptors = config.text_prompt == "descriptors"
    needed = config.needs_text_encoder_at_inference if for_inference else config.needs_text_encoder
    if needed and encoder is None:
        raise ValueError("this configuration runs the CLIP text tower (learnable context or a prepended "
                         "visual prompt): pass the text encoder")
    if encoder is not None and encoder.embed_dim != config.embed_dim:
        raise ValueError(f"the text tower gives {encoder.embed_dim}-d embeddings, the features are {config.embed_dim}-d")
    fixed = descriptor_embeddings if use_descriptors else class_embeddings
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        prompt = None
        if needed or (encoder is not None and config.needs_text_encoder):
            if config.learnable_context:
                texts = descriptor_prompts if use_descriptors else [f"{name}." for name in class_names]
                length = config.context_length
            else:  # prepend without learnt context: the cached prompt texts, as they were embedded
                texts, length = (descriptor_prompts if use_descriptors else class_prompts), 0
            prompt = PromptLearner(texts, encoder, length, config.class_specific_context,
                                   visual_slot=config.visual_prompt == "prepend")
        model = TGDFER(config, torch.as_tensor(class_embeddings), torch.as_tensor(fixed), prompt)
    return model


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters() if parameter.requires_grad)

