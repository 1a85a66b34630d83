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
