"""The TG-DFER modules: shapes, padding masks, switches that remove parts, gradients, the text tower."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from clip.model import CLIP

from tg_dfer.model import (
    MIL_POOLINGS,
    CoarseGrained,
    FineGrained,
    ModelConfig,
    MultiGrainedTemporal,
    PromptLearner,
    TextEncoder,
    build_model,
    mil_pool,
)
from tg_dfer.sampling import window_starts

D, C, T = 32, 3, 8
NAMES = ["happiness", "sadness", "fear"]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_clip() -> CLIP:
    torch.manual_seed(0)
    # vision_width 64: CLIP gives its vision transformer width // 64 heads, so 32 would give none.
    return CLIP(embed_dim=D, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
                context_length=77, vocab_size=49408, transformer_width=32, transformer_heads=2,
                transformer_layers=1).eval()


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    model = tiny_clip()
    encoder = TextEncoder.from_clip(model)
    model.visual = None  # the text tower must work without the image tower
    return encoder


def config(**changes) -> ModelConfig:
    values = dict(embed_dim=D, num_classes=C, num_frames=T, heads=2, dropout=0.0, learnable_context=False)
    values.update(changes)
    return ModelConfig(**values)


def make_model(encoder: TextEncoder | None = None, **changes):
    torch.manual_seed(1)
    return build_model(config(**changes), NAMES, [f"an expression of {n}." for n in NAMES],
                       ["a smiling face", "a crying face", "a scared face"],
                       F.normalize(torch.randn(C, D), dim=-1), F.normalize(torch.randn(C, D), dim=-1),
                       encoder=encoder, seed=3)


def clips(batch: int = 4, lengths=(T, 5, 1, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(2)
    x = F.normalize(torch.randn(batch, T, D), dim=-1)
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    return x, mask


def test_config_rejects_bad_values_naming_the_field():
    for changes, field in ((dict(window=9), "window"), (dict(stride=5, window=4), "stride"),
                           (dict(heads=5), "heads"), (dict(mil_pooling="median"), "mil_pooling"),
                           (dict(visual_prompt="both"), "visual_prompt"), (dict(fine_depth=-1), "fine_depth"),
                           (dict(tau=0.0), "tau")):
        with pytest.raises(ValueError, match=field):
            config(**changes)
    with pytest.raises(ValueError, match="unknown model setting"):
        ModelConfig.from_dict({"windw": 4})


def test_windows_cover_every_frame():
    assert window_starts(16, 4, 1) == list(range(13))
    assert window_starts(16, 4, 4) == [0, 4, 8, 12]
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]  # a last window flush with the end
    assert window_starts(4, 4, 1) == [0]


def test_fine_grained_folds_back_by_averaging_overlaps():
    module = FineGrained(config(window=4, stride=2))
    assert module.num_windows == 3  # starts 0, 2, 4 over 8 frames
    # frame t appears in ceil-many windows; each row of the folding matrix averages them
    counts = (module.fold > 0).sum(dim=1).tolist()
    assert counts == [1, 1, 2, 2, 2, 2, 1, 1]
    assert torch.allclose(module.fold.sum(dim=1), torch.ones(T))
    # With identity layers (zero-init residual branches) the output is the input plus the mean
    # positional embedding of the window positions a frame takes.
    x, mask = clips()
    out = module(x, mask)
    pos = module.encoder.positional_embedding  # (w, D)
    expected0 = x[:, 0] + pos[0]
    expected2 = x[:, 2] + (pos[2] + pos[0]) / 2  # frame 2: position 2 of window 0, position 0 of window 1
    assert torch.allclose(out[:, 0], expected0, atol=1e-5)
    assert torch.allclose(out[:, 2], expected2, atol=1e-5)


@pytest.mark.parametrize("module_class", [FineGrained, CoarseGrained])
def test_temporal_modules_shapes_and_padding_do_not_leak(module_class):
    torch.manual_seed(0)
    module = module_class(config(window=4, stride=1)).eval()
    for parameter in module.parameters():  # leave the identity start: real attention everywhere
        torch.nn.init.normal_(parameter, std=0.2)
    x, mask = clips()
    out = module(x, mask)
    assert out.shape == (4, T, D)
    assert torch.isfinite(out).all()  # a clip of one frame has windows of padding only
    changed = x.clone()
    changed[~mask] = torch.randn_like(changed[~mask])  # new padding content
    again = module(changed, mask)
    assert torch.allclose(out[mask], again[mask], atol=1e-5)  # valid frames never see padding


def test_zero_depth_really_removes_a_branch():
    both = MultiGrainedTemporal(config(fine_depth=1, coarse_depth=1))
    fine_only = MultiGrainedTemporal(config(fine_depth=1, coarse_depth=0))
    coarse_only = MultiGrainedTemporal(config(fine_depth=0, coarse_depth=1))
    neither = MultiGrainedTemporal(config(fine_depth=0, coarse_depth=0))
    assert both.fine is not None and both.coarse is not None and both.fc.in_features == 2 * D
    assert fine_only.coarse is None and fine_only.fc.in_features == D
    assert coarse_only.fine is None and coarse_only.fc.in_features == D
    assert neither.fine is None and neither.coarse is None
    assert not any(name.startswith("coarse") for name, _ in fine_only.named_parameters())
    assert not any(name.startswith("fine") for name, _ in coarse_only.named_parameters())
    assert sum(p.numel() for p in neither.parameters()) == D * D + D  # the FC alone
    # without temporal modules every frame is mapped on its own: no frame sees another
    x, mask = clips()
    out = neither(x, mask)
    changed = x.clone()
    changed[:, 1:] = torch.randn_like(changed[:, 1:])
    assert torch.allclose(neither(changed, mask)[:, 0], out[:, 0])


def test_instance_features_start_as_the_clip_embeddings_and_padding_is_zero():
    module = MultiGrainedTemporal(config())
    x, mask = clips()
    out = module(x, mask)
    assert out.shape == (4, T, D)
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    cosine = F.cosine_similarity(out[mask], x[mask], dim=-1)
    assert cosine.min() > 0.99  # identity start up to the small positional embeddings


@pytest.mark.parametrize("pooling", MIL_POOLINGS)
def test_mil_pooling_ignores_padding(pooling):
    scores = torch.randn(2, T, C)
    mask = torch.arange(T)[None] < torch.tensor([T, 3])[:, None]
    attention = scores.masked_fill(~mask[..., None], float("-inf")).softmax(dim=1)
    pooled = mil_pool(scores, mask, pooling, attention)
    changed = scores.clone()
    changed[1, 3:] = 1e4
    attention2 = changed.masked_fill(~mask[..., None], float("-inf")).softmax(dim=1)
    assert torch.allclose(pooled, mil_pool(changed, mask, pooling, attention2))
    valid = scores[1, :3]
    expected = {"mean": valid.mean(0), "max": valid.amax(0), "lse": valid.logsumexp(0) - torch.log(torch.tensor(3.0)),
                "attention": (attention[1, :3] * valid).sum(0), "topk": valid.amax(0)}[pooling]
    assert torch.allclose(pooled[1], expected, atol=1e-5)


@pytest.mark.parametrize("visual_prompt", ["add", "prepend", "none"])
def test_full_model_shapes_masks_and_influence(encoder, visual_prompt):
    model = make_model(encoder, visual_prompt=visual_prompt, learnable_context=True, context_length=4).eval()
    x, mask = clips()
    out = model(x, mask)
    assert out.logits.shape == (4, C) and out.probs.shape == (4, C)
    assert torch.allclose(out.probs.sum(dim=1), torch.ones(4))
    assert out.frame_scores.shape == (4, T, C) and out.attention.shape == (4, T, C)
    assert torch.allclose(out.attention.sum(dim=1), torch.ones(4, C), atol=1e-5)
    assert (out.attention[~mask] == 0).all()
    influence = out.influence()
    assert influence.shape == (4, T)
    assert torch.isnan(influence[~mask]).all() and torch.isfinite(influence[mask]).all()
    predicted = out.probs.argmax(dim=1)
    assert torch.allclose(influence[0], out.frame_scores[0, :, predicted[0]])
    changed = x.clone()
    changed[~mask] = torch.randn_like(changed[~mask])
    assert torch.allclose(model(changed, mask).logits, out.logits, atol=1e-4)


def test_text_encoder_matches_clip_encode_text():
    model = tiny_clip()
    encoder = TextEncoder.from_clip(model)
    texts = ["happiness.", "a long description of a face that frowns and looks down", "fear."]
    tokens = clip_tokens(texts)
    expected = model.encode_text(tokens)
    eot = tokens.argmax(dim=-1)
    cut = tokens[:, : int(eot.max()) + 1]  # causal attention: later tokens cannot matter
    assert torch.allclose(encoder(encoder.token_embedding(cut), eot), expected, atol=1e-5)


def full_length_prompts(learner: PromptLearner, model, visual: torch.Tensor | None = None) -> torch.Tensor:
    """X^FP of ``learner``'s prompts by CLIP's own text transformer over all 77 positions, each prompt
    on its own (with ``visual`` (C, W) in the slot after SOS): the reference for the shortened,
    shared computation of :class:`TextEncoder`."""
    import clip

    outputs = []
    for k, text in enumerate(learner.prompts):
        tokens = clip.tokenize([text])  # (1, 77), the placeholders X where the slot and the context go
        embedded = model.token_embedding(tokens)[0].clone()
        context = learner.context if learner.context.dim() == 2 else learner.context[k]
        start = 1 + int(visual is not None)
        if visual is not None:
            embedded[1] = visual[k]
        embedded[start:start + len(context)] = context
        x = (embedded + model.positional_embedding).unsqueeze(1)  # (77, 1, W)
        x = model.ln_final(model.transformer(x)[:, 0])  # (77, W), CLIP's own causal mask
        outputs.append(x[int(tokens.argmax())] @ model.text_projection)
    return torch.nn.functional.normalize(torch.stack(outputs), dim=-1)


@pytest.mark.parametrize("texts, class_specific, prepend", [
    (["happiness.", "sadness.", "fear."], False, False),
    (["a smiling mouth, raised cheeks", "a downward turned mouth and drooping upper eyelids", "widened eyes"], False,
     False),
    (["happiness.", "sadness.", "fear."], True, False),
    (["happiness.", "sadness.", "fear."], False, True),
])
def test_shortened_shared_text_tower_equals_the_full_77_position_pass(texts, class_specific, prepend):
    """Embeddings and the gradients they send to the learnable context (and the visual prompt) are
    those of CLIP's full pass, for class and descriptor prompts, shared or class-specific context."""
    torch.manual_seed(0)
    model = CLIP(embed_dim=D, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
                 context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=2,
                 transformer_layers=3).eval()  # 3 layers: shared positions run through more than the last
    learner = PromptLearner(texts, TextEncoder.from_clip(model), context_length=4, class_specific=class_specific,
                            visual_slot=prepend)
    torch.manual_seed(5)
    weights = torch.randn(len(texts), D)
    visual = torch.randn(len(texts), 64, requires_grad=True) if prepend else None
    ours = learner(visual.unsqueeze(0))[0] if prepend else learner()
    (ours * weights).sum().backward()
    gradients = [learner.context.grad.clone()] + ([visual.grad.clone()] if prepend else [])
    learner.context.grad = None
    if prepend:
        visual.grad = None
    reference = full_length_prompts(learner, model, visual)
    (reference * weights).sum().backward()
    assert torch.allclose(ours, reference, atol=1e-5)
    for ours_grad, reference_grad in zip(gradients, [learner.context.grad] + ([visual.grad] if prepend else [])):
        assert ours_grad.abs().sum() > 0 and torch.allclose(ours_grad, reference_grad, atol=1e-5, rtol=1e-4)


