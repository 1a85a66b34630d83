"""Reading params.yaml: the only place where the stage layer meets the parameter file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

DEFAULT_PARAMS = "params.yaml"


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise click.ClickException(f"{path}: parameter file not found (run from the repository root or pass --params)")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise click.ClickException(f"{path}: not valid YAML ({error})") from error
    if not isinstance(params, dict):
        raise click.ClickException(f"{path}: expected a mapping of sections at the top level")
    return params


def section(params: dict[str, Any], name: str, path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    if name not in params or not isinstance(params[name], dict):
        raise click.ClickException(f"{path}: section '{name}' is missing")
    return params[name]


def require(values: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
            minimum: float | None = None, choices: tuple | None = None) -> Any:
    """A parameter checked for presence, type, range and choice before any work starts."""
    if key not in values:
        raise click.ClickException(f"params: {where}.{key} is missing")
    value = values[key]
    if kind in (int, float) and isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise click.ClickException(f"params: {where}.{key} must be {names}, got {value!r}")
    if minimum is not None and value < minimum:
        raise click.ClickException(f"params: {where}.{key} must be >= {minimum}, got {value!r}")
    if choices is not None and value not in choices:
        raise click.ClickException(f"params: {where}.{key} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


RANDOM_WEIGHTS_ENV = "TG_DFER_ALLOW_RANDOM_WEIGHTS"


def dataset_paths(params: dict[str, Any]) -> dict[str, Path]:
    """Where a dataset's files live: data/<dataset.name>/..."""
    dataset = section(params, "dataset")
    name = require(dataset, "name", str, "dataset")
    folder = Path("data") / name
    return {"folder": folder, "root": Path(require(dataset, "root", str, "dataset")),
            "manifest": folder / "manifest.csv", "faces": folder / "faces.h5", "features": folder / "features.h5",
            "faces_summary": Path("metrics") / name / "faces.json"}


def clip_settings(params: dict[str, Any]) -> dict[str, Any]:
    """The ``clip`` section, checked; random weights only for the demo dataset (or tests that ask)."""
    import os

    values = section(params, "clip")
    settings = {
        "name": require(values, "model", str, "clip"),
        "checkpoint": values.get("checkpoint") or None,
        "seed": require(values, "seed", int, "clip"),
        "device": require(values, "device", str, "clip"),
    }
    adapter = section(params, "dataset").get("adapter")
    if settings["checkpoint"] == "random" and adapter != "demo" and os.environ.get(RANDOM_WEIGHTS_ENV) != "1":
        raise click.ClickException(
            "params: clip.checkpoint = random is only for the demo dataset: features from random CLIP weights "
            f"mean nothing for dataset adapter {adapter!r}. Point clip.checkpoint at real weights "
            f"(tests may set {RANDOM_WEIGHTS_ENV}=1)."
        )
    return settings
