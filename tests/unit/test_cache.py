import json

import h5py
import numpy as np
import pytest

from tg_dfer.io.faces_h5 import FaceRecord, FacesFile, FacesWriter
from tg_dfer import cpu_profile
from tg_dfer.io.features_h5 import FEATURES_SCHEMA, FeaturesWriter, read_features, write_features
from tg_dfer.io.h5 import SchemaError, open_checked
from tg_dfer.io.text_h5 import TextCache, read_text, write_text

from helpers.projects import MODEL_ATTRS, feature_cache


def test_features_round_trip(tmp_path):
    cache = feature_cache()
    write_features(tmp_path / "features.h5", cache)
    back = read_features(tmp_path / "features.h5")
    assert back.clip_id == cache.clip_id
    for name in ("label", "features", "num_frames", "frame_index", "face_score"):
        assert np.array_equal(getattr(back, name), getattr(cache, name)), name
    assert back.features.dtype == np.float16 and back.class_names == ["a", "b", "c"]
    assert back.random_weights and back.attrs["schema"] == "tg-dfer/features/2"
    with h5py.File(tmp_path / "features.h5") as handle:  # the contract, as outside readers see it
        assert handle["clip_id"].dtype.kind == "O" and handle["label"].dtype == np.int64
        assert handle["num_frames"].dtype == np.int32 and handle["face_score"].dtype == np.float32
        assert json.loads(handle.attrs["class_names"]) == ["a", "b", "c"]


def test_files_of_the_earlier_schemas_are_still_read_by_every_reader(tmp_path):
    """features/1 and text/1 lack only the cpu_profile record: train, evaluate, export and the shard
    merge (all through open_checked) read them, and their record reads as unrecorded."""
    write_features(tmp_path / "features.h5", feature_cache())
    write_text(tmp_path / "text.h5", text_cache())
    for name, earlier in (("features.h5", "tg-dfer/features/1"), ("text.h5", "tg-dfer/text/1")):
        with h5py.File(tmp_path / name, "a") as handle:
            handle.attrs["schema"] = earlier
    assert cpu_profile.from_attrs(read_features(tmp_path / "features.h5").attrs) == {"name": "unrecorded"}
    assert read_text(tmp_path / "text.h5").class_names == ["a", "b"]
    with open_checked(tmp_path / "features.h5", FEATURES_SCHEMA) as handle:  # what export opens it with
        assert handle.attrs["schema"] == "tg-dfer/features/1"
    with pytest.raises(SchemaError, match="holds schema 'tg-dfer/features/1', expected tg-dfer/text/2"):
        read_text(tmp_path / "features.h5")


def test_clips_one_at_a_time_and_in_blocks_write_the_same_features(tmp_path):
    cache = feature_cache(n=7)
    N, V, F, D = cache.features.shape
    columns = ("clip_id", "label", "features", "num_frames", "frame_index", "face_score")
    with FeaturesWriter(tmp_path / "blocks.h5", V, F, D, cache.attrs) as writer:
        for rows in (slice(0, 3), slice(3, 4), slice(4, 7)):  # blocks of uneven size, as the last pass can be
            writer.extend(*(getattr(cache, name)[rows] for name in columns))
    with FeaturesWriter(tmp_path / "clips.h5", V, F, D, cache.attrs) as writer:
        for row in range(N):
            writer.append(*(getattr(cache, name)[row] for name in columns))
    blocks, clips = read_features(tmp_path / "blocks.h5"), read_features(tmp_path / "clips.h5")
    assert blocks.clip_id == clips.clip_id == cache.clip_id
    for name in columns[1:]:
        assert np.array_equal(getattr(blocks, name), getattr(clips, name)), name
        assert np.array_equal(getattr(blocks, name), getattr(cache, name)), name


