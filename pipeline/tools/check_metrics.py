"""``tg-dfer check-metrics``: do the reproduced metrics equal the committed ones, or fall in their band?"""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.settings.dataset import dataset_paths
from pipeline.settings.params import DEFAULT_PARAMS, load_params
from pipeline.tools.git_dvc import run_tool
from tg_dfer.compare import band_check, compare_numbers

DEFAULT_BAND_WIDTH = 3.0
SEED_STUDY = "seeds.json"  # benchmarks/seed_study.py writes it beside the metrics.json it spreads


@click.command("check-metrics")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--against", default="HEAD", show_default=True,
              help="Git revision holding the reference versions of the files.")
@click.option("--reference", "reference_dir", type=click.Path(exists=True, file_okay=False),
              help="Folder with reference files of the same names (and seeds.json) instead of a git revision.")
@click.option("--mode", type=click.Choice(["auto", "exact", "band"]), default="auto", show_default=True,
              help="exact: every value equal; band: the headline results within the seed study's spread; "
                   "auto: exact when both runs used the reference CPU profile, else band.")
@click.option("--band-width", default=DEFAULT_BAND_WIDTH, show_default=True, type=click.FloatRange(min=0),
              help="band: how many of the seed study's standard deviations a result may lie from its mean.")
@click.option("--faces-tolerance", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Largest allowed difference of a number in faces.json (counts, the fraction of frames with a face).")
@click.option("--clean-tree", is_flag=True,
              help="Also fail when `git status --porcelain` lists anything (CI: `dvc repro` must leave the tree clean).")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
def check_metrics(files: tuple[str, ...], against: str, reference_dir: str | None, mode: str, band_width: float,
                  faces_tolerance: float, clean_tree: bool, params_path: str) -> None:
    """Compare metrics files in the workspace with their committed versions; exit 1 on a difference.

    FILES default to metrics/<dataset>/metrics.json and faces.json. A metrics.json is checked in
    one of two modes, and the output says which and why:

    \b
    exact  when the reproduced run and the committed one both record the reference CPU profile
           (metrics.json cpu_profile; tg_dfer/cpu_profile.py): every value must be equal, every
           fold, class and extra, since that profile gives the same bytes on any x86-64 CPU with
           AVX2 and any core count.
    band   otherwise (a GPU, a CPU without AVX2, TG_DFER_CPU_PROFILE=native, a mixed run): UAR
           and WAR (in percentage points) and the apex AUROC (on 0..1) must each lie within
           --band-width standard deviations of the mean of the committed seed study
           (metrics/<dataset>/seeds.json, benchmarks/seed_study.py), and every value that is not
           a result (settings, clip counts, the CLIP weights' hash) must still be equal.

    faces.json has no training behind it: it is compared with --faces-tolerance (exact by
    default). CI runs `dvc repro && tg-dfer check-metrics --clean-tree` on a clean clone: a change
    that moves the demo's results fails until the new metrics are committed with it.
    """
    if files:
        checks = [(name, Path(name).name == "faces.json") for name in files]
    else:
        paths = dataset_paths(load_params(params_path))
        checks = [(str(paths.metrics_file), False), (str(paths.faces_summary), True)]
    failures = 0
    for name, is_faces in checks:
        current = _load(Path(name).read_text() if Path(name).is_file() else None, name)
        reference, origin = _reference(name, against, reference_dir)
        if is_faces:
            failures += _exact(name, origin, reference, current, faces_tolerance, "faces.json: no training behind it")
            continue
        chosen, why = _mode(mode, reference, current)
        if chosen == "exact":
            failures += _exact(name, origin, reference, current, 0.0, why)
            continue
        seeds_name = str(Path(name).with_name(SEED_STUDY))
        seeds, seeds_origin = _reference(seeds_name, against, reference_dir)
        failures += _band(name, origin, reference, current, seeds, seeds_origin, band_width, why)
    if clean_tree:
        listed = run_tool("git", "status", "--porcelain").stdout.splitlines()
        click.echo(f"git status --porcelain: {'clean' if not listed else f'{len(listed)} change(s)'}")
        for line in listed:
            click.echo(f"  DIFFERS: {line}")
        failures += bool(listed)
    if failures:
        raise SystemExit(1)


def _mode(requested: str, reference: dict, current: dict) -> tuple[str, str]:
    """The mode to check a metrics.json in, and why."""
    if requested != "auto":
        return requested, f"--mode {requested}"
    now, then = current.get("cpu_profile", {"name": "unrecorded"}), reference.get("cpu_profile", {"name": "unrecorded"})
    if now.get("name") != "reference":
        detail = now.get("why") or now.get("device") or ""
        return "band", f"the reproduced run's CPU profile is {now.get('name')}" + (f" ({detail})" if detail else "")
    if then != now:
        return "band", f"the committed run's CPU profile is {then.get('name')}, not this run's reference profile"
    return "exact", "both runs used the reference CPU profile: the same bytes on any AVX2 CPU"


def _exact(name: str, origin: str, reference: dict, current: dict, tolerance: float, why: str) -> int:
    rows, problems = compare_numbers(reference, current, tolerance)
    click.echo(f"{name} (reference {origin}): exact{f' within {tolerance:g}' if tolerance else ''}: {why}")
    click.echo(f"  {'value':<24} {'committed':>12} {'reproduced':>12} {'difference':>11}")
    for key, expected, actual, difference in rows:
        click.echo(f"  {key:<24} {expected:>12.4f} {actual:>12.4f} {difference:>+11.4f}")
    return _verdict(problems)


def _band(name: str, origin: str, reference: dict, current: dict, seeds: dict, seeds_origin: str, width: float,
          why: str) -> int:
    rows, problems = band_check(seeds, reference, current, width)
    click.echo(f"{name} (reference {origin}): band of {width:g} std over {len(seeds.get('seeds', {}))} seeds "
               f"({seeds_origin}): {why}")
    click.echo(f"  {'result':<12} {'unit':<7} {'seed mean':>10} {'std':>8} {'band':>21} {'reproduced':>11}")
    for metric, unit, mean, std, low, high, value in rows:
        click.echo(f"  {metric:<12} {unit:<7} {mean:>10.4f} {std:>8.4f} {f'{low:.4f}..{high:.4f}':>21} {value:>11.4f}")
    click.echo("  (per fold and per class results are not compared in this mode)")
    return _verdict(problems)


def _verdict(problems: list[str]) -> int:
    for problem in problems:
        click.echo(f"  DIFFERS: {problem}")
    click.echo(f"  {'ok' if not problems else f'{len(problems)} difference(s)'}")
    return int(bool(problems))


def _reference(name: str, against: str, reference_dir: str | None) -> tuple[dict, str]:
    if reference_dir:
        path = Path(reference_dir) / Path(name).name
        return _load(path.read_text() if path.is_file() else None, str(path)), str(path)
    shown = run_tool("git", "show", f"{against}:{Path(name).as_posix()}", check=False)
    return _load(shown.stdout if shown.returncode == 0 else None, f"{against}:{name}"), f"{against}:{name}"


def _load(text: str | None, where: str) -> dict:
    if text is None:
        raise click.ClickException(f"{where}: not found (run `dvc repro` first, or the seed study for a band; "
                                   "is the file committed?)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise click.ClickException(f"{where}: not valid JSON ({error})") from error
