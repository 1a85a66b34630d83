"""The fast embed path (threaded/batched decoding, on-device views and preprocessing, batches
across clips) gives the features of the plain path: decode each crop, preprocess, encode, per clip."""

import numpy as np
import pytest
import torch

from benchmarks.measure import smooth_faces
from tg_dfer.backbone import Backbone, BackboneSpec, encode_images, load_backbone, preprocess
from tg_dfer.embed.images import embed_faces, view_frames
from tg_dfer.io.faces_h5 import FaceRecord, FacesFile, FacesWriter
from tg_dfer.io.features_h5 import FeaturesWriter, read_features
from tg_dfer.io.images import decode_image, encode_image
from tg_dfer.sampling import subsample


def write_faces(path, sizes, frames=4, image_format="jpeg", broken=()):
    """One clip per entry of ``sizes`` (its crop side); clips named in ``broken`` get an undecodable crop."""
    rng = np.random.default_rng(0)
    ids = [f"c{i}" for i in range(len(sizes))]
    with FacesWriter(path, frames, {"image_format": image_format}) as writer:
        for clip_id, size in zip(ids, sizes):
            crops = [encode_image(image, image_format) for image in smooth_faces(frames, size, rng)]
            if clip_id in broken:
                crops[1] = b"not an image"
            writer.append(FaceRecord(clip_id, "ok", source_frames=frames, frame_index=np.arange(frames),
                                     box=np.zeros((frames, 4)), score=np.ones(frames), crops=crops))
        writer.append(FaceRecord("gone", "failed", reason="decoder error"))
    return ids


def run_embed(tmp_path, loaded, faces_path, ids, frames, views, name="features.h5", **options):
    attrs = {**loaded.attrs(), "class_names": ["a", "b"], "views": views, "frames_per_clip": frames}
    with FacesFile(faces_path) as faces, FeaturesWriter(tmp_path / name, views, frames, loaded.embed_dim, attrs) as out:
        summary = embed_faces(faces, {clip_id: k % 2 for k, clip_id in enumerate(ids)}, loaded, out, frames, views,
                              seed=3, **options)
    return summary, read_features(tmp_path / name)


def reference(loaded, faces_path, rows, frames, views):
    """Clip by clip, from the library's plain steps (decode, views, CLIP preprocessing, encode): (N, V, F, D)."""
    out = []
    with FacesFile(faces_path) as faces:
        positions = subsample(faces.frames_per_clip, frames)
        for row in rows:
            crops = torch.from_numpy(np.stack([decode_image(faces.crops(row)[int(p)]) for p in positions]))
            pixels = preprocess(view_frames(crops, faces.clip_id[row], views, 3), loaded.input_resolution)
            out.append(encode_images(loaded, pixels).numpy().reshape(views, frames, -1))
    return np.stack(out)


@pytest.fixture
def tiny(tiny_clip_model):
    return Backbone(tiny_clip_model, "tiny", "0" * 64, random_weights=True, source="test")


@pytest.mark.parametrize("decoder", ["opencv", "torchvision"])
def test_fast_path_equals_the_clip_by_clip_path(tmp_path, tiny, one_thread, decoder):
    ids = write_faces(tmp_path / "faces.h5", [40, 40, 40, 40, 40], frames=6)
    # 5 images per forward pass: batches of one clip x 2 views x 3 frames, and a last one alone.
    summary, cache = run_embed(tmp_path, tiny, tmp_path / "faces.h5", ids, frames=3, views=2, batch_size=5,
                               decoder=decoder, workers=2)
    assert summary.embedded == 5 and summary.skipped == [("gone", "decoder error")]
    assert cache.clip_id == ids and cache.features.shape == (5, 2, 3, 32)
    expected = reference(tiny, tmp_path / "faces.h5", range(5), 3, 2)
    # Features are stored as float16. On CPU both decoders are libjpeg-turbo and give the same pixels
    # (nvJPEG on a GPU may differ by a grey level).
    assert np.abs(cache.features.astype(np.float32) - expected).max() < 2e-3
    assert np.array_equal(cache.frame_index, np.tile(subsample(6, 3), (5, 1)))


def test_clips_of_different_crop_sizes_and_a_broken_crop(tmp_path, tiny, one_thread):
    ids = write_faces(tmp_path / "faces.h5", [40, 48, 32, 40], broken=("c2",), image_format="png")
    summary, cache = run_embed(tmp_path, tiny, tmp_path / "faces.h5", ids, frames=4, views=1, batch_size=64)
    assert summary.embedded == 3
    assert dict(summary.skipped) == {"gone": "decoder error", "c2": "undecodable crop bytes"}
    assert cache.clip_id == ["c0", "c1", "c3"]
    expected = reference(tiny, tmp_path / "faces.h5", [0, 1, 3], 4, 1)
    assert np.abs(cache.features.astype(np.float32) - expected).max() < 2e-3


