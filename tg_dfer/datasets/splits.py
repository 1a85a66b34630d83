"""Shared machinery of the adapters that read a dataset's official split lists (DFEW, FERV39k, MAFW).

A split list is a text file of ``<clip> <label>`` lines (comma or white space between the two, an
optional header whose second column is ``label``, blank lines ignored). Each adapter says how to
read the clip field and the label field; this module reads the lists, checks that they agree with
one another, turns them into test folds, and looks each clip up in the data.

Folds: a clip lands in test fold k if test list k names it, in fold 0 (training only) if no test
list does. The manifest says that a test clip of fold k trains every other fold, so every fold's
train and test lists together must name every clip exactly once, with one label throughout.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tg_dfer.datasets.manifest import Manifest, ManifestError, ManifestRow, MissingClip, OptionError
from tg_dfer.prompt_sets import PromptSet
from tg_dfer.video import IMAGE_SUFFIXES

VARIANTS = ("frames", "original")


@dataclass(frozen=True)
class Entry:
    """One line of a split list."""

    clip_id: str
    label: int
    where: str  # "<file>, line <n>"


@dataclass(frozen=True)
class Layout:
    """Where a dataset keeps its split lists and clips under ``dataset.root``.

    ``clips`` maps a variant (``frames``: one folder of frame images per clip; ``original``: one
    video file per clip) to the folder that holds them; ``suffix`` is the video file suffix.
    """

    splits: str
    clips: dict[str, str]
    suffix: str = ".mp4"


DEFAULT_VARIANT = "frames"  # dataset.variant left empty


@dataclass(frozen=True)
class SplitOptions:
    """The adapter options (variant, splits and clips folders under the root), checked."""

    variant: str
    splits: Path
    clips: Path

    @classmethod
    def from_options(cls, adapter: str, root: Path, layout: Layout, options: dict[str, Any]) -> SplitOptions:
        variant = options.get("variant") or DEFAULT_VARIANT
        if variant not in layout.clips:
            raise OptionError("variant", f"must be one of {', '.join(layout.clips)} for the {adapter} adapter, "
                                         f"got {variant!r}")
        folders = {}
        for key, default in (("splits", layout.splits), ("clips", layout.clips[variant])):
            value = options.get(key) or default
            if not isinstance(value, str) or Path(value).is_absolute() or ".." in Path(value).parts:
                raise OptionError(key, f"must be a folder inside the dataset root, given relative to it, got {value!r}")
            folders[key] = root / value
            if not folders[key].is_dir():
                raise OptionError(key, f"folder {folders[key]} not found (default {default!r} under the dataset root "
                                       f"{root}; see docs/datasets.md for the expected layout)")
        return cls(variant=variant, **folders)


def read_list(path: Path, parse_clip: Callable[[str, str], str],
              parse_label: Callable[[str, str, str], int]) -> list[Entry]:
    """Read one split list; a line that is not ``<clip> <label>`` is an error naming file and line.

    ``parse_clip(field, where)`` gives the clip id, ``parse_label(clip_id, field, where)`` the class id.
    """
    if not path.is_file():
        raise ManifestError(f"{path}: split list not found")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise ManifestError(f"{path}: not UTF-8 text ({error})") from error
    entries: list[Entry] = []
    seen: dict[str, str] = {}
    first = True
    for number, line in enumerate(lines, start=1):
        where = f"{path}, line {number}"
        if not line.strip():
            continue
        fields = next(csv.reader([line])) if "," in line else line.split()
        fields = [value.strip() for value in fields]
        if len(fields) != 2 or not all(fields):
            raise ManifestError(f"{where}: expected two fields '<clip> <label>', found {line.strip()!r}")
        if first and fields[1].lower() == "label":
            first = False
            continue
        first = False
        clip_id = parse_clip(fields[0], where)
        if clip_id in seen:
            raise ManifestError(f"{where}: clip {clip_id!r} is listed again (first at line {seen[clip_id]})")
        seen[clip_id] = str(number)
        entries.append(Entry(clip_id, parse_label(clip_id, fields[1], where), where))
    if not entries:
        raise ManifestError(f"{path}: split list names no clips")
    return entries


def numbered_clip(value: str, where: str) -> str:
    """A clip named by its number, with or without ``.mp4``, zero-padded to 5 digits as the files are."""
    name = value[:-4] if value.lower().endswith(".mp4") else value
    if not name.isdigit():
        raise ManifestError(f"{where}: {value!r} is not a clip number like 00025 or 00025.mp4")
    return name.zfill(5)


def parse_label(value: str, classes: PromptSet, where: str, ids: dict[int, str] | None = None,
                no_ids: str = "") -> int:
    """A label written as a class name (or an alias), or as one of the dataset's own ids (``ids``:
    id -> name). Without ``ids`` a number is refused, ``no_ids`` saying why."""
    if value.lstrip("-").isdigit():
        if ids is None:
            raise ManifestError(f"{where}: label {value!r} is a number; {no_ids}")
        if int(value) not in ids:
            raise ManifestError(f"{where}: label {value} is outside the dataset's label ids {min(ids)}..{max(ids)}")
        value = ids[int(value)]
    label = classes.class_id(value)
    if label is None:
        raise ManifestError(f"{where}: label {value!r} is not a class of prompt set {classes.name!r} "
                            f"({', '.join(classes.class_names)})")
    return label


def assign_folds(folds: dict[int, tuple[list[Entry], list[Entry]]],
                 class_names: Sequence[str]) -> dict[str, tuple[int, int]]:
    """clip id -> (label, test_fold) from each fold's (train list, test list), with the checks above."""
    first: dict[str, Entry] = {}
    test_fold: dict[str, tuple[int, Entry]] = {}
    for fold, (train, test) in sorted(folds.items()):
        for entry in (*train, *test):
            known = first.setdefault(entry.clip_id, entry)
            if known.label != entry.label:
                raise ManifestError(f"{entry.where}: clip {entry.clip_id!r} is labelled {class_names[entry.label]}"
                                    f", but {class_names[known.label]} at {known.where}")
        in_train = {entry.clip_id: entry for entry in train}
        for entry in test:
            if entry.clip_id in in_train:
                raise ManifestError(f"{entry.where}: clip {entry.clip_id!r} is in the test list of fold {fold} "
                                    f"and in its train list ({in_train[entry.clip_id].where})")
            if entry.clip_id in test_fold:
                other, where = test_fold[entry.clip_id]
                raise ManifestError(f"{entry.where}: clip {entry.clip_id!r} is in the test lists of fold {other} "
                                    f"({where.where}) and fold {fold}")
            test_fold[entry.clip_id] = (fold, entry)
    for fold, (train, test) in sorted(folds.items()):
        named = {entry.clip_id for entry in (*train, *test)}
        absent = [clip for clip in first if clip not in named]
        if absent:
            raise ManifestError(f"clip {absent[0]!r} (listed at {first[absent[0]].where}) is in neither the train "
                                f"nor the test list of fold {fold} ({len(absent)} such clips); every fold must split "
                                "the same clips")
    return {clip: (entry.label, test_fold.get(clip, (0, entry))[0]) for clip, entry in first.items()}


