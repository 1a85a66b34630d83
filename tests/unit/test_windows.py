"""Sliding windows over a video: their bounds in frames."""

from __future__ import annotations

import pytest

from tg_dfer.inference.windows import window_bounds


@pytest.mark.parametrize("frames, fps, seconds, hop, expected", [
    (100, 25.0, 1.0, 0.5, [(0, 25), (12, 37), (24, 49), (36, 61), (48, 73), (60, 85), (72, 97), (75, 100)]),
    (10, 25.0, 1.0, 0.5, [(0, 10)]),
    (50, 10.0, 2.0, 3.0, [(0, 20), (30, 50)]),
])
def test_window_bounds_cover_the_clip(frames, fps, seconds, hop, expected):
    assert window_bounds(frames, fps, seconds, hop) == expected
