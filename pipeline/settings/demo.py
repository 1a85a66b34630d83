"""The ``demo`` section: the generated default dataset (:class:`tg_dfer.demo.clips.DemoConfig`)."""

from __future__ import annotations

from typing import Any

from pipeline.settings.params import DEFAULT_PARAMS, dataclass_settings, section
from tg_dfer.demo.clips import DemoConfig


def demo_config(params: dict[str, Any], path: str = DEFAULT_PARAMS) -> DemoConfig:
    return dataclass_settings(DemoConfig, section(params, "demo", path), "demo")
