"""The ``ablate`` section, read by `tg-dfer ablate` and `tg-dfer report` (tools: no stage depends on it)."""

from __future__ import annotations

from typing import Any

FIRST_READING = "stride"  # experiments run before the setting existed read Table 4 this way


def table4_stride(params: dict[str, Any]) -> str:
    """ablate.table4_stride: how Table 4's stride column is read (stride | overlap, docs/ablations.md);
    checked by the table builder, which names the choices."""
    return str((params.get("ablate") or {}).get("table4_stride", FIRST_READING))
