"""The model against the paper's equations (Sec. 3, Eqs. 2-11), each written here from scratch with
loops over tiny inputs and random, non-zero weights, so that a wrong index, einsum or order in the
model cannot pass. Where the paper leaves a choice (the softmax over frames in Eq. 8, the gain of
X^CP, the top-k pooling of Eq. 11, the fold back to T frames) the test writes our documented choice
(docs/paper-deviations.md) and says so."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from clip.model import CLIP

from tg_dfer.model import ModelConfig, TextEncoder, build_model, mil_pool
from tg_dfer.model.temporal import MultiGrainedTemporal
from tg_dfer.sampling import window_starts

D, C = 16, 3
NAMES = ["happiness", "sadness", "fear"]
pytestmark = pytest.mark.usefixtures("one_thread")


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Non-zero weights everywhere (the model's zero-initialised residual branches and prompt MLP
    would otherwise hide whole terms of the equations)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.requires_grad:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


def config(**changes) -> ModelConfig:
    values = dict(embed_dim=D, num_classes=C, num_frames=8, heads=2, dropout=0.0, learnable_context=False)
    values.update(changes)
    return ModelConfig(**values)


@pytest.mark.parametrize("frames, window, stride", [(16, 4, 1), (16, 2, 1), (16, 8, 1), (16, 4, 2), (16, 8, 2),
                                                    (16, 4, 3), (16, 4, 4), (16, 8, 8), (8, 4, 2)])
def test_windows_and_their_number_are_eq3(frames, window, stride):
    """Eq. 3: X'_i = [X_{i s}, ..., X_{i s + w - 1}], N = floor((T - w) / s + 1) windows (every
    Table 4 setting divides evenly, so no flush window is added)."""
    count = math.floor((frames - window) / stride + 1)
    assert window_starts(frames, window, stride) == [i * stride for i in range(count)]
    module = MultiGrainedTemporal(config(num_frames=frames, window=window, stride=stride)).fine
    assert module.index.tolist() == [[i * stride + j for j in range(window)] for i in range(count)]


def test_uneven_strides_add_a_window_flush_with_the_end():
    """Our choice where the paper's N would leave the last frames out (docs/paper-deviations.md):
    T = 16, w = 8, s = 7 gives the paper's N = 2 windows (frames 0-14); a third at 8 covers frame 15."""
    assert window_starts(16, 8, 7) == [0, 7, 8]


