"""manifest.csv and classes.json: the list of clips every later stage works from.

Columns ``clip_id,path,label,test_fold`` (docs/contracts.md): ``path`` is relative to the dataset
root (a video file or a folder of frames), ``label`` an id into classes.json or -1 when unknown,
``test_fold`` k puts the clip in the test set of fold k (0: training only).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from tg_dfer.io.atomic import atomic_path, write_text_atomic

COLUMNS = ("clip_id", "path", "label", "test_fold")
REPORT_SCHEMA = "tg-dfer/prepare-report/2"  # 2 added protocol


class ManifestError(Exception):
    """A manifest or classes file that breaks the contract; the message names file and line."""


class OptionError(ManifestError):
    """An adapter option (``variant``, ``splits``, ``clips``) that does not fit the dataset; the
    message starts with the option's name."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option} {message}")
        self.option = option


@dataclass(frozen=True)
class ManifestRow:
    clip_id: str
    path: str
    label: int
    test_fold: int


@dataclass(frozen=True)
class MissingClip:
    """A clip that a dataset's split files name but its data lacks (left out of the manifest)."""

    clip_id: str
    path: str
    label: int
    test_fold: int
    reason: str


@dataclass
class Manifest:
    rows: list[ManifestRow]
    class_names: list[str]
    missing: list[MissingClip] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # the label or split files read

    @property
    def folds(self) -> list[int]:
        """The test folds present, in increasing order."""
        return sorted({row.test_fold for row in self.rows if row.test_fold > 0})

    def labels(self) -> list[int]:
        return [row.label for row in self.rows]


def check_relative(path: str, where: str) -> str:
    """Reject paths that are absolute or climb out of the dataset root."""
    posix = PurePosixPath(path.replace("\\", "/"))
    if not path or posix.is_absolute() or ".." in posix.parts:
        raise ManifestError(f"{where}: path {path!r} must be relative to the dataset root and stay inside it")
    return str(posix)


def open_table(path: Path):
    """A CSV file for reading; a byte-order mark (as spreadsheet programs write) is dropped."""
    return open(path, newline="", encoding="utf-8-sig")


def write_manifest(folder: str | Path, rows: Iterable[ManifestRow], class_names: Sequence[str]) -> Manifest:
    """Validate and write ``manifest.csv`` and ``classes.json`` into ``folder``."""
    folder = Path(folder)
    manifest = Manifest(rows=list(rows), class_names=list(class_names))
    validate(manifest, str(folder / "manifest.csv"))
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "manifest.csv") as temporary, \
            open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in manifest.rows:
            writer.writerow((row.clip_id, row.path, row.label, row.test_fold))
    write_text_atomic(folder / "classes.json", json.dumps(manifest.class_names, indent=1) + "\n")
    return manifest


def write_report(path: str | Path, adapter: str, root: str | Path, manifest: Manifest,
                 protocol: dict | None = None) -> dict:
    """Write ``prepare_report.json``: what was read and which listed clips the data lacks; with
    ``protocol`` (:func:`tg_dfer.datasets.protocols.protocol_check`), how far from the official counts."""
    missing_by_fold: dict[str, int] = {}
    for clip in manifest.missing:
        missing_by_fold[str(clip.test_fold)] = missing_by_fold.get(str(clip.test_fold), 0) + 1
    report = {
        "schema": REPORT_SCHEMA,
        "adapter": adapter,
        "root": str(root),
        "sources": list(manifest.sources),
        "listed": len(manifest.rows) + len(manifest.missing),
        "kept": len(manifest.rows),
        "missing": len(manifest.missing),
        "missing_by_test_fold": dict(sorted(missing_by_fold.items(), key=lambda item: int(item[0]))),
        "missing_clips": [asdict(clip) for clip in manifest.missing],
    }
    if protocol is not None:
        report["protocol"] = protocol
    write_text_atomic(path, json.dumps(report, indent=1) + "\n")
    return report


def validate(manifest: Manifest, where: str) -> None:
    seen: dict[str, int] = {}
    for line, row in enumerate(manifest.rows, start=2):
        place = f"{where}, line {line}"
        if not row.clip_id:
            raise ManifestError(f"{place}: empty clip_id")
        if row.clip_id in seen:
            raise ManifestError(f"{place}: clip_id {row.clip_id!r} repeats line {seen[row.clip_id]}")
        seen[row.clip_id] = line
        check_relative(row.path, place)
        if not -1 <= row.label < len(manifest.class_names):
            raise ManifestError(
                f"{place}: label {row.label} is not a class id (0..{len(manifest.class_names) - 1}, or -1 unknown)"
            )
        if row.test_fold < 0:
            raise ManifestError(f"{place}: test_fold must be 0 (training only) or a fold number >= 1")


def read_manifest(path: str | Path) -> Manifest:
    """Read ``manifest.csv`` and the ``classes.json`` beside it, with clear errors on bad lines."""
    path = Path(path)
    classes_path = path.with_name("classes.json")
    for needed in (path, classes_path):
        if not needed.is_file():
            raise ManifestError(f"{needed}: no such file (run the prepare stage)")
    try:
        class_names = json.loads(classes_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ManifestError(f"{classes_path}: not valid JSON ({error})") from error
    if not isinstance(class_names, list) or not all(isinstance(name, str) for name in class_names):
        raise ManifestError(f"{classes_path}: expected a JSON list of class names")
    with open_table(path) as handle:
        try:
            rows = _manifest_rows(csv.reader(handle), path)
        except (UnicodeDecodeError, csv.Error) as error:
            raise ManifestError(f"{path}: not a readable UTF-8 CSV file ({error})") from error
    manifest = Manifest(rows=rows, class_names=class_names)
    validate(manifest, str(path))
    return manifest


def _manifest_rows(reader, path: Path) -> list[ManifestRow]:
    rows = []
    header = next(reader, None)
    if header is None or tuple(column.strip() for column in header) != COLUMNS:
        raise ManifestError(f"{path}, line 1: header must be {','.join(COLUMNS)}, found {header}")
    for line, fields in enumerate(reader, start=2):
        if len(fields) != len(COLUMNS):
            raise ManifestError(f"{path}, line {line}: expected {len(COLUMNS)} columns, found {len(fields)}")
        clip_id, clip_path, label, fold = (field.strip() for field in fields)
        try:
            rows.append(ManifestRow(clip_id, clip_path, int(label), int(fold)))
        except ValueError as error:
            raise ManifestError(f"{path}, line {line}: label and test_fold must be integers ({fields})") from error
    return rows
