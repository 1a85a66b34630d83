"""The dataset recipes of docs/datasets.md, run as written (the one source of both) on folders laid
out as DFEW, FERV39k and MAFW ship and as a CSV dataset: split files with their real headers and
quirks, clips cut from the real faces of ../shared/media and from rendered demo clips, and seeded
random ViT-B/32 weights where OpenAI's weights go. Each runs to metrics, report, export and predict.

Only the placeholders a user replaces change: the dataset root (``/data/...``) and ``my-clips/``.
The commands run with the CPU profile off (``TG_DFER_CPU_PROFILE=native``, about 1.5x faster here):
what is checked is that each recipe runs through, not its numbers.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import MEDIA, REPO
from helpers.dataset_trees import CLASSES, RealClips, dfew_tree, ferv39k_tree, mafw_tree, write_lines

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not MEDIA.is_dir(), reason="needs the real clips of ../shared/media"),
              pytest.mark.skipif(shutil.which("git") is None, reason="the recipes commit with git")]

DATASETS_MD = REPO / "docs" / "datasets.md"
ROOTS = {"dfew": "/data/DFEW", "dfew-original": "/data/DFEW", "ferv39k": "/data/FERV39k", "mafw": "/data/MAFW",
         "csv": "/data/my-dataset"}
NAMES = {"dfew": "dfew", "dfew-original": "dfew-original", "ferv39k": "ferv39k", "mafw": "mafw", "csv": "my-dataset"}
FOLDS = {"dfew": 5, "dfew-original": 5, "ferv39k": 1, "mafw": 5, "csv": 2}


def recipes() -> dict[str, str]:
    """recipe name -> the bash block under its ``<!-- recipe: name -->`` marker in docs/datasets.md."""
    return dict(re.findall(r"<!-- recipe: (\S+) -->\n```bash\n(.*?)```", DATASETS_MD.read_text(), re.S))


def test_every_recipe_is_run_here_and_the_readme_one_liners_are_the_recipes():
    assert set(recipes()) == set(ROOTS)
    readme = (REPO / "README.md").read_text()
    for name in ("dfew", "csv"):
        first, second = recipes()[name].splitlines()[:2]
        assert f"{first} && {second}" in readme, name


@pytest.fixture(scope="module")
def real_clips() -> RealClips:
    return RealClips(frames=4)


@pytest.fixture(scope="module")
def clip_cache(tmp_path_factory) -> Path:
    """A home whose clip package cache holds seeded random ViT-B/32 weights, marked as such."""
    from tg_dfer.backbone import random_weights_model

    home = tmp_path_factory.mktemp("home")
    (home / ".cache/clip").mkdir(parents=True)
    torch.save({"state_dict": random_weights_model("ViT-B/32", 0).state_dict(), "random_weights": True, "seed": 0},
               home / ".cache/clip/ViT-B-32.pt")
    return home


def build_tree(name: str, root: Path, clips: RealClips) -> None:
    if name in ("dfew", "dfew-original"):
        # Clip 10 is named by the split files (fold 5's test list) but missing from the data.
        dfew_tree(root, "frames" if name == "dfew" else "original", count=10, write_clip=clips.write,
                  listed_only=(10,))
    elif name == "ferv39k":
        ferv39k_tree(root, write_clip=clips.write)
    elif name == "mafw":
        mafw_tree(root, "frames", CLASSES, write_clip=clips.write)
    else:
        rows = []
        for index in range(6):
            clips.write(root / "videos" / f"take{index}", "original", index)
            rows.append(f"videos/take{index}.mp4,{clips.label(index)},{index % 2 + 1}")
        write_lines(root / "labels.csv", ["path,label,test_fold", *rows])


@pytest.mark.parametrize("name", list(ROOTS))
def test_the_recipe_runs_as_written_to_metrics_report_export_and_predict(name, tmp_path, real_clips, clip_cache):
    project = tmp_path / "repo"
    ignore = shutil.ignore_patterns(".venv", "data", "models", ".git", "__pycache__", "*.egg-info", ".pytest_cache",
                                    "cache", "tmp", "exports", "logs")
    shutil.copytree(REPO, project, ignore=ignore)
    root = tmp_path / "dataset"
    build_tree(name, root, real_clips)
    mine = tmp_path / "my-clips"
    for index in (0, 3):
        real_clips.write(mine / f"clip{index}", "original", index + 7)
    script = recipes()[name]
    assert ROOTS[name] in script and "my-clips/" in script
    script = script.replace(ROOTS[name], str(root)).replace("my-clips/", f"{mine}/")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(clip_cache), "DVC_NO_ANALYTICS": "1",
           "PYTHONPATH": str(project), "TG_DFER_ALLOW_RANDOM_WEIGHTS": "1", "TG_DFER_CPU_PROFILE": "native",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "clone"]):
        subprocess.run(command, cwd=project, env=env, check=True)
    done = subprocess.run(["bash", "-e", "-c", script], cwd=project, env=env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]

    dataset = NAMES[name]
    assert "profile paper" in output and "profile: paper" in output  # tg-dfer use, then prepare
    metrics = json.loads((project / "metrics" / dataset / "metrics.json").read_text())
    assert len(metrics["folds"]) == FOLDS[name] and 0 <= metrics["uar"] <= 100
    checkpoint = torch.load(project / "models" / dataset / "fold1" / "model.pt", map_location="cpu", weights_only=True)
    assert checkpoint["model_config"]["coarse_text_gain"] == 1.0 and checkpoint["train_config"]["mean_pooling_epochs"] == 0
    report = project / "report" / dataset / "ablations.md"
    assert f"on `{dataset}`" in report.read_text()
    assert (project / "exports" / f"{dataset}.pt").is_file()
    predicted = json.loads((project / "my-clips.json").read_text())
    assert len(predicted["videos"]) == 2 and {row["status"] for row in predicted["videos"]} <= {"ok", "partial"}
    if name.startswith("dfew"):
        prepared = json.loads((project / "data" / dataset / "prepare_report.json").read_text())
        assert [clip["clip_id"] for clip in prepared["missing_clips"]] == ["00010"]
