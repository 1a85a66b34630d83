"""The ``faces`` section: the crop policy and the detector (:class:`tg_dfer.faces.FaceSettings`)."""

from __future__ import annotations

from typing import Any

from pipeline.settings.params import DEFAULT_PARAMS, section, sections_settings
from tg_dfer.detectors import DetectorSettings
from tg_dfer.faces import CropPolicy, FaceSettings


def face_settings(params: dict[str, Any], path: str = DEFAULT_PARAMS) -> FaceSettings:
    """The section of a params file."""
    return faces_section(section(params, "faces", path))


def faces_section(values: dict[str, Any]) -> FaceSettings:
    """The section itself (also as faces.h5 records it, for the model file of its features), checked
    before any work."""
    return FaceSettings(*sections_settings(values, "faces", CropPolicy, DetectorSettings))
