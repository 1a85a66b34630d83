"""Folders laid out as DFEW, FERV39k and MAFW ship (docs/datasets.md): their split files with the
real headers and quirks, and a clip (a frame folder or a video) for every listed clip.

The clips are empty stand-ins by default (for the adapters, which never decode); with
:class:`RealClips` they are short cuts of the real faces in ../shared/media and of demo clips, for
recipes that run the whole pipeline on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from helpers import MEDIA

FOLDS = (1, 2, 3, 4, 5)
# DFEW's label ids (its README) and FERV39k's class folders, by the prompt sets' class names.
DFEW_IDS = {"happiness": 1, "sadness": 2, "neutral": 3, "anger": 4, "surprise": 5, "disgust": 6, "fear": 7}
FERV39K_NAMES = {"happiness": "Happy", "sadness": "Sad", "neutral": "Neutral", "anger": "Angry",
                 "surprise": "Surprise", "disgust": "Disgust", "fear": "Fear"}
CLASSES = tuple(DFEW_IDS)

# clip writer: (path without suffix, variant, index of the clip in the tree) -> None
ClipWriter = Callable[[Path, str, int], None]


def empty_clip(path: Path, variant: str, index: int) -> None:
    """A frame folder of two empty images, or a few-byte video file: enough for the adapters."""
    if variant == "frames":
        path.mkdir(parents=True)
        for number in (1, 2):
            (path / f"{path.name}_{number:05d}.jpg").write_bytes(b"")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def five_folds(clips: list[str]) -> dict[int, list[str]]:
    """Test clips of each fold: a round-robin partition."""
    return {fold: clips[fold - 1::len(FOLDS)] for fold in FOLDS}


def dfew_tree(root: Path, variant: str, split_spelling: str = "-", header: bool = True, count: int = 10,
              write_clip: ClipWriter = empty_clip, listed_only: tuple[int, ...] = ()) -> dict[str, int]:
    """``count`` clips numbered 1.. with DFEW label ids cycling 1..7, in five folds; the clips numbered
    in ``listed_only`` are named by the split files but absent from the data. Returns clip -> label id."""
    labels = {f"{number:05d}": (number - 1) % 7 + 1 for number in range(1, count + 1)}
    tests = five_folds(list(labels))
    for fold in FOLDS:
        for part in ("train", "test"):
            names = tests[fold] if part == "test" else [clip for clip in labels if clip not in tests[fold]]
            # The official CSVs store plain numbers: no zero padding.
            rows = (["video_name,label"] if header else []) + [f"{int(clip)},{labels[clip]}" for clip in names]
            folder = root / "EmoLabel_DataSplit" / f"{part}(single{split_spelling}labeled)"
            write_lines(folder / f"set_{fold}.csv", rows)
    clips = root / ("Clip/clip_224x224" if variant == "frames" else "Clip/original")
    for index, clip in enumerate(labels):
        if int(clip) not in listed_only:
            write_clip(clips / clip, variant, index)
    return labels


def ferv39k_tree(root: Path, write_clip: ClipWriter = empty_clip) -> tuple[list[str], list[str]]:
    """Seven training and three test clips in FERV39k's All_scenes lists (space-separated, no header)."""
    train = ["Action/Sad/0010 Sad", "Action/Happy/0001 Happy", "Argue/Angry/0002 Angry", "Argue/Fear/0000 Fear",
             "Crime/Surprise/0007 Surprise", "Crime/Disgust/0012 Disgust", "Daily/Neutral/0005 Neutral"]
    test = ["Action/Neutral/0015 Neutral", "Argue/Surprise/0003 Surprise", "Argue/Disgust/0004 Disgust"]
    write_lines(root / "4_setups/All_scenes/train_All.csv", train)
    write_lines(root / "4_setups/All_scenes/test_All.csv", test)
    for index, line in enumerate(train + test):
        write_clip(root / "2_ClipsforFaceCrop" / line.split()[0], "frames", index)
    return train, test


def mafw_tree(root: Path, variant: str, classes: list[str] | tuple[str, ...],
              write_clip: ClipWriter = empty_clip) -> dict[str, str]:
    """One clip per class, numbered like MAFW's files, in five folds; returns clip id -> class name."""
    labels = {f"{index * 7 + 3:05d}": name for index, name in enumerate(classes)}
    tests = five_folds(list(labels))
    splits = root / "Train & Test Set/single/no_caption"
    for fold in FOLDS:
        write_lines(splits / f"set_{fold}/test.txt", [f"{clip}.mp4 {labels[clip]}" for clip in tests[fold]])
        write_lines(splits / f"set_{fold}/train.txt",
                    [f"{clip}.mp4 {labels[clip]}" for clip in labels if clip not in tests[fold]])
    for index, clip in enumerate(labels):
        write_clip(root / ("data/frames" if variant == "frames" else "data/clips") / clip, variant, index)
    return labels


class RealClips:
    """Short clips cut from real faces: the CREMA-D clips of ../shared/media (anger, disgust, fear,
    happiness, neutral, sadness) and a rendered demo clip of surprise. Clip ``index`` is source
    ``index % 7`` (class :data:`CLASSES` order), cut at a later start for each further round."""

    SOURCES = {"happiness": "HAP", "sadness": "SAD", "neutral": "NEU", "anger": "ANG", "disgust": "DIS", "fear": "FEA"}

    def __init__(self, frames: int = 8, size: int = 224):
        from tg_dfer.demo.clips import DEMO_CLASSES, DemoConfig, render_clip
        from tg_dfer.video import open_video

        self.frames, self.size = frames, size
        self.sources: list[np.ndarray] = []
        for name in CLASSES:
            if name in self.SOURCES:
                clip = open_video(MEDIA / "cremad" / f"1001_DFA_{self.SOURCES[name]}_XX.flv")
                count = min(clip.info.num_frames, 3 * frames * 3)
                self.sources.append(clip.read(list(range(count))))
            else:
                rendered, _, _ = render_clip(DEMO_CLASSES.index(name), np.random.default_rng(7), DemoConfig())
                self.sources.append(rendered)

    def cut(self, index: int) -> np.ndarray:
        """(frames, H, W, 3) uint8: every other frame from a start that moves on with each round."""
        source = self.sources[index % len(self.sources)]
        start = (index // len(self.sources)) * 5 % max(len(source) - 2 * self.frames, 1)
        return source[start:start + 2 * self.frames:2][: self.frames]

    def label(self, index: int) -> str:
        return CLASSES[index % len(CLASSES)]

    def write(self, path: Path, variant: str, index: int) -> None:
        """``path``/ of face crops (square, ``size`` px) for frames, else ``path``.mp4 of the whole frames."""
        from tg_dfer.video import write_video

        frames = self.cut(index)
        if variant == "frames":
            path.mkdir(parents=True)
            height, width = frames.shape[1:3]
            side = min(height, width)
            top, left = (height - side) // 2, (width - side) // 2
            for number, frame in enumerate(frames, 1):
                crop = cv2.resize(frame[top:top + side, left:left + side], (self.size, self.size),
                                  interpolation=cv2.INTER_AREA)
                cv2.imwrite(str(path / f"{path.name}_{number:05d}.jpg"), crop[..., ::-1])
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_video(path.with_suffix(".mp4"), frames)
