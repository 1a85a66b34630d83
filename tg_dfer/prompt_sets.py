"""Prompt sets: the class names, class prompt template and fine-grained descriptors of a dataset.

A prompt set is an editable JSON file (tg_dfer/prompts/README.md): either the name of one shipped
with the package (``dfew``, ``ferv39k``, ``mafw``) or a path to a file of the same form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SHIPPED = Path(__file__).with_name("prompts")


class PromptSetError(Exception):
    """A prompt set that cannot be found or does not have the expected keys."""


@dataclass
class PromptSet:
    name: str
    class_names: list[str]
    class_prompt_template: str
    descriptors: dict[str, str]
    aliases: dict[str, str]
    source: str

    @property
    def class_prompts(self) -> list[str]:
        """The plain prompts of the coarse class text X^CP."""
        return [self.class_prompt_template.format(name) for name in self.class_names]

    @property
    def descriptor_prompts(self) -> list[str]:
        return [self.descriptors[name] for name in self.class_names]

    def class_id(self, label: str) -> int | None:
        """The id of a label spelt as a class name or one of its aliases (case-insensitive)."""
        key = label.strip().lower()
        name = self.aliases.get(key, key)
        return self.class_names.index(name) if name in self.class_names else None


def load_prompt_set(name_or_path: str) -> PromptSet:
    path = Path(name_or_path)
    if not path.suffix:
        path = SHIPPED / f"{name_or_path}.json"
    if not path.is_file():
        shipped = ", ".join(sorted(file.stem for file in SHIPPED.glob("*.json")))
        raise PromptSetError(f"{path}: no such prompt set (shipped: {shipped}; or give a path to a .json file)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PromptSetError(f"{path}: not valid JSON ({error})") from error
    missing = [key for key in ("class_names", "class_prompt_template", "descriptors") if key not in data]
    if missing:
        raise PromptSetError(f"{path}: keys missing: {', '.join(missing)}")
    lacking = [name for name in data["class_names"] if name not in data["descriptors"]]
    if lacking:
        raise PromptSetError(f"{path}: no descriptor for class(es) {', '.join(lacking)}")
    if "{}" not in data["class_prompt_template"]:
        raise PromptSetError(f"{path}: class_prompt_template needs a {{}} where the class name goes")
    return PromptSet(name=data.get("name", path.stem), class_names=list(data["class_names"]),
                     class_prompt_template=data["class_prompt_template"], descriptors=dict(data["descriptors"]),
                     aliases={key.lower(): value for key, value in data.get("aliases", {}).items()},
                     source=data.get("source", ""))
