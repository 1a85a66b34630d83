"""The ``dataset`` section: which clips, read by which adapter, and where their files go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.paths import DatasetPaths
from pipeline.settings.params import DEFAULT_PARAMS, require, section
from tg_dfer.datasets.adapters import ADAPTERS


def dataset_paths(params: dict[str, Any]) -> DatasetPaths:
    """The files of the dataset the section names (dataset.name, dataset.root)."""
    values = section(params, "dataset")
    return DatasetPaths(require(values, "name", str, "dataset"), Path(require(values, "root", str, "dataset")))


def adapter(params: dict[str, Any], path: str = DEFAULT_PARAMS) -> str:
    """dataset.adapter, one of the registered adapters."""
    return require(section(params, "dataset", path), "adapter", str, "dataset", choices=tuple(ADAPTERS))


def adapter_options(params: dict[str, Any], path: str = DEFAULT_PARAMS) -> dict[str, Any]:
    """The whole section, as the adapter reads its options (labels, variant, splits, clips) from it."""
    return section(params, "dataset", path)


def is_demo(params: dict[str, Any]) -> bool:
    """The generated demo dataset: the only one its own backbone and random weights are for."""
    return section(params, "dataset").get("adapter") == "demo"
