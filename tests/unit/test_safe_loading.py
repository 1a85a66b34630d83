"""Weight and checkpoint files are read with weights_only: a pickle that would run code is refused."""

from __future__ import annotations

import pytest
import torch

from tg_dfer.backbone import BackboneSpec, WeightsError, load_backbone
from tg_dfer.training.checkpoint import CheckpointError, load_checkpoint


class RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.fixture
def booby_trap(tmp_path):
    marker = tmp_path / "code ran"
    path = tmp_path / "weights.pt"
    torch.save({"text_projection": torch.zeros(2, 2), "format": "x", "trap": RunsCodeWhenUnpickled(marker)}, path)
    return path, marker


def test_the_trap_runs_code_when_loaded_unsafely(booby_trap):
    path, marker = booby_trap
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_clip_weights_with_code_are_refused(booby_trap):
    path, marker = booby_trap
    with pytest.raises(WeightsError, match="weights.pt: not a CLIP checkpoint"):
        load_backbone(BackboneSpec("ViT-B/32", path))
    assert not marker.exists()


def test_model_checkpoints_with_code_are_refused(booby_trap):
    path, marker = booby_trap
    with pytest.raises(CheckpointError, match="weights.pt: not a readable checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()
