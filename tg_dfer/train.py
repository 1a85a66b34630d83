"""Training TG-DFER on cached features: sampling, fold/validation split, the loop, checkpoints.

A pure library: it knows nothing of params.yaml or DVC. The whole feature cache sits in memory
(on the training device) as one float16 tensor; each step gathers its clips from it, so an epoch
costs only the small temporal network and, with learnable context, one pass of the frozen text
tower over the C class prompts (never per clip).
"""

from __future__ import annotations

import copy
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from tg_dfer import __version__
from tg_dfer.cache import FeatureCache, TextCache
from tg_dfer.metrics import uar, war
from tg_dfer.model import TGDFER, ModelConfig, PromptLearner, TextEncoder, build_model
from tg_dfer.model.config import config_from_dict

CHECKPOINT_FORMAT = "tg-dfer/checkpoint/1"
SELECT_METRICS = ("uar", "war", "loss")


class CheckpointError(Exception):
    """A checkpoint file that is missing, unreadable or of another format."""


@dataclass
class TrainConfig:
    """Optimisation settings (the ``train.optim`` section); defaults are the paper's."""

    epochs: int = 50
    batch_size: int = 48
    lr: float = 1e-2  # temporal network and heads
    prompt_lr: float = 1e-3  # learnable context of the text prompt
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

    def __post_init__(self) -> None:
        self.milestones = [int(m) for m in self.milestones]
        self.validate()

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("lr", "prompt_lr", "momentum", "weight_decay", "gamma"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction!r}")
        if self.select_metric not in SELECT_METRICS:
            raise ValueError(f"select_metric must be one of {', '.join(SELECT_METRICS)}, got {self.select_metric!r}")
        if any(m < 1 for m in self.milestones) or sorted(self.milestones) != self.milestones:
            raise ValueError(f"milestones must be increasing epochs >= 1, got {self.milestones!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        return config_from_dict(cls, values, "optimisation")


# ------------------------------------------------------------------------------------- splitting


@dataclass
class Split:
    """Rows of the feature cache in each part of one fold."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def as_dict(self, clip_ids: Sequence[str]) -> dict[str, list[str]]:
        return {part: [clip_ids[row] for row in getattr(self, part)] for part in ("train", "val", "test")}


def stratified_holdout(rows: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` into (kept, held out) with about ``fraction`` of every class held out.

    A class keeps at least one clip for training; a class of two or more clips gives at least
    one to the held-out part, so every class can be validated.
    """
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for label in np.unique(labels[rows]):
        members = rows[labels[rows] == label]
        members = members[rng.permutation(len(members))]
        count = int(np.floor(fraction * len(members) + 0.5))
        if fraction > 0 and len(members) >= 2:
            count = max(count, 1)
        held.extend(members[: min(count, len(members) - 1)].tolist())
    held_out = np.array(sorted(held), dtype=np.int64)
    return np.setdiff1d(rows, held_out), held_out


def fold_split(labels: np.ndarray, test_fold: np.ndarray, fold: int, val_fraction: float, seed: int) -> Split:
    """Test = clips of ``test_fold == fold``; the labelled rest is training, minus a stratified validation part."""
    labels, test_fold = np.asarray(labels), np.asarray(test_fold)
    test = np.flatnonzero(test_fold == fold)
    training = np.flatnonzero((test_fold != fold) & (labels >= 0))
    if not len(test):
        raise ValueError(f"fold {fold} has no test clips (test_fold values present: {sorted(set(test_fold.tolist()))})")
    if not len(training):
        raise ValueError(f"fold {fold} has no labelled training clips")
    train, val = stratified_holdout(training, labels, val_fraction, seed)
    return Split(train=train, val=val, test=test)


# -------------------------------------------------------------------------------------- sampling


class ClipBank:
    """The feature cache resident on ``device`` as one tensor, and the per-step frame sampling.

    Training picks one random frame per segment when a clip has more valid cached frames than the
    T the model sees, and a random view per clip; testing picks segment centres of view 0. The
    sampling is :func:`tg_dfer.sampling.segment_indices` done for a whole batch on ``device``, so
    a training step copies nothing between host and device.
    """

    def __init__(self, cache: FeatureCache, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.features = torch.from_numpy(np.ascontiguousarray(cache.features)).to(self.device)  # (N, V, F, D) fp16
        self.num_frames = torch.from_numpy(cache.num_frames.astype(np.int64)).to(self.device)  # (N,)
        self.frame_index = torch.from_numpy(cache.frame_index.astype(np.int64)).to(self.device)  # (N, F)

    @classmethod
    def from_arrays(cls, features: np.ndarray, num_frames: np.ndarray | None = None,
                    frame_index: np.ndarray | None = None, device: str | torch.device = "cpu") -> "ClipBank":
        """A bank of clips embedded elsewhere (e.g. new videos): ``features`` (N, V, F, D) or (N, F, D)."""
        features = np.asarray(features)
        if features.ndim == 3:
            features = features[:, None]
        N, _, F_, _ = features.shape
        cache = FeatureCache(
            clip_id=[str(i) for i in range(N)], label=np.full(N, -1, np.int64), features=features.astype(np.float16),
            num_frames=np.full(N, F_, np.int32) if num_frames is None else np.asarray(num_frames, np.int32),
            frame_index=np.tile(np.arange(F_, dtype=np.int32), (N, 1)) if frame_index is None else frame_index,
            face_score=np.ones((N, F_), np.float32), attrs={})
        return cls(cache, device)

    @property
    def views(self) -> int:
        return self.features.shape[1]

    def generator(self, seed: int) -> torch.Generator:
        """A seeded random generator on the bank's device, for :meth:`sample`."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        return generator

    def sample(self, rows: torch.Tensor, frames: int, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x (B, T, D) float32, mask (B, T) bool, positions (B, T) in the cached frames), on the device.

        ``rows`` (B,) int64 on the device. ``generator`` given: training sampling (random frame per
        segment, random view); None: segment centres of view 0.
        """
        B = rows.shape[0]
        n = self.num_frames[rows].unsqueeze(1)  # (B, 1)
        k = torch.arange(frames, device=self.device)  # (T,)
        starts = (k * n + frames - 1) // frames  # (B, T) segment k: ceil(k n / T) .. ceil((k + 1) n / T) - 1
        ends = ((k + 1) * n + frames - 1) // frames
        if generator is None:
            picks = (starts + ends) // 2
            views = torch.zeros(B, dtype=torch.long, device=self.device)
        else:
            draw = torch.rand(B, frames, generator=generator, device=self.device)
            picks = torch.minimum(starts + (draw * (ends - starts)).long(), ends - 1)
            views = torch.randint(0, self.views, (B,), generator=generator, device=self.device)
        short = n < frames  # fewer frames than T: all of them, then the last one repeated as padding
        positions = torch.where(short, torch.minimum(k, n - 1), picks)  # (B, T)
        mask = ~short | (k < n)
        x = self.features[rows[:, None], views[:, None], positions].float()  # (B, T, D)
        return x, mask, positions

    def batch(self, rows: np.ndarray, frames: int, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """:meth:`sample` for numpy ``rows``, with the source frame index (B, T) on the host, -1 on padding."""
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)
        x, mask, positions = self.sample(index, frames, generator)
        source = torch.where(mask, self.frame_index[index[:, None], positions], -1)
        return x, mask, source.cpu().numpy()


# ------------------------------------------------------------------------------------ prediction


@dataclass
class Predictions:
    """Test-time outputs for some rows of a cache."""

    rows: np.ndarray  # (N,) rows of the cache
    probs: np.ndarray  # (N, C) float32
    influence: np.ndarray  # (N, T) float32 frame score of the predicted class, NaN on padding
    frame_index: np.ndarray  # (N, T) int64 source frames seen, -1 on padding
    loss: float  # mean cross-entropy over the labelled clips (NaN if none)
    frame_scores: np.ndarray | None = None  # (N, T, C) float32 per-frame score of every class, NaN on padding

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


@torch.no_grad()
def predict(model: TGDFER, bank: ClipBank, rows: np.ndarray, labels: np.ndarray | None = None,
            batch_size: int = 256, masks: np.ndarray | None = None, all_classes: bool = False) -> Predictions:
    """Run ``model`` on the test-time frames of ``rows``. X^FP is computed once for all batches.

    ``masks`` (N, T) bool, optional, further restricts the frames each clip may use (Table 6's
    inference on selected frames); padding stays masked whatever it says. ``all_classes`` also
    keeps the frame scores of every class (an ensemble needs those of the class it predicts).
    """
    model.eval()
    rows = np.asarray(rows, dtype=np.int64)
    T = model.config.num_frames
    text = model.text_features()  # (C, D)
    probs, influence, seen, losses, scores = [], [], [], [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        x, mask, source = bank.batch(chunk, T)
        if masks is not None:
            mask = mask & torch.as_tensor(masks[start:start + batch_size], device=mask.device)
        out = model(x, mask, text)
        probs.append(out.probs.float().cpu().numpy())
        influence.append(out.influence().float().cpu().numpy())
        seen.append(np.where(mask.cpu().numpy(), source, -1))
        if all_classes:
            scores.append(out.frame_scores.float().masked_fill(~out.mask.unsqueeze(-1), float("nan")).cpu().numpy())
        if labels is not None:
            y = torch.as_tensor(labels[chunk], device=x.device)
            known = y >= 0
            if known.any():
                losses.append(F.cross_entropy(out.logits[known], y[known], reduction="sum").item())
    count = 0 if labels is None else int((labels[rows] >= 0).sum())
    C = model.config.num_classes
    return Predictions(
        rows=rows,
        probs=np.concatenate(probs) if probs else np.zeros((0, C), np.float32),
        influence=np.concatenate(influence) if influence else np.zeros((0, T), np.float32),
        frame_index=np.concatenate(seen) if seen else np.zeros((0, T), np.int64),
        loss=sum(losses) / count if count else float("nan"),
        frame_scores=(np.concatenate(scores) if scores else np.zeros((0, T, C), np.float32)) if all_classes else None,
    )


# -------------------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    model: TGDFER  # holds the last epoch's weights
    best_state: dict[str, torch.Tensor]
    last_state: dict[str, torch.Tensor]
    best_epoch: int  # 1-based
    history: list[dict[str, float]]
    split: Split
    model_config: ModelConfig
    train_config: TrainConfig


@contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seeded RNGs and deterministic kernels inside the block; the caller's RNG state is restored."""
    # cuBLAS needs this before its first call to be deterministic; harmless elsewhere.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = torch.are_deterministic_algorithms_enabled()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous)


def parameter_groups(model: TGDFER, config: TrainConfig) -> list[dict]:
    """Two learning rates: the prompt context at ``prompt_lr``, everything else at ``lr``."""
    prompt = [p for name, p in model.named_parameters() if p.requires_grad and name.startswith("prompt.")]
    other = [p for name, p in model.named_parameters() if p.requires_grad and not name.startswith("prompt.")]
    groups = [{"params": other, "lr": config.lr, "name": "net"}]
    if prompt:
        groups.append({"params": prompt, "lr": config.prompt_lr, "name": "prompt"})
    return groups


def _score(pred: Predictions, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    y = labels[pred.rows]
    return {"uar": uar(y, pred.pred, num_classes), "war": war(y, pred.pred), "loss": pred.loss}


def _better(current: dict[str, float], best: dict[str, float] | None, metric: str) -> bool:
    """Higher metric wins; ties go to the lower validation loss, then to the later epoch."""
    if best is None:
        return True
    if metric == "loss":
        return current["loss"] <= best["loss"]
    key = (current[metric], -current["loss"])
    return key >= (best[metric], -best["loss"])


def train_model(model: TGDFER, bank: ClipBank, labels: np.ndarray, split: Split, config: TrainConfig,
                progress: bool = True, desc: str = "train") -> TrainResult:
    """Train ``model`` on ``split.train``; keep the best-on-validation and the last weights.

    Deterministic for a given seed on a given machine. Every epoch records the training loss and
    accuracy, the validation loss/UAR/WAR and, when ``config.track_test``, the test UAR/WAR, which
    are reported as a labelled extra and never used to choose weights.
    """
    labels = np.asarray(labels, dtype=np.int64)
    C, T = model.config.num_classes, model.config.num_frames
    device = bank.device
    model.to(device)
    optimizer = torch.optim.SGD(parameter_groups(model, config), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, fused=device.type == "cuda" or None)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=config.milestones, gamma=config.gamma)
    generator = bank.generator(config.seed)
    # bf16 keeps fp32's range, so no loss scaling; on CPU it would only slow the small network down.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.mixed_precision and device.type == "cuda")
    history: list[dict[str, float]] = []
    best_scores, best_state, best_epoch = None, None, 0
    y_all = torch.from_numpy(labels).to(device)
    train_rows = torch.from_numpy(split.train.astype(np.int64)).to(device)
    bar = tqdm(range(1, config.epochs + 1), desc=desc, unit="epoch", disable=not progress, leave=True)
    for epoch in bar:
        started = time.perf_counter()
        model.train()
        order = train_rows[torch.randperm(len(train_rows), generator=generator, device=device)]
        # Summed on the device and read once per epoch: a .item() per step would wait for the GPU.
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for start in range(0, len(order), config.batch_size):
            rows = order[start:start + config.batch_size]
            x, mask, _ = bank.sample(rows, T, generator)
            y = y_all[rows]
            with autocast:
                out = model(x, mask)  # X^FP once per step, for all classes
                loss = F.cross_entropy(out.logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * len(rows)
            correct += (out.logits.argmax(dim=1) == y).sum()
        lrs = {group["name"]: group["lr"] for group in optimizer.param_groups}
        scheduler.step()
        record: dict[str, float] = {"epoch": epoch, "lr": lrs["net"], "prompt_lr": lrs.get("prompt", float("nan")),
                                    "train_loss": total_loss.item() / len(order),
                                    "train_war": 100.0 * correct.item() / len(order)}
        if len(split.val):
            scores = _score(predict(model, bank, split.val, labels, config.eval_batch_size), labels, C)
            record.update({f"val_{key}": value for key, value in scores.items()})
        if config.track_test:
            scores = _score(predict(model, bank, split.test, labels, config.eval_batch_size), labels, C)
            record.update({f"test_{key}": value for key, value in scores.items()})
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        if len(split.val):
            current = {key: record[f"val_{key}"] for key in ("uar", "war", "loss")}
            if _better(current, best_scores, config.select_metric):
                best_scores, best_epoch = current, epoch
                best_state = model.learned_state_dict()
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", val_uar=f"{record.get('val_uar', float('nan')):.1f}",
                        val_war=f"{record.get('val_war', float('nan')):.1f}")
    last_state = model.learned_state_dict()
    if best_state is None:  # no validation part: the last epoch is the only candidate
        best_state, best_epoch = last_state, config.epochs
    return TrainResult(model=model, best_state=best_state, last_state=last_state, best_epoch=best_epoch,
                       history=history, split=split, model_config=model.config, train_config=config)


def model_config_for(settings: ModelConfig | dict[str, Any], features: FeatureCache, num_classes: int) -> ModelConfig:
    """The model settings completed with what the data fixes (embedding size, class count)."""
    values = settings.to_dict() if isinstance(settings, ModelConfig) else dict(settings)
    values.update(embed_dim=int(features.features.shape[-1]), num_classes=num_classes)
    return ModelConfig.from_dict(values)


def check_compatible(features: FeatureCache, text: TextCache) -> None:
    """Features and texts must share the class list and the CLIP weights (hash) they came from."""
    if features.class_names != text.class_names:
        raise ValueError(f"class lists differ: features {features.class_names}, text {text.class_names}")
    ours, theirs = features.attrs.get("checkpoint_sha256"), text.attrs.get("checkpoint_sha256")
    if ours != theirs:
        raise ValueError(f"features and text embeddings come from different CLIP weights ({ours} vs {theirs})")
    if text.class_embeddings.shape[1] != features.features.shape[-1]:
        raise ValueError(f"text embeddings are {text.class_embeddings.shape[1]}-d, features "
                         f"{features.features.shape[-1]}-d")


def fit(features: FeatureCache, text: TextCache, test_fold: np.ndarray, fold: int,
        model_settings: ModelConfig | dict[str, Any], config: TrainConfig, encoder: TextEncoder | None = None,
        device: str = "cpu", progress: bool = True) -> TrainResult:
    """Train one fold on a feature cache and a text cache: everything the ``train`` stage does.

    ``test_fold`` (N,) aligns with the cache rows (0 = training only). ``encoder`` is the frozen
    CLIP text tower, needed when the model learns its text context or prepends the visual prompt.
    """
    check_compatible(features, text)
    model_config = model_config_for(model_settings, features, len(text.class_names))
    labels = features.label.astype(np.int64)
    split = fold_split(labels, np.asarray(test_fold), fold, config.val_fraction, config.seed)
    with deterministic(config.seed):
        model = build_model(model_config, text.class_names, text.class_prompts, text.descriptor_prompts,
                            torch.from_numpy(text.class_embeddings), torch.from_numpy(text.descriptor_embeddings),
                            encoder=encoder, seed=config.seed)
        bank = ClipBank(features, device)
        return train_model(model, bank, labels, split, config, progress=progress, desc=f"fold {fold}")


# ------------------------------------------------------------------------------------ checkpoints


def save_checkpoint(path: str | Path, result: TrainResult, *, class_names: Sequence[str], text: TextCache,
                    clip_model: str, clip_sha256: str, random_weights: bool, fold: int,
                    extra: dict[str, Any] | None = None) -> None:
    """One ``torch.save`` of plain tensors, numbers and strings (loads with ``weights_only=True``).

    Holds the best and last weights (without the frozen CLIP tower), the full model and training
    configs, class names, the prompt texts, the X^CP/X^FP text embeddings (inside the weights) and
    the identity of the CLIP weights the features and texts were made with.
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
        "best_epoch": int(result.best_epoch),
        "epochs": int(result.train_config.epochs),
        "states": {"best": result.best_state, "last": result.last_state},
        "history": [{key: float(value) for key, value in record.items()} for record in result.history],
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def _learner_texts(config: ModelConfig, text: TextCache) -> list[str]:
    """The per-class texts after the context, as :func:`tg_dfer.model.build_model` chooses them."""
    descriptors = config.text_prompt == "descriptors"
    if config.learnable_context:
        return list(text.descriptor_prompts) if descriptors else [f"{name}." for name in text.class_names]
    return list(text.descriptor_prompts if descriptors else text.class_prompts)


def load_payload(path: str | Path, expected: str, error_type: type[Exception], what: str, missing: str,
                 hints: dict[str, str] | None = None) -> dict[str, Any]:
    """A ``torch.save`` file of tensors and plain containers whose ``format`` key is ``expected``.

    Read with ``weights_only=True``, so no code runs. Errors are ``error_type`` naming the file;
    ``missing`` says how to make it, ``hints`` what to do with a file of another known format.
    """
    path = Path(path)
    if not path.is_file():
        raise error_type(f"{path}: no such {what} ({missing})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for foreign files
        raise error_type(f"{path}: not a readable {what} ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != expected:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        hint = (hints or {}).get(found)
        raise error_type(f"{path}: format {found!r}, expected {expected}" + (f" ({hint})" if hint else ""))
    return payload


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no code runs) and check its format."""
    return load_payload(path, CHECKPOINT_FORMAT, CheckpointError, "checkpoint", "run the train stage for this fold")


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
