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


@pytest.fixture
def code_copy(tmp_path, monkeypatch):
    """A copy of the repository's code that pipeline/deps.py reads instead of the real one."""
    for package in ("tg_dfer", "pipeline"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(deps, "REPO", tmp_path)
    deps.module_closure.cache_clear()
    yield tmp_path
    deps.module_closure.cache_clear()


def edit(path: Path, what: str) -> None:
    with open(path, "a") as handle:
        handle.write(f"# {what}\n")


def test_the_journal_fingerprint_changes_with_the_stage_code_only(code_copy):
    before = {stage: code_digest(stage) for stage in ("faces", "train")}
    edit(code_copy / "tg_dfer/model/tgdfer.py", "an edit to training code")
    assert code_digest("faces") == before["faces"] and code_digest("train") != before["train"]
    edit(code_copy / "tg_dfer/faces.py", "an edit to face detection")
    assert code_digest("faces") != before["faces"]


def test_an_edit_to_a_stage_layer_helper_marks_the_stages_that_import_it_stale(code_copy):
    """pipeline/loading.py (the test-fold join) and the settings modules are code of the stages that
    import them: dvc.yaml lists them, so DVC re-runs those stages, and the journals see the edit."""
    declared = dvc_code_deps()
    assert "pipeline/loading.py" in declared["train"] and "pipeline/loading.py" in declared["evaluate"]
    assert "pipeline/settings/train.py" in declared["train"] and "pipeline/settings/faces.py" in declared["faces"]
    assert "pipeline/sharding.py" in declared["faces"] and "pipeline/sharding.py" in declared["embed"]
    assert "pipeline/settings/faces.py" not in declared["train"]  # train reads no faces setting
    before = {stage: code_digest(stage) for stage in ("faces", "train")}
    edit(code_copy / "pipeline/loading.py", "an edit to the test-fold join")
    assert code_digest("train") != before["train"] and code_digest("faces") == before["faces"]
    edit(code_copy / "pipeline/settings/faces.py", "an edit to the faces mapping")
    assert code_digest("faces") != before["faces"]


def test_stages_and_tools_import_settings_never_a_stage():
    """The params are read in pipeline/settings/ only; a stage or tool borrows no other stage's reader."""
    for path in sorted([*(REPO / "pipeline/stages").glob("*.py"), *(REPO / "pipeline/tools").glob("*.py"),
                        *(REPO / "benchmarks").glob("*.py")]):
        tree = ast.parse(path.read_text())
        own = f"pipeline.stages.{path.stem}"
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not (node.module.startswith("pipeline.stages") and node.module != own), (path.name, node.module)
    readers = {}
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        if "settings" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):  # section(params, "<name>") outside the settings room
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("section", "require"):
                readers.setdefault(path.relative_to(REPO).as_posix(), []).append(node.lineno)
    # faces and embed record the sections as written in their files (docs/contracts.md): reading, not mapping
    assert readers == {"pipeline/stages/embed.py": readers.get("pipeline/stages/embed.py"),
                       "pipeline/stages/faces.py": readers.get("pipeline/stages/faces.py")}, readers
    assert len(readers["pipeline/stages/embed.py"]) == 2 and len(readers["pipeline/stages/faces.py"]) == 1


@pytest.mark.parametrize("path", sorted([*LIBRARY, *(REPO / "pipeline").rglob("*.py")]),
                         ids=lambda path: path.relative_to(REPO).as_posix())
def test_modules_stay_small_or_say_why(path):
    lines = len(path.read_text().splitlines())
    if lines > LONG:
        assert "Long on purpose:" in (ast.get_docstring(ast.parse(path.read_text())) or ""), f"{lines} lines"


@pytest.mark.parametrize("path", sorted((REPO / "tests").rglob("*.py")), ids=lambda path: path.relative_to(REPO).as_posix())
def test_no_test_imports_another_test(path):
    assert not {name for name in imported_modules(path) if name.startswith("test_") or name == "conftest"}


# A call that writes a file, and which of its arguments names the file ("self": the object whose method it is).
WRITER_FUNCTIONS = {"open": 0, "h5py.File": 0, "torch.save": 1, "json.dump": 1, "pickle.dump": 1, "cv2.imwrite": 0,
                    "os.replace": 1, "os.rename": 1, "shutil.copy": 1, "shutil.copy2": 1, "shutil.copyfile": 1,
                    "shutil.copytree": 1, "shutil.move": 1,
                    "write_video": 0}  # tg_dfer.video's: ffmpeg writes the very path it is given
WRITER_METHODS = {"write_text": "self", "write_bytes": "self", "open": "self", "save": 0, "savez": 0,
                  "savez_compressed": 0, "savetxt": 0, "tofile": 0, "savefig": 0, "to_csv": 0, "to_json": 0,
                  "to_parquet": 0, "to_pickle": 0, "rename": 0}
