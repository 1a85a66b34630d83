"""Prompt texts -> CLIP text embeddings (the text h5)."""

from __future__ import annotations

from tg_dfer.backbone import Backbone, encode_texts
from tg_dfer.io.text_h5 import TextCache
from tg_dfer.prompt_sets import PromptSet


def build_text_cache(loaded: Backbone, prompts: PromptSet) -> TextCache:
    """Embeddings of the plain class prompts (X^CP) and the descriptor prompts of ``prompts``."""
    return TextCache(
        class_names=prompts.class_names,
        class_prompts=prompts.class_prompts,
        descriptor_prompts=prompts.descriptor_prompts,
        class_embeddings=encode_texts(loaded, prompts.class_prompts),
        descriptor_embeddings=encode_texts(loaded, prompts.descriptor_prompts),
        attrs={**loaded.attrs(), "prompt_set": prompts.name, "prompt_source": prompts.source,
               "class_prompt_template": prompts.class_prompt_template},
    )
