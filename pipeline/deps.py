"""The code each DVC stage depends on, derived in one place from the imports.

A stage depends on its own module (pipeline/stages/<stage>.py) and on exactly the modules of this
repository that it imports, directly or through other modules, lazily imported ones included: the
stage layer's helpers (pipeline/settings/*, loading, sharding, paths, the package files) and the
library (tg_dfer/...). dvc.yaml lists the same files (a test checks them against
:func:`stage_code`), and the resume journals of faces and embed fingerprint the same files
(:func:`code_digest`), so an edit re-runs and invalidates exactly the stages whose code it
touches: a change to the params -> dataclass mapping re-runs the stages that read that section,
and a change to training code never re-runs faces or embed.
"""

from __future__ import annotations

import ast
import hashlib
import re
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBRARY, STAGE_LAYER = "tg_dfer", "pipeline"
STAGES = ("demo", "prepare", "faces", "backbone", "embed", "qc", "text", "train", "evaluate")


def _module_file(name: str) -> Path | None:
    """The source file of module ``name`` of this repository, or None for anything else."""
    if name.split(".")[0] not in (LIBRARY, STAGE_LAYER):
        return None
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """The nodes under ``if TYPE_CHECKING:``: imports for annotations that never run."""
    skipped: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skipped.update(child for statement in node.body for child in ast.walk(statement))
    return skipped


def _imported(file: Path) -> set[str]:
    """Modules ``file`` imports anywhere in it (lazy imports too), and their parent packages."""
    names: set[str] = set()
    tree = ast.parse(file.read_text(), str(file))
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # submodules imported by name
    return {".".join(name.split(".")[:end]) for name in names for end in range(1, name.count(".") + 2)}


@lru_cache(maxsize=None)
def module_closure(module: str) -> tuple[str, ...]:
    """Repository-relative paths of ``module`` and of every repository module it imports, transitively."""
    start = _module_file(module)
    if start is None:
        raise ValueError(f"{module}: not a module of this repository")
    seen, todo = {start}, [start]
    while todo:
        for name in _imported(todo.pop()):
            file = _module_file(name)
            if file is not None and file not in seen:
                seen.add(file)
                todo.append(file)
    return tuple(sorted(path.relative_to(REPO).as_posix() for path in seen))


def stage_code(stage: str) -> list[str]:
    """What DVC stage ``stage`` depends on as code: its stage module, then the stage-layer helpers and
    the library modules it imports (each group sorted)."""
    own = f"{STAGE_LAYER}/stages/{stage}.py"
    closure = [path for path in module_closure(f"{STAGE_LAYER}.stages.{stage}") if path != own]
    return [own] + [path for path in closure if path.startswith(f"{STAGE_LAYER}/")] + \
        [path for path in closure if path.startswith(f"{LIBRARY}/")]


def code_digest(stage: str) -> str:
    """SHA-256 of the code of ``stage``: a resume journal left by other code is not resumed."""
    digest = hashlib.sha256()
    for path in stage_code(stage):
        digest.update(path.encode())
        digest.update((REPO / path).read_bytes())
    return digest.hexdigest()


def rewrite_dvc_yaml(text: str) -> str:
    """dvc.yaml ``text`` with each stage's code deps replaced by :func:`stage_code` (data deps, params,
    outputs and comments kept): after adding or moving a module, ``python -m pipeline.deps``."""
    lines, out, stage = text.splitlines(), [], None
    for line in lines:
        name = re.match(r"^  ([a-z_]+):\s*$", line)
        if name:
            stage = name.group(1)
        code = re.match(r"^(\s+)- ((?:tg_dfer|pipeline)/[^$\s]+)\s*$", line)
        if not code or stage not in STAGES:
            out.append(line)
            continue
        if not out[-1].lstrip().startswith(("- tg_dfer/", "- pipeline/")) or "$" in out[-1]:
            out += [f"{code.group(1)}- {path}" for path in stage_code(stage)]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    from tg_dfer.io.atomic import write_text_atomic

    dvc_yaml = REPO / "dvc.yaml"
    write_text_atomic(dvc_yaml, rewrite_dvc_yaml(dvc_yaml.read_text()))
    print(f"{dvc_yaml}: the code deps of {', '.join(STAGES)} follow the imports")
