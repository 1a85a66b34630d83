"""The paper's ablation tables as parameter grids, and their report from DVC experiments.

Each table is a list of settings; a setting is a set of ``params.yaml`` overrides (dotted keys, as
``dvc exp run -S`` takes them) applied to the committed baseline. Tables 3 to 5 change model
params (``train`` and ``evaluate`` re-run, never ``faces`` or ``embed``); Table 6 changes only
``evaluate`` params (inference on the k highest- or lowest-influence frames).

:func:`collect_runs` reads the JSON of ``dvc exp show --json``; :func:`fill_table` finds, for each
setting, the run whose params equal baseline + overrides exactly; :func:`render_markdown` lays
the result out like the paper (setting columns, UAR, WAR, the published numbers beside ours).

Published numbers: the text of the paper's tables was not available when these grids were
written, so ``Setting.paper`` is ``None`` everywhere and the report says "not available". Fill
them in here (DFEW 5-fold, percent) when you have the paper at hand; the report picks them up.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from itertools import product
from typing import Any, Iterable


@dataclass(frozen=True)
class Setting:
    name: str  # experiment name (dvc exp run -n): unique over all tables
    cells: tuple[str, ...]  # the values shown in the table's setting columns
    overrides: dict[str, Any] = field(hash=False)  # params.yaml dotted key -> value
    paper: tuple[float, float] | None = None  # published (UAR, WAR) on DFEW, percent


@dataclass(frozen=True)
class Table:
    number: int
    title: str
    columns: tuple[str, ...]  # headers of the setting columns
    settings: tuple[Setting, ...]
    reruns: str  # which stages an experiment of this table re-runs

    def setting(self, name: str) -> Setting:
        for setting in self.settings:
            if setting.name == name:
                return setting
        raise KeyError(name)


MODEL = "train.model."


def _table3() -> Table:
    settings = []
    for prompt, learnable, visual in product(("class", "descriptors"), (False, True), ("none", "prepend", "add")):
        settings.append(Setting(
            name=f"t3-{prompt}-{'learnt' if learnable else 'fixed'}-{visual}",
            cells=(prompt, "learnable" if learnable else "fixed", visual),
            overrides={MODEL + "text_prompt": prompt, MODEL + "learnable_context": learnable,
                       MODEL + "visual_prompt": visual}))
    return Table(3, "Text and visual prompts", ("text prompt", "context", "visual prompt"), tuple(settings),
                 "train + evaluate")


def _table4() -> Table:
    settings = [Setting(f"t4-fine{fine}-coarse{coarse}", (str(fine), str(coarse)),
                        {MODEL + "fine_depth": fine, MODEL + "coarse_depth": coarse})
                for fine, coarse in ((0, 0), (1, 0), (0, 1), (1, 1), (2, 2))]
    return Table(4, "Multi-grained temporal network (transformer layers per branch; 0 removes the branch)",
                 ("fine-grained depth", "coarse-grained depth"), tuple(settings), "train + evaluate")


def _table5() -> Table:
    settings = [Setting(f"t5-window{window}-stride{stride}", (str(window), str(stride)),
                        {MODEL + "window": window, MODEL + "stride": stride})
                for window, stride in ((2, 1), (2, 2), (4, 1), (4, 2), (4, 4), (8, 1), (8, 4), (8, 8))]
    return Table(5, "Window size and stride of the fine-grained module", ("window w", "stride s"),
                 tuple(settings), "train + evaluate")


def _table6() -> Table:
    settings = [Setting("t6-all", ("all", "all"), {"evaluate.frames": "all"})]
    settings += [Setting(f"t6-{mode}{k}", (mode, str(k)), {"evaluate.frames": mode, "evaluate.frames_k": k})
                 for mode, k in product(("highest", "lowest"), (1, 2, 4, 8))]
    return Table(6, "Inference on only the k frames of highest or lowest influence", ("frames", "k"),
                 tuple(settings), "evaluate only")


TABLES: dict[int, Table] = {table.number: table for table in (_table3(), _table4(), _table5(), _table6())}


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
    current = {}
    for key in setting.overrides:
        value: Any = params
        for part in key.split("."):
            value = value[part]
        current[key] = value
    return {key: value for key, value in setting.overrides.items() if current[key] != value}


def override_arguments(overrides: dict[str, Any]) -> list[str]:
    """``-S key=value`` arguments for dvc, values in YAML spelling (true/false, not True/False)."""
    arguments = []
    for key, value in overrides.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        arguments += ["-S", f"{key}={text}"]
    return arguments


# ------------------------------------------------------------------------ dvc exp show --json


@dataclass
class Run:
    """One row of ``dvc exp show``: the baseline commit or one of its experiments."""

    name: str
    rev: str
    timestamp: str
    params: dict[str, Any]
    metrics: dict[str, dict[str, Any]]  # metrics file -> its content
    is_baseline: bool


def _run(record: dict[str, Any], baseline: bool) -> Run | None:
    data = record.get("data") or {}
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data")
    if record.get("error") or not params:
        return None
    metrics = {path: (entry or {}).get("data") or {} for path, entry in (data.get("metrics") or {}).items()}
    return Run(record.get("name") or str(record.get("rev", ""))[:7], str(record.get("rev", "")),
               data.get("timestamp") or "", params, metrics, baseline)


def collect_runs(exp_show: list[dict[str, Any]]) -> list[tuple[Run, list[Run]]]:
    """(baseline, its experiments) for every commit in ``dvc exp show --json`` output, newest first.

    The workspace row is left out (it is not a recorded result); failed or queued experiments
    (no params or an error) too.
    """
    if not isinstance(exp_show, list):
        raise ValueError("expected the JSON list printed by `dvc exp show --json`")
    groups = []
    for entry in exp_show:
        if entry.get("rev") == "workspace":
            continue
        baseline = _run(entry, baseline=True)
        if baseline is None:
            continue
        experiments = []
        for experiment in entry.get("experiments") or []:
            for record in experiment.get("revs") or []:
                run = _run(record, baseline=False)
                if run is not None:
                    experiments.append(run)
        groups.append((baseline, experiments))
    return groups


# ---------------------------------------------------------------------------------- the tables


@dataclass
class Row:
    setting: Setting
    run: Run | None
    metrics: dict[str, Any] | None  # metrics.json of the run


def metrics_key(params: dict[str, Any]) -> str:
    return f"metrics/{params['dataset']['name']}/metrics.json"


def fill_table(table: Table, baseline: Run, experiments: Iterable[Run]) -> list[Row]:
    """For each setting, the newest run whose params are exactly baseline + the setting's overrides.

    The baseline itself counts for the setting it already is (its params need no override).
    """
    candidates = sorted([baseline, *experiments], key=lambda run: run.timestamp, reverse=True)
    rows = []
    for setting in table.settings:
        try:
            wanted = apply_overrides(baseline.params, setting.overrides)
        except KeyError:
            rows.append(Row(setting, None, None))
            continue
        run = next((run for run in candidates if run.params == wanted), None)
        metrics = run.metrics.get(metrics_key(run.params)) if run else None
        rows.append(Row(setting, run, metrics or None))
    return rows


def _score(metrics: dict[str, Any] | None, key: str) -> str:
    if not metrics or metrics.get(key) is None:
        return "not run"
    std = metrics.get(f"{key}_std")
    return f"{metrics[key]:.2f} ± {std:.2f}" if std else f"{metrics[key]:.2f}"


def _paper(setting: Setting, index: int) -> str:
    return "n/a" if setting.paper is None else f"{setting.paper[index]:.2f}"


def render_markdown(tables: Iterable[Table], filled: dict[int, list[Row]], baseline: Run,
                    figures: dict[int, str] | None = None) -> str:
    """The report: one Markdown table per paper table, our UAR/WAR beside the published ones."""
    figures = figures or {}
    dataset = baseline.params.get("dataset", {}).get("name", "?")
    lines = [f"# Ablations on `{dataset}` (baseline {baseline.name}, {baseline.rev[:7]})", "",
             "UAR and WAR in percent: mean ± sample standard deviation over the trained folds "
             f"({', '.join(map(str, baseline.params.get('train', {}).get('folds', [])))}), "
             "best-on-validation weights unless `evaluate.weights` says otherwise. "
             "\"paper\" columns: the published DFEW numbers where this repository has them "
             "(`tg_dfer/ablations.py`), else n/a.", ""]
    rows_all = [row for rows in filled.values() for row in rows]
    if any(row.metrics and row.metrics.get("random_clip_weights") for row in rows_all):
        lines += ["> **Random CLIP weights.** These results come from seeded random CLIP weights (the demo): "
                  "they test the pipeline and say nothing about the method.", ""]
    for table in tables:
        lines += [f"## Table {table.number}: {table.title}", "",
                  f"Each experiment re-runs {table.reruns}. Queue it: `tg-dfer ablate {table.number}`.", ""]
        header = [*table.columns, "UAR", "WAR", "paper UAR", "paper WAR", "experiment"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in filled[table.number]:
            where = (f"`{row.run.name}`" + (" (baseline)" if row.run.is_baseline else "")) if row.run else "—"
            cells = [*row.setting.cells, _score(row.metrics, "uar"), _score(row.metrics, "war"),
                     _paper(row.setting, 0), _paper(row.setting, 1), where]
            lines.append("| " + " | ".join(cells) + " |")
        if table.number in figures:
            lines += ["", f"![Table {table.number}]({figures[table.number]})"]
        lines.append("")
    return "\n".join(lines)


def plot_table(table: Table, rows: list[Row], path: str) -> bool:
    """A figure for the tables that read better as one (5: UAR per window/stride; 6: UAR over k).

    Returns False (and writes nothing) for other tables or when no setting has a result.
    """
    done = [row for row in rows if row.metrics and row.metrics.get("uar") is not None]
    if table.number not in (5, 6) or not done:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 3.4), dpi=120)
    if table.number == 5:
        labels = [f"w{row.setting.cells[0]} s{row.setting.cells[1]}" for row in done]
        axis.bar(labels, [row.metrics["uar"] for row in done],
                 yerr=[row.metrics.get("uar_std", 0) for row in done], color="#4c72b0", capsize=3)
        axis.set_xlabel("window w, stride s")
    else:
        for mode, colour in (("highest", "#c44e52"), ("lowest", "#4c72b0")):
            points = sorted((int(row.setting.cells[1]), row.metrics["uar"]) for row in done
                            if row.setting.cells[0] == mode)
            if points:
                axis.plot(*zip(*points), marker="o", color=colour, label=f"{mode} influence")
        everything = [row for row in done if row.setting.cells[0] == "all"]
        if everything:
            axis.axhline(everything[0].metrics["uar"], color="grey", linestyle="--", label="all frames")
        axis.set_xscale("log", base=2)
        ks = sorted({int(row.setting.cells[1]) for row in done if row.setting.cells[0] != "all"})
        axis.set_xticks(ks, [str(k) for k in ks])
        axis.minorticks_off()
        axis.set_xlabel("frames kept per clip (k)")
        axis.legend(frameon=False, fontsize=8)
    axis.set_ylabel("UAR (%)")
    axis.set_title(f"Table {table.number}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True
