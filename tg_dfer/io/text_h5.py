"""The text h5 (schema ``tg-dfer/text/2``): class prompt and descriptor embeddings of a prompt set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tg_dfer import __version__
from tg_dfer.io.h5 import STRING, AtomicH5, SchemaError, decode_strings, open_checked, schema_with_earlier, set_attrs

# /1 lacks the cpu_profile attribute (docs/contracts.md); it reads the same otherwise.
TEXT_SCHEMA = schema_with_earlier("tg-dfer/text/2", "tg-dfer/text/1")


@dataclass
class TextCache:
    """Contents of a text h5 (schema ``tg-dfer/text/2``). C classes, D embedding size."""

    class_names: list[str]
    class_prompts: list[str]
    descriptor_prompts: list[str]
    class_embeddings: np.ndarray  # (C, D) float32, L2-normalised
    descriptor_embeddings: np.ndarray  # (C, D) float32, L2-normalised
    attrs: dict[str, Any]


TEXT_ATTRS = ("clip_model", "checkpoint_sha256", "random_weights", "demo_weights", "embed_dim", "prompt_set")


def write_text(path: str | Path, cache: TextCache) -> None:
    missing = [key for key in TEXT_ATTRS if key not in cache.attrs]
    if missing:
        raise ValueError(f"text h5 attributes missing: {missing}")
    with AtomicH5(path) as atomic:
        handle = atomic.handle
        set_attrs(handle, {"schema": TEXT_SCHEMA, "package_version": __version__, **cache.attrs})
        handle["class_names"] = np.array(cache.class_names, dtype=object).astype(STRING)
        handle["class_prompts"] = np.array(cache.class_prompts, dtype=object).astype(STRING)
        handle["descriptor_prompts"] = np.array(cache.descriptor_prompts, dtype=object).astype(STRING)
        handle["class_embeddings"] = cache.class_embeddings.astype(np.float32)
        handle["descriptor_embeddings"] = cache.descriptor_embeddings.astype(np.float32)


def read_text(path: str | Path) -> TextCache:
    with open_checked(path, TEXT_SCHEMA) as handle:
        cache = TextCache(
            class_names=decode_strings(handle["class_names"][:]),
            class_prompts=decode_strings(handle["class_prompts"][:]),
            descriptor_prompts=decode_strings(handle["descriptor_prompts"][:]),
            class_embeddings=handle["class_embeddings"][:],
            descriptor_embeddings=handle["descriptor_embeddings"][:],
            attrs=dict(handle.attrs),
        )
    C = len(cache.class_names)
    for name in ("class_embeddings", "descriptor_embeddings"):
        if getattr(cache, name).shape[0] != C:
            raise SchemaError(f"{path}: {name} has {getattr(cache, name).shape[0]} rows for {C} classes")
    return cache
