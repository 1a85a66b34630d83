"""Hostile inputs: every one gets a recorded status and reason, and the good clips beside them
are processed. The inputs are built here with the bundled ffmpeg (tests/hostile_media.py)."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from tg_dfer.io.faces_h5 import FacesFile
from tg_dfer.io.features_h5 import read_features
from tg_dfer.video import open_video

from helpers.hostile_media import build_hostile_set, face_frames, h264
from helpers.projects import tiny_params, write_project


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """prepare, faces and embed over the whole hostile set."""
    root = tmp_path_factory.mktemp("hostile")
    cases = build_hostile_set(root)
    project = write_project(tmp_path_factory.mktemp("project"), root, {case.path: "happy" for case in cases})
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        patch.setenv("TG_DFER_ALLOW_RANDOM_WEIGHTS", "1")
        outputs = {stage: invoke(stage) for stage in ("prepare", "faces", "embed")}
    return project, root, cases, outputs


def test_every_hostile_input_gets_its_status_and_reason(hostile_run):
    project, root, cases, outputs = hostile_run
    for stage, result in outputs.items():
        assert result.exit_code == 0, (stage, result.output)
    with FacesFile(project / "data/mine/faces.h5") as faces:
        recorded = {clip_id: (status, reason) for clip_id, status, reason in zip(faces.clip_id, faces.status,
                                                                                  faces.reason)}
        assert len(faces) == len(cases)
    for case in cases:
        clip_id = case.path.rsplit(".", 1)[0] if "." in case.path else case.path
        status, reason = recorded[clip_id]
        assert status in case.statuses, (case.path, status, reason)
        assert case.reason in reason, (case.path, reason)
        assert (reason == "") == (status == "ok"), (case.path, reason)
        if status == "failed":
            assert case.path.split("/")[0] in reason, (case.path, reason)  # the reason names the file


def test_good_clips_beside_them_are_embedded_and_failed_ones_listed(hostile_run):
    project, _, _, outputs = hostile_run
    with FacesFile(project / "data/mine/faces.h5") as faces:
        usable = [clip_id for clip_id, status in zip(faces.clip_id, faces.status) if status != "failed"]
        failed = {clip_id: reason for clip_id, status, reason in zip(faces.clip_id, faces.status, faces.reason)
                  if status == "failed"}
    features = read_features(project / "data/mine/features.h5")
    assert features.clip_id == usable and len(usable) >= 15
    assert json.loads((project / "data/mine/embed_skipped.json").read_text()) == failed


def test_faces_summary_lists_every_clip_that_is_not_ok(hostile_run):
    project, _, _, outputs = hostile_run
    summary = json.loads((project / "metrics/mine/faces.json").read_text())
    with FacesFile(project / "data/mine/faces.h5") as faces:
        not_ok = {clip_id: status for clip_id, status in zip(faces.clip_id, faces.status) if status != "ok"}
    assert {entry["clip_id"]: entry["status"] for entry in summary["not_ok"]} == not_ok
    assert summary["clips"] == summary["ok"] + summary["partial"] + summary["no_face"] + summary["failed"]
    assert f"{summary['failed']} failed" in outputs["faces"].output


def test_rotation_metadata_is_applied(hostile_run):
    _, root, _, _ = hostile_run
    clip = open_video(root / "rotated.mp4")
    assert (clip.info.width, clip.info.height, clip.info.rotation) == (128, 160, 90)
    assert clip.read([0]).shape == (1, 160, 128, 3)


def test_a_decode_timeout_fails_the_clip_and_the_stage_goes_on(tmp_path, monkeypatch):
    root = tmp_path / "clips"
    root.mkdir()
    h264(root / "slow.mp4", face_frames(12))
    h264(root / "other.mp4", face_frames(12, seed=1))
    project = write_project(tmp_path / "project", root, {"slow.mp4": "happy", "other.mp4": "sad"},
                            **{"faces.decode_timeout": 0.001})
    monkeypatch.chdir(project)
    assert invoke("prepare").exit_code == 0
    result = invoke("faces")
    assert result.exit_code == 0, result.output
    with FacesFile(project / "data/mine/faces.h5") as faces:
        assert faces.status == ["failed", "failed"]
        assert all("0.001 s decode timeout" in reason for reason in faces.reason)
    assert invoke("qc").exit_code == 0  # before embed has run: the embedded column is empty
    with open(project / "metrics/mine/qc.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["clip_id"], row["status"], row["embedded"]) for row in rows] == [
        ("slow", "failed", ""), ("other", "failed", "")]


# ------------------------------------------------------------------------------- manifest problems


@pytest.mark.parametrize("table, message", [
    ("path,label\na.mp4,happy\nb.mp4,sad\na.mp4,anger\n", "labels.csv, line 4: clip_id 'a' repeats line 2"),
    ("path,label\na.mp4,happy\nb.mp4,bored\n", "labels.csv, line 3: unknown label 'bored'"),
    ("path,label\na.mp4,happy\nmissing.mp4,sad\n", "missing.mp4 does not exist"),
    ("path,label\n../outside.mp4,happy\n", "labels.csv, line 2: path '../outside.mp4' must be relative"),
    ("path,label\n/etc/passwd,happy\n", "labels.csv, line 2: path '/etc/passwd' must be relative"),
    ("video,emotion\na.mp4,happy\n", "labels.csv, line 1: header needs columns path (or file) and label"),
    ("path,label\na.mp4,happy,1,extra\n", "labels.csv, line 2: wrong number of columns"),
    ("path,label,test_fold\na.mp4,happy,first\n", "labels.csv, line 2: test_fold must be a whole number"),
])
def test_label_table_problems_name_file_and_line(tmp_path, monkeypatch, table, message):
    root = tmp_path / "clips"
    root.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (root / name).write_bytes(b"x")
    (root / "labels.csv").write_text(table)
    params = tiny_params(**{"dataset.adapter": "csv", "dataset.name": "mine", "dataset.root": str(root)})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["prepare"])
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "data").exists()


def test_label_table_with_byte_order_mark_and_non_utf8_bytes(tmp_path, monkeypatch):
    root = tmp_path / "clips"
    root.mkdir()
    (root / "a.mp4").write_bytes(b"x")
    (root / "labels.csv").write_bytes("\ufeffpath,label\na.mp4,happy\n".encode("utf-8"))
    params = tiny_params(**{"dataset.adapter": "csv", "dataset.name": "mine", "dataset.root": str(root)})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(main, ["prepare"]).exit_code == 0
    (root / "labels.csv").write_bytes(b"path,label\n\xff\xfe.mp4,happy\n")
    result = CliRunner().invoke(main, ["prepare"])
    assert result.exit_code != 0 and "labels.csv: not a readable UTF-8 CSV file" in result.output


@pytest.mark.parametrize("manifest, message", [
    ("clip_id,path,label,test_fold\na,a.mp4,0,1\na,b.mp4,1,1\n", "manifest.csv, line 3: clip_id 'a' repeats line 2"),
    ("clip_id,path,label,test_fold\na,a.mp4,99,1\n", "manifest.csv, line 2: label 99 is not a class id"),
    ("clip_id,path,label,test_fold\na,../../etc/passwd,0,1\n", "manifest.csv, line 2: path '../../etc/passwd'"),
    ("clip_id,path,label\na,a.mp4,0\n", "manifest.csv, line 1: header must be clip_id,path,label,test_fold"),
    ("clip_id,path,label,test_fold\na,a.mp4,0\n", "manifest.csv, line 2: expected 4 columns, found 3"),
])
def test_manifest_problems_name_file_and_line(tmp_path, monkeypatch, manifest, message):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    (tmp_path / "data/demo").mkdir(parents=True)
    (tmp_path / "data/demo/manifest.csv").write_text(manifest)
    (tmp_path / "data/demo/classes.json").write_text('["a", "b"]')
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["faces"])
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "data/demo/faces.h5").exists()


# ------------------------------------------------------------------------------------- bad params


@pytest.mark.parametrize("command, change, message", [
    (["faces"], {"faces.detector": "mtcnn"}, "faces.detector must be one of"),
    (["faces"], {"faces.decode_timeout": 0}, "faces.decode_timeout must be > 0"),
    (["faces"], {"faces.crop_size": -3}, "faces.crop_size must be >= 16"),
    (["faces"], {"faces.opencv.tilt": 120}, "faces.opencv.tilt must be 0..90 degrees"),
    (["faces"], {"faces.opencv.equalise": "yes"}, "faces.opencv.equalise must be bool"),
    (["embed"], {"embed.views": 0}, "embed.views must be >= 1"),
    (["embed"], {"embed.batch_size": "big"}, "embed.batch_size must be int"),
    (["train", "--fold", "1"], {"train.model.window": 99}, "window (99) must not exceed num_frames"),
    (["train", "--fold", "1"], {"train.model.fine_depth": -1}, "train.model.fine_depth must be an integer >= 0"),
    (["train", "--fold", "1"], {"train.optim.epochs": 0}, "train.optim.epochs must be an integer >= 1"),
    (["evaluate"], {"evaluate.weights": "median"}, "evaluate.weights must be one of"),
])
def test_bad_params_fail_before_any_work_naming_the_param(tmp_path, monkeypatch, command, change, message):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(**change)))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, command)
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "data").exists() and not (tmp_path / "models").exists()


def test_qc_report_lists_every_clip_not_fully_ok_with_the_reason(hostile_run, monkeypatch):
    project, _, cases, _ = hostile_run
    monkeypatch.chdir(project)
    result = invoke("qc")
    assert result.exit_code == 0, result.output
    with open(project / "metrics/mine/qc.csv", newline="", encoding="utf-8") as handle:
        rows = {row["clip_id"]: row for row in csv.DictReader(handle)}
    with FacesFile(project / "data/mine/faces.h5") as faces:
        expected = {clip_id: (status, reason) for clip_id, status, reason in zip(faces.clip_id, faces.status,
                                                                                  faces.reason) if status != "ok"}
    assert {clip_id: (row["status"], row["reason"]) for clip_id, row in rows.items()} == expected
    assert {row["embedded"] for row in rows.values() if row["status"] == "failed"} == {"no"}
    assert {row["embedded"] for row in rows.values() if row["status"] != "failed"} == {"yes"}
    assert rows["no_face"]["face_frames"] == "0" and rows["no_face"]["path"] == "no_face.mp4"
    assert 0 < int(rows["face_in_half"]["face_frames"]) < int(rows["face_in_half"]["frames"])
    assert f"{len(expected)} rows" in result.output and "face_in_half" in result.output
