"""Reusing or giving back freed memory (tg_dfer.memory), each case in a fresh interpreter: glibc's
setting lasts for the life of a process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tg_dfer.memory import _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="glibc's malloc settings only (not musl or macOS)")

# Allocate COUNT blocks of SIZE bytes and free all but the last, which keeps the heap's top in use
# (so glibc cannot shrink the heap on its own); print the MiB the process still holds.
KEPT = """
import numpy as np
from benchmarks.measure import current_rss_mib
from tg_dfer.memory import release_freed_memory
{setup}
start = current_rss_mib()
blocks = [np.ones({size} // 8) for _ in range({count})]
del blocks[:-1]
print(current_rss_mib() - start)
"""


def kept_mib(size: int, count: int, setup: str = "") -> float:
    script = KEPT.format(size=size, count=count, setup=setup)
    return float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)


def test_the_fixed_threshold_keeps_large_blocks_out_of_the_heap():
    # One freed 1 MB block raises glibc's dynamic threshold above 1 MB: the next ones come from the
    # heap and stay with the process when freed; with the threshold fixed they go back at once.
    one_freed = "np.ones(1_000_000 // 8)"
    assert kept_mib(1_000_000, 200, setup=one_freed) > 150
    assert kept_mib(1_000_000, 200, setup="assert release_freed_memory()\n" + one_freed) < 20
