import numpy as np
import pytest
import torch
from PIL import Image

from tg_dfer.backbone import (
    BackboneSpec,
    WeightsError,
    default_checkpoint,
    encode_images,
    encode_texts,
    load_backbone,
    preprocess,
    random_weights_model,
    state_dict_sha256,
)


def clip_reference(image: np.ndarray, size: int = 224) -> torch.Tensor:
    from clip.clip import _transform

    return _transform(size)(Image.fromarray(image))


@pytest.mark.parametrize("shape", [(224, 224), (256, 256), (180, 240), (300, 200)])
def test_preprocess_matches_the_clip_package_transform(shape):
    rng = np.random.default_rng(1)
    # Smooth content (as real crops are) plus noise, so interpolation differences show up.
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    base = np.stack([np.sin(xs / 17.0), np.cos(ys / 11.0), np.sin((xs + ys) / 23.0)], axis=-1)
    image = np.clip(127 + 100 * base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    ours = preprocess(torch.from_numpy(image)[None])[0]
    reference = clip_reference(image)
    assert ours.shape == reference.shape == (3, 224, 224)
    difference = (ours - reference).abs()
    if shape == (224, 224):
        assert difference.max() < 1e-5  # no resize: identical up to float rounding
    else:
        # PIL and torch bicubic kernels differ slightly; in 8-bit steps of the normalised scale:
        assert difference.mean() < 0.02 and np.quantile(difference.numpy(), 0.99) < 0.1


def test_random_clip_is_the_real_vit_b32_and_seeded():
    first, second, other = random_weights_model("ViT-B/32", 0), random_weights_model("ViT-B/32", 0), random_weights_model("ViT-B/32", 1)
    assert sum(p.numel() for p in first.parameters()) > 150_000_000
    assert first.visual.conv1.kernel_size == (32, 32) and first.text_projection.shape == (512, 512)
    assert state_dict_sha256(first.state_dict()) == state_dict_sha256(second.state_dict())
    assert state_dict_sha256(first.state_dict()) != state_dict_sha256(other.state_dict())


def test_load_clip_random_records_it_and_freezes_weights():
    loaded = load_backbone(BackboneSpec("ViT-B/32", "random", seed=0))
    assert loaded.random_weights and loaded.source == "random(seed=0)"
    assert loaded.attrs()["embed_dim"] == 512
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_missing_weights_error_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(WeightsError) as error:
        load_backbone(BackboneSpec("ViT-B/32", None))
    message = str(error.value)
    assert str(tmp_path / ".cache" / "clip" / "ViT-B-32.pt") in message and "download is 'never'" in message
    assert __import__("clip").clip._MODELS["ViT-B/32"] in message  # where the file is published
    assert default_checkpoint("ViT-B/32").name == "ViT-B-32.pt"
    with pytest.raises(WeightsError, match="not found"):
        load_backbone(BackboneSpec("ViT-B/32", tmp_path / "nowhere.pt"))


def test_load_from_state_dict_file_and_torchscript_archive(tmp_path, tiny_clip_model):
    state_path = tmp_path / "tiny.pt"
    torch.save(tiny_clip_model.state_dict(), state_path)
    scripted_path = tmp_path / "tiny_jit.pt"
    # OpenAI's published archives are traced TorchScript modules; make one the same way.
    example = (torch.zeros(1, 3, 32, 32), __import__("clip").tokenize(["a face"]))
    torch.jit.save(torch.jit.trace(tiny_clip_model, example, check_trace=False), str(scripted_path))
    tokens_text = ["an expression of happiness.", "an expression of anger."]
    expected = encode_texts(load_backbone(BackboneSpec("ViT-B/32", "random")), tokens_text)  # just for the shape check below
    for path in (state_path, scripted_path):
        loaded = load_backbone(BackboneSpec("tiny", path))
        assert not loaded.random_weights and len(loaded.sha256) == 64
        texts = encode_texts(loaded, tokens_text)
        assert texts.shape == (2, 32) and np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
        with torch.no_grad():
            reference = tiny_clip_model.encode_text(__import__("clip").tokenize(tokens_text))
        reference = torch.nn.functional.normalize(reference.float(), dim=-1).numpy()
        assert np.allclose(texts, reference, atol=1e-5)
    assert expected.shape == (2, 512)


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"something": torch.zeros(2)}, path)
    with pytest.raises(WeightsError, match="no CLIP weights"):
        load_backbone(BackboneSpec("ViT-B/32", path))
    path.write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="not a CLIP checkpoint"):
        load_backbone(BackboneSpec("ViT-B/32", path))


def test_encode_images_is_normalised_and_batch_independent(tiny_clip_model, tmp_path):
    torch.save(tiny_clip_model.state_dict(), tmp_path / "tiny.pt")
    loaded = load_backbone(BackboneSpec("tiny", tmp_path / "tiny.pt"))
    pixels = preprocess(torch.randint(0, 256, (4, 40, 40, 3), dtype=torch.uint8), size=32)
    together = encode_images(loaded, pixels)
    alone = torch.cat([encode_images(loaded, pixels[i:i + 1]) for i in range(4)])
    assert torch.allclose(together.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert torch.allclose(together, alone, atol=1e-5)


def test_a_file_of_seeded_random_weights_loads_as_those_only_where_random_weights_are_allowed(tmp_path):
    path = tmp_path / "ViT-B-32.pt"
    torch.save({"state_dict": random_weights_model("ViT-B/32", 2).state_dict(), "random_weights": True, "seed": 2},
               path)
    with pytest.raises(WeightsError, match="seeded random weights .* Put the real CLIP weights there"):
        load_backbone(BackboneSpec("ViT-B/32", path))
    from_file = load_backbone(BackboneSpec("ViT-B/32", path, allow_random_weights=True))
    remade = load_backbone(BackboneSpec("ViT-B/32", "random", seed=2))
    # Recorded as checkpoint=random would be, so a model file made from it remakes the same weights.
    assert from_file.random_weights and from_file.source == "random(seed=2)" == remade.source
    assert from_file.sha256 == remade.sha256 != load_backbone(BackboneSpec("ViT-B/32", "random", seed=3)).sha256
