"""The demo's own backbone: captions, the pretraining set's seeds, the checkpoint, the stage."""

from __future__ import annotations

import json
import re

import clip
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from helpers.projects import tiny_params
from pipeline.cli import main
from pipeline.stages.backbone import CHECKPOINT, UNUSED, UNUSED_TEXT
from tg_dfer.backbone import BackboneSpec, WeightsError, encode_texts, load_backbone
from tg_dfer.demo.captions import caption, face_phrases
from tg_dfer.demo.clips import DEMO_CLASSES
from tg_dfer.demo.face import EXPRESSIONS, FaceParams
from tg_dfer.demo.pretrain import (BackboneConfig, build_backbone, embed_texts, encode_tokens, held_out_checks,
                                   held_out_faces, save_backbone, train_backbone, training_faces)
from tg_dfer.demo.pretrain_faces import identity_rng
from tg_dfer.determinism import deterministic
from tg_dfer.faces import CropPolicy
from tg_dfer.hashes import sha256_file
from tg_dfer.prompt_sets import load_prompt_set

DFEW = load_prompt_set("dfew")
TINY = dict(identities=3, images_per_identity=3, held_out_identities=1, render_workers=1, embed_dim=16,
            vision_width=2, vision_layers=[1, 1, 1, 1], text_width=64, text_layers=1, epochs=1, batch_size=4,
            warmup_steps=1, torch_threads=1, pretrained="")


def descriptor_phrases() -> set[str]:
    """Every comma-separated phrase of the dfew descriptors, without the final 'and' and full stop."""
    phrases = set()
    for text in DFEW.descriptors.values():
        for part in text.rstrip(".").split(", "):
            phrases.add(part.removeprefix("and "))
    return phrases


