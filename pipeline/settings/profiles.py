"""Profiles: named sets of method settings, and the dataset recipes that ``tg-dfer use`` writes.

A profile (pipeline/profiles/<name>.yaml) holds the settings that make a run "the paper's" or "the
demo's": the cached frames and views, the whole model and its optimisation. The paper profile
cites the paper (or a listed choice) for every value; the demo profile is what the committed demo
runs. pipeline/profiles/datasets.yaml says, per dataset, what else a run needs (the adapter, the
backbone, prompt set, folds, and the face detector of each variant). params.yaml stays the one file
the stages read: a profile is written into it, never read beside it, so DVC tracks every value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"
PROFILES = ("paper", "demo")


def _read(path: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise click.ClickException(f"{path}: cannot read the profile ({error})") from error


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections -> {"section.key": value}, in file order."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        flat.update(flatten(value, f"{name}.") if isinstance(value, dict) else {name: value})
    return flat


def profile_values(name: str) -> dict[str, Any]:
    """The settings of profile ``name`` as dotted params keys."""
    if name not in PROFILES:
        raise click.ClickException(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}")
    return flatten(_read(PROFILE_DIR / f"{name}.yaml"))


def datasets() -> dict[str, Any]:
    """pipeline/profiles/datasets.yaml: dataset -> its profile, variants (-> detector) and params."""
    return _read(PROFILE_DIR / "datasets.yaml")


def lookup(params: dict[str, Any], key: str) -> Any:
    """The value of dotted ``key`` in nested ``params``, or KeyError."""
    value: Any = params
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def same_setting(value: Any, other: Any) -> bool:
    """Equal as params values: YAML's true is not 1, nor false 0."""
    return value == other and isinstance(value, bool) == isinstance(other, bool)


def differences(params: dict[str, Any], profile: str) -> dict[str, tuple[Any, Any]]:
    """key -> (the params' value, the profile's) for every setting of ``profile`` the params differ in."""
    found = {}
    for key, wanted in profile_values(profile).items():
        try:
            value = lookup(params, key)
        except KeyError:
            value = None
        if not same_setting(value, wanted):
            found[key] = (value, wanted)
    return found


def describe_profile(params: dict[str, Any]) -> str:
    """Which profile the params run: ``paper``, ``demo``, or the nearer one and what differs from it."""
    nearest, changed = min(((name, differences(params, name)) for name in PROFILES), key=lambda pair: len(pair[1]))
    if not changed:
        return nearest
    listed = ", ".join(f"{key} {value!r} (profile: {wanted!r})" for key, (value, wanted) in list(changed.items())[:4])
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    return f"{nearest} with {len(changed)} setting(s) changed: {listed}{more}"
