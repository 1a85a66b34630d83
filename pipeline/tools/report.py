"""``tg-dfer report``: the baseline and its ablation experiments as the paper's Tables 1 to 6 -> report/<dataset>/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import click

from pipeline.settings.ablate import table4_stride
from pipeline.tools.ablations import Table, build_tables
from pipeline.tools.experiments import Row, Run, collect_runs, fill_table
from pipeline.tools.git_dvc import run_tool
from tg_dfer.io.atomic import atomic_path, write_text_atomic
from tg_dfer.paper import MethodResult, class_names, method, sota

# Table 1's comparison rows, as the issue of record asks: TG-DFER, the CLIP-based and the MIL-based baselines.
TABLE1_METHODS = ("TG-DFER", "DFER-CLIP", "M3DFEL")
PAPER_DATASETS = {"dfew": 1, "ferv39k": 2}  # dataset adapter -> its comparison table


def _mean(metrics: dict[str, Any] | None, key: str) -> float | None:
    return None if not metrics else metrics.get(key)


def _score(metrics: dict[str, Any] | None, key: str) -> str:
    value = _mean(metrics, key)
    if value is None:
        return "not run"
    std = metrics.get(f"{key}_std")
    return f"{value:.2f} ± {std:.2f}" if std else f"{value:.2f}"


def _difference(ours: float | None, paper: float | None) -> str:
    return "" if ours is None or paper is None else f"{ours - paper:+.2f}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _markdown_table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(cells) + " |" for cells in rows)]


def _weights_note(metrics: dict[str, Any] | None) -> str:
    if metrics and metrics.get("random_clip_weights"):
        return "seeded random CLIP weights"
    if metrics and metrics.get("demo_clip_weights"):
        return "the demo's own backbone (a small CLIP pretrained on rendered faces)"
    return ""


def comparison_section(number: int, baseline: Run) -> list[str]:
    """Table 1 (DFEW per class) or Table 2 (FERV39k): our baseline's numbers beside the published ones."""
    adapter = baseline.params.get("dataset", {}).get("adapter")
    ours = baseline.dataset_metrics
    dataset = "DFEW" if number == 1 else "FERV39k"
    lines = [f"## Table {number}: comparison with published methods on {dataset}", ""]
    if adapter == "demo":
        lines += [f"The layout of the paper's Table {number}, with the demo baseline in the first row. **The demo's "
                  f"numbers are not comparable with {dataset}'s**: other clips, other classes' difficulty, "
                  f"{_weights_note(ours) or 'other weights'}.", ""]
    names = class_names() if number == 1 else []
    published: list[MethodResult] = ([method(1, name) for name in TABLE1_METHODS] if number == 1 else sota(2))
    header = ["method", *names, "UAR", "WAR"]
    ours_label = f"ours (`{baseline.name}`, {baseline.params['dataset']['name']})"
    ours_cells = [ours_label, *(_number((ours or {}).get("per_class", {}).get(name)) for name in names),
                  _score(ours, "uar"), _score(ours, "war")]
    rows = [ours_cells] + [[result.method + (" (paper)" if result.method == "TG-DFER" else ""),
                            *(_number(result.per_class.get(name)) for name in names),
                            _number(result.published.uar), _number(result.published.war)] for result in published]
    tg = method(number, "TG-DFER")
    rows.append(["ours − TG-DFER", *(_difference((ours or {}).get("per_class", {}).get(name), tg.per_class.get(name))
                                     for name in names),
                 _difference(_mean(ours, "uar"), tg.published.uar), _difference(_mean(ours, "war"), tg.published.war)])
    return lines + _markdown_table(header, rows) + [""]


