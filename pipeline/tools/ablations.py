"""The paper's ablation Tables 3 to 6 as grids of params.yaml overrides, row for row.

Each row of a table (``tg_dfer.paper.ablation``) becomes a :class:`Setting`: the params.yaml keys
(dotted, as ``dvc exp run -S`` takes them) that make the committed baseline that row, the cells the
paper prints, and the published numbers. Tables 3 to 5 change ``train.model`` (train and evaluate
re-run), Table 6 changes ``evaluate`` (only evaluate re-runs). The row that equals the committed
params (the paper's default: Table 3 e, Table 4 (1, 4), Table 5 h) is the baseline itself and is
never queued again.

Table 4's "Stride" column holds an X that the paper does not define; ``ablate.table4_stride``
(pipeline/settings/ablate.py) picks how the column is read (docs/ablations.md):

* ``stride`` (default): the column is s of Eq. 3 and X means windows without overlap, s = w (Sec.
  3.2.1 defines s = w - o; "without stride" is o = 0). Row (1, 4) is then the default s = 1, w = 4.
* ``overlap``: the column is the overlap o (Sec. 4.4.2 says "larger strides, which involve overlapping
  frames"), so s = w - o and X is o = 0 again.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from tg_dfer.paper import AblationRow, Published, ablation

MODEL = "train.model."
TABLE4_READINGS = ("stride", "overlap")


@dataclass(frozen=True)
class Setting:
    name: str  # experiment name (dvc exp run -n): unique over all tables, holds the paper's row letter
    letter: str | None  # the paper's row letter, where the table has them
    cells: tuple[str, ...]  # the setting columns as the paper prints them (X: removed / none)
    overrides: dict[str, Any]  # params.yaml dotted key -> value
    paper: Published


@dataclass(frozen=True)
class Plot:
    """What a table's figure shows: UAR over one setting column, one line per value of another."""

    x: int  # index into Table.columns
    series: int  # index into Table.columns


@dataclass(frozen=True)
class Table:
    number: int
    title: str
    columns: tuple[str, ...]  # headers of the setting columns
    settings: tuple[Setting, ...]
    reruns: str  # which stages an experiment of this table re-runs
    plot: Plot
    note: str = ""  # how the table's settings were read from the paper

    def setting(self, name: str) -> Setting:
        for setting in self.settings:
            if setting.name == name:
                return setting
        raise KeyError(name)


def _x(value: Any) -> str:
    """The paper's spelling of a setting: X where a branch, stride or visual prompt is absent."""
    return "X" if value in (0, None, "none") else str(value)


def _table3() -> Table:
    def setting(row: AblationRow) -> Setting:
        fine, coarse = row.setting["fine_depth"], row.setting["coarse_depth"]
        return Setting(f"t3{row.letter}-fine{fine}-coarse{coarse}", row.letter, (_x(fine), _x(coarse)),
                       {MODEL + "fine_depth": fine, MODEL + "coarse_depth": coarse}, row.published)

    return Table(3, "Multi-grained temporal network with different depths (transformer layers; X: branch removed)",
                 ("fine-grained", "coarse-grained"), tuple(setting(row) for row in ablation(3)), "train + evaluate",
                 Plot(x=1, series=0))


def _table4(reading: str) -> Table:
    if reading not in TABLE4_READINGS:
        raise ValueError(f"Table 4 reading must be one of {', '.join(TABLE4_READINGS)}, got {reading!r}")

    def setting(row: AblationRow) -> Setting:
        column, window = row.setting["stride"], row.setting["window"]
        if reading == "stride":
            stride = window if column is None else column
        else:
            stride = window - (column or 0)
        return Setting(f"t4-{reading}{_x(column)}-window{window}", None, (_x(column), str(window)),
                       {MODEL + "window": window, MODEL + "stride": stride}, row.published)

    note = ("Stride column read as s of Eq. 3; X = windows without overlap (s = w)." if reading == "stride" else
            "Stride column read as the overlap o of Sec. 3.2.1 (s = w - o); X = no overlap (s = w).")
    return Table(4, "Stride and window width of the fine-grained temporal module",
                 ("stride" if reading == "stride" else "stride (read as overlap o)", "window width"),
                 tuple(setting(row) for row in ablation(4)), "train + evaluate", Plot(x=1, series=0),
                 note + " Choose with `ablate.table4_stride` in params.yaml.")


def _table5() -> Table:
    def setting(row: AblationRow) -> Setting:
        text, learnable, visual = (row.setting[key] for key in ("text_prompt", "learnable_context", "visual_prompt"))
        shown = ("[Learnable] " if learnable else "") + text.capitalize()
        name = f"t5{row.letter}-{text}-{'learnable' if learnable else 'fixed'}-{visual}"
        return Setting(name, row.letter, (shown, _x(visual).capitalize()),
                       {MODEL + "text_prompt": text, MODEL + "learnable_context": learnable,
                        MODEL + "visual_prompt": visual}, row.published)

    return Table(5, "Visual prompt location with different text prompts", ("text prompt", "visual prompt"),
                 tuple(setting(row) for row in ablation(5)), "train + evaluate", Plot(x=1, series=0))


def _table6() -> Table:
    def setting(row: AblationRow) -> Setting:
        influence, k = row.setting["influence"], row.setting["frames"]
        return Setting(f"t6-{influence}{k}", None, (influence.capitalize(), str(k)),
                       {"evaluate.frames": influence, "evaluate.frames_k": k}, row.published)

    return Table(6, "Inference on the k frames of highest or lowest influence of the enhanced fine-grained label",
                 ("influence", "# of frames"), tuple(setting(row) for row in ablation(6)), "evaluate only",
                 Plot(x=1, series=0))


def build_tables(table4_reading: str) -> dict[int, Table]:
    """Tables 3 to 6, each row a setting, in the paper's order."""
    return {table.number: table for table in (_table3(), _table4(table4_reading), _table5(), _table6())}


# ------------------------------------------------------------------------------------ params


def apply_overrides(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` with dotted-key ``overrides`` set; a key must already exist."""
    params = copy.deepcopy(params)
    for key, value in overrides.items():
        *path, last = key.split(".")
        target = params
        for part in path:
            if not isinstance(target.get(part), dict):
                raise KeyError(f"params have no section {key.rsplit('.', 1)[0]!r} (for {key})")
            target = target[part]
        if last not in target:
            raise KeyError(f"params have no key {key!r}")
        target[last] = value
    return params


def changed_overrides(params: dict[str, Any], setting: Setting) -> dict[str, Any]:
    """The overrides of ``setting`` that differ from ``params`` (empty: the baseline is this setting)."""
    changed = {}
    for key, value in setting.overrides.items():
        current: Any = params
        for part in key.split("."):
            if not isinstance(current, dict) or part not in current:
                raise KeyError(f"params have no key {key!r}")
            current = current[part]
        if current != value:
            changed[key] = value
    return changed


def override_arguments(overrides: dict[str, Any]) -> list[str]:
    """``-S key=value`` arguments for dvc, values in YAML spelling (true/false, not True/False)."""
    arguments = []
    for key, value in overrides.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        arguments += ["-S", f"{key}={text}"]
    return arguments
