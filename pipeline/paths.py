"""Every file the pipeline reads or writes, named once (dvc.yaml spells the same paths for DVC)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEMO_VIDEOS = Path("data/demo/videos")
DEMO_BACKBONE = Path("data/backbone/clip.pt")  # the backbone stage's output: the demo's own CLIP


def uses_demo_backbone(checkpoint: str | None) -> bool:
    """Whether ``clip.checkpoint`` names the backbone stage's output (the demo's setting)."""
    return bool(checkpoint) and checkpoint != "random" and Path(checkpoint).resolve() == DEMO_BACKBONE.resolve()


@dataclass(frozen=True)
class DatasetPaths:
    """The files of dataset ``name``: its caches under data/<name>/, its results under metrics/ and models/."""

    name: str
    root: Path  # dataset.root: the clips the manifest's paths are relative to

    @property
    def folder(self) -> Path:
        return Path("data") / self.name

    @property
    def manifest(self) -> Path:
        return self.folder / "manifest.csv"

    @property
    def prepare_report(self) -> Path:
        return self.folder / "prepare_report.json"

    @property
    def faces(self) -> Path:
        return self.folder / "faces.h5"

    @property
    def features(self) -> Path:
        return self.folder / "features.h5"

    @property
    def embed_skipped(self) -> Path:
        return self.folder / "embed_skipped.json"

    @property
    def metrics(self) -> Path:
        return Path("metrics") / self.name

    @property
    def backbone_summary(self) -> Path:
        return self.metrics / "backbone.json"

    @property
    def faces_summary(self) -> Path:
        return self.metrics / "faces.json"

    @property
    def qc(self) -> Path:
        return self.metrics / "qc.csv"

    @property
    def metrics_file(self) -> Path:
        return self.metrics / "metrics.json"

    def fold_dir(self, fold: int) -> Path:
        return Path("models") / self.name / f"fold{fold}"

    def checkpoint(self, fold: int) -> Path:
        return self.fold_dir(fold) / "model.pt"

    @property
    def export(self) -> Path:
        return Path("exports") / f"{self.name}.pt"

    @property
    def report(self) -> Path:
        return Path("report") / self.name


def zero_shot_export(prompt_set: str) -> Path:
    """exports/zero-shot-<prompt set>.pt: the default file of `tg-dfer export --zero-shot`."""
    return Path("exports") / f"zero-shot-{Path(prompt_set).stem}.pt"


def train_log(name: str, fold: int) -> Path:
    """logs/<dataset>/train_fold<k>.json: how long a fold trained. Outside models/ (a DVC output) and
    git, so that a run's wall-clock times change no tracked file."""
    return Path("logs") / name / f"train_fold{fold}.json"


def backbone_log(name: str) -> Path:
    """logs/<dataset>/backbone.json: how long the demo backbone's pretraining took (outside git, as train_log)."""
    return Path("logs") / name / "backbone.json"


def text_path(prompt_set: str) -> Path:
    """data/text/<prompt set>.h5; a prompt set given as a path is named by its file's stem."""
    return Path("data") / "text" / f"{Path(prompt_set).stem}.h5"
