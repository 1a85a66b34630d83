"""Exported models and `tg-dfer predict`: round trip, CLIP identity, new videos, bad inputs, figures.

A tiny demo (14 clips) runs through the stage commands with a tiny CLIP saved as a weights file,
two folds train for 2 epochs, and the model files made from them predict on demo clips and on
the real clips of ../shared/media.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tg_dfer.backbone import BackboneSpec, load_backbone
from tg_dfer.detectors import HaarSearch
from tg_dfer.evaluate import predict_fold
from tg_dfer.inference.inputs import collect_inputs
from tg_dfer.inference.model_file import MODEL_FORMAT, ModelFile, ModelFileError, load_model_file
from tg_dfer.inference.predictor import Predictor
from tg_dfer.io.features_h5 import read_features
from tg_dfer.training.checkpoint import load_checkpoint
from tg_dfer.video import open_video

from helpers.hostile_media import ffmpeg
from helpers.media import tiny_clip
from helpers.projects import PREDICT_SCHEMA, invoke, tiny_params

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny demo trained on two folds, exported as fold 1 alone and as the ensemble of both."""
    folder = tmp_path_factory.mktemp("predict")
    torch.save(tiny_clip(seed=0).state_dict(), folder / "tiny-clip.pt")
    params = tiny_params(**{"demo.clips_per_class": 2, "clip.checkpoint": str(folder / "tiny-clip.pt"), "clip.device": "cpu",
                            "train.device": "cpu", "embed.views": 1, "train.model.heads": 2})
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        torch.set_num_threads(1)
        for args in (["demo", "--out", "data/demo/videos"], ["prepare"], ["faces"], ["embed"], ["text"],
                     ["train", "--fold", "1", "--no-progress"], ["train", "--fold", "2", "--no-progress"],
                     ["export", "--fold", "1", "--out", "exports/fold1.pt"], ["export"]):
            result = invoke(*args)
            assert result.exit_code == 0, (args, result.output, result.stderr)
    return folder


def test_a_model_file_from_before_the_opencv_passes_keeps_the_plain_detector(tmp_path):
    model = ModelFile(tmp_path / "old.pt", "0" * 64, {"faces": {"detector": "opencv", "frames_per_clip": 6}})
    assert model.search == HaarSearch(equalise=False, tilt=0.0, profile=False)


def predict_json(project: Path, *args: str) -> tuple[dict, object]:
    result = invoke("predict", str(project / "exports/demo.pt"), "--no-progress", "--workers", "2",
                 "--out", str(project / "out.json"), *args)
    document = json.loads((project / "out.json").read_text()) if (project / "out.json").is_file() else None
    return document, result


def test_export_round_trip_holds_everything_inference_needs(project):
    model = load_model_file(project / "exports/demo.pt")
    single = load_model_file(project / "exports/fold1.pt")
    features = read_features(project / "data/demo/features.h5")
    assert model.payload["format"] == MODEL_FORMAT
    assert [m["fold"] for m in model.payload["members"]] == [1, 2] and [m["fold"] for m in single.payload["members"]] == [1]
    assert model.class_names == features.class_names
    assert model.backbone["sha256"] == features.attrs["checkpoint_sha256"] and not model.backbone["random_weights"]
    assert model.detector == "opencv" and model.policy.frames_per_clip == 6 and model.frames_per_clip == 4
    assert model.search == HaarSearch()  # the opencv passes of training (params faces.opencv)
    member = model.payload["members"][0]
    assert member["prompt_texts"]["class_prompts"] and {"coarse_text", "fixed_text"} <= set(member["state"])
    # Loaded back, the single-fold file predicts the cached features exactly as the evaluate stage does.
    checkpoint = load_checkpoint(project / "models/demo/fold1/model.pt")
    rows = np.arange(len(features.clip_id))
    reference = predict_fold(checkpoint, features, rows, 1)
    loaded = load_backbone(BackboneSpec("ViT-B/32", project / "tiny-clip.pt"))
    probs, influence, _ = Predictor(single, loaded).classify(features.features[:, 0], features.num_frames)
    assert np.allclose(probs, reference.probs, atol=1e-5)
    assert np.allclose(influence, reference.influence, atol=1e-4, equal_nan=True)