def clip_tokens(texts):
    import clip

    return clip.tokenize(texts)


def test_prompt_learner_context_is_shared_or_class_specific(encoder):
    shared = PromptLearner(["happiness.", "sadness.", "fear."], encoder, context_length=4)
    specific = PromptLearner(["happiness.", "sadness.", "fear."], encoder, context_length=4, class_specific=True)
    assert shared.context.shape == (4, encoder.width)
    assert specific.context.shape == (C, 4, encoder.width)
    assert shared().shape == (C, D)
    assert torch.allclose(shared().norm(dim=-1), torch.ones(C))
    assert shared.prompts[0] == "X X X X happiness."
    # the frozen tower is a submodule but its weights never train
    assert all(not p.requires_grad for p in shared.encoder.parameters())


def test_gradients_reach_the_context_but_not_frozen_clip(encoder):
    model = make_model(encoder, learnable_context=True, context_length=4).train()
    x, mask = clips()
    # one SGD step first: the prompt MLP starts at zero, after a step every path carries gradient
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x, mask).logits, torch.tensor([0, 1, 2, 0]))
        loss.backward()
        optimizer.step()
    assert model.prompt.context.grad is not None and model.prompt.context.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.prompt.encoder.parameters())
    assert all(not p.requires_grad for p in model.prompt.encoder.parameters())
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert "prompt.context" in trainable and not any(name.startswith("prompt.encoder") for name in trainable)