def random_faces(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        label = str(rng.choice(DEMO_CLASSES))
        intensity = 0.0 if label == "neutral" else float(rng.uniform(0, 1))
        yield label, intensity, FaceParams.from_vector(EXPRESSIONS[label].vector() * intensity), rng


def listed(text: str) -> list[str]:
    """The phrases of a caption, with its class prompt or "<alias> face" frame taken off."""
    body = text.rstrip(".")
    for name in DFEW.class_names:
        body = body.replace(DFEW.class_prompt_template.format(name).rstrip(".") + ", with ", "")
    body = re.sub(r"^an? (slightly )?\w+ face( with |$)", "", body)
    if body in {prompt.rstrip(".") for prompt in DFEW.class_prompts} or not body:
        return []
    return [part.removeprefix("and ") for chunk in body.split(", ") for part in chunk.split(" and ")]


def test_captions_use_only_the_prompt_sets_phrases_and_names():
    vocabulary = descriptor_phrases()
    seen = set()
    for label, intensity, params, rng in random_faces(400):
        text = caption(label, intensity, params, DFEW, rng)
        phrases = listed(text)
        assert set(phrases) <= vocabulary, text
        seen.update(phrases)
        named = [name for name in DFEW.class_names if name in text] + [alias for alias in DFEW.aliases if
                                                                       re.search(rf"\b{alias}\b", text)]
        if named and intensity < 0.2:  # a face too faint to see is neutral
            assert all(DFEW.aliases.get(word, word) == "neutral" for word in named), text
    # Most of the descriptors' words are taught (the rest: tears etc. go with the class apex).
    assert len(seen) >= 0.8 * len(vocabulary)


def test_phrases_follow_the_drawn_parameters_not_the_label():
    happy = {phrase for synonyms in face_phrases(EXPRESSIONS["happiness"]) for phrase in synonyms}
    assert {"a smiling mouth", "raised cheeks", "wrinkled eyes"} <= happy
    angry = {phrase for synonyms in face_phrases(EXPRESSIONS["anger"]) for phrase in synonyms}
    assert {"furrowed eyebrows", "narrow eyes", "tightened lips", "lowered eyebrows"} <= angry
    assert face_phrases(FaceParams()) == []
    assert face_phrases(FaceParams(eye_open=-1.0)) == []  # a blink is not "narrow eyes"
    half_smile = FaceParams.from_vector(EXPRESSIONS["happiness"].vector() * 0.3)
    assert ("a smiling mouth",) not in face_phrases(half_smile)


def test_captions_of_a_batch_rarely_coincide():
    captions = [caption(label, intensity, params, DFEW, rng) for label, intensity, params, rng in random_faces(128)]
    assert len(set(captions)) >= 0.7 * len(captions)


def test_unknown_class_is_refused():
    with pytest.raises(ValueError, match="not in prompt set"):
        caption("contempt", 1.0, FaceParams(), DFEW, np.random.default_rng(0))


def test_pretraining_people_never_share_a_random_stream_with_a_demo_clip():
    # The pitfall the seed layout avoids: numpy pads entropy with zeros, so [s, n] and [s, n, 0] coincide.
    assert np.random.default_rng([0, 5]).random() == np.random.default_rng([0, 5, 0]).random()
    demo_streams = {tuple(np.random.SeedSequence([seed, n]).generate_state(4)) for seed in range(3)
                    for n in range(1, 7 * 20 + 1)}
    demo_streams |= {tuple(np.random.SeedSequence(seed).generate_state(4)) for seed in range(3)}  # fold draws
    ours = {tuple(identity_rng(seed, index).bit_generator.seed_seq.generate_state(4)) for seed in range(3)
            for index in range(3000)}
    assert len(ours) == 3 * 3000 and not demo_streams & ours
    with pytest.raises(ValueError):
        identity_rng(2**32, 0)


def test_rendered_set_looks_like_face_crops_with_captions():
    config = BackboneConfig(**{**TINY, "identities": 6, "images_per_identity": 6})
    faces = training_faces(config, 256, CropPolicy(), DFEW)
    assert faces.images.shape[1:] == (224, 224, 3) and faces.images.dtype == np.uint8
    assert len(faces) == 6 * (6 - faces.skipped) and len(set(faces.identity.tolist())) == 6 - faces.skipped
    assert len(faces.captions) == len(faces) and all(text.endswith(".") for text in faces.captions)
    # The face is in the middle: the centre is skin, not the backdrop of the corners.
    centre = faces.images[:, 80:144, 80:144].astype(float).mean(axis=(1, 2))
    corner = faces.images[:, :24, :24].astype(float).mean(axis=(1, 2))
    assert np.mean(np.abs(centre - corner).sum(axis=1) > 20) > 0.8
    held = held_out_faces(config, 256, CropPolicy(), DFEW)
    assert set(held.identity.tolist()).isdisjoint(faces.identity.tolist())
    assert sorted(held.label.tolist()) == list(range(7)) and (held.intensity == 1).all()


def test_config_refuses_sizes_clip_cannot_build():
    with pytest.raises(ValueError, match="multiple of 64"):
        BackboneConfig(text_width=96)
    with pytest.raises(ValueError, match="must be even"):
        BackboneConfig(vision_width=7)
    with pytest.raises(ValueError, match="divisible by 8"):
        BackboneConfig(embed_dim=60)
    with pytest.raises(ValueError, match="4 block counts"):
        BackboneConfig(vision_layers=[1, 1, 1])


def test_encode_tokens_is_clips_encode_text(one_thread):
    torch.manual_seed(0)
    model = build_backbone(BackboneConfig(**TINY)).eval()
    tokens = clip.tokenize(["an expression of fear.", "a smiling mouth, raised cheeks, and wrinkled eyes."])
    with torch.no_grad():
        assert torch.allclose(encode_tokens(model, tokens), model.encode_text(tokens), atol=1e-5)


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    """A tiny backbone trained twice from the same config, by callers with 1 and 2 threads, saved to two files."""
    before = torch.get_num_threads()
    config = BackboneConfig(**TINY)
    faces = training_faces(config, 256, CropPolicy(), DFEW)
    paths = []
    for run, caller_threads in enumerate((1, 2)):  # torch.save names records after the file: same name, two folders
        torch.set_num_threads(caller_threads)
        model, history = train_backbone(faces, config)
        assert torch.get_num_threads() == caller_threads  # the config's count held only inside training
        paths.append(tmp_path_factory.mktemp(f"run{run}") / "clip.pt")
        save_backbone(paths[-1], model, config)
    torch.set_num_threads(before)
    return config, model, history, paths


def test_training_is_deterministic_and_the_checkpoint_loads_as_demo_weights(tiny_backbone):
    config, model, history, (first, second) = tiny_backbone
    assert sha256_file(first) == sha256_file(second)
    assert len(history) == config.epochs and np.isfinite(history[0]["loss"])
    with pytest.raises(WeightsError, match="demo's own backbone"):
        load_backbone(BackboneSpec("demo", first))  # refused unless the caller allows demo weights
    loaded = load_backbone(BackboneSpec("demo", first, allow_demo_weights=True))
    assert loaded.demo_weights and not loaded.random_weights
    attrs = loaded.attrs()
    assert attrs["demo_weights"] is True and attrs["embed_dim"] == 16
    assert attrs["checkpoint_sha256"] == sha256_file(first)
    texts = DFEW.class_prompts
    assert np.allclose(encode_texts(loaded, texts), embed_texts(model, texts), atol=1e-5)
    assert not load_backbone(BackboneSpec("ViT-B/32", "random")).demo_weights


def _text_tower(model) -> dict[str, torch.Tensor]:
    return {name: value for name, value in model.state_dict().items()
            if name.split(".")[0] in {"token_embedding", "positional_embedding", "transformer", "ln_final",
                                      "text_projection"}}


@pytest.mark.parametrize("frozen, text_moves", [(2, False), (1, True)])
def test_the_text_tower_stays_as_initialised_for_its_frozen_steps(one_thread, frozen, text_moves):
    config = BackboneConfig(**{**TINY, "text_frozen_steps": frozen})  # 9 faces, batches of 4: 2 steps
    faces = training_faces(config, 256, CropPolicy(), DFEW)
    with deterministic(config.seed, threads=config.torch_threads):
        start = build_backbone(config).float()  # what train_backbone builds first, from the same seed
    model, _ = train_backbone(faces, config)
    before, after = _text_tower(start), _text_tower(model)
    assert after.keys() == before.keys() and after
    moved = [name for name in after if not torch.equal(after[name], before[name])]
    assert bool(moved) is text_moves
    image_moved = [name for name, value in model.state_dict().items()
                   if name.startswith("visual.") and value.is_floating_point()
                   and not torch.equal(value, start.state_dict()[name])]
    assert image_moved  # the image tower trains from the first step either way


def test_frozen_steps_must_not_be_negative():
    with pytest.raises(ValueError, match="text_frozen_steps"):
        BackboneConfig(text_frozen_steps=-1)


def test_held_out_checks_are_scores_in_range(tiny_backbone):
    config, model, _, _ = tiny_backbone
    checks = held_out_checks(model, held_out_faces(config, 256, CropPolicy(), DFEW), DFEW)
    assert 0 <= checks["zero_shot_class_prompts"] <= 100 and 0 <= checks["apex_over_neutral_auroc"] <= 1
    assert checks["faces"] == 7 * config.held_out_identities


def test_demo_weights_are_refused_for_other_datasets(tiny_backbone, tmp_path, monkeypatch):
    path = str(tiny_backbone[3][0])
    monkeypatch.chdir(tmp_path)
    for adapter, refused in (("dfew", True), ("csv", True), ("demo", False)):
        params = tiny_params(**{"dataset.adapter": adapter, "clip.model": "demo", "clip.checkpoint": path})
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        result = CliRunner().invoke(main, ["text"])
        if refused:
            assert result.exit_code != 0 and "holds the demo's own backbone" in result.output, result.output
            assert path in result.output and "Traceback" not in result.output
        else:
            assert result.exit_code == 0, result.output
            assert "the demo's own backbone, trained on rendered faces" in result.output


def test_stage_writes_only_a_constant_marker_when_the_backbone_is_not_used(tmp_path, monkeypatch):
    params = tiny_params(**{"clip.checkpoint": "random", "clip.model": "ViT-B/32"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        result = CliRunner().invoke(main, ["backbone"])
        assert result.exit_code == 0, result.output
        assert [path.name for path in (tmp_path / "data/backbone").iterdir()] == [UNUSED.name]
        assert (tmp_path / UNUSED).read_text() == UNUSED_TEXT


def test_stage_trains_and_replaces_the_marker_when_the_demo_uses_it(tmp_path, monkeypatch):
    tiny = {f"backbone.{key}": value for key, value in TINY.items()}
    params = tiny_params(**{"clip.checkpoint": str(CHECKPOINT), **tiny})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/backbone").mkdir(parents=True)
    (tmp_path / UNUSED).write_text(UNUSED_TEXT)  # left by an earlier run for another dataset
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = CliRunner().invoke(main, ["backbone"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / UNUSED).exists()
    assert load_backbone(BackboneSpec("demo", tmp_path / CHECKPOINT, allow_demo_weights=True)).demo_weights
    metrics = yaml.safe_load((tmp_path / "metrics/demo/backbone.json").read_text())
    assert metrics["trained"] and len(metrics["history"]) == TINY["epochs"]
    assert "seconds" not in str(metrics)  # wall times go to the log, outside git
    log = yaml.safe_load((tmp_path / "logs/demo/backbone.json").read_text())
    assert log["seconds"]["total"] > 0 and len(log["epoch_seconds"]) == TINY["epochs"]


def test_stage_checks_its_params_before_any_work(tmp_path, monkeypatch):
    params = tiny_params(**{"clip.checkpoint": str(CHECKPOINT), "backbone.vision_width": 7})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["backbone"])
    assert result.exit_code != 0 and "params: backbone.vision_width must be even" in result.output
    assert not (tmp_path / "data").exists()


def pretrained_project(tmp_path, monkeypatch, tiny_backbone, **changes):
    """A project whose backbone.pretrained is the tiny backbone, with its record beside it."""
    config, _, _, (first, _) = tiny_backbone
    asset = tmp_path / "assets" / "backbone.pt"
    asset.parent.mkdir()
    asset.write_bytes(first.read_bytes())
    params = tiny_params(**{"clip.checkpoint": str(CHECKPOINT), **{f"backbone.{k}": v for k, v in TINY.items()},
                            "backbone.pretrained": str(asset), **changes})
    trained_with = {"demo.frame_size": params["demo"]["frame_size"], "faces.crop_size": 224, "faces.margin": 1.3,
                    "faces.image_format": "jpeg", "faces.jpeg_quality": 95, "text.prompt_set": "dfew"}
    asset.with_suffix(".json").write_text(json.dumps({"trained": True, "trained_with": trained_with}) + "\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    return asset


def test_stage_copies_a_backbone_trained_with_these_settings_instead_of_training(tiny_backbone, tmp_path, monkeypatch):
    asset = pretrained_project(tmp_path, monkeypatch, tiny_backbone)
    result = CliRunner().invoke(main, ["backbone"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / CHECKPOINT).read_bytes() == asset.read_bytes()
    assert (tmp_path / "metrics/demo/backbone.json").read_text() == asset.with_suffix(".json").read_text()
    assert not (tmp_path / "logs").exists()  # nothing was trained


@pytest.mark.parametrize("change, named", [({"backbone.epochs": 2}, "epochs 1 there, 2 here"),
                                           ({"faces.crop_size": 192}, "faces.crop_size 224 there, 192 here")])
def test_stage_refuses_a_pretrained_backbone_of_other_settings(tiny_backbone, tmp_path, monkeypatch, change, named):
    asset = pretrained_project(tmp_path, monkeypatch, tiny_backbone, **change)
    result = CliRunner().invoke(main, ["backbone"])
    assert result.exit_code != 0 and named in result.output and str(asset) in result.output, result.output
    assert "backbone.pretrained to ''" in result.output and not (tmp_path / CHECKPOINT).exists()

