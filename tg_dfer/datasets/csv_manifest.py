"""The generic adapter: a CSV of ``path,label[,test_fold]`` rows relative to a dataset root.

Optional columns: ``clip_id`` (default: the path without its suffix) and ``test_fold`` (default
0, training only). ``label`` is a class name (or an alias of one, case-insensitive) of the
dataset's prompt set, a class id, or empty for unknown.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

from tg_dfer.datasets.manifest import Manifest, ManifestError, ManifestRow, check_relative, open_table
from tg_dfer.prompt_sets import PromptSet


def parse_label(value: str, classes: PromptSet, where: str) -> int:
    value = value.strip()
    if value in ("", "-1"):
        return -1
    if value.lstrip("-").isdigit():
        label = int(value)
        if not 0 <= label < len(classes.class_names):
            raise ManifestError(f"{where}: label id {label} is outside 0..{len(classes.class_names) - 1}")
        return label
    label = classes.class_id(value)
    if label is None:
        raise ManifestError(f"{where}: unknown label {value!r} (classes: {', '.join(classes.class_names)})")
    return label


def read_label_csv(csv_path: Path, root: Path, classes: PromptSet) -> Manifest:
    if not csv_path.is_file():
        raise ManifestError(f"{csv_path}: label file not found")
    with open_table(csv_path) as handle:
        try:
            manifest = _read_rows(csv.DictReader(handle), csv_path, root, classes)
        except (UnicodeDecodeError, csv.Error) as error:
            raise ManifestError(f"{csv_path}: not a readable UTF-8 CSV file ({error})") from error
    return manifest


def _read_rows(reader: csv.DictReader, csv_path: Path, root: Path, classes: PromptSet) -> Manifest:
    rows = []
    seen: dict[str, int] = {}
    columns = set(reader.fieldnames or ())
    path_column = "path" if "path" in columns else "file"
    if path_column not in columns or "label" not in columns:
        raise ManifestError(f"{csv_path}, line 1: header needs columns path (or file) and label, "
                            f"found {reader.fieldnames}")
    for record in reader:
        where = f"{csv_path}, line {reader.line_num}"
        if None in record or any(value is None for value in record.values()):
            raise ManifestError(f"{where}: wrong number of columns")
        path = check_relative(record[path_column].strip(), where)
        if not (root / path).exists():
            raise ManifestError(f"{where}: {root / path} does not exist")
        fold = record.get("test_fold", "0").strip() or "0"
        if not fold.isdigit():
            raise ManifestError(f"{where}: test_fold must be a whole number >= 0, got {fold!r}")
        clip_id = (record.get("clip_id") or "").strip() or str(PurePosixPath(path).with_suffix(""))
        if clip_id in seen:
            raise ManifestError(f"{where}: clip_id {clip_id!r} repeats line {seen[clip_id]}")
        seen[clip_id] = reader.line_num
        rows.append(ManifestRow(clip_id, path, parse_label(record["label"], classes, where), int(fold)))
    return Manifest(rows=rows, class_names=list(classes.class_names))
