"""The ``evaluate`` section (:class:`tg_dfer.evaluate.EvaluateConfig`)."""

from __future__ import annotations

from typing import Any

from pipeline.settings.params import DEFAULT_PARAMS, dataclass_settings, section
from tg_dfer.evaluate import EvaluateConfig


def evaluate_config(params: dict[str, Any], path: str = DEFAULT_PARAMS) -> EvaluateConfig:
    return dataclass_settings(EvaluateConfig, section(params, "evaluate", path), "evaluate")
