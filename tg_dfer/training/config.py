"""The optimisation settings (``train.optim`` in params.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tg_dfer.model.config import config_from_dict

SELECT_METRICS = ("uar", "war", "loss")
FEATURE_STORAGES = ("auto", "memory", "file")
# Which parameters train at prompt_lr (Sec. 4.2's "learnable prompts"; docs/paper-deviations.md 16):
# context: the text context of Eq. 6 alone | prompts: also the visual prompt's layers (Sec. 3.3.2).
PROMPT_LR_SCOPES = ("context", "prompts")


@dataclass
class TrainConfig:
    """Optimisation settings (the ``train.optim`` section).

    The defaults are the demo profile's values (pipeline/profiles/demo.yaml) and what earlier
    checkpoints were trained with; the paper's are pipeline/profiles/paper.yaml.
    """

    epochs: int = 50
    batch_size: int = 48
    lr: float = 1e-2  # temporal network and heads
    prompt_lr: float = 1e-3  # the learnable prompts (prompt_lr_scope says which parameters)
    prompt_lr_scope: str = "context"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: list[int] = field(default_factory=lambda: [30, 40])  # MultiStepLR, in epochs
    gamma: float = 0.1
    val_fraction: float = 0.1  # stratified share of the training fold held out for model selection
    select_metric: str = "uar"  # validation metric of the kept "best" epoch: uar | war | loss
    seed: int = 0
    track_test: bool = True  # also score the test fold every epoch (reported only, never used to select)
    eval_batch_size: int = 256
    mixed_precision: bool = True  # bf16 autocast of training steps on a CUDA GPU; no effect on CPU
    # The memory-lean mode: recompute the temporal layers in the backward pass, and (train stage) give
    # freed memory back at once (tg_dfer/memory.py): peak memory near what is live, epochs ~1.5x longer.
    activation_checkpointing: bool = False
    # First epochs with the bag pooled by its mean, every frame trained, before the model's own pooling
    # (docs/model.md, "MIL on planted bags": a class learnt by absence under top-k from the start;
    # a listed deviation, docs/paper-deviations.md). 0 trains with the model's pooling throughout.
    mean_pooling_epochs: int = 3
    # Where the cached frame features live while training: memory (on the training device, one
    # tensor), file (read per batch: resident memory near the model's own, docs/benchmarks.md), or
    # auto: memory on a GPU, file on the CPU. The same values either way, so the same results.
    feature_storage: str = "auto"

    def __post_init__(self) -> None:
        self.milestones = [int(m) for m in self.milestones]
        self.validate()

    def validate(self) -> None:
        for name, least in (("epochs", 1), ("batch_size", 1), ("eval_batch_size", 1), ("mean_pooling_epochs", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        for name in ("lr", "prompt_lr", "momentum", "weight_decay", "gamma"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction!r}")
        for name, allowed in (("select_metric", SELECT_METRICS), ("feature_storage", FEATURE_STORAGES),
                              ("prompt_lr_scope", PROMPT_LR_SCOPES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if any(m < 1 for m in self.milestones) or sorted(self.milestones) != self.milestones:
            raise ValueError(f"milestones must be increasing epochs >= 1, got {self.milestones!r}")

    def features_in_memory(self, device: str) -> bool:
        """Whether training on ``device`` holds the cached features in memory (else reads them per batch)."""
        if self.feature_storage == "auto":
            return not str(device).startswith("cpu")
        return self.feature_storage == "memory"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        return config_from_dict(cls, values, "optimisation")
