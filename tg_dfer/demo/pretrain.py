"""Pretraining the demo's backbone: rendered face crops with captions, a small CLIP, contrastive training.

Why a backbone of its own
    Seeded random CLIP weights make every demo number chance. This module renders faces with the
    demo's own renderer, captions them (:mod:`tg_dfer.demo.captions`) and trains OpenAI's
    ``clip.model.CLIP`` class at a small size on them with CLIP's symmetric contrastive loss. The
    result is a plain state_dict checkpoint that :func:`tg_dfer.backbone.load_backbone` reads like any
    other, so every downstream path (features, text cache, learnable context, export, predict)
    runs unchanged; its ``demo_weights`` marker is recorded in every file made from it.

The pretraining set is :mod:`tg_dfer.demo.pretrain_faces`: people no demo clip shows, their
faces cut as the faces stage cuts them and captioned (:mod:`tg_dfer.demo.captions`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import clip
import numpy as np
import torch
import torch.nn.functional as F
from clip.model import CLIP

from tg_dfer.backbone import preprocess
from tg_dfer.demo.clips import DEMO_CLASSES
from tg_dfer.demo.pretrain_faces import SEED_LIMIT, FaceSet, held_out_plan, render_faces, training_plan
from tg_dfer.faces import CropPolicy
from tg_dfer.io.atomic import atomic_path
from tg_dfer.metrics import pair_auroc
from tg_dfer.prompt_sets import PromptSet
from tg_dfer.determinism import deterministic

CHECKPOINT_FORMAT = "tg-dfer/demo-backbone/1"
# The pipeline's CLIP input (ViT-B/32's): the image tower must take the crops as every CLIP does.
INPUT_RESOLUTION = 224
CONTEXT_LENGTH = 77  # CLIP's text context and BPE vocabulary, so clip.tokenize and the prompt learner fit
VOCAB_SIZE = 49408
# The TG-DFER temporal transformers split the embedding into 8 heads.
TEMPORAL_HEADS = 8


@dataclass
class BackboneConfig:
    """The pretraining set, the architecture (``clip.model.CLIP`` arguments) and the optimisation."""

    # pretraining set
    identities: int = 1000  # rendered people, each with its own scene
    images_per_identity: int = 8  # faces of one person (classes and intensities drawn at random)
    held_out_identities: int = 60  # further people, never trained on: retrieval and zero-shot checks
    seed: int = 0
    crop_jitter: float = 0.04  # sd of the crop centre (in crop sides) and of the log crop size
    render_workers: int = 0  # threads rendering people (0 = up to 4, one per core)
    # architecture: CLIP's ResNet image tower (as in RN50) and its text transformer
    embed_dim: int = 64
    vision_width: int = 8  # channels of the first stage; the attention pool has 32x as many
    vision_layers: list[int] = field(default_factory=lambda: [1, 1, 1, 1])  # bottleneck blocks per stage
    text_width: int = 64
    text_layers: int = 1
    # optimisation (AdamW with CLIP's betas, linear warm-up then cosine decay)
    epochs: int = 10
    batch_size: int = 32  # a batch: batch_size / images_per_identity people (person_order)
    lr: float = 2e-3
    text_lr_scale: float = 0.2  # the text tower's learning rate, in multiples of lr
    # Steps at the start in which the text tower stays as initialised (docs/demo-backbone.md, "The
    # collapsed start"): its captions keep distinct embeddings for the image tower to move towards.
    text_frozen_steps: int = 100
    weight_decay: float = 0.1
    warmup_steps: int = 50
    # The reductions of a convolution are split by thread, so another count gives other weights (and,
    # downstream, other metrics): the count is part of the result, fixed here, not taken from the machine.
    torch_threads: int = 1
    # A checkpoint this training wrote before, for this very config, used instead of training again
    # ("" trains). Training is deterministic only on one kind of CPU (its kernels' sums differ by
    # instruction set), so the demo ships its weights to give every machine the same features.
    pretrained: str = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        for name in ("identities", "images_per_identity", "held_out_identities", "embed_dim", "vision_width",
                     "text_width", "text_layers", "epochs", "batch_size", "torch_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("render_workers", "warmup_steps", "text_frozen_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.seed < SEED_LIMIT:
            raise ValueError(f"seed must lie in [0, 2**32), got {self.seed}")
        if self.identities + self.held_out_identities >= SEED_LIMIT:
            raise ValueError("identities + held_out_identities must stay below 2**32")
        if len(self.vision_layers) != 4 or not all(isinstance(n, int) and n >= 1 for n in self.vision_layers):
            raise ValueError(f"vision_layers must be 4 block counts >= 1 (one per ResNet stage), got "
                             f"{list(self.vision_layers)}")
        # clip.model builds (and build_model infers) one attention head per 64 channels: the text
        # width, and the attention pool's 32 * vision_width channels.
        if self.text_width % 64:
            raise ValueError(f"text_width must be a multiple of 64 (one CLIP attention head per 64), got "
                             f"{self.text_width}")
        if self.vision_width % 2:
            raise ValueError(f"vision_width must be even (its attention pool has 32 x vision_width channels, one head "
                             f"per 64), got {self.vision_width}")
        if self.embed_dim % TEMPORAL_HEADS:
            raise ValueError(f"embed_dim must be divisible by {TEMPORAL_HEADS} (the temporal transformer's heads), "
                             f"got {self.embed_dim}")
        if not 0 <= self.crop_jitter < 0.5:
            raise ValueError(f"crop_jitter must lie in [0, 0.5), got {self.crop_jitter}")
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")


# ------------------------------------------------------------------------------------ the faces


def training_faces(config: BackboneConfig, frame_size: int, policy: CropPolicy, prompts: PromptSet,
                   progress: Callable[[int], None] | None = None) -> FaceSet:
    """People ``0 .. identities - 1``, ``images_per_identity`` random faces each."""
    return render_faces(range(config.identities), lambda rng: training_plan(rng, config.images_per_identity),
                        config.seed, config.crop_jitter, config.render_workers, frame_size, policy, prompts, progress)


def held_out_faces(config: BackboneConfig, frame_size: int, policy: CropPolicy, prompts: PromptSet,
                   progress: Callable[[int], None] | None = None) -> FaceSet:
    """The next ``held_out_identities`` people, every class at its apex."""
    people = range(config.identities, config.identities + config.held_out_identities)
    return render_faces(people, lambda rng: held_out_plan(), config.seed, config.crop_jitter, config.render_workers,
                        frame_size, policy, prompts, progress)


# ------------------------------------------------------------------------------------ the model


def build_backbone(config: BackboneConfig) -> CLIP:
    """OpenAI's CLIP class at the size of ``config``, with CLIP's own initialisation (seeded by the caller).

    The image tower is CLIP's ModifiedResNet: measured on the rendered faces (supervised, 7
    classes at the apex, 32 faces a step), a ViT of the same cost (4 layers of width 64 or 128,
    patches of 32, 56, 112 or 224 pixels) was still at chance after 320 steps, where the ResNet
    of width 8 reached 90 % on unseen people in 384 steps: the expression is a few small local
    marks, which convolutions find at once and a ViT trained from scratch only after long.
    """
    return CLIP(embed_dim=config.embed_dim, image_resolution=INPUT_RESOLUTION, vision_layers=tuple(config.vision_layers),
                vision_width=config.vision_width, vision_patch_size=None,
                context_length=CONTEXT_LENGTH, vocab_size=VOCAB_SIZE, transformer_width=config.text_width,
                transformer_heads=config.text_width // 64, transformer_layers=config.text_layers)


def encode_tokens(model: CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """``CLIP.encode_text`` (N, D) of ``tokens`` (N, 77), run only up to the batch's last end-of-text token.

    CLIP's text attention is causal, so positions after a sequence's end-of-text token never reach
    its output; captions are far shorter than 77 tokens, and cutting the tail saves most of the
    text tower's cost in training. Unlike clip's own blocks (whose mask is fixed at 77) this
    builds the causal mask at the cut length.
    """
    eot = tokens.argmax(dim=-1)  # (N,) the end-of-text token has the largest id
    length = int(eot.max()) + 1
    x = model.token_embedding(tokens[:, :length]) + model.positional_embedding[:length]  # (N, L, W)
    causal = torch.full((length, length), float("-inf"), device=x.device).triu_(1)
    x = x.permute(1, 0, 2)  # (L, N, W): clip's transformer is sequence-first
    for block in model.transformer.resblocks:
        h = block.ln_1(x)
        x = x + block.attn(h, h, h, need_weights=False, attn_mask=causal)[0]
        x = x + block.mlp(block.ln_2(x))
    x = model.ln_final(x.permute(1, 0, 2))  # (N, L, W)
    return x[torch.arange(x.shape[0], device=x.device), eot] @ model.text_projection  # (N, D)


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy over the (B, B) similarities of paired embeddings (B, D) each."""
    logits = logit_scale.exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T  # (B, B)
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _learning_rate(step: int, total: int, config: BackboneConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _optimizer(model: CLIP, config: BackboneConfig) -> torch.optim.Optimizer:
    """AdamW as CLIP trained: weight decay on weight matrices, none on gains, biases and the logit scale.

    Each group's ``scale`` multiplies the scheduled learning rate: the text tower runs at
    ``text_lr_scale`` times the image tower's; ``text`` marks the text tower's groups.
    """
    text = {id(p) for p in (*model.token_embedding.parameters(), model.positional_embedding,
                            *model.transformer.parameters(), *model.ln_final.parameters(), model.text_projection)}
    groups = []
    for is_text, scale in ((False, 1.0), (True, config.text_lr_scale)):
        members = [p for p in model.parameters() if (id(p) in text) == is_text]
        groups.append({"params": [p for p in members if p.ndim >= 2], "weight_decay": config.weight_decay,
                       "scale": scale, "text": is_text})
        groups.append({"params": [p for p in members if p.ndim < 2], "weight_decay": 0.0, "scale": scale,
                       "text": is_text})
    # fused: one kernel per step; the dense update of the 49408-token embedding otherwise costs 10x more.
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-6, fused=True)


