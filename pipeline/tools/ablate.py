"""``tg-dfer ablate``: queue the experiments of one of the paper's ablation tables."""

from __future__ import annotations

import os
import time

import click

from pipeline.settings.params import DEFAULT_PARAMS, load_params
from pipeline.settings.ablate import table4_stride
from pipeline.tools.ablations import build_tables, changed_overrides, override_arguments
from pipeline.tools.git_dvc import run_tool


@click.command("ablate")
@click.argument("tables", nargs=-1, required=True, type=click.Choice(["3", "4", "5", "6"]))
@click.option("--only", "only", multiple=True, metavar="NAME",
              help="Queue only these experiments of the tables (repeatable); see --dry-run for the names.")
@click.option("--start/--no-start", default=True, show_default=True,
              help="Start the queue (dvc queue start) after queueing.")
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(min=1),
              help="Queue workers running experiments in parallel (dvc queue start -j).")
@click.option("--wait", is_flag=True, help="Block until the queue is empty; fail if an experiment failed.")
@click.option("--dry-run", is_flag=True, help="Print the dvc commands instead of running them.")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
def ablate(tables: tuple[str, ...], only: tuple[str, ...], start: bool, jobs: int, wait: bool, dry_run: bool,
           params_path: str) -> None:
    """Queue the experiments of the paper's ablation TABLES (3, 4, 5, 6) as DVC experiments.

    Each row of a table, in the paper's order, becomes `dvc exp run --queue -n <name> -S
    key=value ...` on top of the last commit; the name holds the paper's row letter (t3e-...,
    t5h-...). The row equal to the committed params (Table 3 e, Table 4 (1, 4), Table 5 h) is not
    queued: the baseline is its result. Table 3: fine/coarse depths; Table 4: stride and window
    (how its X stride is read: ablate.table4_stride in params.yaml, docs/ablations.md); Table 5:
    text prompt x learnable context x visual prompt; Table 6: the k = 1, 2, 3 highest/lowest
    influence frames. Tables 3-5 re-run train and evaluate, Table 6 only evaluate; none re-runs
    faces or embed, provided the pipeline was reproduced and dvc.lock committed first:

    \b
        dvc repro && git add dvc.lock metrics && git commit -m "features cached"
        tg-dfer ablate 3 -j 2        # queue Table 3 and start two workers
        dvc queue status             # follow; `dvc queue logs <name>` for one experiment
        tg-dfer report               # -> report/<dataset>/ablations.md

    An experiment name that already exists for this commit is skipped (dvc exp remove it to
    run it again). Each worker runs a whole experiment; on a single GPU, -j 2 or 3 keeps it busy
    with the small training runs. With -j N > 1 each worker gets OMP_NUM_THREADS = cores / N
    (unless OMP_NUM_THREADS is set); on a CPU with few cores use -j 1.
    """
    params = load_params(params_path)
    try:
        grids = build_tables(table4_stride(params))
    except ValueError as error:
        raise click.ClickException(f"params: ablate.table4_stride: {error}") from error
    settings = [setting for number in tables for setting in grids[int(number)].settings]
    unknown = sorted(set(only) - {setting.name for setting in settings})
    if unknown:
        raise click.ClickException(f"--only: no experiment {', '.join(unknown)} in table(s) {', '.join(tables)}")
    if only:
        settings = [setting for setting in settings if setting.name in only]
    if not dry_run:
        _check_baseline()
    queued: list[str] = []
    for setting in settings:
        overrides = changed_overrides(params, setting)
        if not overrides:
            click.echo(f"ablate: {setting.name}: the committed params already are this row (the baseline is its result)")
            continue
        command = ["exp", "run", "--queue", "-n", setting.name, *override_arguments(overrides)]
        if dry_run:
            click.echo("dvc " + " ".join(command))
            continue
        done = run_tool("dvc", *command, check=False)
        if done.returncode == 0:
            queued.append(setting.name)
            click.echo(f"ablate: queued {setting.name}")
        elif "conflicts with existing experiment" in done.stderr + done.stdout:
            click.echo(f"ablate: {setting.name} exists already for this commit, skipped "
                       f"(`dvc exp remove {setting.name}` to run it again)")
        else:
            raise click.ClickException(f"queueing {setting.name} failed:\n{(done.stderr or done.stdout).strip()}")
    threads = worker_threads(jobs)
    if dry_run:
        click.echo("".join(f"{key}={value} " for key, value in threads.items()) + f"dvc queue start -j {jobs}")
        return
    if queued and start:
        run_tool("dvc", "queue", "start", "-j", str(jobs), env=threads)
        click.echo(f"ablate: {len(queued)} experiment(s) queued, {jobs} worker(s) started; "
                   "`dvc queue status` to follow, then `tg-dfer report`")
        if threads:
            click.echo(f"ablate: each worker computes on OMP_NUM_THREADS={threads['OMP_NUM_THREADS']} CPU threads "
                       f"(its share of {os.cpu_count()} cores; set OMP_NUM_THREADS yourself to choose)")
    if wait:
        _wait_for_queue(queued)


def worker_threads(jobs: int) -> dict[str, str]:
    """The environment for ``jobs`` queue workers: each gets its share of the cores.

    Workers inherit the environment of ``dvc queue start``, and torch otherwise starts one thread
    per core in every worker: N workers on the same cores then slow each other down more than
    they gain. An OMP_NUM_THREADS the user set is kept.
    """
    if jobs == 1 or "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))}


def _check_baseline() -> None:
    """Queued experiments start from the last commit: without its dvc.lock they rebuild the cache."""
    if run_tool("git", "rev-parse", "--verify", "-q", "HEAD", check=False).returncode != 0:
        raise click.ClickException("ablate needs a git repository with a commit (DVC experiments start from one)")
    changed = run_tool("git", "status", "--porcelain", "--", "dvc.lock", "params.yaml", "dvc.yaml").stdout.strip()
    if changed:
        raise click.ClickException(
            "dvc.lock, params.yaml or dvc.yaml differ from the last commit; run `dvc repro`, then commit them: "
            "queued experiments start from the commit, and without its dvc.lock they would rebuild faces and "
            f"embed.\n{changed}")


def _wait_for_queue(names: list[str], poll_seconds: float = 3.0) -> None:
    while True:
        status = run_tool("dvc", "queue", "status").stdout
        rows = [line.split() for line in status.splitlines()]
        states = [row[-1] for row in rows if len(row) >= 4 and row[-1] in ("Queued", "Running", "Success", "Failed")]
        if not any(state in ("Queued", "Running") for state in states):
            break
        time.sleep(poll_seconds)
    failed = [row[1] for row in rows if len(row) >= 4 and row[-1] == "Failed" and row[1] in names]
    if failed:
        raise click.ClickException(f"experiment(s) failed: {', '.join(failed)} (`dvc queue logs NAME` says why)")
    click.echo("ablate: the queue is empty")
