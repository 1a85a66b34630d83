"""The identity of files and weights: SHA-256, and the one check that two things share their CLIP weights.

Features, texts, checkpoints, predictions and model files all record the SHA-256 of the CLIP
weights they were made with; whatever combines two of them checks the hashes here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


class WeightsMismatch(ValueError):
    """Two inputs made from different CLIP weights."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_same_weights(expected: str, found: str, expected_what: str, found_what: str, hint: str = "") -> None:
    """Raise :class:`WeightsMismatch` unless ``found`` is ``expected`` (SHA-256 of CLIP weights),
    naming what each hash belongs to and, with ``hint``, what to do."""
    if found != expected:
        raise WeightsMismatch(f"{expected_what} was made with CLIP weights {expected}, but {found_what} with "
                              f"{found}" + (f"; {hint}" if hint else ""))
