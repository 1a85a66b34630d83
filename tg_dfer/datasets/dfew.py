"""DFEW (Jiang et al., ACM MM 2020): the official 5-fold split of the 11,697 single-labelled clips.

Layout under ``dataset.root`` (the DFEW distribution, unpacked; docs/datasets.md)::

    EmoLabel_DataSplit/train(single-labeled)/set_1.csv ... set_5.csv
    EmoLabel_DataSplit/test(single-labeled)/set_1.csv ... set_5.csv
    Clip/original/00001.mp4 ...              variant original: faces stage detects and crops
    Clip/clip_224x224/00001/00001_00001.jpg  variant frames: aligned face crops, faces.detector none

The split CSVs hold ``video_name,label`` rows; names are clip numbers (zero-padded to 5 digits
here, as the clip files are) and labels DFEW's ids 1..7, mapped to the prompt set by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tg_dfer.datasets.manifest import Manifest, ManifestError
from tg_dfer.datasets.splits import Layout, SplitOptions, manifest_from_lists, numbered_clip, parse_label
from tg_dfer.prompt_sets import PromptSet

# DFEW README "Notes": the split files' label ids.
DFEW_LABELS = {1: "happy", 2: "sad", 3: "neutral", 4: "angry", 5: "surprise", 6: "disgust", 7: "fear"}
FOLDS = (1, 2, 3, 4, 5)
LAYOUT = Layout(splits="EmoLabel_DataSplit", clips={"frames": "Clip/clip_224x224", "original": "Clip/original"})
# The DFEW README names the archives with an underscore; the unpacked folders public loaders read
# are spelt with a hyphen.
SPLIT_FOLDERS = {"train": ("train(single-labeled)", "train(single_labeled)"),
                 "test": ("test(single-labeled)", "test(single_labeled)")}


def split_folder(splits: Path, part: str) -> Path:
    for name in SPLIT_FOLDERS[part]:
        if (splits / name).is_dir():
            return splits / name
    raise ManifestError(f"{splits}: no folder {' or '.join(SPLIT_FOLDERS[part])} (DFEW's {part} split lists)")


def dfew_adapter(root: Path, classes: PromptSet, options: dict[str, Any]) -> Manifest:
    settings = SplitOptions.from_options("dfew", root, LAYOUT, options)
    train, test = (split_folder(settings.splits, part) for part in ("train", "test"))

    def label(clip_id: str, value: str, where: str) -> int:
        return parse_label(value, classes, where, DFEW_LABELS)

    folds = {fold: (train / f"set_{fold}.csv", test / f"set_{fold}.csv") for fold in FOLDS}
    return manifest_from_lists(root, settings, LAYOUT, classes.class_names, folds, numbered_clip, label)
