"""Dataset adapters: each turns a dataset as it ships into a :class:`Manifest`.

An adapter is a function ``(root, classes, options) -> Manifest``; ``classes`` is the dataset's
prompt set (its class list fixes the label ids) and ``options`` the adapter-specific params.
Register new ones in ``ADAPTERS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from tg_dfer.datasets.csv_manifest import read_label_csv
from tg_dfer.datasets.manifest import Manifest, ManifestError
from tg_dfer.prompt_sets import PromptSet


def csv_adapter(root: Path, classes: PromptSet, options: dict[str, Any]) -> Manifest:
    return read_label_csv(Path(options.get("labels") or root / "labels.csv"), root, classes)


ADAPTERS: dict[str, Callable[[Path, PromptSet, dict[str, Any]], Manifest]] = {
    "demo": csv_adapter,  # the demo generator writes <root>/labels.csv in the generic form
    "csv": csv_adapter,
}


def build_manifest(adapter: str, root: str | Path, classes: PromptSet, options: dict[str, Any] | None = None) -> Manifest:
    if adapter not in ADAPTERS:
        raise ManifestError(f"unknown dataset adapter {adapter!r}; choose one of {', '.join(ADAPTERS)}")
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: dataset root is not a folder")
    return ADAPTERS[adapter](root, classes, options or {})
