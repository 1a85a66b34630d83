"""The ``clip`` section: which CLIP weights are the backbone (:class:`tg_dfer.backbone.BackboneSpec`)
and the device that runs it. The section keeps its published name; in code it is the backbone."""

from __future__ import annotations

import os
from typing import Any

import click

from pipeline.settings.dataset import is_demo
from pipeline.settings.params import DEFAULT_PARAMS, require, section
from tg_dfer.backbone import BackboneSpec
from tg_dfer.weights import DOWNLOADS

RANDOM_WEIGHTS_ENV = "TG_DFER_ALLOW_RANDOM_WEIGHTS"


def backbone_spec(params: dict[str, Any], path: str = DEFAULT_PARAMS) -> BackboneSpec:
    """The section checked; random and demo weights only for the demo dataset (or tests that ask)."""
    values = section(params, "clip", path)
    demo = is_demo(params)
    random_allowed = demo or os.environ.get(RANDOM_WEIGHTS_ENV) == "1"
    spec = BackboneSpec(name=require(values, "model", str, "clip"), checkpoint=values.get("checkpoint") or None,
                        seed=require(values, "seed", int, "clip"),
                        download=require(values, "download", str, "clip", choices=DOWNLOADS),
                        # The demo's own backbone learnt rendered faces only (tg_dfer.backbone refuses it otherwise).
                        allow_demo_weights=demo, allow_random_weights=random_allowed)
    if spec.checkpoint == "random" and not random_allowed:
        adapter = section(params, "dataset").get("adapter")
        raise click.ClickException(
            "params: clip.checkpoint = random is only for the demo dataset: features from random CLIP weights "
            f"mean nothing for dataset adapter {adapter!r}. Point clip.checkpoint at real weights "
            f"(tests may set {RANDOM_WEIGHTS_ENV}=1)."
        )
    return spec


def backbone_device(params: dict[str, Any], path: str = DEFAULT_PARAMS) -> str:
    """clip.device: auto | cpu | cuda."""
    return require(section(params, "clip", path), "device", str, "clip")
