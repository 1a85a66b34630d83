"""MAFW (Liu et al., ACM MM 2022): the 5-fold split of the 11-class single-expression set.

Layout under ``dataset.root`` (the MAFW distribution, unpacked; docs/datasets.md)::

    Train & Test Set/single/no_caption/set_1/train.txt, test.txt ... set_5/
    data/frames/00025/*.jpg   variant frames: one folder of frames per clip (dataset.clips to move it)
    data/clips/00025.mp4      variant original: the clips; the faces stage detects and crops

The split lists hold ``00025.mp4 anger`` lines: the clip file name and an English class name,
mapped to the prompt set by name. Integer labels are refused: MAFW's own order (1 anger ...
11 disappointment) and the one public loaders use (0 happiness, 1 sadness, ...) differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tg_dfer.datasets.manifest import Manifest
from tg_dfer.datasets.splits import Layout, SplitOptions, manifest_from_lists, numbered_clip, parse_label
from tg_dfer.prompt_sets import PromptSet

FOLDS = (1, 2, 3, 4, 5)
LAYOUT = Layout(splits="Train & Test Set/single/no_caption", clips={"frames": "data/frames", "original": "data/clips"})
NO_IDS = "MAFW's split lists name the class (anger, ..., disappointment) and integer ids are ambiguous"


def mafw_adapter(root: Path, classes: PromptSet, options: dict[str, Any]) -> Manifest:
    settings = SplitOptions.from_options("mafw", root, LAYOUT, options)

    def label(clip_id: str, value: str, where: str) -> int:
        return parse_label(value, classes, where, no_ids=NO_IDS)

    folds = {fold: (settings.splits / f"set_{fold}" / "train.txt", settings.splits / f"set_{fold}" / "test.txt")
             for fold in FOLDS}
    return manifest_from_lists(root, settings, LAYOUT, classes.class_names, folds, numbered_clip, label)
