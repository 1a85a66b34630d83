"""The frozen CLIP backbone: loading weights offline, preprocessing and encoding.

Weights come from, in this order of precedence:

* ``checkpoint="random"``: the real architecture with seeded random weights. Only for the demo and
  tests; every file made from it records ``random_weights = True``.
* ``checkpoint=<path>``: a local file, either an official TorchScript archive as OpenAI publishes
  them or a plain ``state_dict`` (loaded with ``weights_only=True``, so no pickled code runs).
  A plain file may wrap it as ``{"state_dict": ..., "demo_weights": true, ...}``: the demo's own
  backbone (``tg_dfer.demo.pretrain``), trained on rendered faces only. It is refused unless the
  caller allows demo weights, and every file made from it records ``demo_weights = True``.
  Wrapped as ``{"state_dict": ..., "random_weights": true, "seed": s}`` it holds the seeded random
  weights of ``checkpoint="random"`` with seed s (tests put such a file where real weights go, to
  run the real loading path); it loads as those, recorded as random, only when the caller allows
  random weights.
* nothing: the clip package's own cache file (``~/.cache/clip/ViT-B-32.pt`` for ViT-B/32),
  fetched there from OpenAI's address on first use when downloads are allowed, its SHA-256 checked
  (:mod:`tg_dfer.weights`).

A missing file is a :class:`WeightsError` that names the file to provide. The identity of the
weights is their SHA-256, recorded in every downstream file.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from tg_dfer.hashes import sha256_file
from tg_dfer.weights import DOWNLOADS, WeightFile, WeightsError, ensure_file, url_sha256

with warnings.catch_warnings():
    # openai-clip imports pkg_resources only for a version check; its deprecation warning is noise.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    import clip
    from clip.model import CLIP, build_model

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Constructor arguments of OpenAI's CLIP class for the architectures a seeded random model can take.
ARCHITECTURES = {
    "ViT-B/32": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32,
                     context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
                     transformer_layers=12),
    "ViT-B/16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
                     context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
                     transformer_layers=12),
    "ViT-L/14": dict(embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024, vision_patch_size=14,
                     context_length=77, vocab_size=49408, transformer_width=768, transformer_heads=12,
                     transformer_layers=12),
}



@dataclass(frozen=True)
class BackboneSpec:
    """Which CLIP weights to load (the ``clip`` params section): :func:`load_backbone` takes it."""

    name: str = "ViT-B/32"  # the architecture, recorded with the weights (the demo's own: "demo")
    # None: the clip package's cache file; "random": seeded random weights of the real architecture
    # (demo and tests only); anything else: the path of a weights file.
    checkpoint: str | None = None
    seed: int = 0  # of random weights
    download: str = "never"  # auto | never: fetch the cache file when it is missing (a path is never replaced)
    # The demo's own backbone learnt rendered faces only: it loads only when this is set.
    allow_demo_weights: bool = False
    # A weights file marked as random weights (tests) loads only when this is set.
    allow_random_weights: bool = False

    def __post_init__(self) -> None:
        if self.download not in DOWNLOADS:
            raise ValueError(f"download must be one of {', '.join(DOWNLOADS)}, got {self.download!r}")
        if self.checkpoint is not None and not isinstance(self.checkpoint, str):
            object.__setattr__(self, "checkpoint", str(self.checkpoint))  # a Path given is kept as its text

@dataclass
class Backbone:
    """A frozen CLIP model in eval mode, with the identity of its weights."""

    model: CLIP
    name: str
    sha256: str
    random_weights: bool
    source: str
    demo_weights: bool = False  # the demo's backbone, trained on rendered faces: demo only

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1])

    @property
    def input_resolution(self) -> int:
        return int(self.model.visual.input_resolution)

    def attrs(self) -> dict:
        """The model attributes every features or text file records."""
        return {"clip_model": self.name, "checkpoint_sha256": self.sha256, "random_weights": self.random_weights,
                "demo_weights": self.demo_weights, "embed_dim": self.embed_dim, "clip_source": self.source}


def weights_note(attrs: dict) -> str:
    """What a message about files made with these weights adds (``attrs`` with ``random_weights`` and
    ``demo_weights`` keys, as Backbone.attrs(), the h5 files and model files record them)."""
    if attrs.get("random_weights"):
        return " (RANDOM CLIP WEIGHTS: for testing only)"
    if attrs.get("demo_weights"):
        return " (the demo's own backbone, trained on rendered faces: for the demo only)"
    return ""


def default_checkpoint(name: str) -> Path:
    """Where the clip package keeps (and ``clip.load`` looks for) the weights of ``name``."""
    if name not in clip.available_models():
        raise WeightsError(f"unknown CLIP model {name!r}; known: {', '.join(clip.available_models())}")
    url = clip.clip._MODELS[name]
    return Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)


def backbone_weight_file(name: str, url: str | None = None) -> WeightFile:
    """The weights of ``name`` in the clip package's cache, as OpenAI publishes them; ``url`` stands in
    for OpenAI's address (a mirror, a test server) and must carry the SHA-256 the same way."""
    path = default_checkpoint(name)
    url = url or clip.clip._MODELS[name]
    return WeightFile(f"CLIP weights for {name}", path, url, url_sha256(url),
                      f"the file clip.load('{name}') downloads")


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """A hash of weights that does not depend on how they were serialised."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().to("cpu", torch.float32).contiguous()
        digest.update(key.encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def random_weights_model(name: str = "ViT-B/32", seed: int = 0) -> CLIP:
    """The real architecture of ``name`` with weights drawn from CLIP's own initialiser, seeded."""
    if name not in ARCHITECTURES:
        raise WeightsError(f"no random architecture for {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(**ARCHITECTURES[name])
    return model.float().eval()


@dataclass(frozen=True)
class _Checkpoint:
    state_dict: dict[str, torch.Tensor]
    demo: bool = False  # marked as the demo's own backbone
    random_seed: int | None = None  # marked as the seeded random weights of this seed


def _read_checkpoint(path: Path) -> _Checkpoint:
    """The CLIP state_dict of a checkpoint file and what it is marked as."""
    try:
        with open(path, "rb") as handle, warnings.catch_warnings():
            # OpenAI publishes TorchScript archives; torch.jit.load is the only reader for them.
            warnings.filterwarnings("ignore", message=".*torch.jit.load. is deprecated", category=FutureWarning)
            return _Checkpoint(torch.jit.load(handle, map_location="cpu").state_dict())
    except RuntimeError:
        pass  # not TorchScript: a plain state_dict
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for foreign files
        raise WeightsError(f"{path}: not a CLIP checkpoint (neither TorchScript nor a state_dict): {error}") from error
    marks = {}
    if isinstance(loaded, dict) and "state_dict" in loaded:
        marks = {"demo": bool(loaded.get("demo_weights", False)),
                 "random_seed": int(loaded.get("seed", 0)) if loaded.get("random_weights") else None}
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or "text_projection" not in loaded:
        raise WeightsError(f"{path}: no CLIP weights in this file (no 'text_projection' tensor)")
    return _Checkpoint(loaded, **marks)


PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def model_dtype(precision: str, device: str) -> torch.dtype:
    """The weight dtype of ``precision`` (auto: fp16 on a CUDA GPU, where CLIP was trained in it; fp32 elsewhere)."""
    if precision == "auto":
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of auto, {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def load_backbone(spec: BackboneSpec, device: str = "cpu", precision: str = "auto", url: str | None = None
                  ) -> Backbone:
    """Load the frozen CLIP weights ``spec`` names; see the module docstring for where they come from.

    ``precision`` (auto | fp32 | fp16 | bf16) is the dtype the weights are cast to; CLIP's own
    LayerNorm still computes in fp32 and encoders return fp32 embeddings. ``url``
    (:func:`backbone_weight_file`) stands in for OpenAI's address of the cache file.
    """
    name, checkpoint, seed = spec.name, spec.checkpoint, spec.seed
    dtype = model_dtype(precision, device)
    if checkpoint == "random":
        model = random_weights_model(name, seed)
        sha = state_dict_sha256(model.state_dict())
        loaded = Backbone(model, name, sha, random_weights=True, source=f"random(seed={seed})")
    else:
        path = Path(checkpoint) if checkpoint else ensure_file(backbone_weight_file(name, url), spec.download)
        if not path.is_file():
            raise WeightsError(f"CLIP weights for {name} not found at {path}: give the path of the weights file "
                               "you have as the checkpoint, or none for the clip package's cache file")
        checkpoint = _read_checkpoint(path)
        state_dict, demo = checkpoint.state_dict, checkpoint.demo
        if checkpoint.random_seed is not None and not spec.allow_random_weights:
            raise WeightsError(f"{path} holds seeded random weights (a test's stand-in): features from them mean "
                               "nothing. Put the real CLIP weights there")
        if demo and not spec.allow_demo_weights:
            raise WeightsError(f"{path} holds the demo's own backbone, trained on rendered faces only: its features "
                               "mean nothing for real footage. Use real CLIP weights (an empty checkpoint: the "
                               "clip package's cache file) for any dataset but the demo")
        try:
            model = build_model(dict(state_dict)).float().eval()
            # build_model rounds the weights to fp16; load them again to keep fp32 checkpoints exact.
            model.load_state_dict({key: value for key, value in state_dict.items()
                                   if key not in ("input_resolution", "context_length", "vocab_size")})
        except (KeyError, RuntimeError) as error:
            raise WeightsError(f"{path}: weights do not fit a CLIP model: {error}") from error
        if checkpoint.random_seed is not None:  # recorded as checkpoint="random" would be, so predict remakes them
            loaded = Backbone(model, name, state_dict_sha256(model.state_dict()), random_weights=True,
                              source=f"random(seed={checkpoint.random_seed})")
        else:
            loaded = Backbone(model, name, sha256_file(path), random_weights=False, source=str(path),
                              demo_weights=demo)
    for parameter in loaded.model.parameters():
        parameter.requires_grad_(False)
    loaded.model.to(device=device, dtype=dtype)
    for module in loaded.model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.float()  # CLIP's LayerNorm computes in fp32 (as clip's own fp16 conversion leaves it)
    return loaded


def preprocess(images: torch.Tensor, size: int = 224) -> torch.Tensor:
    """CLIP's preprocessing on a batch of uint8 images (B, H, W, 3) -> float (B, 3, size, size).

    The same steps as ``clip.clip._transform``: bicubic resize of the shorter side to ``size``,
    centre crop, scale to [0, 1], normalise. Works on whatever device ``images`` lives on.
    """
    x = images.permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
    height, width = x.shape[-2:]
    if min(height, width) != size:
        # torchvision (and so clip's transform) truncates the longer side: int(), not round().
        new_size = (size, int(size * width / height)) if height <= width else (int(size * height / width), size)
        x = F.interpolate(x, size=new_size, mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)
        # PIL resizes in 8 bits; rounding the same way keeps the two paths within float tolerance.
        x = torch.round(x * 255.0) / 255.0
        height, width = new_size
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    x = x[..., top:top + size, left:left + size]
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def encode_images(loaded: Backbone, pixels: torch.Tensor) -> torch.Tensor:
    """L2-normalised image embeddings (B, D) in float32 of preprocessed pixels (B, 3, S, S)."""
    model = loaded.model
    features = model.encode_image(pixels.to(model.dtype))
    return F.normalize(features.float(), dim=-1)


@torch.no_grad()
def encode_texts(loaded: Backbone, texts: Sequence[str]) -> np.ndarray:
    """L2-normalised text embeddings (C, D) as float32 numpy; long prompts are truncated."""
    device = loaded.model.text_projection.device
    tokens = clip.tokenize(list(texts), truncate=True).to(device)
    return F.normalize(loaded.model.encode_text(tokens).float(), dim=-1).cpu().numpy()