def paper_temporal(module: MultiGrainedTemporal, x: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Eqs. 2-5 for clips without padding: X^I = FC([X^fine, X^coarse])."""
    B, T, _ = x.shape
    w, s = cfg.window, cfg.stride
    x = x * module.input_scale  # unit coordinates (our choice, docs/paper-deviations.md)
    no_padding = torch.zeros(1, w, dtype=torch.bool)
    fine = torch.zeros(B, T, D)
    for b in range(B):
        outputs = {t: [] for t in range(T)}
        for i in range(math.floor((T - w) / s + 1)):
            segment = x[b, i * s:i * s + w] + module.fine.encoder.positional_embedding  # Eq. 2: X'_i + P^f
            h = segment.unsqueeze(0)
            for block in module.fine.encoder.blocks:  # E_f
                h = block(h, no_padding)
            for j in range(w):
                outputs[i * s + j].append(h[0, j])
        for t in range(T):  # each frame: the mean of its windows' outputs (our fold back to T frames)
            fine[b, t] = torch.stack(outputs[t]).mean(0)
    coarse = x + module.coarse.encoder.positional_embedding  # Eq. 4: X^v_t + P^c_t
    for block in module.coarse.encoder.blocks:  # E_c
        coarse = block(coarse, torch.zeros(B, T, dtype=torch.bool))
    return module.fc(torch.cat([fine, coarse], dim=-1))  # Eq. 5


@pytest.mark.parametrize("window, stride", [(4, 1), (4, 2), (2, 2)])
def test_multi_grained_temporal_network_is_eqs_2_to_5_with_pf_per_position_within_a_window(window, stride):
    cfg = config(window=window, stride=stride, fine_depth=2, coarse_depth=1)
    module = MultiGrainedTemporal(cfg).eval()
    randomise(module, seed=window + stride)
    x = F.normalize(torch.randn(2, 8, D, generator=torch.Generator().manual_seed(0)), dim=-1)
    with torch.no_grad():
        ours = module(x, torch.ones(2, 8, dtype=torch.bool))
        expected = paper_temporal(module, x, cfg)
    assert torch.allclose(ours, expected, atol=1e-5)


def topk_mean(values: list[float], k: int) -> float:
    return sum(sorted(values, reverse=True)[:k]) / k


def test_topk_pooling_of_eq11_for_k_above_one():
    generator = torch.Generator().manual_seed(4)
    scores = torch.randn(3, 16, C, generator=generator)
    mask = torch.arange(16)[None] < torch.tensor([16, 10, 3])[:, None]
    pooled = mil_pool(scores * mask.unsqueeze(-1), mask, "topk", topk_fraction=0.25)
    for b, (valid, k) in enumerate(((16, 4), (10, 3), (3, 1))):  # k = ceil(valid / 4)
        for c in range(C):
            assert pooled[b, c].item() == pytest.approx(topk_mean(scores[b, :valid, c].tolist(), k), abs=1e-6)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def paper_head(model, instances: torch.Tensor, text: torch.Tensor, visual_prompt: str, tau: float, gain: float,
               prompt=None):
    """Eqs. 7-11 with loops, from the instance features X^I (B, T, D) of clips without padding.

    Our choices: A is the softmax over the frames of Eq. 8's cos / tau; V^P is one vector per class;
    X^CP enters Eq. 10 at norm ``gain`` (1 = Eq. 10 as written); Eq. 11 pools the per-frame scores by top-k."""
    B, T, _ = instances.shape
    coarse = F.normalize(model.coarse_text, dim=-1)
    probs, frame_scores = torch.zeros(B, C), torch.zeros(B, T, C)
    attention = torch.zeros(B, T, C)
    for b in range(B):
        prompts = []
        for k in range(C):
            logits = torch.tensor([cosine(instances[b, t], text[k]) / tau for t in range(T)])  # Eq. 8
            a = torch.softmax(logits, dim=0)
            attention[b, :, k] = a
            pooled = sum(a[t] * instances[b, t] for t in range(T))  # Eq. 7: A . X^I
            visual = pooled / pooled.norm()  # Eq. 7: N(.)
            if visual_prompt == "add":
                fused = F.normalize(text[k], dim=-1) + visual  # Eq. 9
                prompts.append(model.prompt_mlp(fused) + gain * coarse[k])  # Eq. 10
            elif visual_prompt == "prepend":
                prompts.append(visual)
            else:
                prompts.append(text[k])
        if visual_prompt == "prepend":
            tokens = model.visual_proj(torch.stack(prompts))  # (C, W): V^P as one token per class
            prompts = list(prepended_text(prompt, tokens) + gain * coarse)
        for t in range(T):
            for k in range(C):
                frame_scores[b, t, k] = cosine(instances[b, t], prompts[k]) / tau  # Eq. 11, per frame
        k_frames = math.ceil(T * model.config.topk_fraction)
        bag = torch.tensor([topk_mean(frame_scores[b, :, k].tolist(), k_frames) for k in range(C)])
        probs[b] = torch.softmax(bag, dim=0)  # Eq. 11: softmax over the C classes
    return probs, frame_scores, attention


def prepended_text(prompt, tokens: torch.Tensor) -> torch.Tensor:
    """X^FP of each class with its visual token right after SOS: [SOS, v, ctx_1..ctx_M, text, EOT]."""
    encoder = prompt.encoder
    out = []
    for k, text in enumerate(prompt.prompts):
        ids = encoder.tokenize([text])[0]
        eot = int(ids.argmax())
        embedded = encoder.token_embedding(ids[:eot + 1]).clone()  # placeholders X at 1 .. 1 + M
        embedded[1] = tokens[k]
        if prompt.context is not None:
            context = prompt.context if prompt.context.dim() == 2 else prompt.context[k]
            embedded[2:2 + len(context)] = context
        out.append(encoder(embedded.unsqueeze(0), torch.tensor([eot]))[0])
    return F.normalize(torch.stack(out), dim=-1)


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    torch.manual_seed(0)
    model = CLIP(embed_dim=D, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
                 context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                 transformer_layers=2).eval()
    return TextEncoder.from_clip(model)


def make_model(visual_prompt: str, encoder: TextEncoder, learnable: bool, gain: float = 4.0):
    generator = torch.Generator().manual_seed(7)
    cfg = config(visual_prompt=visual_prompt, learnable_context=learnable, context_length=2, coarse_text_gain=gain)
    model = build_model(cfg, NAMES, [f"an expression of {n}." for n in NAMES],
                        ["a smiling mouth", "a downturned mouth", "widened eyes"],
                        F.normalize(torch.randn(C, D, generator=generator), dim=-1),
                        F.normalize(torch.randn(C, D, generator=generator), dim=-1), encoder=encoder, seed=3).eval()
    randomise(model, seed=11)
    return model


@pytest.mark.parametrize("visual_prompt, learnable, gain", [("add", False, 4.0), ("add", True, 4.0),
                                                            ("add", True, 1.0), ("prepend", True, 4.0),
                                                            ("prepend", False, 1.0), ("none", True, 4.0)])
def test_visual_prompt_and_bag_prediction_are_eqs_7_to_11(visual_prompt, learnable, gain, encoder):
    model = make_model(visual_prompt, encoder, learnable, gain)
    x = F.normalize(torch.randn(2, 8, D, generator=torch.Generator().manual_seed(5)), dim=-1)
    mask = torch.ones(2, 8, dtype=torch.bool)
    with torch.no_grad():
        out = model(x, mask)
        instances = model.temporal(x, mask)  # X^I, Eqs. 2-5 (tested above)
        text = model.text_features()  # X^FP (Eq. 6)
        probs, frame_scores, attention = paper_head(model, instances, text, visual_prompt, model.config.tau,
                                                    gain, model.prompt)
    assert torch.allclose(out.attention, attention, atol=1e-5)
    assert torch.allclose(out.frame_scores, frame_scores, atol=1e-3)
    assert torch.allclose(out.probs, probs, atol=1e-5)


def test_the_three_visual_prompt_placements_differ(encoder):
    """With trained (non-zero) weights, add, prepend and none are three different functions."""
    x = F.normalize(torch.randn(2, 8, D, generator=torch.Generator().manual_seed(5)), dim=-1)
    mask = torch.ones(2, 8, dtype=torch.bool)
    with torch.no_grad():
        scores = {how: make_model(how, encoder, True)(x, mask).frame_scores for how in ("add", "prepend", "none")}
    assert not torch.allclose(scores["add"], scores["prepend"], atol=1e-2)
    assert not torch.allclose(scores["add"], scores["none"], atol=1e-2)
    assert not torch.allclose(scores["prepend"], scores["none"], atol=1e-2)
