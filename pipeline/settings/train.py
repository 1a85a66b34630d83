"""The ``train`` section: the folds, the device, the model (:class:`tg_dfer.model.ModelConfig`) and
its optimisation (:class:`tg_dfer.training.config.TrainConfig`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from pipeline.settings.params import (DEFAULT_PARAMS, build, checked_fields, dataclass_settings, require, section,
                                      settings_error)
from tg_dfer.model import ModelConfig
from tg_dfer.training.config import TrainConfig

FIXED_BY_DATA = ("embed_dim", "num_classes")  # ModelConfig fields the data fixes, not params.yaml


@dataclass
class TrainSettings:
    folds: list[int]
    device: str
    model: ModelConfig  # train.model; embed_dim and num_classes None until model_config
    optim: TrainConfig


def train_folds(params: dict[str, Any], path: str = DEFAULT_PARAMS) -> list[int]:
    """``train.folds``: the folds DVC trains (and evaluate, export and report use)."""
    folds = require(section(params, "train", path), "folds", list, "train")
    if not folds or not all(isinstance(fold, int) and not isinstance(fold, bool) and fold >= 1 for fold in folds):
        raise click.ClickException(f"params: train.folds must be a non-empty list of fold numbers >= 1, got {folds!r}")
    return folds


def train_settings(params: dict[str, Any], path: str = DEFAULT_PARAMS) -> TrainSettings:
    """The section, checked (names, types, ranges, cross-field rules) before any work; the model's
    embedding size and class count come from the data, later (:func:`model_config`)."""
    values = section(params, "train", path)
    model = checked_fields(ModelConfig, require(values, "model", dict, "train"), "train.model", FIXED_BY_DATA)
    return TrainSettings(train_folds(params, path), require(values, "device", str, "train"),
                         build(ModelConfig, {**model, **dict.fromkeys(FIXED_BY_DATA)}, "train.model"),
                         dataclass_settings(TrainConfig, require(values, "optim", dict, "train"), "train.optim"))


def model_config(settings: TrainSettings, embed_dim: int, num_classes: int, where: str = "") -> ModelConfig:
    """The ModelConfig of a run: train.model completed with what the data fixes (``where``: whence
    ``embed_dim``, named in an error)."""
    try:
        return settings.model.for_data(embed_dim, num_classes)
    except ValueError as error:
        note = f" (embed_dim {embed_dim} comes from {where})" if where else ""
        raise settings_error(ModelConfig, error, "train.model", note) from error
