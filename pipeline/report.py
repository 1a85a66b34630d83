"""``tg-dfer report``: the ablation experiments as the paper's tables -> report/<dataset>/."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.dvc_tools import run_tool
from tg_dfer.ablations import TABLES, collect_runs, fill_table, plot_table, render_markdown


@click.command("report")
@click.option("--table", "tables", multiple=True, type=click.Choice([str(number) for number in TABLES]),
              help="Tables to render (repeatable); default all.")
@click.option("--exp-json", type=click.Path(exists=True, dir_okay=False),
              help="Saved output of `dvc exp show --json` to read instead of running it.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Output folder; default report/<dataset.name of the baseline>.")
def report(tables: tuple[str, ...], exp_json: str | None, out: str | None) -> None:
    """Write the ablation tables (setting, UAR, WAR, the paper's numbers) as Markdown, with plots.

    Reads `dvc exp show --json` (the last commit and its experiments): each table setting is
    filled from the experiment whose params are exactly the commit's params plus the setting's
    overrides (the commit itself for the setting it already is); missing settings show
    "not run". Writes OUT/ablations.md and OUT/table5.png, OUT/table6.png where they have
    results. Queue the experiments with `tg-dfer ablate`.
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
    chosen = [TABLES[int(number)] for number in tables] if tables else list(TABLES.values())
    folder = Path(out or Path("report") / baseline.params["dataset"]["name"])
    folder.mkdir(parents=True, exist_ok=True)
    filled, figures = {}, {}
    for table in chosen:
        filled[table.number] = fill_table(table, baseline, experiments)
        figure = folder / f"table{table.number}.png"
        if plot_table(table, filled[table.number], str(figure)):
            figures[table.number] = figure.name
    (folder / "ablations.md").write_text(render_markdown(chosen, filled, baseline, figures) + "\n")
    done = sum(row.metrics is not None for rows in filled.values() for row in rows)
    total = sum(len(rows) for rows in filled.values())
    click.echo(f"report: {done} of {total} settings have results -> {folder / 'ablations.md'}")
