"""What ``tg-dfer predict`` is given (files, frame folders, folders of clips, glob patterns) -> the clips."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tg_dfer.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES


@dataclass
class InputItem:
    """One clip to predict: a video file or a frame folder, or an input that names nothing readable."""

    name: str  # as given, or as found in a folder or by a glob
    path: Path | None
    error: str = ""


@dataclass
class SkippedFile:
    """A file or folder found inside a folder of clips that is not predicted, and why."""

    path: str
    reason: str


def _has_suffix(folder: Path, suffixes: tuple[str, ...]) -> bool:
    return any(entry.suffix.lower() in suffixes and entry.is_file() for entry in folder.iterdir())


def _is_frame_folder(folder: Path) -> bool:
    # A folder that holds videos is a folder of clips, even with a still image (a cover) beside them.
    return _has_suffix(folder, IMAGE_SUFFIXES) and not _has_suffix(folder, VIDEO_SUFFIXES)


def _not_frames(folder: Path) -> list[SkippedFile]:
    """What a frame folder holds besides its frames (subfolders are not searched)."""
    skipped = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            skipped.append(SkippedFile(str(entry), "a folder inside a frame folder: not searched"))
        elif entry.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(SkippedFile(str(entry), "not a frame image (its folder is read as a frame folder)"))
    return skipped


def _not_a_clip(path: Path) -> str:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ("a still image in a folder of videos (a frame folder holds images and no videos); "
                "name it to read it as a one-frame clip")
    return f"not a video file suffix ({path.suffix or 'no suffix'}); name the file to try it"


def _folder_clips(folder: Path) -> tuple[list[Path], list[SkippedFile]]:
    """A folder of frame images is one clip; otherwise its videos and frame folders, recursively.

    Every other file found is returned as skipped, with the reason.
    """
    if _is_frame_folder(folder):
        return [folder], _not_frames(folder)
    found, skipped = [], []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        base = Path(root)
        for name in sorted(files):
            if Path(name).suffix.lower() in VIDEO_SUFFIXES:
                found.append(base / name)
            else:
                skipped.append(SkippedFile(str(base / name), _not_a_clip(base / name)))
        for name in list(dirs):
            if _is_frame_folder(base / name):
                found.append(base / name)
                skipped.extend(_not_frames(base / name))
                dirs.remove(name)  # its frames are one clip, not a place to look for more
    return sorted(found, key=str), sorted(skipped, key=lambda file: file.path)


def collect_inputs(patterns: Iterable[str]) -> tuple[list[InputItem], list[SkippedFile]]:
    """Video files, frame folders, folders of clips and glob patterns -> the clips, in order, and
    the files inside folders that are not clips, with the reason.

    A file named directly (or by a glob) is tried whatever its suffix (and fails with the reason
    if it is no video); inside folders only files with a video suffix are taken, and every other
    file is listed as skipped. An input that names nothing gives an item with an error, so it is
    reported like a clip that failed.
    """
    items: list[InputItem] = []
    skipped: list[SkippedFile] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.exists():
            matches = [path]
        elif glob.has_magic(pattern):
            matches = [Path(match) for match in sorted(glob.glob(pattern, recursive=True))]
            if not matches:
                items.append(InputItem(pattern, None, f"{pattern}: no file matches this pattern"))
                continue
        else:
            items.append(InputItem(pattern, None, f"{pattern}: no such file or folder"))
            continue
        for match in matches:
            clips, left = _folder_clips(match) if match.is_dir() else ([match], [])
            if not clips:
                items.append(InputItem(str(match), None, f"{match}: folder holds no videos or frame images"))
            items.extend(InputItem(str(clip), clip) for clip in clips)
            skipped.extend(left)
    return items, skipped
