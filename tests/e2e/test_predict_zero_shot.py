"""`tg-dfer predict --zero-shot` and `tg-dfer export --zero-shot`: predictions from the text prompts
alone, through the pipeline's faces -> CLIP -> model path, marked zero-shot in every output.

CLIP is the real ViT-B/32 with seeded RANDOM weights (clip.checkpoint: random), so the predictions
mean nothing: the tests check the path and the marking, and every output says random weights too.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
import yaml


from helpers.projects import PREDICT_SCHEMA, invoke, tiny_params

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Demo clips rendered here, and params with random CLIP weights; nothing trained."""
    folder = tmp_path_factory.mktemp("zero-shot")
    params = tiny_params(**{"demo.frame_size": 128, "clip.checkpoint": "random", "clip.device": "cpu",
                            "train.model.heads": 8})
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        torch.set_num_threads(1)
        result = invoke("demo", "--out", "data/demo/videos")
        assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def titles(monkeypatch):
    """The titles predict gives its figures and timelines."""
    from tg_dfer import explain

    seen: list[str] = []
    for name, position in (("influence_strip", 3), ("emotion_timeline", 3)):
        original = getattr(explain, name)

        def record(*args, _original=original, _position=position, **kwargs):
            seen.append(args[_position])
            return _original(*args, **kwargs)

        monkeypatch.setattr(explain, name, record)
    return seen


def clips(project: Path, count: int = 2) -> list[str]:
    return [str(path) for path in sorted((project / "data/demo/videos").glob("*.mp4"))[:count]]


def test_zero_shot_predictions_are_marked_in_json_csv_and_figures(project, titles, monkeypatch):
    monkeypatch.chdir(project)
    result = invoke("predict", "--zero-shot", *clips(project), "--out", "out.json", "--figure", "figures",
                 "--sliding", "0.8", "--no-progress", "--workers", "1")
    assert result.exit_code == 0, result.output
    document = json.loads((project / "out.json").read_text())
    jsonschema.validate(document, PREDICT_SCHEMA)
    model = document["model"]
    assert model["zero_shot"] and model["prompt_set"] == "dfew" and model["folds"] == [] and model["weights"] == "zero-shot"
    assert model["random_clip_weights"] and model["clip_model"] == "ViT-B/32" and "built in memory" in model["file"]
    assert model["class_names"] == ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
    assert "ZERO-SHOT" in result.stderr and "RANDOM CLIP weights" in result.stderr
    assert document["summary"]["predicted"] == 2
    for video in document["videos"]:
        assert abs(sum(video["probabilities"].values()) - 1) < 1e-5 and len(video["frames"]) == 4
        assert Path(video["figure"]).is_file() and video["timeline"]
    assert len(titles) == 4  # two figures, two timelines
    assert all("[zero-shot, prompt set dfew]" in title and "[random CLIP weights" in title for title in titles)

    table = invoke("predict", "--zero-shot", *clips(project), "--format", "csv", "--no-progress", "--workers", "1")
    assert table.exit_code == 0, table.output
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert len(rows) == 2 and [row["model"] for row in rows] == ["zero-shot", "zero-shot"]
    for row, video in zip(rows, document["videos"]):
        assert row["prediction"] == video["prediction"]


def test_an_exported_zero_shot_model_predicts_the_same(project, monkeypatch):
    monkeypatch.chdir(project)
    exported = invoke("export", "--zero-shot")
    assert exported.exit_code == 0, exported.output
    assert "exports/zero-shot-dfew.pt" in exported.output and "RANDOM CLIP WEIGHTS" in exported.output
    from_file = invoke("predict", "exports/zero-shot-dfew.pt", *clips(project), "--no-progress", "--workers", "1")
    in_memory = invoke("predict", "--zero-shot", *clips(project), "--no-progress", "--workers", "1")
    assert from_file.exit_code == 0 and in_memory.exit_code == 0, (from_file.output, in_memory.output)
    file_document, memory_document = json.loads(from_file.stdout), json.loads(in_memory.stdout)
    jsonschema.validate(file_document, PREDICT_SCHEMA)
    assert file_document["model"]["zero_shot"] and file_document["model"]["file"] == "exports/zero-shot-dfew.pt"
    for ours, theirs in zip(file_document["videos"], memory_document["videos"]):
        names = sorted(ours["probabilities"])
        assert np.allclose([ours["probabilities"][n] for n in names], [theirs["probabilities"][n] for n in names],
                           atol=1e-6)
        assert [f["influence"] for f in ours["frames"]] == pytest.approx([f["influence"] for f in theirs["frames"]],
                                                                        abs=1e-4)


def test_zero_shot_takes_no_model_file_and_export_no_folds(project, monkeypatch):
    monkeypatch.chdir(project)
    missing = invoke("predict", "only-a-model.pt")
    assert missing.exit_code != 0 and "no INPUTS" in missing.output
    assert invoke("export", "--zero-shot", "--fold", "1").exit_code != 0


def test_zero_shot_finds_the_faces_of_dark_footage_as_the_trained_path_does(project, media, monkeypatch, tmp_path):
    """The zero-shot model keeps the faces section's opencv passes (equalised luma, turned frames), as a
    trained model file does: in dark footage, where the plain frontal cascade finds no face, it finds
    the faces the faces stage would find, frame by frame."""
    from helpers.degraded_media import DEGRADATIONS, write_frames
    from tg_dfer.detectors import HaarSearch, make_detector
    from tg_dfer.faces import CropPolicy, crop_clip
    from tg_dfer.sampling import segment_indices
    from tg_dfer.video import open_video

    source = open_video(media / "cremad/1001_DFA_ANG_XX.flv")
    indices, _ = segment_indices(source.info.num_frames, 12, "centre", None)
    dark = write_frames(tmp_path / "dark", [DEGRADATIONS["dark"](frame, 0.0, seed)[0]
                                            for seed, frame in enumerate(source.read(indices))])
    params = yaml.safe_load((project / "params.yaml").read_text())
    policy = CropPolicy(frames_per_clip=params["faces"]["frames_per_clip"])
    passes = HaarSearch(**params["faces"]["opencv"])
    assert passes.equalise and passes.tilt > 0  # the committed settings, which the zero-shot file must keep
    faces_stage = crop_clip("dark", open_video(dark), make_detector("opencv", search=passes), policy)
    plain = crop_clip("dark", open_video(dark), make_detector("opencv", search=HaarSearch(False, 0.0, False)), policy)
    assert not plain.score.any() and faces_stage.score.all()  # the plain pass misses every face; the passes find them

    monkeypatch.chdir(project)
    result = invoke("predict", "--zero-shot", str(dark), "--out", "dark.json", "--no-progress", "--workers", "1")
    assert result.exit_code == 0, result.output
    video, = json.loads((project / "dark.json").read_text())["videos"]
    assert video["status"] == "ok" and video["predicted"]
    found = dict(zip(faces_stage.frame_index.tolist(), faces_stage.score.tolist()))
    assert all(frame["face_score"] == pytest.approx(found[frame["frame_index"]]) for frame in video["frames"])

    exported = invoke("export", "--zero-shot", "--out", "zero-shot.pt")
    assert exported.exit_code == 0, exported.output
    from tg_dfer.inference.model_file import load_model_file
    assert load_model_file(project / "zero-shot.pt").search == passes
