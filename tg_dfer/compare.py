"""Comparing two metrics documents (JSON) number by number: the reproduction check of CI."""

from __future__ import annotations

from typing import Any


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts and lists into ``a.b.0.c -> value``."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(_leaves(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare_numbers(reference: Any, current: Any, tolerance: float
                    ) -> tuple[list[tuple[str, float, float, float]], list[str]]:
    """Compare two metrics documents leaf by leaf.

    Returns the top-level numbers as ``(key, reference, current, difference)`` rows for display,
    and a list of problems: numbers further apart than ``tolerance``, other values that differ,
    keys present on one side only. No problems means the documents agree.
    """
    before, after = _leaves(reference), _leaves(current)
    problems = [f"{key}: missing from the reproduced file" for key in before if key not in after]
    problems += [f"{key}: not in the reference" for key in after if key not in before]
    for key in before.keys() & after.keys():
        old, new = before[key], after[key]
        if _is_number(old) and _is_number(new):
            if not abs(new - old) <= tolerance:  # NaN on either side is a difference
                problems.append(f"{key}: {old} -> {new} ({new - old:+.4f})")
        elif old != new:
            problems.append(f"{key}: {old!r} -> {new!r}")
    rows = [(key, float(before[key]), float(after[key]), float(after[key]) - float(before[key]))
            for key in before if "." not in key and key in after and _is_number(before[key])
            and _is_number(after[key])]
    return rows, sorted(problems)
