"""The layout's rules: the library knows no DVC, click, YAML or params keys; every stage depends on
exactly the code it imports (pipeline/deps.py, dvc.yaml); modules stay small; tests import no tests."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline import deps
from pipeline.deps import STAGES, code_digest, module_closure, stage_code

from helpers import REPO

LIBRARY = sorted((REPO / "tg_dfer").rglob("*.py"))
LONG = 400  # lines; a longer module says why in its docstring ("Long on purpose: ...")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", LIBRARY, ids=lambda path: path.relative_to(REPO).as_posix())
def test_the_library_imports_neither_dvc_click_yaml_nor_the_stage_layer(path):
    assert not imported_modules(path) & {"dvc", "click", "yaml", "pipeline"}


def params_keys() -> set[str]:
    """Every dotted key of params.yaml (``train.model.window``, ``clip.checkpoint``, ...)."""
    keys: set[str] = set()

    def walk(values: dict, prefix: str) -> None:
        for key, value in values.items():
            keys.add(prefix + key)
            if isinstance(value, dict):
                walk(value, prefix + key + ".")

    walk(yaml.safe_load((REPO / "params.yaml").read_text()), "")
    return {key for key in keys if "." in key}


def test_no_library_message_names_a_params_key():
    keys = params_keys()
    found = []
    for path in LIBRARY:
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):  # every string the code can print, f-string pieces included
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                text = node.value
                found += [(path.name, key) for key in keys if re.search(rf"(?<![\w.]){re.escape(key)}\b", text)]
                found += [(path.name, "params.yaml")] if "params.yaml" in text else []
    assert not found


def dvc_code_deps() -> dict[str, list[str]]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: [dep for dep in stage["deps"] if dep.startswith(("tg_dfer/", "pipeline/")) and "$" not in dep]
            for name, stage in stages.items()}


def test_dvc_yaml_lists_exactly_the_code_each_stage_imports():
    declared = dvc_code_deps()
    assert set(declared) == set(STAGES)
    for stage in STAGES:
        assert declared[stage] == stage_code(stage), stage
        assert stage_code(stage)[0] == f"pipeline/stages/{stage}.py"


def test_training_and_prediction_code_is_no_dep_of_faces_or_embed():
    """An edit to a module used only by text, train, evaluate or predict re-runs neither faces nor embed."""
    declared = dvc_code_deps()
    upstream = set(declared["faces"]) | set(declared["embed"])
    downstream = set(stage_code("text")) | set(stage_code("train")) | set(stage_code("evaluate"))
    downstream |= set(module_closure("pipeline.tools.predict"))
    only_downstream = sorted(path for path in downstream - upstream if path.startswith("tg_dfer/"))
    assert "tg_dfer/training/loop.py" in only_downstream and "tg_dfer/model/tgdfer.py" in only_downstream
    assert "tg_dfer/inference/predictor.py" in only_downstream and "tg_dfer/io/text_h5.py" in only_downstream
    for path in only_downstream:
        assert path not in upstream


def test_the_journal_fingerprint_changes_with_the_stage_code_only(tmp_path, monkeypatch):
    for package in ("tg_dfer", "pipeline"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(deps, "REPO", tmp_path)
    deps.module_closure.cache_clear()
    before = {stage: code_digest(stage) for stage in ("faces", "train")}
    with open(tmp_path / "tg_dfer/model/tgdfer.py", "a") as handle:
        handle.write("# an edit to training code\n")
    assert code_digest("faces") == before["faces"] and code_digest("train") != before["train"]
    with open(tmp_path / "tg_dfer/faces.py", "a") as handle:
        handle.write("# an edit to face detection\n")
    assert code_digest("faces") != before["faces"]
    deps.module_closure.cache_clear()


@pytest.mark.parametrize("path", sorted([*LIBRARY, *(REPO / "pipeline").rglob("*.py")]),
                         ids=lambda path: path.relative_to(REPO).as_posix())
def test_modules_stay_small_or_say_why(path):
    lines = len(path.read_text().splitlines())
    if lines > LONG:
        assert "Long on purpose:" in (ast.get_docstring(ast.parse(path.read_text())) or ""), f"{lines} lines"


@pytest.mark.parametrize("path", sorted((REPO / "tests").rglob("*.py")), ids=lambda path: path.relative_to(REPO).as_posix())
def test_no_test_imports_another_test(path):
    assert not {name for name in imported_modules(path) if name.startswith("test_") or name == "conftest"}
