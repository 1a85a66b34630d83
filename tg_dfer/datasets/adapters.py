"""Dataset adapters: each turns a dataset as it ships into a :class:`Manifest`.

An adapter is a function ``(root, classes, options) -> Manifest``; ``classes`` is the dataset's
prompt set (its class list fixes the label ids) and ``options`` the adapter-specific params (the
``dataset`` section). Clips that a dataset's split files name but its data lacks go to
``Manifest.missing``, never silently away. Register new adapters in ``ADAPTERS``; the expected
layouts are in docs/datasets.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from tg_dfer.datasets.csv_manifest import read_label_csv
from tg_dfer.datasets.dfew import dfew_adapter
from tg_dfer.datasets.ferv39k import ferv39k_adapter
from tg_dfer.datasets.mafw import mafw_adapter
from tg_dfer.datasets.manifest import Manifest, ManifestError
from tg_dfer.prompt_sets import PromptSet


def csv_adapter(root: Path, classes: PromptSet, options: dict[str, Any]) -> Manifest:
    labels = Path(options.get("labels") or root / "labels.csv")
    manifest = read_label_csv(labels, root, classes)
    manifest.sources = [str(labels)]
    return manifest


ADAPTERS: dict[str, Callable[[Path, PromptSet, dict[str, Any]], Manifest]] = {
    "demo": csv_adapter,  # the demo generator writes <root>/labels.csv in the generic form
    "csv": csv_adapter,
    "dfew": dfew_adapter,  # official 5-fold split; dataset.variant frames (clip_224x224) | original (mp4)
    "ferv39k": ferv39k_adapter,  # official All_scenes train/test split: test fold 1
    "mafw": mafw_adapter,  # official 5-fold split of the 11-class single-expression set
}


def build_manifest(adapter: str, root: str | Path, classes: PromptSet, options: dict[str, Any] | None = None) -> Manifest:
    if adapter not in ADAPTERS:
        raise ManifestError(f"unknown dataset adapter {adapter!r}; choose one of {', '.join(ADAPTERS)}")
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: dataset root is not a folder")
    return ADAPTERS[adapter](root, classes, options or {})