def has_frames(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file() for entry in entries)


def locate(clips: dict[str, tuple[int, int]], root: Path, options: SplitOptions, layout: Layout,
           class_names: Sequence[str], sources: Sequence[Path]) -> Manifest:
    """Look every listed clip up under ``options.clips``; those not there go to ``Manifest.missing``."""
    rows, missing = [], []
    for clip_id in sorted(clips):
        label, fold = clips[clip_id]
        if options.variant == "frames":
            target = options.clips / clip_id
            reason = ("" if target.is_dir() and has_frames(target) else
                      "folder holds no frame images" if target.is_dir() else "no such folder")
        else:
            target = options.clips / f"{clip_id}{layout.suffix}"
            reason = "" if target.is_file() else "no such file"
        path = target.relative_to(root).as_posix()
        if reason:
            missing.append(MissingClip(clip_id, path, label, fold, reason))
        else:
            rows.append(ManifestRow(clip_id, path, label, fold))
    if not rows:
        raise ManifestError(f"{options.clips}: none of the {len(clips)} clips the split lists name is there "
                            f"(variant {options.variant!r}; expected e.g. {missing[0].path} under "
                            f"{root}); check the dataset root, its variant and the clips folder")
    return Manifest(rows=rows, class_names=list(class_names), missing=missing,
                    sources=[str(source) for source in sources])


def manifest_from_lists(root: Path, settings: SplitOptions, layout: Layout, class_names: Sequence[str],
                        folds: dict[int, tuple[Path, Path]], parse_clip: Callable[[str, str], str],
                        parse_label: Callable[[str, str, str], int]) -> Manifest:
    """Read each fold's (train list, test list), assign test folds and look the clips up."""
    lists = {fold: (read_list(train, parse_clip, parse_label), read_list(test, parse_clip, parse_label))
             for fold, (train, test) in folds.items()}
    sources = [path for pair in folds.values() for path in pair]
    return locate(assign_folds(lists, class_names), root, settings, layout, class_names, sources)