def test_cached_text_needs_no_text_tower():
    model = make_model(None, learnable_context=False, visual_prompt="add")
    assert model.prompt is None
    x, mask = clips()
    assert model(x, mask).logits.shape == (4, C)
    with pytest.raises(ValueError, match="text tower"):
        make_model(None, learnable_context=True)


def test_learned_state_dict_leaves_out_clip_and_reloads_without_it(encoder):
    model = make_model(encoder, learnable_context=True, context_length=4).eval()
    with torch.no_grad():
        model.prompt.context.normal_()
    state = model.learned_state_dict()
    assert not any(name.startswith("prompt.encoder") for name in state)
    assert "prompt.context" in state and "fixed_text" in state
    x, mask = clips()
    expected = model(x, mask).logits
    # inference without the text tower: the stored X^FP stands in for the learnt context
    cfg = model.config
    from tg_dfer.model import TGDFER

    bare = TGDFER(cfg, state["coarse_text"], state["fixed_text"], None).eval()
    bare.load_learned_state_dict(state)
    assert torch.allclose(bare(x, mask).logits, expected, atol=1e-4)


@pytest.mark.parametrize("rows_per_piece", [1, 3, 100])
def test_a_layer_recomputed_in_pieces_gives_the_plain_layers_output_and_gradients(one_thread, monkeypatch,
                                                                                  rows_per_piece):
    """Dropout on, padded keys: the masks drawn up front are the plain layer's own, piece by piece."""
    from tg_dfer.model import temporal

    width, length = 32, 4
    monkeypatch.setattr(temporal, "RECOMPUTED_TOKENS", rows_per_piece * length)
    torch.manual_seed(0)
    block = temporal.Block(width, 4, 4.0, dropout=0.3).train()
    for layer in (block.attn.out_proj, block.mlp[-1]):  # zero-initialised: give the branches something to do
        torch.nn.init.normal_(layer.weight, std=0.2)
    x = torch.randn(7, length, width)
    padding = torch.zeros(7, length, dtype=torch.bool)
    padding[2, 3] = padding[5, 1:] = True
    results = []
    for run in (block, lambda h, p: temporal.recomputed(block, h, p)):
        torch.manual_seed(1)
        h = x.clone().requires_grad_()
        out = run(h, padding)
        out.square().sum().backward()
        results.append((out.detach(), h.grad, [p.grad.clone() for p in block.parameters()]))
        block.zero_grad()
    (plain, plain_dx, plain_dw), (pieces, pieces_dx, pieces_dw) = results
    assert torch.allclose(plain, pieces, atol=1e-5)
    assert torch.allclose(plain_dx, pieces_dx, atol=1e-4)
    for a, b in zip(plain_dw, pieces_dw):
        assert torch.allclose(a, b, atol=1e-4)
    torch.manual_seed(2)  # another draw: the comparison above is not trivially equal
    assert not torch.allclose(block(x, padding), plain, atol=1e-3)