def test_a_block_with_rows_missing_is_refused(tmp_path):
    cache = feature_cache(n=3)
    with pytest.raises(ValueError, match="2 rows of label for 3 clip ids"):
        with FeaturesWriter(tmp_path / "features.h5", 2, 4, 8, cache.attrs) as writer:
            writer.extend(cache.clip_id, cache.label[:2], cache.features, cache.num_frames, cache.frame_index,
                          cache.face_score)
    assert not (tmp_path / "features.h5").exists()


def test_wrong_or_old_schema_is_refused_with_a_clear_error(tmp_path):
    write_features(tmp_path / "features.h5", feature_cache())
    with h5py.File(tmp_path / "features.h5", "a") as handle:
        handle.attrs["schema"] = "tg-dfer/features/0"
    with pytest.raises(SchemaError, match="features/0 is not supported"):
        read_features(tmp_path / "features.h5")
    write_text(tmp_path / "text.h5", text_cache())
    with pytest.raises(SchemaError, match="holds schema 'tg-dfer/text/2', expected tg-dfer/features/2"):
        read_features(tmp_path / "text.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(SchemaError, match="not a readable HDF5"):
        read_features(tmp_path / "junk.h5")
    with pytest.raises(SchemaError, match="no such file"):
        read_features(tmp_path / "absent.h5")


def test_inconsistent_features_file_is_refused(tmp_path):
    write_features(tmp_path / "features.h5", feature_cache())
    with h5py.File(tmp_path / "features.h5", "a") as handle:
        del handle["num_frames"]
        handle["num_frames"] = np.full(5, 9, dtype=np.int32)
    with pytest.raises(SchemaError, match="num_frames"):
        read_features(tmp_path / "features.h5")


def text_cache() -> TextCache:
    rng = np.random.default_rng(0)
    return TextCache(class_names=["a", "b"], class_prompts=["an expression of a.", "an expression of b."],
                     descriptor_prompts=["first", "second"], class_embeddings=rng.random((2, 8)),
                     descriptor_embeddings=rng.random((2, 8)), attrs={**MODEL_ATTRS, "prompt_set": "test"})


def test_text_round_trip(tmp_path):
    cache = text_cache()
    write_text(tmp_path / "text.h5", cache)
    back = read_text(tmp_path / "text.h5")
    assert back.class_names == cache.class_names and back.descriptor_prompts == cache.descriptor_prompts
    assert np.allclose(back.class_embeddings, cache.class_embeddings)
    assert back.attrs["checkpoint_sha256"] == MODEL_ATTRS["checkpoint_sha256"]


def test_faces_round_trip_including_a_failed_clip(tmp_path):
    F = 3
    good = FaceRecord("good", "partial", "face found in 2 of 3", source_frames=40, frame_index=np.array([5, 20, 35]),
                      box=np.arange(12, dtype=np.float32).reshape(F, 4), score=np.array([0.9, 0.0, 0.8]),
                      crops=[b"\xff\xd8one", b"\xff\xd8two", b"\xff\xd8three"])
    bad = FaceRecord("bad", "failed", "bad.mp4: empty file (0 bytes)")
    with FacesWriter(tmp_path / "faces.h5", F, {"detector": "opencv"}) as writer:
        writer.append(good)
        writer.append(bad)
    with FacesFile(tmp_path / "faces.h5") as faces:
        assert faces.clip_id == ["good", "bad"] and faces.status == ["partial", "failed"]
        assert faces.reason[1] == "bad.mp4: empty file (0 bytes)"
        assert faces.crops(0) == good.crops and faces.crops(1) == [b"", b"", b""]
        assert np.array_equal(faces["frame_index"], [[5, 20, 35], [-1, -1, -1]])
        assert np.isnan(faces["landmarks"]).all() and faces.attrs["detector"] == "opencv"


def test_a_writer_that_fails_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError):
        with FacesWriter(tmp_path / "faces.h5", 2, {}) as writer:
            writer.append(FaceRecord("x", "failed", "reason"))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
