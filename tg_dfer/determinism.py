"""Seeded, deterministic torch: training and the demo backbone's pretraining give the same weights on a rerun."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def deterministic(seed: int, threads: int | None = None) -> Iterator[None]:
    """Seeded RNGs and deterministic kernels inside the block; the caller's RNG state is restored.

    ``threads``: torch's intra-op thread count inside the block (restored after). Large CPU kernels
    split their sums by thread, so where bit-identical results across machines matter, the count
    must be fixed rather than follow the machine's cores.
    """
    # cuBLAS needs this before its first call to be deterministic; harmless elsewhere.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous, previous_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous)
            torch.set_num_threads(previous_threads)
