"""Every switch of the TG-DFER model in one dataclass (the ``train.model`` section of params.yaml)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

TEXT_PROMPTS = ("class", "descriptors")
VISUAL_PROMPTS = ("add", "prepend", "none")
MIL_POOLINGS = ("mean", "max", "lse", "attention", "topk")
INITS = ("identity", "pytorch")


@dataclass
class ModelConfig:
    """Architecture of :class:`tg_dfer.model.TGDFER`.

    The defaults are the demo profile's values (pipeline/profiles/demo.yaml), which are also what
    every model file written before a setting existed was trained with, so an older record that
    lacks a field rebuilds the network it was. The paper's settings are the paper profile
    (pipeline/profiles/paper.yaml, every value with its section of the paper or its listed choice).

    ``embed_dim`` and ``num_classes`` come from the data (the feature cache and the class list),
    everything else from params.yaml: a config read before the data is known leaves them None, and
    :meth:`for_data` completes it. A checkpoint stores the whole config, so it alone rebuilds the
    network.
    """

    embed_dim: int | None = 512  # D: CLIP embedding size (512 for ViT-B/32); None until the data fixes it
    num_classes: int | None = 7  # C; None until the data fixes it
    num_frames: int = 16  # T: frames the model sees per clip (segment sampling of the cached frames)

    # Multi-grained temporal network (Sec. 3.2, Eqs. 2-5). Depth 0 removes a branch entirely.
    fine_depth: int = 1  # transformer layers of the fine-grained (windowed) module
    coarse_depth: int = 1  # transformer layers of the coarse-grained (whole clip) module
    window: int = 4  # w: frames per window of the fine-grained module
    stride: int = 1  # s: step between windows (Eq. 3); s = w means windows do not overlap (o = w - s = 0)
    heads: int = 8  # attention heads of both temporal modules
    mlp_ratio: float = 4.0  # hidden size of the transformer MLPs, in multiples of D
    dropout: float = 0.1  # dropout inside the temporal transformers

    # Text prompt X^FP (Sec. 3.3.1, Eq. 6).
    text_prompt: str = "class"  # class: [ctx] + "<class name>." | descriptors: [ctx] + descriptor text
    learnable_context: bool = True  # CoOp-style learnable context tokens; False: the cached embeddings
    context_length: int = 8  # M: number of learnable context tokens
    class_specific_context: bool = False  # one context per class instead of one shared by all classes

    # Visual prompt (Sec. 3.3.2, Eqs. 7-10) and bag prediction (Sec. 3.3.2, Eq. 11).
    visual_prompt: str = "add"  # add: X^P = MLP(X^FP + V^P) + X^CP | prepend: V^P as a prompt token | none
    mil_pooling: str = "topk"  # per-frame scores -> bag score: mean | max | lse | attention | topk (docs/model.md)
    topk_fraction: float = 0.125  # mil_pooling = topk: share of the valid frames averaged (2 of 16)
    tau: float = 0.01  # temperature of every cosine similarity (Eqs. 8 and 11)
    # Eq. 10 is X~^P = MLP(X^P^) + X^CP: 1.0 is the equation as written. The learnt part of X^P (the
    # prompt MLP, or the text tower in prepend) feeds a cosine with tau = 0.01, so each SGD step at lr
    # 1e-2 moves it by about lr / tau relative to a unit X^CP: the prompts then follow V^P, the clip's
    # own frames, and the model scores every frame's similarity to its clip instead of its class. At
    # 4.0, X^CP anchors the sum (L2-normalised before Eq. 11, so the same function class) and those
    # steps are 16x smaller; measured in docs/paper-deviations.md 4.
    coarse_text_gain: float = 4.0

    # identity: the new layers start as the identity and X^P as X^CP, so the untrained model is CLIP's
    # zero-shot classifier (docs/paper-deviations.md 12) | pytorch: PyTorch's default initialisation.
    init: str = "identity"

    def __post_init__(self) -> None:
        self.validate()

    @property
    def needs_text_encoder(self) -> bool:
        """Whether training runs the frozen CLIP text tower (learnable context or a prepended visual prompt)."""
        return self.learnable_context or self.visual_prompt == "prepend"

    @property
    def needs_text_encoder_at_inference(self) -> bool:
        """A prepended visual prompt changes the text per clip, so inference needs the text tower too."""
        return self.visual_prompt == "prepend"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field whose value is out of range."""
        fixed_by_data = [name for name in ("embed_dim", "num_classes") if getattr(self, name) is not None]
        for name in (*fixed_by_data, "num_frames", "window", "stride", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("fine_depth", "coarse_depth", "context_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        for name in ("learnable_context", "class_specific_context"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.window > self.num_frames:
            raise ValueError(f"window ({self.window}) must not exceed num_frames ({self.num_frames})")
        if self.stride > self.window:
            raise ValueError(f"stride ({self.stride}) must not exceed window ({self.window}): frames would be skipped")
        if self.embed_dim is not None and self.embed_dim % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide embed_dim ({self.embed_dim})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau!r}")
        if not self.coarse_text_gain >= 0:
            raise ValueError(f"coarse_text_gain must be >= 0, got {self.coarse_text_gain!r}")
        if not 0.0 < self.topk_fraction <= 1.0:
            raise ValueError(f"topk_fraction must lie in (0, 1], got {self.topk_fraction!r}")
        for name, choices in (("text_prompt", TEXT_PROMPTS), ("visual_prompt", VISUAL_PROMPTS),
                              ("mil_pooling", MIL_POOLINGS), ("init", INITS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.learnable_context and self.context_length < 1:
            raise ValueError("context_length must be >= 1 when learnable_context is true")

    def for_data(self, embed_dim: int, num_classes: int) -> "ModelConfig":
        """The complete config for data of ``embed_dim``-d features and ``num_classes`` classes: the one
        place a run's config is made. A config that already names other values does not fit the data."""
        for name, value in (("embed_dim", embed_dim), ("num_classes", num_classes)):
            if getattr(self, name) not in (None, value):
                raise ValueError(f"the model config has {name} {getattr(self, name)}, the data {value}")
        return replace(self, embed_dim=embed_dim, num_classes=num_classes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        return config_from_dict(cls, values, "model")


def config_from_dict(cls, values: dict[str, Any], what: str):
    """Build dataclass ``cls`` from a mapping, refusing keys that are not fields (typos in params.yaml)."""
    known = {field.name for field in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} setting(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return cls(**values)
