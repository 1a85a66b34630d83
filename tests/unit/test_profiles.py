"""Profiles (pipeline/profiles/) and `tg-dfer use`: the paper's settings, each with its source, kept
apart from the demo's, and written into params.yaml by one command."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.settings.profiles import PROFILE_DIR, describe_profile, flatten, profile_values
from tg_dfer.model import ModelConfig
from tg_dfer.model.tgdfer import TGDFER
from tg_dfer.training.config import TrainConfig
from tg_dfer.training.loop import parameter_groups

from helpers import REPO

PAPER = REPO.parent / "shared" / "paper" / "tg-dfer-paper.md"
DEVIATIONS = REPO / "docs" / "paper-deviations.md"


def use(tmp_path: Path, *args: str):
    """`tg-dfer use ARGS` on a copy of the committed params.yaml; the result and the file after."""
    params = tmp_path / "params.yaml"
    if not params.exists():
        shutil.copy(REPO / "params.yaml", params)
    result = CliRunner().invoke(main, ["use", *args, "--params", str(params)])
    return result, params


def test_the_committed_params_run_the_demo_profile_and_use_demo_leaves_them_byte_for_byte(tmp_path):
    committed = (REPO / "params.yaml").read_text()
    assert describe_profile(yaml.safe_load(committed)) == "demo"
    result, params = use(tmp_path, "demo")
    assert result.exit_code == 0, result.output
    assert "0 setting(s) changed" in result.output
    assert params.read_text() == committed


def test_both_profiles_set_the_same_keys_and_every_key_is_a_setting_of_params_yaml():
    paper, demo = profile_values("paper"), profile_values("demo")
    assert list(paper) == list(demo)
    committed = flatten(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert set(paper) <= set(committed)
    # The settings issue 30 names: the paper's Eq. 10, no warm-up, both prompts at 1e-3; the demo's tuned ones.
    assert (paper["train.model.coarse_text_gain"], demo["train.model.coarse_text_gain"]) == (1.0, 4.0)
    assert (paper["train.optim.mean_pooling_epochs"], demo["train.optim.mean_pooling_epochs"]) == (0, 3)
    assert (paper["train.optim.prompt_lr_scope"], demo["train.optim.prompt_lr_scope"]) == ("prompts", "context")
    assert paper["train.optim.milestones"] == [30, 40] and "clip.model" not in paper  # the dataset's, not the profile's


@pytest.mark.skipif(not PAPER.is_file(), reason="needs ../shared/paper/tg-dfer-paper.md beside the repository")
def test_every_setting_of_the_paper_profile_cites_the_paper_or_a_listed_choice():
    paper = PAPER.read_text()
    deviations = DEVIATIONS.read_text()
    numbered = set(re.findall(r"^\s*(\d+)\. \*\*", deviations, re.M))
    named = set(re.findall(r"^- \*\*([A-Z][\w ]+?)(?: \(|\.\*\*)", deviations, re.M))
    tables = {key.split("_")[0][5:] for key in json.loads((PAPER.parent / "tables.json").read_text())
              if key.startswith("table")}
    leaves = [line for line in (PROFILE_DIR / "paper.yaml").read_text().splitlines()
              if re.match(r"^\s+\w+: \S", line)]
    assert len(leaves) == len(profile_values("paper"))
    for line in leaves:
        assert "#" in line, f"no source: {line}"
        comment = line.split("#", 1)[1]
        sources = 0
        for section in re.findall(r"Sec\. ([\d.]+\d)", comment):
            assert re.search(rf"^#+ .*{re.escape(section)}\.? ", paper, re.M), f"{line}: no Sec. {section} in the paper"
            sources += 1
        for equation in re.findall(r"Eqs?\. (\d+)", comment):
            assert f"({equation})$$" in paper.replace(" ", ""), f"{line}: no Eq. {equation} in the paper"
            sources += 1
        for table in re.findall(r"Table (\d)", comment):
            assert table in tables, f"{line}: no Table {table}"
            sources += 1
        for item in re.findall(r"deviations (\d+)", comment):
            assert item in numbered, f"{line}: docs/paper-deviations.md has no item {item}"
            sources += 1
        for name in re.findall(r"deviations ([A-Z][a-z]+(?: [a-z]+)?)", comment):
            assert name in named, f"{line}: docs/paper-deviations.md has no item '{name}'"
            sources += 1
        assert sources, f"cites nothing: {line}"


def test_use_points_params_at_dfew_with_the_paper_profile_and_back(tmp_path):
    root = tmp_path / "DFEW"
    root.mkdir()
    result, params = use(tmp_path, "dfew", "--root", str(root))
    assert result.exit_code == 0, result.output
    written = yaml.safe_load(params.read_text())
    assert written["dataset"] == {"name": "dfew", "adapter": "dfew", "root": str(root), "labels": "",
                                  "variant": "frames", "splits": "", "clips": ""}
    assert written["faces"]["detector"] == "none" and written["text"]["prompt_set"] == "dfew"
    assert written["clip"]["model"] == "ViT-B/32" and written["clip"]["checkpoint"] == ""
    assert written["train"]["model"]["coarse_text_gain"] == 1.0
    assert written["train"]["optim"]["mean_pooling_epochs"] == 0
    assert describe_profile(written) == "paper"
    assert "train.optim.mean_pooling_epochs  3 -> 0" in result.output and "profile paper" in result.output
    # Comments stay; another variant and the demo profile on the same data; then back to the demo.
    assert "# sampled frames per clip" in params.read_text()
    result, _ = use(tmp_path, "dfew", "--root", str(root), "--variant", "original", "--profile", "demo")
    written = yaml.safe_load(params.read_text())
    assert (written["dataset"]["variant"], written["faces"]["detector"]) == ("original", "opencv")
    assert written["train"]["optim"]["mean_pooling_epochs"] == 3 and describe_profile(written) == "demo"
    assert written["clip"]["model"] == "ViT-B/32"  # the demo's settings, never its own CLIP, on real data
    result, _ = use(tmp_path, "demo")
    assert params.read_text() == (REPO / "params.yaml").read_text()


@pytest.mark.parametrize("args, message", [
    (["dfew"], "--root is required for dfew"),
    (["ferv39k", "--root", "{root}", "--variant", "original"], "ferv39k has no variant 'original'"),
    (["affectnet", "--root", "{root}"], "unknown dataset 'affectnet'"),
    (["mafw", "--root", "{root}/nowhere"], "no such folder"),
    (["csv", "--root", "{root}", "--folds", "1,0"], "train.folds must be a non-empty list of fold numbers >= 1"),
    (["csv", "--root", "{root}", "--folds", "1 2"], "--folds 1 2: expected fold numbers separated by commas"),
])
def test_use_refuses_what_cannot_run_and_leaves_params_as_they_were(tmp_path, args, message):
    result, params = use(tmp_path, *[arg.format(root=tmp_path) for arg in args])
    assert result.exit_code != 0 and message in result.output
    assert params.read_text() == (REPO / "params.yaml").read_text()


def test_init_pytorch_keeps_the_random_stream_of_identity_and_only_skips_the_overwrites():
    common = dict(embed_dim=16, num_classes=3, num_frames=8, heads=2, learnable_context=False)
    text = torch.nn.functional.normalize(torch.randn(3, 16, generator=torch.Generator().manual_seed(1)), dim=-1)
    models = {}
    for init in ("identity", "pytorch"):
        torch.manual_seed(0)
        models[init] = dict(TGDFER(ModelConfig(init=init, **common), text, text).named_parameters())
    overwritten = {name for name in models["identity"] if re.search(r"out_proj|mlp\.3|temporal\.fc|prompt_mlp\.2", name)}
    assert overwritten  # the residual outputs, the fusion FC and the prompt MLP's last layer
    for name, value in models["identity"].items():
        # PyTorch itself starts the attention's output bias at zero: the same either way.
        differs = name in overwritten and not name.endswith("attn.out_proj.bias")
        assert torch.equal(value, models["pytorch"][name]) != differs, name
    assert torch.equal(models["identity"]["temporal.fc.weight"], torch.cat([torch.eye(16)] * 2, dim=1) / 2)


@pytest.mark.parametrize("scope, slow_layers", [("context", set()), ("prompts", {"prompt_mlp.0.weight", "prompt_mlp.0.bias",
                                                                                  "prompt_mlp.2.weight", "prompt_mlp.2.bias"})])
def test_prompt_lr_scope_says_which_layers_train_at_prompt_lr(scope, slow_layers):
    text = torch.nn.functional.normalize(torch.randn(3, 16), dim=-1)
    model = TGDFER(ModelConfig(embed_dim=16, num_classes=3, num_frames=8, heads=2, learnable_context=False), text, text)
    groups = {group["name"]: group for group in parameter_groups(model, TrainConfig(prompt_lr_scope=scope))}
    names = {id(p): name for name, p in model.named_parameters()}
    at_prompt_lr = {names[id(p)] for p in groups["prompt"]["params"]} if "prompt" in groups else set()
    assert at_prompt_lr == slow_layers
    assert groups["net"]["lr"] == 0.01 and (not slow_layers or groups["prompt"]["lr"] == 0.001)
