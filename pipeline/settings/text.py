"""The ``text`` section: the prompt set (class list, class prompt template, descriptors)."""

from __future__ import annotations

from typing import Any

from pipeline.settings.params import DEFAULT_PARAMS, require, section


def prompt_set(params: dict[str, Any], path: str = DEFAULT_PARAMS) -> str:
    """text.prompt_set: a name under tg_dfer/prompts/ or the path of a prompt-set JSON file."""
    return require(section(params, "text", path), "prompt_set", str, "text")
