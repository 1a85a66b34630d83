"""The demo dataset generator: determinism, layout, weak-supervision envelope, decodability, and
that the drawn faces are both detectable and visibly expressive."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict

import cv2
import numpy as np
import pytest

from tg_dfer.demo.clips import (CONFUSER_INTENSITY, DEMO_CLASSES, MIN_FRAMES, DemoConfig, confuser_track,
                                generate_demo, render_clip, _expression_envelope)
from tg_dfer.video import open_video

SMALL = DemoConfig(clips_per_class=2, num_folds=2, seed=3, frame_size=128)
NEUTRAL = DEMO_CLASSES.index("neutral")
CASCADE = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def render(label: int, key: list[int], config: DemoConfig = SMALL) -> tuple[np.ndarray, np.ndarray]:
    frames, intensity, _ = render_clip(label, np.random.default_rng(key), config)
    return frames, intensity


def detect(frame: np.ndarray, min_size: int) -> np.ndarray:
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return CASCADE.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    (out / "demo_9999.mp4").write_bytes(b"stale clip of an earlier, larger run")
    (out / "notes.txt").write_text("not ours")
    generate_demo(out, SMALL, progress=False)
    return out


def read_labels(directory) -> list[dict]:
    with open(directory / "labels.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_classes_in_fixed_order():
    assert DEMO_CLASSES == ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")


def test_render_is_deterministic_and_seed_dependent():
    frames, intensity = render(3, [0, 7])
    again, again_intensity = render(3, [0, 7])
    assert frames.dtype == np.uint8 and frames.shape[1:] == (128, 128, 3)
    assert SMALL.min_frames <= len(frames) <= SMALL.max_frames
    np.testing.assert_array_equal(frames, again)
    np.testing.assert_array_equal(intensity, again_intensity)
    other, _ = render(3, [1, 7])
    assert other.shape != frames.shape or np.abs(other.astype(int) - frames).mean() > 5


def test_rejects_unknown_label():
    with pytest.raises(ValueError):
        render(len(DEMO_CLASSES), [0, 1])


@pytest.mark.parametrize("clip", range(6))
def test_intensity_envelope_is_one_short_bump(clip):
    for label in range(len(DEMO_CLASSES)):
        _, intensity = render(label, [11, clip])
        assert intensity.min() >= 0 and intensity.max() <= 1
        if label == NEUTRAL:
            assert intensity.max() == 0
            continue
        assert intensity.max() == 1.0
        assert intensity[0] == 0 and intensity[-1] == 0
        apex = np.flatnonzero(intensity >= 0.5)
        assert 0 < len(apex) <= 0.3 * len(intensity)
        assert np.all(np.diff(apex) == 1), "the expression shows once, as one contiguous stretch"
        assert np.count_nonzero(intensity) <= 0.3 * len(intensity)


@pytest.mark.parametrize("num_frames", [MIN_FRAMES, 13, 32, 48])
def test_confuser_is_another_weaker_longer_expression_apart_from_the_apex(num_frames):
    names = set()
    for seed in range(200):
        envelope = _expression_envelope(num_frames, np.random.default_rng([seed, 0]))
        for label in range(len(DEMO_CLASSES)):
            name, track = confuser_track(label, envelope, np.random.default_rng([seed, 1]))
            names.add(name)
            assert name not in (DEMO_CLASSES[label], "neutral")
            assert CONFUSER_INTENSITY[0] <= track.max() <= CONFUSER_INTENSITY[1] < 0.5, "never an apex frame"
            shown = np.flatnonzero(track)
            assert np.all(np.diff(shown) == 1), "one contiguous stretch"
            near = np.convolve(envelope > 0, np.ones(3), mode="same") > 0  # the bump and a frame either side
            assert not near[shown].any(), "it never touches the labelled bump"
            if num_frames >= 32:
                assert len(shown) > np.count_nonzero(envelope), "longer than the labelled bump"
    assert names == set(DEMO_CLASSES) - {"neutral"}


def test_confuser_timing_is_shared_by_every_label():
    tracks = [render_clip(label, np.random.default_rng([4, 2]), SMALL)[2] for label in range(len(DEMO_CLASSES))]
    for track in tracks[1:]:
        np.testing.assert_array_equal(track, tracks[0])
    assert tracks[0].max() > 0, "neutral clips have one too"


def test_labels_csv_and_stratified_folds(generated):
    rows = read_labels(generated)
    with open(generated / "labels.csv", encoding="utf-8") as handle:
        assert handle.readline().strip() == "clip_id,file,label,test_fold,apex_frames"
    assert len(rows) == SMALL.clips_per_class * len(DEMO_CLASSES)
    assert [row["clip_id"] for row in rows] == [f"demo_{n:04d}" for n in range(1, len(rows) + 1)]
    assert all(row["file"] == f"{row['clip_id']}.mp4" for row in rows)
    assert Counter(row["label"] for row in rows) == {name: SMALL.clips_per_class for name in DEMO_CLASSES}
    folds = defaultdict(Counter)
    for row in rows:
        folds[row["label"]][int(row["test_fold"])] += 1
    for name in DEMO_CLASSES:
        assert folds[name] == {fold: 1 for fold in range(1, SMALL.num_folds + 1)}


def test_folds_spread_evenly_when_they_do_not_divide(tmp_path):
    config = DemoConfig(clips_per_class=3, num_folds=2, frame_size=64, min_frames=12, max_frames=12)
    rows = read_labels(generate_demo(tmp_path, config, progress=False))
    for name in DEMO_CLASSES:
        counts = Counter(int(row["test_fold"]) for row in rows if row["label"] == name)
        assert sorted(counts.values()) == [1, 2]


def test_apex_frames_match_rendered_intensity(generated):
    for number, row in enumerate(read_labels(generated), start=1):
        label = DEMO_CLASSES.index(row["label"])
        _, intensity = render(label, [SMALL.seed, number])
        expected = [int(index) for index in np.flatnonzero(intensity >= 0.5)]
        assert [int(index) for index in row["apex_frames"].split()] == expected
        assert bool(expected) == (label != NEUTRAL)


def test_videos_decode_to_the_rendered_frames(generated):
    rows = read_labels(generated)
    for number in (1, 6, 14):
        row = rows[number - 1]
        frames, _ = render(DEMO_CLASSES.index(row["label"]), [SMALL.seed, number])
        clip = open_video(generated / row["file"])
        assert (clip.info.num_frames, clip.info.width, clip.info.height) == (len(frames), 128, 128)
        decoded = clip.read(range(len(frames)))
        assert decoded.shape == frames.shape
        assert np.abs(decoded.astype(int) - frames).mean() < 4, "the encoded clip is the rendered one"


def test_generation_is_reproducible_and_sweeps_stale_clips(generated, tmp_path):
    assert not (generated / "demo_9999.mp4").exists()
    assert (generated / "notes.txt").exists(), "only stale mp4 files are removed"
    assert not list(generated.glob("*.partial.mp4"))
    written = sorted(path.name for path in generated.glob("*.mp4"))
    assert written == sorted(row["file"] for row in read_labels(generated))
    generate_demo(tmp_path, SMALL, progress=False)
    assert (tmp_path / "labels.csv").read_bytes() == (generated / "labels.csv").read_bytes()
    first = open_video(generated / "demo_0005.mp4")
    second = open_video(tmp_path / "demo_0005.mp4")
    indices = range(first.info.num_frames)
    np.testing.assert_array_equal(first.read(indices), second.read(indices))


def test_haar_cascade_finds_the_face_in_most_frames():
    config = DemoConfig()
    found = total = 0
    for label, clip in ((0, 1), (2, 2), (4, 3), (5, 4)):
        frames, _ = render(label, [21, clip], config)
        found += sum(len(detect(frame, 40)) > 0 for frame in frames)
        total += len(frames)
    assert found / total > 0.85


def changed_share(first: np.ndarray, second: np.ndarray) -> float:
    """Share of pixels whose colour differs clearly (beyond compression-level noise)."""
    return float((np.abs(first - second).max(axis=-1) > 25).mean())


def test_expressions_change_eyes_and_mouth_only():
    # One generator state rendered with every label: same person, motion and noise, so any pixel
    # difference between the clips is the drawn expression.
    clips = [render_clip(label, np.random.default_rng([5, 1]), SMALL) for label in range(len(DEMO_CLASSES))]
    _, intensity, confuser = clips[0]
    apex = int(np.argmax(intensity))
    rest = (intensity == 0) & (confuser == 0)  # the confuser's class differs with the label
    neutral = clips[NEUTRAL][0]
    assert rest.sum() >= 0.3 * len(rest)
    for frames, _, _ in clips:
        np.testing.assert_array_equal(frames[rest], neutral[rest])

    boxes = detect(neutral[apex], 30)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    eyes = (slice(y + int(0.15 * h), y + int(0.5 * h)), slice(x, x + w))
    mouth = (slice(y + int(0.6 * h), y + h), slice(x, x + w))
    faces = [frames[apex].astype(np.float32) for frames, _, _ in clips]
    for first in range(len(faces)):
        outside = np.ones(faces[first].shape[:2], bool)
        outside[y - h // 4 : y + h + h // 4, x - w // 4 : x + w + w // 4] = False
        assert np.array_equal(faces[first][outside], faces[NEUTRAL][outside]), "expressions stay inside the face"
        for second in range(first + 1, len(faces)):
            changed = [changed_share(faces[first][region], faces[second][region]) for region in (eyes, mouth)]
            assert max(changed) > 0.02, f"{DEMO_CLASSES[first]} and {DEMO_CLASSES[second]} look alike at apex"
