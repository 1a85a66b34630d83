"""Shared fixtures: real media from ../shared/media, a tiny CLIP, one torch thread; the e2e tests are slow."""

from __future__ import annotations

from pathlib import Path

import pytest

import pipeline  # noqa: F401  first: the reference CPU profile's variables before anything imports torch

from helpers import MEDIA
from helpers.media import tiny_clip


@pytest.fixture(scope="session")
def media() -> Path:
    if not MEDIA.is_dir():
        pytest.skip(f"real test media not found at {MEDIA} (the shared folder beside the repository)")
    return MEDIA


@pytest.fixture
def tiny_clip_model():
    return tiny_clip()


@pytest.fixture
def one_thread():
    """Tiny tensors: a second OpenMP thread only adds contention (and is very slow when the cores
    are shared with other work)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    """Everything under tests/e2e/ runs whole stages or the pipeline: marked slow (`pytest -m "not slow"`)."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.slow)
