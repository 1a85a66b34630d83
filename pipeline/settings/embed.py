"""The ``embed`` section: the frame features cached from the face crops (:class:`tg_dfer.embed.images.EmbedConfig`)."""

from __future__ import annotations

from typing import Any

from pipeline.settings.params import DEFAULT_PARAMS, dataclass_settings, section
from tg_dfer.embed.images import EmbedConfig


def embed_config(params: dict[str, Any], path: str = DEFAULT_PARAMS) -> EmbedConfig:
    return dataclass_settings(EmbedConfig, section(params, "embed", path), "embed")
