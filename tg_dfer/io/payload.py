"""Files written with ``torch.save`` (checkpoints, model files): plain tensors and containers with a
``format`` key, read with ``weights_only=True`` so no code runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tg_dfer.io.atomic import atomic_path


def load_payload(path: str | Path, expected: str | tuple[str, ...], error_type: type[Exception], what: str,
                 missing: str, hints: dict[str, str] | None = None) -> dict[str, Any]:
    """A ``torch.save`` file of tensors and plain containers whose ``format`` key is ``expected`` (or one of them).

    Read with ``weights_only=True``, so no code runs. Errors are ``error_type`` naming the file;
    ``missing`` says how to make it, ``hints`` what to do with a file of another known format.
    """
    path = Path(path)
    if not path.is_file():
        raise error_type(f"{path}: no such {what} ({missing})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for foreign files
        raise error_type(f"{path}: not a readable {what} ({error})") from error
    formats = (expected,) if isinstance(expected, str) else expected
    if not isinstance(payload, dict) or payload.get("format") not in formats:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        hint = (hints or {}).get(found)
        raise error_type(f"{path}: format {found!r}, expected {' or '.join(formats)}" + (f" ({hint})" if hint else ""))
    return payload


def save_payload(path: str | Path, payload: dict[str, Any]) -> None:
    """One ``torch.save`` of tensors and plain containers, written atomically."""
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)
