"""Which torch device a stage runs on."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device that was asked for but is not there."""


def pick_device(requested: str = "auto") -> str:
    """auto: the CUDA GPU when torch sees one, else the CPU; a named device must exist."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {requested!r} asked for, but torch sees no CUDA GPU")
    return requested