def person_order(identity: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    """A random order of the faces in which each person's faces come together, in random order.

    A batch then holds a few people with several expressions each: telling a person's faces apart
    is possible only by their expression, so the contrastive loss learns expressions, not identities.
    """
    people = np.unique(identity)
    rows = []
    for person in torch.randperm(len(people), generator=generator).tolist():
        members = np.flatnonzero(identity == people[person])
        rows.extend(members[torch.randperm(len(members), generator=generator).numpy()].tolist())
    return torch.tensor(rows, dtype=torch.long)


def train_backbone(faces: FaceSet, config: BackboneConfig, after_epoch: Callable[[CLIP, dict], None] | None = None
               ) -> tuple[CLIP, list[dict[str, float]]]:
    """A CLIP of ``config`` trained on ``faces``; returns it (eval mode) and the per-epoch history.

    ``after_epoch(model, record)`` is called after every epoch; it may add entries to the record
    (checks on held-out faces), and must leave the model's weights alone.

    Seeded and deterministic on a given machine and thread count (:func:`tg_dfer.determinism.deterministic`).
    Every step sees a random batch of images, half of them mirrored (captions name no side).
    """
    if len(faces) < 2:
        raise ValueError(f"contrastive training needs at least 2 captioned faces, got {len(faces)}")
    tokens = clip.tokenize(faces.captions, context_length=CONTEXT_LENGTH, truncate=True)  # (N, 77)
    images = torch.from_numpy(faces.images)  # (N, S, S, 3) uint8
    steps_per_epoch = math.ceil(len(faces) / config.batch_size)
    total = steps_per_epoch * config.epochs
    history = []
    with deterministic(config.seed, threads=config.torch_threads):
        # Channels-last convolutions: measured 30 % faster for this ResNet on CPU; same function.
        model = build_backbone(config).float().to(memory_format=torch.channels_last)
        optimizer = _optimizer(model, config)
        generator = torch.Generator().manual_seed(config.seed)
        step = 0
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            model.train()
            order = person_order(faces.identity, generator)
            losses = []
            for start in range(0, len(order), config.batch_size):
                rows = order[start:start + config.batch_size]
                if len(rows) < 2:  # one pair has no negative to contrast with
                    continue
                for group in optimizer.param_groups:
                    frozen = group["text"] and step < config.text_frozen_steps
                    group["lr"] = 0.0 if frozen else _learning_rate(step, total, config) * group["scale"]
                pixels = preprocess(images[rows], INPUT_RESOLUTION)  # (B, 3, 224, 224)
                flip = torch.rand(len(rows), generator=generator) < 0.5
                pixels = torch.where(flip.view(-1, 1, 1, 1), pixels.flip(-1), pixels)
                pixels = pixels.contiguous(memory_format=torch.channels_last)
                loss = contrastive_loss(model.encode_image(pixels), encode_tokens(model, tokens[rows]),
                                        model.logit_scale)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():  # CLIP clips its temperature at 100
                    model.logit_scale.clamp_(0, math.log(100))
                losses.append(loss.item())
                step += 1
            record = {"epoch": epoch, "loss": float(np.mean(losses)), "first_step_loss": losses[0],
                      "last_step_loss": losses[-1], "logit_scale": float(model.logit_scale.detach().exp()),
                      "lr_end": _learning_rate(step - 1, total, config), "seconds": time.perf_counter() - started}
            if after_epoch:
                after_epoch(model, record)
            history.append(record)
    return model.eval(), history


# --------------------------------------------------------------------------------- the checks


@torch.no_grad()
def embed_face_set(model: CLIP, faces: FaceSet, batch_size: int = 256) -> np.ndarray:
    """L2-normalised image embeddings (N, D) of ``faces``."""
    model.eval()
    parts = [F.normalize(model.encode_image(preprocess(torch.from_numpy(faces.images[start:start + batch_size]),
                                                       INPUT_RESOLUTION)), dim=-1)
             for start in range(0, len(faces), batch_size)]
    return torch.cat(parts).numpy()


@torch.no_grad()
def embed_texts(model: CLIP, texts: list[str]) -> np.ndarray:
    """L2-normalised text embeddings (N, D)."""
    model.eval()
    tokens = clip.tokenize(texts, context_length=CONTEXT_LENGTH, truncate=True)
    return F.normalize(encode_tokens(model, tokens), dim=-1).numpy()


def held_out_checks(model: CLIP, faces: FaceSet, prompts: PromptSet) -> dict[str, float]:
    """What the backbone gives the demo, on people it never saw (``faces`` from :func:`held_out_faces`).

    * ``zero_shot_class_prompts`` / ``zero_shot_descriptors``: 7-way accuracy (percent) of the apex
      faces against the prompt set's class prompts / descriptors, as the text stage embeds them.
    * ``apex_over_neutral_auroc``: how often a person's apex face of class k is closer to the class
      prompt of k than the same person's neutral face is (the frame influence TG-DFER needs).
    * ``caption_retrieval_top1``: share (percent) of faces whose own caption is the nearest of all
      the held-out captions (many captions are alike, so this is a hard, not a reachable 100, score).
    """
    images = embed_face_set(model, faces)  # (N, D)
    class_text = embed_texts(model, prompts.class_prompts)  # (C, D)
    descriptor_text = embed_texts(model, prompts.descriptor_prompts)  # (C, D)
    class_scores = images @ class_text.T  # (N, C)
    neutral = DEMO_CLASSES.index("neutral")
    apex, baseline = [], []
    for person in np.unique(faces.identity):
        rows = np.flatnonzero(faces.identity == person)
        plain = rows[faces.label[rows] == neutral]
        for row in rows[faces.label[rows] != neutral]:
            apex.extend([class_scores[row, faces.label[row]]] * len(plain))
            baseline.extend(class_scores[plain, faces.label[row]])
    captions = embed_texts(model, faces.captions)  # (N, D)
    nearest = (images @ captions.T).argmax(axis=1)
    return {
        "zero_shot_class_prompts": 100.0 * float(np.mean(class_scores.argmax(axis=1) == faces.label)),
        "zero_shot_descriptors": 100.0 * float(np.mean((images @ descriptor_text.T).argmax(axis=1) == faces.label)),
        "apex_over_neutral_auroc": pair_auroc(np.array(apex), np.array(baseline)),
        "caption_retrieval_top1": 100.0 * float(np.mean(nearest == np.arange(len(faces)))),
        "faces": len(faces),
    }


# --------------------------------------------------------------------------------- checkpoint


# Settings that do not change the weights, so a pretrained file may differ in them.
NOT_IN_THE_WEIGHTS = ("render_workers", "pretrained")


def check_pretrained(path: str | Path, config: BackboneConfig) -> None:
    """Raise ``ValueError`` unless ``path`` is a demo backbone trained with ``config``'s settings."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError as error:
        raise ValueError(f"{path}: no such file") from error
    except Exception as error:  # torch raises several unrelated types for foreign files
        raise ValueError(f"{path}: not a demo backbone checkpoint ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a demo backbone checkpoint (format {CHECKPOINT_FORMAT})")
    stored, wanted = payload.get("config", {}), asdict(config)
    differ = [f"{key} {stored.get(key)!r} there, {wanted[key]!r} here" for key in wanted
              if key not in NOT_IN_THE_WEIGHTS and stored.get(key) != wanted[key]]
    if differ:
        raise ValueError(f"{path} was trained with other settings: {'; '.join(differ)}")


def save_backbone(path: str | Path, model: CLIP, config: BackboneConfig) -> None:
    """A plain state_dict with its marker: ``load_backbone`` reads it, and records ``demo_weights``.

    Tensors and plain values only (``torch.load(weights_only=True)`` reads it); the same weights
    give the same bytes, so the file's SHA-256 identifies them as for any CLIP checkpoint.
    """
    settings = {key: value for key, value in asdict(config).items() if key != "pretrained"}  # a path, not a setting
    payload = {"format": CHECKPOINT_FORMAT, "demo_weights": True, "config": settings,
               "state_dict": {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}}
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)