def ablation_section(table: Table, rows: list[Row], baseline: Run, figure: str | None) -> list[str]:
    """One ablation table as the paper lays it out, with our numbers, the published ones and ours − paper."""
    lines = [f"## Table {table.number}: {table.title}", "",
             f"Each experiment re-runs {table.reruns}; queue them with `tg-dfer ablate {table.number}`."
             + (f" {table.note}" if table.note else ""), ""]
    letters = any(row.setting.letter for row in rows)
    header = (["setting"] if letters else []) + [*table.columns, "UAR", "WAR", "paper UAR", "paper WAR",
                                                 "Δ UAR", "Δ WAR", "experiment"]
    body = []
    for row in rows:
        where = (f"`{row.run.name}`" + (" (baseline)" if row.run.is_baseline else "")) if row.run else "not run"
        paper = row.setting.paper
        body.append(([row.setting.letter or ""] if letters else []) + [
            *row.setting.cells, _score(row.metrics, "uar"), _score(row.metrics, "war"), _number(paper.uar),
            _number(paper.war), _difference(_mean(row.metrics, "uar"), paper.uar),
            _difference(_mean(row.metrics, "war"), paper.war), where])
    lines += _markdown_table(header, body)
    if table.number == 6:
        every = baseline.dataset_metrics
        tg = method(1, "TG-DFER").published
        lines += ["", f"All frames (the baseline `{baseline.name}`): UAR {_score(every, 'uar')}, WAR "
                      f"{_score(every, 'war')}; the paper's all-frame result (Table 1): UAR {tg.uar:.2f}, WAR {tg.war:.2f}."]
    if figure:
        lines += ["", f"![Table {table.number}]({figure})"]
    return lines + [""]


def render_markdown(tables: list[Table], filled: dict[int, list[Row]], baseline: Run,
                    figures: dict[int, str] | None = None, comparisons: Iterable[int] = ()) -> str:
    """The report: Tables 1-2 where the dataset is one of the paper's (or the demo), then each ablation table."""
    figures = figures or {}
    dataset = baseline.params.get("dataset", {}).get("name", "?")
    folds = ", ".join(map(str, baseline.params.get("train", {}).get("folds", [])))
    lines = [f"# The paper's tables on `{dataset}` (baseline {baseline.name}, {baseline.rev[:7]})", "",
             f"UAR and WAR in percent: mean ± sample standard deviation over the trained folds ({folds}), "
             "best-on-validation weights unless `evaluate.weights` says otherwise. \"paper\": the published "
             "numbers (Jung, Kong, Lee, arXiv 2511.10958v1; DFEW 5-fold means except Table 2, FERV39k), from "
             "`tg_dfer/paper_tables.json`. Δ = ours − paper. \"not run\": no experiment with exactly that "
             "setting on top of the baseline.", ""]
    adapter = baseline.params.get("dataset", {}).get("adapter")
    if adapter not in PAPER_DATASETS:
        lines += [f"> **Not comparable.** `{dataset}` is not DFEW (the dataset of the paper's Tables 1 and 3-6) "
                  "or FERV39k (Table 2): the published columns show the paper's layout and numbers, not a "
                  "target for these results." + (f" These results come from {_weights_note(baseline.dataset_metrics)}."
                                                  if _weights_note(baseline.dataset_metrics) else ""), ""]
    for number in comparisons:
        lines += comparison_section(number, baseline)
    for table in tables:
        lines += ablation_section(table, filled[table.number], baseline, figures.get(table.number))
    return "\n".join(lines)


def comparison_tables(baseline: Run) -> list[int]:
    """Table 1 for DFEW, Table 2 for FERV39k; both layouts for the demo; none for other datasets."""
    adapter = baseline.params.get("dataset", {}).get("adapter")
    if adapter == "demo":
        return [1, 2]
    return [PAPER_DATASETS[adapter]] if adapter in PAPER_DATASETS else []


