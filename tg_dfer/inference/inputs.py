"""What ``tg-dfer predict_rows`` is given (files, frame folders, folders of clips, glob patterns) -> the clips."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tg_dfer.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES


@dataclass
class InputItem:
    """One clip to predict_rows: a video file or a frame folder, or an input that names nothing readable."""

    name: str  # as given, or as found in a folder or by a glob
    path: Path | None
    error: str = ""


def _is_frame_folder(folder: Path) -> bool:
    return any(entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file() for entry in folder.iterdir())


def _folder_clips(folder: Path) -> list[Path]:
    """A folder of frame images is one clip; otherwise its videos and frame folders, recursively."""
    if _is_frame_folder(folder):
        return [folder]
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        base = Path(root)
        for name in sorted(files):
            if Path(name).suffix.lower() in VIDEO_SUFFIXES:
                found.append(base / name)
        for name in list(dirs):
            if _is_frame_folder(base / name):
                found.append(base / name)
                dirs.remove(name)  # its frames are one clip, not a place to look for more
    return sorted(found, key=str)


def collect_inputs(patterns: Iterable[str]) -> list[InputItem]:
    """Video files, frame folders, folders of clips and glob patterns -> the clips, in order.

    A file named directly is tried whatever its suffix (and fails with the reason if it is no
    video); inside folders only files with a video suffix are taken. An input that names
    nothing gives an item with an error, so it is reported like a clip that failed.
    """
    items: list[InputItem] = []
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
            clips = _folder_clips(match) if match.is_dir() else [match]
            if not clips:
                items.append(InputItem(str(match), None, f"{match}: folder holds no videos or frame images"))
            items.extend(InputItem(str(clip), clip) for clip in clips)
    return items
