"""The ``backbone`` section: the demo's own small CLIP and its pretraining
(:class:`tg_dfer.demo.pretrain.BackboneConfig`)."""

from __future__ import annotations

from typing import Any

from pipeline.settings.params import DEFAULT_PARAMS, dataclass_settings, section
from tg_dfer.demo.pretrain import BackboneConfig


def backbone_config(params: dict[str, Any], path: str = DEFAULT_PARAMS) -> BackboneConfig:
    return dataclass_settings(BackboneConfig, section(params, "backbone", path), "backbone")
