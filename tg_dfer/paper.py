"""The published results of TG-DFER (Jung, Kong, Lee, arXiv 2511.10958v1): its Tables 1 to 6 as data.

``paper_tables.json`` beside this module holds them (its ``source`` and ``copied_from`` keys say where
they come from); this module only reads it. Tables 1 and 2 compare methods (DFEW per-class recall,
UAR and WAR; FERV39k UAR and WAR); Tables 3 to 6 are the ablations on DFEW, one row per setting, in
the paper's order, with the settings as the data file names them:

* Table 3: ``fine_depth``, ``coarse_depth`` (0 is the paper's X, the branch removed), rows a-l;
* Table 4: ``stride`` (None is the paper's X, which it does not define) and ``window``, no row letters;
* Table 5: ``text_prompt``, ``learnable_context``, ``visual_prompt`` (``none`` is the paper's X), rows a-l;
* Table 6: ``influence`` (highest | lowest) and ``frames`` (k), no row letters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

TABLES_FILE = Path(__file__).with_name("paper_tables.json")
SOTA_KEYS = {1: "table1_dfew_sota", 2: "table2_ferv39k_sota"}
ABLATION_KEYS = {3: "table3_temporal_depths", 4: "table4_stride_window", 5: "table5_prompts",
                 6: "table6_influence_frames"}
RESULT_KEYS = ("setting", "uar", "war")


@dataclass(frozen=True)
class Published:
    """A published pair of metrics, in percent."""

    uar: float
    war: float


@dataclass(frozen=True)
class MethodResult:
    """One method's row of Table 1 (DFEW) or Table 2 (FERV39k)."""

    method: str
    published: Published
    per_class: dict[str, float | None]  # Table 1: recall per class (None where the paper prints "-"); Table 2: {}


@dataclass(frozen=True)
class AblationRow:
    """One row of Tables 3 to 6."""

    letter: str | None  # the paper's row letter (Tables 3 and 5); None where the table has none
    setting: dict[str, Any]  # what the row varies, keys as in the data file
    published: Published


@lru_cache(maxsize=1)
def load_tables() -> dict[str, Any]:
    """The whole data file, parsed once."""
    return json.loads(TABLES_FILE.read_text(encoding="utf-8"))


def class_names() -> list[str]:
    """The class order of Table 1 (DFEW's, the order of the dfew prompt set)."""
    return list(load_tables()["classes"])


def sota(number: int) -> list[MethodResult]:
    """The rows of Table ``number`` (1 or 2), in the paper's order; TG-DFER is the last."""
    if number not in SOTA_KEYS:
        raise ValueError(f"Table {number} is not a comparison table (1 or 2)")
    return [MethodResult(row["method"], Published(row["uar"], row["war"]), dict(row.get("per_class_recall", {})))
            for row in load_tables()[SOTA_KEYS[number]]]


def ablation(number: int) -> list[AblationRow]:
    """The rows of ablation Table ``number`` (3 to 6), in the paper's order."""
    if number not in ABLATION_KEYS:
        raise ValueError(f"Table {number} is not an ablation table (3 to 6)")
    rows = []
    for row in load_tables()[ABLATION_KEYS[number]]["rows"]:
        setting = {key: value for key, value in row.items() if key not in RESULT_KEYS}
        rows.append(AblationRow(row.get("setting"), setting, Published(row["uar"], row["war"])))
    return rows


def method(number: int, name: str) -> MethodResult:
    """The row of method ``name`` in Table ``number`` (1 or 2)."""
    for result in sota(number):
        if result.method == name:
            return result
    raise KeyError(f"no method {name!r} in Table {number}")