def plot_table(table: Table, rows: list[Row], baseline: Run, path: str) -> None:
    """UAR over the setting the table varies most (x), one line per value of the other setting;
    ours solid, the paper's dashed in the same colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_values = list(dict.fromkeys(setting.cells[table.plot.x] for setting in table.settings))
    series = list(dict.fromkeys(setting.cells[table.plot.series] for setting in table.settings))
    figure, axis = plt.subplots(figsize=(5.8, 3.6), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, name in enumerate(series):
        members = [row for row in rows if row.setting.cells[table.plot.series] == name]
        colour = colours[index % len(colours)]
        paper = [(x_values.index(row.setting.cells[table.plot.x]), row.setting.paper.uar) for row in members]
        axis.plot(*zip(*paper), linestyle="--", marker="o", markerfacecolor="none", color=colour, alpha=0.6)
        ours = [(x_values.index(row.setting.cells[table.plot.x]), row.metrics["uar"]) for row in members
                if row.metrics and row.metrics.get("uar") is not None]
        axis.plot(*(zip(*ours) if ours else ([], [])), linestyle="-", marker="o", color=colour,
                  label=f"{table.columns[table.plot.series]} {name}")
    if table.number == 6 and baseline.dataset_metrics and baseline.dataset_metrics.get("uar") is not None:
        axis.axhline(baseline.dataset_metrics["uar"], color="grey", linestyle="-", linewidth=0.8, label="all frames")
    axis.set_xticks(range(len(x_values)), x_values)
    axis.set_xlabel(table.columns[table.plot.x])
    axis.set_ylabel("UAR (%)")
    axis.set_title(f"Table {table.number}: ours (solid) and the paper (dashed)", fontsize=9)
    axis.legend(frameon=False, fontsize=7)
    figure.tight_layout()
    with atomic_path(path) as temporary:  # the temporary name has no suffix to infer the format from
        figure.savefig(temporary, format=Path(path).suffix.lstrip(".") or plt.rcParams["savefig.format"])
    plt.close(figure)


@click.command("report")
@click.option("--table", "tables", multiple=True, type=click.Choice(["3", "4", "5", "6"]),
              help="Ablation tables to render (repeatable); default all. Tables 1-2 follow the dataset.")
@click.option("--exp-json", type=click.Path(exists=True, dir_okay=False),
              help="Saved output of `dvc exp show --json` to read instead of running it.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Output folder; default report/<dataset.name of the baseline>.")
def report(tables: tuple[str, ...], exp_json: str | None, out: str | None) -> None:
    """Write the paper's tables with our numbers beside the published ones -> report/<dataset>/ablations.md.

    Reads `dvc exp show --json` (the last commit and its experiments). Table 1 (per-class recall,
    UAR, WAR beside TG-DFER, DFER-CLIP and M3DFEL) comes from the baseline when it is a DFEW run,
    Table 2 when it is FERV39k; for the demo both are laid out and marked not comparable. Each
    row of Tables 3-6 is filled from the experiment whose params are exactly the commit's params
    plus the row's overrides (the commit itself for the row it already is), with the published
    UAR/WAR and ours − paper; missing rows say "not run". Writes OUT/ablations.md and one figure per
    ablation table (OUT/table<N>.png). Queue the experiments with `tg-dfer ablate`.
    """
    if exp_json:
        try:
            exp_show = json.loads(Path(exp_json).read_text())
        except json.JSONDecodeError as error:
            raise click.ClickException(f"{exp_json}: not valid JSON ({error})") from error
    else:
        exp_show = json.loads(run_tool("dvc", "exp", "show", "--json").stdout)
    try:
        groups = collect_runs(exp_show)
    except ValueError as error:
        raise click.ClickException(f"{exp_json or 'dvc exp show --json'}: {error}") from error
    if not groups:
        raise click.ClickException("no committed baseline with params found: commit the reproduced pipeline first")
    baseline, experiments = groups[0]
    try:
        all_tables = build_tables(table4_stride(baseline.params))
    except ValueError as error:
        raise click.ClickException(f"params: ablate.table4_stride: {error}") from error
    chosen = [all_tables[int(number)] for number in tables] if tables else list(all_tables.values())
    folder = Path(out or Path("report") / baseline.params["dataset"]["name"])
    folder.mkdir(parents=True, exist_ok=True)
    filled, figures = {}, {}
    for table in chosen:
        filled[table.number] = fill_table(table, baseline, experiments)
        figure = folder / f"table{table.number}.png"
        plot_table(table, filled[table.number], baseline, str(figure))
        figures[table.number] = figure.name
    text = render_markdown(chosen, filled, baseline, figures, comparison_tables(baseline))
    write_text_atomic(folder / "ablations.md", text + "\n")
    done = sum(row.metrics is not None for rows in filled.values() for row in rows)
    total = sum(len(rows) for rows in filled.values())
    click.echo(f"report: {done} of {total} ablation rows have results -> {folder / 'ablations.md'}")