def test_torchvision_decoder_skips_only_the_clip_with_a_broken_crop(tmp_path, tiny, one_thread):
    ids = write_faces(tmp_path / "faces.h5", [40, 40, 40], broken=("c1",))
    summary, cache = run_embed(tmp_path, tiny, tmp_path / "faces.h5", ids, frames=4, views=1, decoder="torchvision")
    assert cache.clip_id == ["c0", "c2"] and [clip_id for clip_id, _ in summary.skipped] == ["gone", "c1"]


def test_bf16_weights_stay_close_to_fp32(tmp_path, tiny_clip_model, one_thread):
    torch.save(tiny_clip_model.state_dict(), tmp_path / "tiny.pt")
    ids = write_faces(tmp_path / "faces.h5", [40, 40])
    results = {}
    for precision in ("fp32", "bf16"):
        loaded = load_backbone(BackboneSpec("tiny", tmp_path / "tiny.pt"), precision=precision)
        assert loaded.model.dtype == {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
        results[precision] = run_embed(tmp_path, loaded, tmp_path / "faces.h5", ids, 4, 1, f"{precision}.h5")[1]
    fp32, bf16 = (results[p].features.astype(np.float32).reshape(-1, 32) for p in ("fp32", "bf16"))
    assert np.min(np.sum(fp32 * bf16, axis=1)) > 0.99  # unit vectors: cosine similarity


def test_fast_path_on_the_real_vit_b32_architecture(tmp_path, one_thread):
    loaded = load_backbone(BackboneSpec("ViT-B/32", "random", seed=0))
    ids = write_faces(tmp_path / "faces.h5", [224, 224], frames=2)
    _, cache = run_embed(tmp_path, loaded, tmp_path / "faces.h5", ids, frames=2, views=1, batch_size=3)
    expected = reference(loaded, tmp_path / "faces.h5", [0, 1], 2, 1)
    assert np.abs(cache.features.astype(np.float32) - expected).max() < 2e-3


def test_unknown_decoder_is_refused(tmp_path, tiny):
    ids = write_faces(tmp_path / "faces.h5", [40])
    with pytest.raises(ValueError, match="unknown crop decoder 'nvjpeg'"):
        run_embed(tmp_path, tiny, tmp_path / "faces.h5", ids, 4, 1, decoder="nvjpeg")


def test_batches_read_in_one_block_give_each_clips_own_crops(tmp_path):
    from tg_dfer.embed.images import _read_batches, clip_batches

    ids = write_faces(tmp_path / "faces.h5", [32] * 5, frames=4)
    labels = {clip_id: 1 for clip_id in ids if clip_id != "c3"}
    positions = np.array([1, 3])
    assert clip_batches(range(6), batch_size=9, views=2, frames=2) == [[0, 1], [2, 3], [4, 5]]
    with FacesFile(tmp_path / "faces.h5") as faces:
        run = list(_read_batches(faces, labels, positions, [[0, 2, 4], [3, 5], [1]]))
        assert [[clip.clip_id for clip in batch] for batch, _ in run] == [["c0", "c2", "c4"], [], ["c1"]]
        assert [skipped for _, skipped in run] == [[], [("c3", "not in the manifest"), ("gone", "decoder error")], []]
        for batch, _ in run:
            for clip in batch:
                own = faces.crops(ids.index(clip.clip_id))
                assert [bytes(crop) for crop in clip.crops] == [bytes(own[p]) for p in positions]

def test_padding_frames_are_copies_of_the_last_valid_frame_and_only_valid_frames_are_encoded(tmp_path, tiny,
                                                                                              one_thread):
    """A clip of 3 source frames cached at 6 (the last repeated) and embedded at 6: 3 images per view
    pass through CLIP, and frames 3-5 of every view are frame 2's embedding."""
    rng = np.random.default_rng(1)
    images = smooth_faces(3, 40, rng)
    crops = [encode_image(image, "jpeg") for image in [*images, images[-1], images[-1], images[-1]]]
    with FacesWriter(tmp_path / "faces.h5", 6, {"image_format": "jpeg"}) as writer:
        writer.append(FaceRecord("short", "ok", source_frames=3, frame_index=np.array([0, 1, 2, 2, 2, 2]),
                                 box=np.zeros((6, 4)), score=np.ones(6), crops=crops))
    seen = []
    forward = tiny.model.encode_image
    tiny.model.encode_image = lambda pixels: seen.append(len(pixels)) or forward(pixels)
    summary, cache = run_embed(tmp_path, tiny, tmp_path / "faces.h5", ["short"], frames=6, views=2)
    assert seen == [2 * 3] and cache.num_frames.tolist() == [3]
    features = cache.features[0]  # (V, F, D)
    for view in range(2):
        assert all(np.array_equal(features[view, frame], features[view, 2]) for frame in (3, 4, 5))
    expected = reference(tiny, tmp_path / "faces.h5", [0], 6, 2)[0]
    assert np.abs(features[:, :3].astype(np.float32) - expected[:, :3]).max() < 2e-3
