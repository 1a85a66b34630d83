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


# The headline results a seed study spreads, with the key that holds each in metrics.json and its unit.
BANDED = {"uar": ("uar", "points"), "war": ("war", "points"), "apex_auroc": ("apex_auroc.mean", "AUROC")}
# Leaves that a run off the reference profile may change without being wrong: its results (checked
# by the band instead) and the record of how it was computed.
RESULT_PREFIXES = ("uar", "war", "uar_std", "war_std", "per_class", "folds", "last_epoch", "best_on_validation",
                   "test_picked", "apex_auroc", "cpu_profile")


def band_check(seeds: dict[str, Any], reference: Any, current: Any, width: float
               ) -> tuple[list[tuple[str, str, float, float, float, float, float]], list[str]]:
    """Check a run that cannot be exact against a seed study's spread.

    ``seeds`` is a seed study (benchmarks/seed_study.py: ``mean`` and ``std`` of each headline
    result over training seeds). Each headline result of ``current`` must lie within ``width``
    standard deviations of the seeds' mean, in its own unit (points of UAR/WAR, AUROC on 0..1).
    Every value that is not a result (settings, clip counts, the weights' hash) must still equal
    ``reference``'s. Returns ``(metric, unit, mean, std, low, high, value)`` rows and the problems.
    """
    rows, problems = [], []
    flat = _leaves(current)
    for metric, (key, unit) in BANDED.items():
        if metric not in seeds.get("mean", {}):
            continue
        mean, std = float(seeds["mean"][metric]), float(seeds["std"][metric])
        low, high = mean - width * std, mean + width * std
        value = flat.get(key)
        if not _is_number(value):
            problems.append(f"{key}: missing from the reproduced file")
            continue
        rows.append((metric, unit, mean, std, low, high, float(value)))
        if not low <= value <= high:  # NaN fails too
            problems.append(f"{key}: {value} outside the seeds' band {low:.4f}..{high:.4f} ({unit})")
    before, after = _leaves(reference), flat
    for key in sorted(before.keys() | after.keys()):
        if key.split(".")[0] in RESULT_PREFIXES:
            continue
        if key not in after:
            problems.append(f"{key}: missing from the reproduced file")
        elif key not in before:
            problems.append(f"{key}: not in the reference")
        elif before[key] != after[key]:
            problems.append(f"{key}: {before[key]!r} -> {after[key]!r}")
    return rows, problems