def test_loading_refuses_other_clip_weights_and_other_files(project, tmp_path):
    torch.save(tiny_clip(seed=1).state_dict(), tmp_path / "other.pt")
    result = invoke("predict", str(project / "exports/demo.pt"), str(project / "data/demo/videos"),
                 "--clip-checkpoint", str(tmp_path / "other.pt"), "--no-progress")
    assert result.exit_code != 0
    assert "SHA-256" in result.stderr and "exports/demo.pt" in result.stderr and "other.pt" in result.stderr
    with pytest.raises(ModelFileError, match="a fold checkpoint"):
        load_model_file(project / "models/demo/fold1/model.pt")


def test_predict_on_demo_and_real_clips_with_figures_and_sliding(project, media, tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video at all\n")
    inputs = [str(project / "data/demo/videos"), str(media / "cremad" / "*_HAP_*.flv"),
              str(media / "pyfeat" / "single_face.mp4"), str(media / "pyfeat" / "no_face.mp4"),
              str(tmp_path / "notes.mp4"), str(tmp_path / "missing.mp4")]
    document, result = predict_json(project, *inputs, "--figure", str(tmp_path / "figures"), "--sliding", "1.0")
    assert result.exit_code == 0, result.stderr
    jsonschema.validate(document, PREDICT_SCHEMA)
    assert not document["model"]["zero_shot"] and document["model"]["prompt_set"] is None
    videos = {Path(video["input"]).name: video for video in document["videos"]}
    assert len(document["videos"]) == 14 + 1 + 4 and len(videos) == 19
    for name in ("notes.mp4", "missing.mp4"):
        assert videos[name]["status"] == "failed" and not videos[name]["predicted"] and name in videos[name]["reason"]
    faceless = videos["no_face.mp4"]
    assert faceless["status"] == "no_face" and not faceless["predicted"] and "no face" in faceless["reason"]
    predicted = [video for video in document["videos"] if video["predicted"]]
    assert {Path(v["input"]).name for v in predicted} >= {"single_face.mp4", "1001_DFA_HAP_XX.flv"}
    assert len(predicted) == 16 and document["summary"]["predicted"] == 16
    for video in predicted:
        assert abs(sum(video["probabilities"].values()) - 1) < 1e-5
        assert video["prediction"] == max(video["probabilities"], key=video["probabilities"].get)
        frames = video["frames"]
        assert 1 <= len(frames) <= document["model"]["num_frames"]
        assert [f["frame_index"] for f in frames] == sorted(f["frame_index"] for f in frames)
        assert all(abs(f["time_s"] - f["frame_index"] / video["fps"]) < 1e-3 for f in frames)
        assert min(f["influence_normalised"] for f in frames) == 0 or len({f["influence"] for f in frames}) == 1
        with Image.open(video["figure"]) as image:  # a valid PNG
            assert image.format == "PNG" and image.width > image.height
        assert video["timeline"] and Path(video["timeline"]["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with open(video["timeline"]["csv"]) as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == len(video["windows"]) >= 1
        ends = [w["end_frame"] for w in video["windows"]]
        assert ends[-1] == video["num_frames"] and video["windows"][0]["start_frame"] == 0
    real = videos["1001_DFA_HAP_XX.flv"]
    assert real["fps"] > 0 and len(real["windows"]) >= 3  # ~2.5 s in 1 s windows every 0.5 s
    assert all(abs(sum(w["probabilities"].values()) - 1) < 1e-5 for w in real["windows"] if w["predicted"])
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png") if "sliding" not in p.name) == sorted(
        Path(v["figure"]).name for v in predicted)


def test_predict_gives_the_pipeline_s_predictions_for_pipeline_clips(project):
    """Faces, embedding and model at predict time are the stages' own code: same clips, same numbers."""
    features = read_features(project / "data/demo/features.h5")
    reference = predict_fold(load_checkpoint(project / "models/demo/fold1/model.pt"), features,
                             np.arange(len(features.clip_id)), 1)
    result = invoke("predict", str(project / "exports/fold1.pt"), str(project / "data/demo/videos"), "--no-progress",
                 "--workers", "1", "--batch-size", "5")
    assert result.exit_code == 0, result.stderr
    videos = {Path(v["input"]).stem: v for v in json.loads(result.stdout)["videos"]}
    for row, clip_id in enumerate(features.clip_id):
        ours = np.array([videos[clip_id]["probabilities"][name] for name in features.class_names])
        assert np.allclose(ours, reference.probs[row], atol=2e-3), clip_id
        frames = [f["frame_index"] for f in videos[clip_id]["frames"]]
        assert frames == [int(i) for i in reference.frame_index[row] if i >= 0]


def test_strict_exit_status_and_csv(project, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    clip = sorted((project / "data/demo/videos").glob("*.mp4"))[0]
    out = tmp_path / "out.csv"
    lenient = invoke("predict", str(project / "exports/demo.pt"), str(clip), str(tmp_path / "broken.mp4"),
                  "--format", "csv", "--out", str(out), "--no-progress")
    assert lenient.exit_code == 0, lenient.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [Path(row["input"]).name for row in rows] == [clip.name, "broken.mp4"]
    good, bad = rows
    classes = load_model_file(project / "exports/demo.pt").class_names
    assert abs(sum(float(good[f"p_{name}"]) for name in classes) - 1) < 1e-4 and good["prediction"] in classes
    assert len(good["frame_index"].split()) == len(good["influence"].split()) == len(good["face_score"].split())
    assert bad["status"] == "failed" and "broken.mp4" in bad["reason"] and bad["prediction"] == ""
    assert good["model"] == bad["model"] == "trained"
    strict = invoke("predict", str(project / "exports/demo.pt"), str(clip), str(tmp_path / "broken.mp4"),
                 "--strict", "--format", "csv", "--out", str(out), "--no-progress")
    assert strict.exit_code == 1 and "broken.mp4" in strict.stderr
    assert len(list(csv.DictReader(io.StringIO(out.read_text())))) == 2  # the output is still written
    assert invoke("predict", str(project / "exports/demo.pt"), str(clip), "--strict", "--out", str(out),
               "--no-progress").exit_code == 0


def test_inputs_from_folders_frame_folders_and_globs(tmp_path):
    (tmp_path / "clips" / "deep").mkdir(parents=True)
    (tmp_path / "clips" / "a.mp4").write_bytes(b"x")
    (tmp_path / "clips" / "labels.csv").write_text("path\n")
    (tmp_path / "clips" / "cover.jpg").write_bytes(b"x")
    (tmp_path / "clips" / "deep" / "b.MOV").write_bytes(b"x")
    (tmp_path / "clips" / "deep" / "c.gif").write_bytes(b"x")
    frames = tmp_path / "clips" / "frames_7"
    (frames / "thumbs").mkdir(parents=True)
    for k in (1, 2):
        (frames / f"{k}.jpg").write_bytes(b"x")
    (frames / "notes.txt").write_text("x")
    items, skipped = collect_inputs([str(tmp_path / "clips"), str(tmp_path / "clips" / "*.mp4"),
                                     str(tmp_path / "none*.mp4"), str(frames)])
    names = [Path(item.name).name for item in items]
    assert names == ["a.mp4", "b.MOV", "c.gif", "frames_7", "a.mp4", "none*.mp4", "frames_7"]
    assert items[5].path is None and "no file matches" in items[5].error
    reasons = [(Path(file.path).name, file.reason) for file in skipped]
    assert [name for name, _ in reasons] == ["cover.jpg", "notes.txt", "thumbs", "labels.csv", "notes.txt", "thumbs"]
    assert "still image in a folder of videos" in reasons[0][1] and "not a frame image" in reasons[1][1]
    assert "folder inside a frame folder" in reasons[2][1] and "not a video file suffix (.csv)" in reasons[3][1]


def test_predict_accounts_for_every_file_of_a_folder(project, tmp_path):
    folder = tmp_path / "corpus"
    (folder / "frames").mkdir(parents=True)
    demo = sorted((project / "data/demo/videos").glob("*.mp4"))
    for clip in demo[:3]:
        shutil.copy(clip, folder / clip.name)
    ffmpeg("-i", str(demo[3]), str(folder / "first.gif"))
    ffmpeg("-i", str(demo[4]), str(folder / "second.gif"))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", "-c:a", "aac", str(folder / "speech.mp4"))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", str(folder / "speech.wav"))
    (folder / "notes.txt").write_text("not a video\n")
    for index, frame in enumerate(open_video(demo[5]).read(range(6))):
        Image.fromarray(frame).save(folder / "frames" / f"{index:02d}.png")
    (folder / "frames" / "readme.txt").write_text("frames of a demo clip\n")

    document, result = predict_json(project, str(folder))
    assert result.exit_code == 0, result.stderr
    jsonschema.validate(document, PREDICT_SCHEMA)
    videos = {Path(video["input"]).name: video for video in document["videos"]}
    skipped = {Path(file["file"]).name: file["reason"] for file in document["skipped"]}
    assert sorted(videos) == sorted([clip.name for clip in demo[:3]] + ["first.gif", "second.gif", "speech.mp4",
                                                                        "frames"])
    assert sorted(skipped) == ["notes.txt", "readme.txt", "speech.wav"]
    for path in folder.rglob("*"):  # each file is an input, a frame of an input, or skipped
        assert not path.is_file() or path.name in videos or path.name in skipped or path.parent.name in videos, path
    for name in ("first.gif", "second.gif"):
        assert videos[name]["status"] != "failed" and videos[name]["num_frames"] == open_video(folder / name).info.num_frames
    assert videos["speech.mp4"]["status"] == "failed" and "no video stream, only audio" in videos["speech.mp4"]["reason"]
    assert videos["frames"]["status"] != "failed" and videos["frames"]["num_frames"] == 6
    assert "not a video file suffix (.wav)" in skipped["speech.wav"] and "not a frame image" in skipped["readme.txt"]
    assert document["summary"]["inputs"] == 7 and document["summary"]["skipped"] == 3
    assert "3 files in folders skipped" in result.stderr
    for name in ("notes.txt", "readme.txt", "speech.wav", "speech.mp4"):
        assert name in result.stderr

    result = invoke("predict", str(project / "exports/demo.pt"), str(folder), "--format", "csv", "--no-progress")
    rows = {Path(row["input"]).name: row for row in csv.DictReader(io.StringIO(result.stdout))}
    assert set(rows) == set(videos) | set(skipped)
    assert {name: row["status"] for name, row in rows.items() if name in skipped} == dict.fromkeys(skipped, "skipped")
    assert all(rows[name]["reason"] == reason for name, reason in skipped.items())


def test_skipped_files_do_not_count_for_strict(project, tmp_path):
    shutil.copy(sorted((project / "data/demo/videos").glob("*.mp4"))[0], tmp_path / "clip.mp4")
    (tmp_path / "notes.txt").write_text("not a video\n")
    result = invoke("predict", str(project / "exports/demo.pt"), str(tmp_path), "--strict", "--no-progress")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert [file["file"] for file in document["skipped"]] == [str(tmp_path / "notes.txt")]


def test_faceless_clips_are_predicted_only_when_asked(project, media):
    result = invoke("predict", str(project / "exports/demo.pt"), str(media / "pyfeat" / "no_face.mp4"),
                 "--predict-faceless", "--strict", "--no-progress")
    assert result.exit_code == 0, result.stderr
    video = json.loads(result.stdout)["videos"][0]
    assert video["status"] == "no_face" and video["predicted"]
    assert all(frame["face_score"] == 0 for frame in video["frames"])
