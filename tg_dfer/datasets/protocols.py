"""The official evaluation protocols' clip counts, and how far a prepared manifest is from them.

A run on half a dataset gives numbers that look like results; the counts, as the distributions
state them (docs/datasets.md, "Sources"), let ``prepare`` say so before hours of face detection.
Only counts a distribution states are checked: MAFW's middle folds are not stated there.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from tg_dfer.datasets.manifest import Manifest


@dataclass(frozen=True)
class Protocol:
    """One protocol: all its labelled clips, and the test clips of the folds whose size is stated."""

    name: str
    clips: int
    test_clips: dict[int, int]  # fold -> its test clips


PROTOCOLS = {
    # DFEW's README: 11,697 single-labelled clips with a face; fd1-fd5 test 2,341 / 2,341 / 2,340 / 2,339 / 2,336.
    "dfew": Protocol("DFEW single-labelled 5-fold", 11_697, {1: 2_341, 2: 2_341, 3: 2_340, 4: 2_339, 5: 2_336}),
    # FERV39k All_scenes: 31,088 train + 7,847 test clips; the test list is fold 1.
    "ferv39k": Protocol("FERV39k All_scenes", 38_935, {1: 7_847}),
    # MAFW's 11-class single-expression set: 9,172 clips; set_1 and set_5 test 1,839 and 1,831.
    "mafw": Protocol("MAFW 11-class single-expression 5-fold", 9_172, {1: 1_839, 5: 1_831}),
}


def protocol_check(protocol: Protocol, manifest: Manifest) -> dict[str, Any]:
    """The manifest's clips against the protocol's: counts found and official, per test fold too,
    and ``complete`` when every stated count is met exactly."""
    found = Counter(row.test_fold for row in manifest.rows)
    folds = {str(fold): {"official": official, "found": found.get(fold, 0)}
             for fold, official in sorted(protocol.test_clips.items())}
    complete = len(manifest.rows) == protocol.clips and all(fold["found"] == fold["official"] for fold in folds.values())
    return {"protocol": protocol.name, "official_clips": protocol.clips, "found_clips": len(manifest.rows),
            "test_folds": folds, "complete": complete}


def describe(check: dict[str, Any]) -> list[str]:
    """The check in lines for a person: what was found against what the protocol has."""
    official, found = check["official_clips"], check["found_clips"]
    verdict = "the whole protocol" if check["complete"] else f"{official - found:,} short" if found < official \
        else f"{found - official:,} more than the protocol"
    lines = [f"{check['protocol']}: {found:,} of {official:,} clips ({verdict})"]
    short = [f"fold {fold} test {counts['found']:,} of {counts['official']:,}"
             for fold, counts in check["test_folds"].items() if counts["found"] != counts["official"]]
    if short:
        lines.append("differs from the protocol: " + ", ".join(short))
    return lines
