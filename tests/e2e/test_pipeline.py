"""End-to-end tests of the stage commands on tiny generated data and on the real media clips."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import COMMANDS, main
from pipeline.deps import stage_code
from tg_dfer.io.faces_h5 import FacesFile
from tg_dfer.io.features_h5 import read_features
from tg_dfer.io.text_h5 import read_text

from helpers import REPO
from helpers.projects import tiny_params


def run(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory):
    """The demo pipeline up to features and text, run through the CLI in a scratch folder."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        outputs = {stage: run(stage, *(["--out", "data/demo/videos"] if stage == "demo" else []))
                   for stage in ("demo", "prepare", "faces", "embed", "text")}
    return folder, outputs


def test_demo_pipeline_writes_every_contract_file(demo_project):
    folder, outputs = demo_project
    for stage, result in outputs.items():
        assert result.exit_code == 0, (stage, result.output)
    manifest = (folder / "data/demo/manifest.csv").read_text().splitlines()
    assert manifest[0] == "clip_id,path,label,test_fold" and len(manifest) == 8
    with FacesFile(folder / "data/demo/faces.h5") as faces:
        assert len(faces) == 7 and faces.frames_per_clip == 6
        assert set(faces.status) <= {"ok", "partial"}
    features = read_features(folder / "data/demo/features.h5")
    assert features.features.shape == (7, 2, 4, 512)
    norms = np.linalg.norm(features.features.astype(np.float32), axis=-1)
    assert np.allclose(norms, 1, atol=2e-3)
    assert not np.allclose(features.features[:, 0], features.features[:, 1])  # view 1 is augmented
    assert sorted(features.label.tolist()) == list(range(7))
    assert features.random_weights and "RANDOM CLIP WEIGHTS" in outputs["embed"].output
    text = read_text(folder / "data/text/dfew.h5")
    assert text.class_names == features.class_names
    assert text.attrs["checkpoint_sha256"] == features.attrs["checkpoint_sha256"]
    assert "7 clips" in outputs["faces"].output and "ok" in outputs["faces"].output


def test_embed_is_deterministic_and_batch_size_does_not_matter(demo_project, tmp_path, monkeypatch):
    folder, _ = demo_project
    project = tmp_path / "again"
    shutil.copytree(folder, project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["embed"]["batch_size"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(project)
    assert run("embed").exit_code == 0
    first = read_features(folder / "data/demo/features.h5").features.astype(np.float32)
    second = read_features(project / "data/demo/features.h5").features.astype(np.float32)
    assert np.abs(first - second).max() < 2e-3


def test_broken_and_faceless_clips_are_recorded_and_the_stage_goes_on(media, tmp_path, monkeypatch):
    root = tmp_path / "clips"
    root.mkdir()
    for name in ("single_face.mp4", "no_face.mp4"):
        shutil.copy(media / "pyfeat" / name, root / name)
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.mp4").write_text("not a video at all\n")
    (root / "labels.csv").write_text(
        "path,label,test_fold\nsingle_face.mp4,happy,1\nno_face.mp4,neutral,1\nempty.mp4,anger,2\nnotes.mp4,,2\n")
    params = tiny_params(**{"dataset.adapter": "csv", "dataset.name": "mine", "dataset.root": str(root)})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TG_DFER_ALLOW_RANDOM_WEIGHTS", "1")
    assert run("prepare").exit_code == 0
    result = run("faces")
    assert result.exit_code == 0, result.output
    assert "1 ok, 0 partial, 1 no face, 2 failed" in result.output
    with FacesFile(tmp_path / "data/mine/faces.h5") as faces:
        status = dict(zip(faces.clip_id, faces.status))
        reason = dict(zip(faces.clip_id, faces.reason))
    assert status == {"single_face": "ok", "no_face": "no_face", "empty": "failed", "notes": "failed"}
    assert "empty.mp4" in reason["empty"] and "0 bytes" in reason["empty"]
    assert "notes.mp4" in reason["notes"]
    result = run("embed")
    assert result.exit_code == 0, result.output
    features = read_features(tmp_path / "data/mine/features.h5")
    assert features.clip_id == ["single_face", "no_face"]
    assert (features.face_score[1] == 0).all() and (features.face_score[0] > 0).all()
    assert "skipped empty" in result.output


def test_random_weights_are_refused_for_real_datasets(tmp_path, monkeypatch):
    params = tiny_params(**{"dataset.adapter": "csv", "dataset.name": "mine"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TG_DFER_ALLOW_RANDOM_WEIGHTS", raising=False)
    result = CliRunner().invoke(main, ["text"])
    assert result.exit_code != 0 and "clip.checkpoint = random is only for the demo" in result.output


@pytest.mark.parametrize("change, message", [
    ({"faces.detector": "mtcnn"}, "faces.detector must be one of"),
    ({"faces.frames_per_clip": 0}, "faces.frames_per_clip must be >= 1"),
    ({"faces.margin": "wide"}, "faces.margin must be"),
])
def test_bad_params_fail_before_any_work_naming_the_param(tmp_path, monkeypatch, change, message):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(**change)))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["faces"])
    assert result.exit_code != 0 and message in result.output
    assert not (tmp_path / "data").exists()


def test_missing_manifest_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["faces"])
    assert result.exit_code != 0 and "manifest.csv: no such file (run the prepare stage)" in result.output


def test_dvc_stages_match_commands_and_params():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, stage in stages.items():
        assert stage["cmd"].split()[:2] == ["tg-dfer", name]
        assert name in COMMANDS
        for entry in stage.get("params", []):
            section = entry.split(".")[0]
            assert section in params, (name, entry)
    for name in stages:
        help_text = CliRunner().invoke(main, [name, "--help"]).output
        assert "Params" in help_text and "--params" in help_text


