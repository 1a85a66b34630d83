"""``tg-dfer check-metrics``: do the reproduced metrics equal the committed ones?"""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.config import DEFAULT_PARAMS, load_params
from pipeline.paths import dataset_paths
from pipeline.tools.git_dvc import run_tool
from tg_dfer.compare import compare_numbers

DEFAULT_TOLERANCE = 0.5


@click.command("check-metrics")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--against", default="HEAD", show_default=True,
              help="Git revision holding the reference versions of the files.")
@click.option("--reference", "reference_dir", type=click.Path(exists=True, file_okay=False),
              help="Folder with reference files of the same names instead of a git revision.")
@click.option("--tolerance", default=DEFAULT_TOLERANCE, show_default=True, type=click.FloatRange(min=0),
              help="Largest allowed absolute difference of any number (metrics are in percent).")
@click.option("--faces-tolerance", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="The same for faces.json (counts and the fraction of frames with a face).")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
def check_metrics(files: tuple[str, ...], against: str, reference_dir: str | None, tolerance: float,
                  faces_tolerance: float, params_path: str) -> None:
    """Compare metrics files in the workspace with their committed versions; exit 1 on a difference.

    FILES default to metrics/<dataset>/metrics.json and faces.json (the latter compared with
    --faces-tolerance, exact by default: no training is involved there). Every number is
    compared (UAR, WAR, their standard deviations, per-class recall, every fold, the extras,
    face-detection counts), and so is every other value: a changed setting or a missing key is
    a failure too. The headline numbers are printed with the committed value, the reproduced
    value and the difference.

    CI runs `dvc repro && tg-dfer check-metrics` on a clean clone: a change to code or params
    that moves the demo's results fails until the new metrics are committed. The tolerance
    (default 0.5 percentage points) absorbs float differences between CPUs of the same class;
    on the same machine the demo reproduces exactly.
    """
    if files:
        checks = [(name, tolerance) for name in files]
    else:
        faces = dataset_paths(load_params(params_path)).faces_summary
        checks = [(str(faces.parent / "metrics.json"), tolerance), (str(faces), faces_tolerance)]
    failures = 0
    for name, allowed in checks:
        current = _load(Path(name).read_text() if Path(name).is_file() else None, name)
        if reference_dir:
            reference_path = Path(reference_dir) / Path(name).name
            reference = _load(reference_path.read_text() if reference_path.is_file() else None, str(reference_path))
            origin = str(reference_path)
        else:
            shown = run_tool("git", "show", f"{against}:{Path(name).as_posix()}", check=False)
            reference = _load(shown.stdout if shown.returncode == 0 else None, f"{against}:{name}")
            origin = f"{against}:{name}"
        rows, problems = compare_numbers(reference, current, allowed)
        click.echo(f"{name} (reference {origin}, tolerance {allowed:g}):")
        click.echo(f"  {'value':<24} {'committed':>12} {'reproduced':>12} {'difference':>11}")
        for key, expected, actual, difference in rows:
            click.echo(f"  {key:<24} {expected:>12.4f} {actual:>12.4f} {difference:>+11.4f}")
        for problem in problems:
            click.echo(f"  DIFFERS: {problem}")
        click.echo(f"  {'ok' if not problems else f'{len(problems)} difference(s)'}")
        failures += bool(problems)
    if failures:
        raise SystemExit(1)


def _load(text: str | None, where: str) -> dict:
    if text is None:
        raise click.ClickException(f"{where}: not found (run `dvc repro` first; is the file committed?)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise click.ClickException(f"{where}: not valid JSON ({error})") from error
