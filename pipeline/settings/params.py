"""Reading params.yaml: the file, its sections, and a section checked against a library dataclass.

The mechanism only: each section has its own module beside this one (pipeline/settings/<section>.py),
the only reader of that section, which maps it onto the library's dataclass with
:func:`dataclass_settings`. The dataclass is the schema (its fields are the keys, their annotations
the types, its own checks the ranges), so a setting can never be readable in the library and
missing here, or the other way round. Every error names the params key and happens before any work.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import click
import yaml

DEFAULT_PARAMS = "params.yaml"
NUMBER = (int, float)
# Field annotations (strings, under `from __future__ import annotations`) -> the YAML types they take.
TYPES: dict[str, Any] = {"int": int, "float": NUMBER, "bool": bool, "str": str, "list[int]": list}


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
    if kind in (int, float, NUMBER) and isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise click.ClickException(f"params: {where}.{key} must be {names}, got {value!r}")
    if minimum is not None and value < minimum:
        raise click.ClickException(f"params: {where}.{key} must be >= {minimum}, got {value!r}")
    if choices is not None and value not in choices:
        raise click.ClickException(f"params: {where}.{key} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def checked_fields(cls: type, values: dict[str, Any], where: str, derived: tuple[str, ...] = ()) -> dict[str, Any]:
    """The params section ``values`` (called ``where``) checked against dataclass ``cls``: every field
    but the ``derived`` ones (fixed by the data later) present, of its annotated type, nothing else;
    a field that is itself a dataclass is a nested section, built here."""
    fields = {field.name: field for field in dataclasses.fields(cls) if field.name not in derived}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise click.ClickException(f"params: {where}.{unknown[0]} is not a known setting (known: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    checked = {}
    for name in fields:
        if dataclasses.is_dataclass(hints[name]):
            checked[name] = dataclass_settings(hints[name], require(values, name, dict, where), f"{where}.{name}")
        else:
            checked[name] = require(values, name, TYPES[str(fields[name].type)], where)
    checked.update({name: float(checked[name]) for name, field in fields.items() if str(field.type) == "float"})
    for name, field in fields.items():
        if str(field.type) == "list[int]" and not all(isinstance(v, int) and not isinstance(v, bool)
                                                      for v in checked[name]):
            raise click.ClickException(f"params: {where}.{name} must be a list of integers, got {checked[name]!r}")
    return checked


def settings_error(cls: type, error: ValueError, where: str, note: str = "") -> click.ClickException:
    """A validation error of dataclass ``cls`` reported as the params section ``where``: an error about
    one field ("window must be ...") names its key (``train.model.window must be ...``)."""
    message = str(error)
    field = message.split(" ", 1)[0]
    one_field = field in {f.name for f in dataclasses.fields(cls)} and message.startswith(f"{field} must")
    return click.ClickException(f"params: {where}{'.' if one_field else ': '}{message}{note}")


def build(cls: type, values: dict[str, Any], where: str) -> Any:
    """``cls(**values)``, its own validation errors reported as the params section ``where``."""
    try:
        return cls(**values)
    except ValueError as error:
        raise settings_error(cls, error, where) from error


def dataclass_settings(cls: type, values: dict[str, Any], where: str) -> Any:
    """Dataclass ``cls`` from its whole params section: :func:`checked_fields`, then :func:`build`."""
    return build(cls, checked_fields(cls, values, where), where)


def sections_settings(values: dict[str, Any], where: str, *classes: type) -> tuple:
    """One params section that holds the fields of several dataclasses: an instance of each."""
    names = [{field.name for field in dataclasses.fields(cls)} for cls in classes]
    unknown = sorted(set(values) - set().union(*names))
    if unknown:
        known = ", ".join(name for group in names for name in sorted(group))
        raise click.ClickException(f"params: {where}.{unknown[0]} is not a known setting (known: {known})")
    return tuple(dataclass_settings(cls, {key: values[key] for key in group if key in values}, where)
                 for cls, group in zip(classes, names))