@pytest.mark.skipif(shutil.which("git") is None, reason="dvc repro needs git")
def test_dvc_repro_and_an_experiment_rerun_only_what_changed(tmp_path):
    """In a fresh git repository: dvc repro runs every stage; a faces param re-runs faces, embed
    and what follows, but not demo, prepare or text; a model param re-runs only train and evaluate."""
    project = tmp_path / "repo"
    ignore = shutil.ignore_patterns(".venv", "data", "models", "metrics", ".git", "__pycache__", "*.egg-info",
                                    ".pytest_cache", "dvc.lock", "cache", "tmp")  # .dvc/cache and .dvc/tmp too
    shutil.copytree(REPO, project, ignore=ignore)
    # Three clips per class over two folds: every fold has training, validation and test clips.
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params(**{"demo.clips_per_class": 3}), sort_keys=False))
    # PYTHONPATH: the stages run the copied code, not whatever checkout the package was installed from.
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "DVC_NO_ANALYTICS": "1",
           "PYTHONPATH": str(project),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}

    def sh(*command: str) -> str:
        done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    sh("git", "init", "-q")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "init")
    dvc = str(Path(sys.executable).parent / "dvc")
    first = sh(dvc, "repro")
    for stage in ("demo", "prepare", "faces", "embed", "qc", "text", "train@1", "train@2", "evaluate"):
        assert f"Running stage '{stage}'" in first
    assert (project / "metrics/demo/metrics.json").is_file()
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "repro")
    tg_dfer = str(Path(sys.executable).parent / "tg-dfer")
    # Reproduction: every stage again from nothing, compared with the committed run.
    for produced in ("data", "models", "metrics"):
        shutil.rmtree(project / produced)
    sh(dvc, "repro", "--force", "--no-run-cache")
    reproduced = sh(tg_dfer, "check-metrics", "--clean-tree")
    assert "DIFFERS" not in reproduced and reproduced.splitlines().count("  ok") == 2, reproduced
    assert "exact: both runs used the reference CPU profile" in reproduced
    assert "git status --porcelain: clean" in reproduced
    sh("git", "checkout", "HEAD", "--", "dvc.lock", "metrics")  # back to the committed run's outputs
    sh(dvc, "checkout", "--force")
    # An edit to every library module used only downstream of the feature cache (text, train,
    # evaluate, predict) leaves faces, embed and what feeds them unchanged for DVC.
    upstream = {path for stage in ("demo", "prepare", "faces", "embed") for path in stage_code(stage)}
    edited = [path for path in sorted(project.glob("tg_dfer/**/*.py"))
              if path.relative_to(project).as_posix() not in upstream]
    assert any(path.name == "loop.py" for path in edited) and any(path.name == "tgdfer.py" for path in edited)
    for path in edited:
        path.write_text(path.read_text() + "# edited\n")
    status = sh(dvc, "status")
    assert "train@1" in status and "evaluate" in status and "text" in status
    for stage in ("demo:", "prepare:", "faces:", "embed:"):
        assert stage not in status, status
    sh("git", "checkout", "--", "tg_dfer")

    # Ablations from the cache: a Table 4 row re-runs train and evaluate, Table 6 ones evaluate only.
    sh(tg_dfer, "ablate", "4", "6", "--only", "t4-strideX-window2", "--only", "t6-highest1", "--only", "t6-lowest1",
       "--wait")
    logs = {name: sh(dvc, "queue", "logs", name) for name in ("t4-strideX-window2", "t6-highest1")}
    assert "Running stage 'train@1'" in logs["t4-strideX-window2"]
    assert "Running stage 'train@1'" not in logs["t6-highest1"] and "Running stage 'evaluate'" in logs["t6-highest1"]
    for log in logs.values():
        for stage in ("demo", "prepare", "faces", "embed", "text"):
            assert f"Running stage '{stage}'" not in log
    shown = json.loads(sh(dvc, "exp", "show", "--json"))
    columns = shown[1]["experiments"][0]["revs"][0]["data"]
    assert {"uar", "war"} <= set(columns["metrics"]["metrics/demo/metrics.json"]["data"])
    assert "frames_k" in columns["params"]["params.yaml"]["data"]["evaluate"]
    assert "4 of 15 ablation rows have results" in sh(tg_dfer, "report", "--table", "4", "--table", "6")
    report = (project / "report/demo/ablations.md").read_text()
    for name in ("t4-strideX-window2", "t6-highest1", "t6-lowest1"):
        row = next(line for line in report.splitlines() if f"`{name}`" in line)
        assert "not run" not in row, row
    assert (project / "report/demo/table6.png").is_file()

    experiment = sh(dvc, "exp", "run", "-S", "faces.detector=none")
    assert "Running stage 'faces'" in experiment and "Running stage 'embed'" in experiment
    for stage in ("demo", "prepare", "text"):
        assert f"Running stage '{stage}'" not in experiment
    with h5py.File(project / "data/demo/faces.h5") as handle:
        assert handle.attrs["detector"] == "none"
    model_change = sh(dvc, "exp", "run", "-S", "train.model.fine_depth=0")
    assert "Running stage 'train@1'" in model_change and "Running stage 'evaluate'" in model_change
    for stage in ("demo", "prepare", "faces", "embed", "qc", "text"):
        assert f"Running stage '{stage}'" not in model_change
    # The workspace now holds the last experiment's results: the reproduction check must fail.
    changed = subprocess.run([tg_dfer, "check-metrics", "--clean-tree"], cwd=project, env=env, capture_output=True,
                             text=True)
    assert changed.returncode == 1 and "DIFFERS" in changed.stdout, changed.stdout + changed.stderr
    assert "DIFFERS:  M dvc.lock" in changed.stdout  # the experiment's lock file is not the committed one
