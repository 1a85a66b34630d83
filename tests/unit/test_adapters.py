"""The DFEW, FERV39k and MAFW adapters on tiny fake trees in each dataset's own layout
(tests/helpers/dataset_trees.py).

The prepare stage does not decode clips, so clip files are a few bytes and frame folders hold
empty files named like frames.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from tg_dfer.datasets.adapters import build_manifest
from tg_dfer.datasets.dfew import DFEW_LABELS
from tg_dfer.datasets.manifest import Manifest, ManifestError, ManifestRow
from tg_dfer.datasets.protocols import PROTOCOLS, describe, protocol_check
from tg_dfer.prompt_sets import load_prompt_set

from helpers import REPO
from helpers.dataset_trees import FOLDS, dfew_tree, ferv39k_tree, five_folds, mafw_tree, write_lines


def expected_folds(labels: dict[str, int]) -> dict[str, int]:
    return {clip: fold for fold, clips in five_folds(list(labels)).items() for clip in clips}


def test_dfew_frames_maps_label_ids_by_name_and_folds_by_test_set(tmp_path):
    labels = dfew_tree(tmp_path, "frames")
    classes = load_prompt_set("dfew")
    manifest = build_manifest("dfew", tmp_path, classes, {"variant": "frames"})
    folds = expected_folds(labels)
    assert [row.clip_id for row in manifest.rows] == sorted(labels)
    for row in manifest.rows:
        assert row.path == f"Clip/clip_224x224/{row.clip_id}"
        assert row.label == classes.class_id(DFEW_LABELS[labels[row.clip_id]])
        assert row.test_fold == folds[row.clip_id]
    assert manifest.folds == list(FOLDS) and manifest.missing == []
    assert len(manifest.sources) == 10


def test_dfew_original_reports_a_missing_clip_and_keeps_the_others(tmp_path):
    # Underscore spelling of the split folders (as the archives are named) and no header row.
    labels = dfew_tree(tmp_path, "original", split_spelling="_", header=False)
    (tmp_path / "Clip/original/00004.mp4").unlink()
    manifest = build_manifest("dfew", tmp_path, load_prompt_set("dfew"), {"variant": "original"})
    assert [row.clip_id for row in manifest.rows] == [clip for clip in sorted(labels) if clip != "00004"]
    assert all(row.path == f"Clip/original/{row.clip_id}.mp4" for row in manifest.rows)
    [missing] = manifest.missing
    assert (missing.clip_id, missing.path, missing.test_fold, missing.reason) == (
        "00004", "Clip/original/00004.mp4", expected_folds(labels)["00004"], "no such file")


def test_dfew_frame_folder_without_images_is_reported(tmp_path):
    dfew_tree(tmp_path, "frames")
    for frame in (tmp_path / "Clip/clip_224x224/00007").iterdir():
        frame.unlink()
    manifest = build_manifest("dfew", tmp_path, load_prompt_set("dfew"), {})
    assert [(clip.clip_id, clip.reason) for clip in manifest.missing] == [("00007", "folder holds no frame images")]
    assert len(manifest.rows) == 9


@pytest.mark.parametrize("line, message", [
    ("3,8", "label 8 is outside the dataset's label ids 1..7"),
    ("3,joy", "label 'joy' is not a class of prompt set 'dfew'"),
    ("3", "expected two fields"),
    ("3,1,extra", "expected two fields"),
    ("clip3,1", "is not a clip number"),
])
def test_dfew_bad_line_names_file_and_line(tmp_path, line, message):
    dfew_tree(tmp_path, "frames")
    path = tmp_path / "EmoLabel_DataSplit/test(single-labeled)/set_2.csv"
    lines = path.read_text().splitlines()
    write_lines(path, lines[:1] + [line] + lines[1:])
    with pytest.raises(ManifestError) as error:
        build_manifest("dfew", tmp_path, load_prompt_set("dfew"), {})
    assert f"{path}, line 2: " in str(error.value) and message in str(error.value)


def test_dfew_clip_in_two_test_sets_is_an_error(tmp_path):
    labels = dfew_tree(tmp_path, "frames")
    clip = five_folds(list(labels))[1][0]
    path = tmp_path / "EmoLabel_DataSplit/test(single-labeled)/set_3.csv"
    write_lines(path, path.read_text().splitlines() + [f"{int(clip)},{labels[clip]}"])
    # The clip is now also in fold 3's train list; drop it there so the test-set clash is what fails.
    train = tmp_path / "EmoLabel_DataSplit/train(single-labeled)/set_3.csv"
    write_lines(train, [line for line in train.read_text().splitlines() if line.split(",")[0] != str(int(clip))])
    with pytest.raises(ManifestError, match=r"in the test lists of fold 1 .* and fold 3"):
        build_manifest("dfew", tmp_path, load_prompt_set("dfew"), {})


def test_dfew_clip_in_train_and_test_list_of_one_fold_is_an_error(tmp_path):
    labels = dfew_tree(tmp_path, "frames")
    clip = five_folds(list(labels))[2][0]
    train = tmp_path / "EmoLabel_DataSplit/train(single-labeled)/set_2.csv"
    write_lines(train, train.read_text().splitlines() + [f"{int(clip)},{labels[clip]}"])
    with pytest.raises(ManifestError, match=rf"clip '{clip}' is in the test list of fold 2 and in its train list"):
        build_manifest("dfew", tmp_path, load_prompt_set("dfew"), {})


def test_dfew_disagreeing_labels_and_uncovered_clips_are_errors(tmp_path):
    labels = dfew_tree(tmp_path, "frames")
    train = tmp_path / "EmoLabel_DataSplit/train(single-labeled)/set_4.csv"
    lines = train.read_text().splitlines()
    clip, label = lines[1].split(",")
    write_lines(train, lines[:1] + [f"{clip},{int(label) % 7 + 1}"] + lines[2:])
    with pytest.raises(ManifestError, match=re.escape(f"{train}, line 2: clip '{int(clip):05d}' is labelled ")):
        build_manifest("dfew", tmp_path, load_prompt_set("dfew"), {})
    write_lines(train, lines[:1] + lines[2:])
    with pytest.raises(ManifestError, match=r"is in neither the train nor the test list of fold 4"):
        build_manifest("dfew", tmp_path, load_prompt_set("dfew"), {})
    assert len(labels) == 10


def test_dfew_missing_split_file_and_wrong_clip_folder(tmp_path):
    dfew_tree(tmp_path, "frames")
    with pytest.raises(ManifestError, match=r"clips folder \S*Clip/original not found"):
        build_manifest("dfew", tmp_path, load_prompt_set("dfew"), {"variant": "original"})
    (tmp_path / "EmoLabel_DataSplit/test(single-labeled)/set_5.csv").unlink()
    with pytest.raises(ManifestError, match=r"set_5.csv: split list not found"):
        build_manifest("dfew", tmp_path, load_prompt_set("dfew"), {})


@pytest.mark.parametrize("clips", ["/elsewhere", "../DFEW"])
def test_clip_folder_outside_the_root_is_a_param_error(tmp_path, clips):
    dfew_tree(tmp_path, "frames")
    with pytest.raises(ManifestError, match=r"clips must be a folder inside the dataset root"):
        build_manifest("dfew", tmp_path, load_prompt_set("dfew"), {"clips": clips})


def test_no_listed_clip_found_is_an_error_not_an_empty_manifest(tmp_path):
    dfew_tree(tmp_path, "frames")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ManifestError, match=r"none of the 10 clips the split lists name is there"):
        build_manifest("dfew", tmp_path, load_prompt_set("dfew"), {"clips": "elsewhere"})


# --- FERV39k ---------------------------------------------------------------------------------


def test_ferv39k_maps_folder_names_by_name_and_test_list_to_fold_1(tmp_path):
    train, test = ferv39k_tree(tmp_path)
    gone = tmp_path / "2_ClipsforFaceCrop/Argue/Fear/0000"
    for frame in gone.iterdir():
        frame.unlink()
    gone.rmdir()
    classes = load_prompt_set("ferv39k")
    manifest = build_manifest("ferv39k", tmp_path, classes, {})
    rows = {row.clip_id: row for row in manifest.rows}
    for fold, lines in ((0, train), (1, test)):
        for line in lines:
            clip, name = line.split()
            if clip == "Argue/Fear/0000":
                continue
            assert rows[clip].path == f"2_ClipsforFaceCrop/{clip}"
            assert rows[clip].test_fold == fold
            assert classes.class_names[rows[clip].label] == classes.aliases[name.lower()]
    # FERV39k's folders sorted alphabetically would give Angry id 0; the prompt set's order rules.
    assert rows["Argue/Angry/0002"].label == classes.class_names.index("anger") != 0
    assert [(clip.clip_id, clip.test_fold, clip.reason) for clip in manifest.missing] == [
        ("Argue/Fear/0000", 0, "no such folder")]
    assert manifest.folds == [1]


@pytest.mark.parametrize("line, message", [
    ("Action/Contempt/0001 Contempt", "label 'Contempt' is not a class of prompt set 'ferv39k'"),
    ("Action/Sad/0001 1", "label '1' is a number"),
    ("Action/Sad/0001 Happy", "label 'Happy' disagrees with the class folder"),
    ("Action/Sad/0001", "expected two fields"),
    ("Sad/0001 Sad", "is not a FERV39k clip path"),
])
def test_ferv39k_bad_line_names_file_and_line(tmp_path, line, message):
    ferv39k_tree(tmp_path)
    path = tmp_path / "4_setups/All_scenes/test_All.csv"
    write_lines(path, path.read_text().splitlines() + [line])
    with pytest.raises(ManifestError) as error:
        build_manifest("ferv39k", tmp_path, load_prompt_set("ferv39k"), {})
    assert f"{path}, line 4: " in str(error.value) and message in str(error.value)


def test_ferv39k_has_no_original_variant(tmp_path):
    ferv39k_tree(tmp_path)
    with pytest.raises(ManifestError, match=r"variant must be one of frames for the ferv39k adapter"):
        build_manifest("ferv39k", tmp_path, load_prompt_set("ferv39k"), {"variant": "original"})


# --- MAFW ------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["frames", "original"])
def test_mafw_reads_eleven_classes_by_name(tmp_path, variant):
    classes = load_prompt_set("mafw")
    labels = mafw_tree(tmp_path, variant, classes.class_names)
    missing = sorted(labels)[-1]  # a clip of one of MAFW's four extra classes
    target = tmp_path / ("data/frames" if variant == "frames" else "data/clips") / (
        missing if variant == "frames" else f"{missing}.mp4")
    os.rename(target, tmp_path / "moved")
    manifest = build_manifest("mafw", tmp_path, classes, {"variant": variant})
    folds = expected_folds(labels)
    assert len(manifest.rows) == 10
    for row in manifest.rows:
        assert classes.class_names[row.label] == labels[row.clip_id]
        assert row.test_fold == folds[row.clip_id]
        assert row.path == (f"data/frames/{row.clip_id}" if variant == "frames" else f"data/clips/{row.clip_id}.mp4")
    assert [(clip.clip_id, clip.label) for clip in manifest.missing] == [
        (missing, classes.class_names.index(labels[missing]))]


def test_mafw_prompt_set_has_all_eleven_classes_with_descriptors():
    classes = load_prompt_set("mafw")
    assert set(classes.class_names) == {"anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise",
                                        "contempt", "anxiety", "helplessness", "disappointment"}
    assert all(classes.descriptors[name].strip() for name in classes.class_names)


@pytest.mark.parametrize("line, message", [
    ("00999.mp4 joy", "label 'joy' is not a class of prompt set 'mafw'"),
    ("00999.mp4 3", "label '3' is a number"),
    ("00999.mp4 anger extra", "expected two fields"),
])
def test_mafw_bad_line_names_file_and_line(tmp_path, line, message):
    mafw_tree(tmp_path, "frames", load_prompt_set("mafw").class_names)
    path = tmp_path / "Train & Test Set/single/no_caption/set_3/train.txt"
    write_lines(path, [line] + path.read_text().splitlines())
    with pytest.raises(ManifestError) as error:
        build_manifest("mafw", tmp_path, load_prompt_set("mafw"), {})
    assert f"{path}, line 1: " in str(error.value) and message in str(error.value)


# --- the prepare command ---------------------------------------------------------------------


def prepare_params(tmp_path: Path, root: Path) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["dataset"].update(name="dfew", adapter="dfew", root=str(root), variant="frames", splits="", clips="")
    params["text"]["prompt_set"] = "dfew"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_prepare_writes_manifest_and_report_of_missing_clips(tmp_path, monkeypatch):
    root = tmp_path / "DFEW"
    dfew_tree(root, "frames")
    for frame in (root / "Clip/clip_224x224/00002").iterdir():
        frame.unlink()
    (root / "Clip/clip_224x224/00002").rmdir()
    params = prepare_params(tmp_path, root)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["prepare", "--params", str(params)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "missing: 1 clips named by the split files are not in the data and were left out (00002)" in result.output
    report = json.loads((tmp_path / "data/dfew/prepare_report.json").read_text())
    assert (report["listed"], report["kept"], report["missing"]) == (10, 9, 1)
    assert report["missing_clips"][0]["clip_id"] == "00002" and report["missing_by_test_fold"] == {"2": 1}
    manifest = (tmp_path / "data/dfew/manifest.csv").read_text().splitlines()
    assert len(manifest) == 10 and not any(line.startswith("00002,") for line in manifest)


def dfew_shaped(test_clips: list[int]) -> Manifest:
    rows = [ManifestRow(f"{fold}-{number}", f"{fold}-{number}.mp4", 0, fold)
            for fold, count in enumerate(test_clips, start=1) for number in range(count)]
    return Manifest(rows, ["happiness"])


def test_a_manifest_of_the_whole_dfew_protocol_is_complete_and_a_short_one_says_how_short():
    # DFEW's README: fd1-fd5 test sets of 2,341 / 2,341 / 2,340 / 2,339 / 2,336 clips, 11,697 in all.
    whole = protocol_check(PROTOCOLS["dfew"], dfew_shaped([2341, 2341, 2340, 2339, 2336]))
    assert whole["complete"] and whole["found_clips"] == whole["official_clips"] == 11_697
    assert describe(whole) == ["DFEW single-labelled 5-fold: 11,697 of 11,697 clips (the whole protocol)"]
    short = protocol_check(PROTOCOLS["dfew"], dfew_shaped([2341, 2338, 2340, 2339, 2336]))
    assert not short["complete"] and short["test_folds"]["2"] == {"official": 2341, "found": 2338}
    assert describe(short) == ["DFEW single-labelled 5-fold: 11,694 of 11,697 clips (3 short)",
                               "differs from the protocol: fold 2 test 2,338 of 2,341"]


def test_prepare_compares_the_clips_with_the_protocol_and_names_the_settings_ahead(tmp_path, monkeypatch):
    root = tmp_path / "DFEW"
    dfew_tree(root, "frames")
    params = prepare_params(tmp_path, root)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["prepare", "--params", str(params)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "protocol: DFEW single-labelled 5-fold: 10 of 11,697 clips (11,687 short)" in result.output
    assert "differs from the protocol: fold 1 test 2 of 2,341, fold 2 test 2 of 2,341" in result.output
    # the committed params are the demo's: prepare says embed would refuse its backbone for DFEW
    assert ("next stages will use: variant frames, faces.detector opencv, backbone demo (data/backbone/clip.pt), "
            "the demo's own CLIP, which embed refuses for this dataset") in result.output
    report = json.loads((tmp_path / "data/dfew/prepare_report.json").read_text())
    assert report["protocol"]["found_clips"] == 10 and report["protocol"]["test_folds"]["5"]["found"] == 2
    assert not report["protocol"]["complete"]


def test_prepare_cli_error_is_a_clean_message(tmp_path):
    root = tmp_path / "DFEW"
    dfew_tree(root, "frames")
    path = root / "EmoLabel_DataSplit/train(single-labeled)/set_1.csv"
    write_lines(path, path.read_text().splitlines() + ["12;3"])
    params = prepare_params(tmp_path, root)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", "from pipeline.cli import main; main()", "prepare", "--params",
                             str(params)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = len(path.read_text().splitlines())
    assert result.stderr.strip() == (f"Error: {path}, line {lines}: expected two fields '<clip> <label>', "
                                     "found '12;3'")
    assert not (tmp_path / "data/dfew/manifest.csv").exists()


def test_prepare_names_the_params_key_of_a_bad_adapter_option(tmp_path, monkeypatch):
    root = tmp_path / "DFEW"
    dfew_tree(root, "frames")
    params = prepare_params(tmp_path, root)
    values = yaml.safe_load(params.read_text())
    values["dataset"]["clips"] = "../elsewhere"
    params.write_text(yaml.safe_dump(values))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["prepare", "--params", str(params)])
    assert result.exit_code == 1
    assert "params: dataset.clips must be a folder inside the dataset root" in result.output