OPENERS = {"open", "h5py.File"}  # they write only when their mode says so
# What a writer may write to: a temporary of tg_dfer.io.atomic (renamed into place), or memory.
SAFE_TARGETS = {"atomic_path", "partial_path", "BytesIO", "StringIO"}
# Writes that are no file output, so there is nothing to rename into place: (file, target as ast.unparse spells it).
RAW_WRITES_ALLOWED = {
    ("benchmarks/measure.py", "Path('/proc/self/clear_refs')"),  # a Linux kernel control (resets the peak RSS)
}


def writer_target(call: ast.Call) -> ast.expr | None:
    """The file ``call`` writes, or None when it writes none."""
    name = ast.unparse(call.func)
    method = call.func.attr if isinstance(call.func, ast.Attribute) else None
    where = WRITER_FUNCTIONS[name] if name in WRITER_FUNCTIONS else WRITER_METHODS.get(method)
    if where is None:
        return None
    if name in OPENERS or method == "open":
        modes = [keyword.value for keyword in call.keywords if keyword.arg == "mode"]
        modes += [arg for arg in call.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                  and re.fullmatch(r"[rwxabt+]+", arg.value)]
        if not any(not isinstance(mode, ast.Constant) or set(str(mode.value)) & set("wxa+") for mode in modes):
            return None
    if where == "self":
        return call.func.value
    return call.args[where] if len(call.args) > where else None


class RawWrites(ast.NodeVisitor):
    """Writer calls whose file is not a temporary of tg_dfer.io.atomic, a handle on one, or a buffer."""

    def __init__(self):
        self.scopes: list[set[str]] = [set()]  # per function: the expressions that name a safe target
        self.found: list[tuple[int, str]] = []

    def safe(self, target: ast.expr) -> bool:
        return any(ast.unparse(target) in scope for scope in self.scopes)

    def makes_safe(self, value: ast.expr) -> bool:
        if not isinstance(value, ast.Call):
            return False
        target = writer_target(value)  # a handle opened on a temporary is safe too
        return ast.unparse(value.func).split(".")[-1] in SAFE_TARGETS or (target is not None and self.safe(target))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scopes.append(set())
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:  # in order: `with atomic_path(p) as t, open(t, "w") as handle`
            self.visit(item.context_expr)
            if item.optional_vars is not None and self.makes_safe(item.context_expr):
                self.scopes[-1].add(ast.unparse(item.optional_vars))
        for statement in node.body:
            self.visit(statement)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        if self.makes_safe(node.value):
            self.scopes[-1].update(ast.unparse(target) for target in node.targets)

    def visit_Call(self, node: ast.Call) -> None:
        target = writer_target(node)
        if target is not None and not self.safe(target):
            self.found.append((node.lineno, ast.unparse(target)))
        self.generic_visit(node)


def test_every_write_goes_through_the_atomic_module():
    """Files are written under a temporary name and renamed into place (tg_dfer/io/atomic.py, the one
    place that renames), so no reader, and no DVC output, ever sees a half-written file; the
    measurements (benchmarks/) write their results the same way."""
    raw, allowed_seen = [], set()
    for path in sorted([*LIBRARY, *(REPO / "pipeline").rglob("*.py"), *(REPO / "benchmarks").rglob("*.py")]):
        relative = path.relative_to(REPO).as_posix()
        if relative == "tg_dfer/io/atomic.py":
            continue
        finder = RawWrites()
        finder.visit(ast.parse(path.read_text()))
        for line, target in finder.found:
            if (relative, target) in RAW_WRITES_ALLOWED:
                allowed_seen.add((relative, target))
            else:
                raw.append(f"{relative}:{line} writes {target}")
    assert not raw, "write through tg_dfer.io.atomic (atomic_path, write_text_atomic):\n" + "\n".join(raw)
    assert allowed_seen == RAW_WRITES_ALLOWED, "allowed raw writes that are gone: drop them from the list"


def test_docs_layout_names_every_module():
    """docs/layout.md is the map of the rooms: a module it does not name is a room nobody can find."""
    layout = (REPO / "docs/layout.md").read_text()
    modules = [*LIBRARY, *(REPO / "pipeline").rglob("*.py"), *(REPO / "benchmarks").glob("*.py")]
    missing = sorted(path.relative_to(REPO).as_posix() for path in modules if path.stem != "__init__"
                     and not re.search(rf"(?<![\w/]){re.escape(path.stem)}(\.py)?\b", layout))
    assert not missing, f"docs/layout.md does not name: {', '.join(missing)}"
