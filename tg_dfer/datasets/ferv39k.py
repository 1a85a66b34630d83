"""FERV39k (Wang et al., CVPR 2022): the official All_scenes train/test split (one test fold).

Layout under ``dataset.root`` (the FERV39k distribution, unpacked; docs/datasets.md)::

    4_setups/All_scenes/train_All.csv, test_All.csv
    2_ClipsforFaceCrop/<scene>/<class>/<nnnn>/*.jpg   one folder of face frames per clip

The lists hold ``Action/Sad/0010 Sad`` lines, no header: the clip folder relative to
2_ClipsforFaceCrop and the class name, mapped to the prompt set by name (never by the folders'
alphabetical order). The class folder in the path must agree with the label. Test clips form
test fold 1, train clips are training only (0): train with ``train.folds: [1]``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from tg_dfer.datasets.manifest import Manifest, ManifestError
from tg_dfer.datasets.splits import Layout, SplitOptions, manifest_from_lists, parse_label
from tg_dfer.prompt_sets import PromptSet

LAYOUT = Layout(splits="4_setups/All_scenes", clips={"frames": "2_ClipsforFaceCrop"})
NO_IDS = "FERV39k's lists name the class (Happy, Sad, ...) and it publishes no integer ids"


def parse_clip(value: str, where: str) -> str:
    parts = PurePosixPath(value.replace("\\", "/")).parts
    if len(parts) != 3 or ".." in parts or value.startswith("/"):
        raise ManifestError(f"{where}: {value!r} is not a FERV39k clip path <scene>/<class>/<number>")
    return "/".join(parts)


def ferv39k_adapter(root: Path, classes: PromptSet, options: dict[str, Any]) -> Manifest:
    settings = SplitOptions.from_options("ferv39k", root, LAYOUT, options)

    def label(clip_id: str, value: str, where: str) -> int:
        label = parse_label(value, classes, where, no_ids=NO_IDS)
        if classes.class_id(clip_id.split("/")[1]) not in (None, label):
            raise ManifestError(f"{where}: label {value!r} disagrees with the class folder of {clip_id!r}")
        return label

    folds = {1: (settings.splits / "train_All.csv", settings.splits / "test_All.csv")}
    return manifest_from_lists(root, settings, LAYOUT, classes.class_names, folds, parse_clip, label)
