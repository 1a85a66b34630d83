"""The training loop of one fold: seeded, deterministic, keeping the best-on-validation and last weights.

The feature cache sits on the training device or stays in its file, read per batch
(:class:`~tg_dfer.training.bank.FeatureBank`, ``TrainConfig.feature_storage``); each step gathers
its clips from it, so an epoch costs only the small temporal network and, with
learnable context, one pass of the frozen text tower over the C class prompts (never per clip).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from tg_dfer.determinism import deterministic
from tg_dfer.hashes import check_same_weights
from tg_dfer.io.features_h5 import FeatureCache
from tg_dfer.io.text_h5 import TextCache
from tg_dfer.metrics import uar, war
from tg_dfer.model import TGDFER, ModelConfig, TextEncoder, build_model
from tg_dfer.training.bank import FeatureBank
from tg_dfer.training.config import TrainConfig
from tg_dfer.training.bank_scores import BankPredictions, predict_rows
from tg_dfer.training.splits import Split, fold_split


@dataclass
class TrainResult:
    model: TGDFER  # holds the last epoch's weights
    best_state: dict[str, torch.Tensor]
    last_state: dict[str, torch.Tensor]
    best_epoch: int  # 1-based
    history: list[dict[str, float]]  # per epoch: losses, scores, learning rates; no times, so that it repeats
    split: Split
    model_config: ModelConfig
    train_config: TrainConfig
    epoch_seconds: list[float]  # wall-clock time of each epoch, kept apart from the history


def parameter_groups(model: TGDFER, config: TrainConfig) -> list[dict]:
    """Two learning rates: the learnable prompts at ``prompt_lr``, everything else at ``lr``.

    The prompts are the text context (``prompt.*``, the PromptLearner, whose text tower is frozen),
    and with ``prompt_lr_scope: prompts`` also the visual prompt's layers (``prompt_mlp``, ``visual_proj``).
    """
    prefixes = ("prompt.",) + (("prompt_mlp.", "visual_proj.") if config.prompt_lr_scope == "prompts" else ())
    prompt = [p for name, p in model.named_parameters() if p.requires_grad and name.startswith(prefixes)]
    other = [p for name, p in model.named_parameters() if p.requires_grad and not name.startswith(prefixes)]
    groups = [{"params": other, "lr": config.lr, "name": "net"}]
    if prompt:
        groups.append({"params": prompt, "lr": config.prompt_lr, "name": "prompt"})
    return groups


def _score(pred: BankPredictions, labels: np.ndarray, num_classes: int) -> dict[str, float]:
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


def train_model(model: TGDFER, bank: FeatureBank, labels: np.ndarray, split: Split, config: TrainConfig,
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
    model.use_activation_checkpointing(config.activation_checkpointing)
    optimizer = torch.optim.SGD(parameter_groups(model, config), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, fused=device.type == "cuda" or None)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=config.milestones, gamma=config.gamma)
    generator = bank.generator(config.seed)
    # bf16 keeps fp32's range, so no loss scaling; on CPU it would only slow the small network down.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.mixed_precision and device.type == "cuda")
    history: list[dict[str, float]] = []
    epoch_seconds: list[float] = []
    best_scores, best_state, best_epoch = None, None, 0
    y_all = torch.from_numpy(labels).to(device)
    train_rows = torch.from_numpy(split.train.astype(np.int64)).to(device)
    bar = tqdm(range(1, config.epochs + 1), desc=desc, unit="epoch", disable=not progress, leave=True)
    for epoch in bar:
        started = time.perf_counter()
        model.train()
        pooling = "mean" if epoch <= config.mean_pooling_epochs else None
        order = train_rows[torch.randperm(len(train_rows), generator=generator, device=device)]
        # Summed on the device and read once per epoch: a .item() per step would wait for the GPU.
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for start in range(0, len(order), config.batch_size):
            rows = order[start:start + config.batch_size]
            x, mask, _ = bank.sample(rows, T, generator)
            y = y_all[rows]
            with autocast:
                out = model(x, mask, pooling=pooling)  # X^FP once per step, for all classes
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
            scores = _score(predict_rows(model, bank, split.val, labels, config.eval_batch_size), labels, C)
            record.update({f"val_{key}": value for key, value in scores.items()})
        if config.track_test:
            scores = _score(predict_rows(model, bank, split.test, labels, config.eval_batch_size), labels, C)
            record.update({f"test_{key}": value for key, value in scores.items()})
        epoch_seconds.append(time.perf_counter() - started)
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
                       history=history, split=split, model_config=model.config, train_config=config,
                       epoch_seconds=epoch_seconds)


def model_config_for(settings: ModelConfig | dict[str, Any], features: FeatureCache, num_classes: int) -> ModelConfig:
    """``settings`` (a config, or a mapping of its fields but the two the data fixes) completed by
    :meth:`ModelConfig.for_data` with the features' embedding size and ``num_classes``."""
    if not isinstance(settings, ModelConfig):
        settings = ModelConfig.from_dict({"embed_dim": None, "num_classes": None, **settings})
    return settings.for_data(int(features.features.shape[-1]), num_classes)


def check_compatible(features: FeatureCache, text: TextCache) -> None:
    """Features and texts must share the class list and the CLIP weights (hash) they came from."""
    if features.class_names != text.class_names:
        raise ValueError(f"class lists differ: features {features.class_names}, text {text.class_names}")
    check_same_weights(str(features.attrs.get("checkpoint_sha256")), str(text.attrs.get("checkpoint_sha256")),
                       "the feature cache", "the text embeddings", "re-run the text and embed stages with one clip setting")
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
        bank = FeatureBank(features, device)
        return train_model(model, bank, labels, split, config, progress=progress, desc=f"fold {fold}")
