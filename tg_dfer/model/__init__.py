"""The TG-DFER model (paper Sec. 3) on cached CLIP frame embeddings.

* :mod:`~tg_dfer.model.config`: :class:`ModelConfig`, every switch of the model.
* :mod:`~tg_dfer.model.temporal`: the multi-grained temporal network (Eqs. 2-5).
* :mod:`~tg_dfer.model.prompt`: the frozen CLIP text tower and the learnable text prompt (Eq. 6).
* :mod:`~tg_dfer.model.tgdfer`: visual prompt (Eqs. 7-10) and MIL bag prediction (Eq. 11).
"""

from tg_dfer.model.config import MIL_POOLINGS, TEXT_PROMPTS, VISUAL_PROMPTS, ModelConfig
from tg_dfer.model.prompt import PromptLearner, TextEncoder
from tg_dfer.model.temporal import CoarseGrained, FineGrained, MultiGrainedTemporal
from tg_dfer.model.tgdfer import TGDFER, Output, build_model, count_parameters, mil_pool

__all__ = [
    "MIL_POOLINGS", "TEXT_PROMPTS", "VISUAL_PROMPTS", "ModelConfig", "PromptLearner", "TextEncoder", "CoarseGrained",
    "FineGrained", "MultiGrainedTemporal", "TGDFER", "Output", "build_model", "count_parameters", "mil_pool",
]
