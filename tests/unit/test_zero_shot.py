"""The zero-shot model file: the untrained TG-DFER over a prompt set's text embeddings scores every
frame exactly as CLIP does zero-shot, and the model file says it is zero-shot wherever it goes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tg_dfer.backbone import Backbone
from tg_dfer.faces import CropPolicy, FaceSettings
from tg_dfer.inference.model_file import MODEL_FORMAT, load_model_file, model_in_memory
from tg_dfer.inference.predictor import Predictor
from tg_dfer.inference.zero_shot import zero_shot_model_file
from tg_dfer.io.payload import save_payload
from tg_dfer.io.text_h5 import TextCache
from tg_dfer.model import ModelConfig

pytestmark = pytest.mark.usefixtures("one_thread")
D, C, F = 16, 3, 8
SHA = "ab" * 32


def unit_rows(values: np.ndarray) -> np.ndarray:
    return values / np.linalg.norm(values, axis=-1, keepdims=True)


def texts(seed: int = 0) -> TextCache:
    rng = np.random.default_rng(seed)
    return TextCache(class_names=["joy", "anger", "calm"], class_prompts=[f"an expression of {n}." for n in "abc"],
                     descriptor_prompts=["x", "y", "z"],
                     class_embeddings=unit_rows(rng.normal(size=(C, D))).astype(np.float32),
                     descriptor_embeddings=unit_rows(rng.normal(size=(C, D))).astype(np.float32),
                     attrs={"clip_model": "ViT-B/32", "checkpoint_sha256": SHA, "random_weights": True,
                            "clip_source": "random(seed=0)", "prompt_set": "toy", "prompt_source": "a test"})


FACES = FaceSettings(CropPolicy(frames_per_clip=F))


def payload(config: ModelConfig, cache: TextCache | None = None) -> dict:
    return zero_shot_model_file(cache or texts(), config, FACES, F, backbone_seed=0, provenance={"test": True})


def test_frame_scores_are_clip_s_zero_shot_scores_and_pooled_as_configured():
    cache = texts()
    # The paper's best training setting, including what an untrained model cannot use (learnt context).
    config = ModelConfig(embed_dim=D, num_classes=C, num_frames=F, window=4, heads=2, mil_pooling="topk",
                         learnable_context=True, visual_prompt="prepend")
    model = model_in_memory(payload(config, cache), "zero-shot (test)")
    member = model.payload["members"][0]
    assert not member["model_config"]["learnable_context"] and member["model_config"]["visual_prompt"] == "add"
    loaded = Backbone(model=None, name="ViT-B/32", sha256=SHA, random_weights=True, source="test")
    rng = np.random.default_rng(1)
    frames = unit_rows(rng.normal(size=(5, F, D))).astype(np.float16)  # as the features cache stores them
    valid = np.array([8, 8, 5, 3, 1])
    probs, influence, positions = Predictor(model, loaded).classify(frames, valid)

    # CLIP zero-shot: cos(frame, class prompt) x 100, computed here from the embeddings alone.
    x = unit_rows(frames.astype(np.float64))
    scores = x @ cache.class_embeddings.astype(np.float64).T * 100.0  # (N, F, C)
    for clip, count in enumerate(valid):
        k = math.ceil(count * config.topk_fraction)  # topk pooling of that share of the valid frames
        logits = np.sort(scores[clip, :count], axis=0)[::-1][:k].mean(axis=0)
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert np.allclose(probs[clip], expected, atol=1e-4)
        predicted = expected.argmax()
        assert np.allclose(influence[clip, :count], scores[clip, :count, predicted], atol=1e-3)
        assert np.isnan(influence[clip, count:]).all() and (positions[clip, count:] == -1).all()


def test_a_zero_shot_model_file_says_so_and_reads_back(tmp_path):
    config = ModelConfig(embed_dim=D, num_classes=C, num_frames=F, window=4, heads=2)
    content = payload(config)
    assert content["format"] == MODEL_FORMAT and content["zero_shot"]["prompt_set"] == "toy"
    save_payload(tmp_path / "zero.pt", content)
    model = load_model_file(tmp_path / "zero.pt")
    description = model.describe()
    assert description["zero_shot"] and description["prompt_set"] == "toy"
    assert description["folds"] == [] and description["weights"] == "zero-shot"
    assert description["random_clip_weights"] and description["clip_sha256"] == SHA
    assert model.backbone_spec().checkpoint == "random" and model.detector == "opencv" and model.frames_per_clip == F


def test_model_files_of_version_1_are_read_as_trained_models(tmp_path):
    content = payload(ModelConfig(embed_dim=D, num_classes=C, num_frames=F, window=4, heads=2))
    content["members"][0].update(fold=3, weights="best")
    # version 1 had no zero_shot entry and, like version 2, called the backbone record "clip"
    old = {("clip" if key == "backbone" else key): value for key, value in content.items() if key != "zero_shot"}
    save_payload(tmp_path / "old.pt", {**old, "format": "tg-dfer/model/1"})
    model = load_model_file(tmp_path / "old.pt")
    assert model.backbone["sha256"] == SHA and model.backbone_spec().checkpoint == "random"
    description = model.describe()
    assert not description["zero_shot"] and description["prompt_set"] is None and description["folds"] == [3]
