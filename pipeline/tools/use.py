"""``tg-dfer use``: point params.yaml at a dataset and a profile in one command.

It writes the dataset section, the prompt set, the folds and the face detector of the dataset
(pipeline/profiles/datasets.yaml) and every setting of the profile (pipeline/profiles/<profile>.yaml)
into params.yaml, keeping its comments and every other setting, and prints what changed and why.
The stages then read params.yaml as always: `dvc repro evaluate` runs the dataset, and
`dvc params diff` shows what the switch changed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import click
from ruamel.yaml import YAML

from pipeline.settings.dataset import dataset_paths
from pipeline.settings.params import DEFAULT_PARAMS, load_params
from pipeline.settings.profiles import PROFILES, datasets, describe_profile, profile_values, same_setting
from pipeline.settings.train import train_settings
from tg_dfer.io.atomic import write_text_atomic


def recipe(dataset: str, root: str | None, variant: str | None, profile: str | None, detector: str | None,
           options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The profile chosen and every params key -> value that ``tg-dfer use`` writes."""
    known = datasets()
    if dataset not in known:
        raise click.ClickException(f"unknown dataset {dataset!r}: choose one of {', '.join(known)}")
    entry = known[dataset]
    variants = entry["variants"]
    variant = variant or next(iter(variants))
    if variant not in variants:
        raise click.ClickException(f"{dataset} has no variant {variant!r}: choose one of {', '.join(variants)}")
    if root is None:
        if "root" not in entry:
            raise click.ClickException(f"--root is required for {dataset}: the folder you unpacked it into "
                                       "(docs/datasets.md shows the layout)")
        root = entry["root"]
    elif not Path(root).is_dir():
        raise click.ClickException(f"--root {root}: no such folder (the unpacked {dataset}; docs/datasets.md)")
    profile = profile or entry["profile"]
    values = {"dataset.name": options.get("name") or dataset, "dataset.root": str(root), "dataset.variant": variant,
              "dataset.labels": options.get("labels") or "", "dataset.splits": options.get("splits") or "",
              "dataset.clips": options.get("clips") or "", **entry["params"],
              "faces.detector": detector or variants[variant], **profile_values(profile)}
    if options.get("prompt_set"):
        values["text.prompt_set"] = options["prompt_set"]
    if options.get("folds"):
        try:
            values["train.folds"] = [int(fold) for fold in options["folds"].split(",")]
        except ValueError:
            raise click.ClickException(f"--folds {options['folds']}: expected fold numbers separated by commas, "
                                       "such as 1,2,3") from None
    return profile, values


def _yaml() -> YAML:
    yaml = YAML()  # round trip: comments, order and flow-style lists stay as they are
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def write_params(path: Path, values: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Set ``values`` (dotted keys) in the params file at ``path``; returns key -> (old, new) of the changes."""
    yaml = _yaml()
    document = yaml.load(path.read_text(encoding="utf-8"))
    changed = {}
    for key, value in values.items():
        *sections, name = key.split(".")
        target = document
        for section in sections:
            if section not in target:
                raise click.ClickException(f"{path}: section {'.'.join(sections)} is missing (a params.yaml of "
                                           "this repository has it)")
            target = target[section]
        old = target.get(name)
        if name not in target or not same_setting(old, value):
            if isinstance(value, list) and hasattr(old, "fa"):  # keep the list in the file's flow style
                old_list = list(old)
                old.clear()
                old.extend(value)
                changed[key] = (old_list, value)
                continue
            target[name] = value
            _keep_comment_column(target, name, old, value)
            changed[key] = (old, value)
    text = io.StringIO()
    yaml.dump(document, text)
    write_text_atomic(path, text.getvalue())
    return changed


def _scalar(value: Any) -> str:
    """How a scalar is written in params.yaml."""
    return "''" if value == "" else str(value).lower() if isinstance(value, bool) else str(value)


def _keep_comment_column(mapping, name: str, old: Any, new: Any) -> None:
    """A comment that a longer value pushed right (one space after it) goes back to the column of its
    neighbours' comments when the value gets shorter: a switch and its way back leave the file as it was."""
    token = mapping.ca.items.get(name, [None] * 3)[2]
    if token is None:
        return
    column = mapping.lc.key(name)[1]
    if token.column > column + len(f"{name}: {_scalar(old)}") + 1:
        return  # not pushed: it keeps its own column
    columns = [entry[2].column for key, entry in mapping.ca.items.items()
               if key != name and len(entry) > 2 and entry[2] is not None]
    home = max(set(columns), key=columns.count) if columns else token.column
    token.column = max(home, column + len(f"{name}: {_scalar(new)}") + 1)


@click.command("use")
@click.argument("dataset")
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="The unpacked dataset (required for dfew, ferv39k, mafw and csv).")
@click.option("--variant", default=None,
              help="frames (the distributed face crops: no detection) | original (the videos: faces detected). "
                   "Default: the dataset's first in pipeline/profiles/datasets.yaml.")
@click.option("--profile", type=click.Choice(PROFILES), default=None,
              help="paper (the paper's settings, each with its source) | demo (tuned on the demo). "
                   "Default: demo for the demo, paper for every other dataset.")
@click.option("--detector", type=click.Choice(["none", "opencv", "face_alignment"]), default=None,
              help="faces.detector instead of the variant's (face_alignment: S3FD, better on raw video; "
                   "its weights are fetched on first use).")
@click.option("--name", default=None, help="dataset.name: the data/, models/ and metrics/ folder (default DATASET).")
@click.option("--labels", default=None, help="csv: the label file (default <root>/labels.csv).")
@click.option("--splits", default=None, help="dfew, ferv39k, mafw: split-list folder under the root, if not the own layout.")
@click.option("--clips", default=None, help="dfew, ferv39k, mafw: clip folder under the root, if not the own layout.")
@click.option("--prompt-set", default=None, help="text.prompt_set instead of the dataset's (csv: your class list).")
@click.option("--folds", default=None, help="train.folds instead of the dataset's, comma-separated: --folds 1,2,3.")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file to edit.")
def use(dataset: str, root: str | None, variant: str | None, profile: str | None, detector: str | None,
        name: str | None, labels: str | None, splits: str | None, clips: str | None, prompt_set: str | None,
        folds: str | None, params_path: str) -> None:
    """Point params.yaml at DATASET (demo, dfew, ferv39k, mafw, csv) with a settings profile.

    \b
    tg-dfer use dfew --root /data/DFEW && dvc repro evaluate     # DFEW 5-fold, the paper's settings
    tg-dfer use dfew --root /data/DFEW --variant original        # from the videos (faces detected)
    tg-dfer use demo                                             # back to the committed demo

    Writes the dataset's section, prompt set, folds and detector and the profile's settings into
    params.yaml (comments kept), then prints each change with its old value, and the profile the
    file now runs. Nothing else in params.yaml changes; `git diff params.yaml` shows it all.
    """
    path = Path(params_path)
    load_params(path)  # a missing or broken file is reported before anything is written
    chosen, values = recipe(dataset, root, variant, profile, detector,
                            {"name": name, "labels": labels, "splits": splits, "clips": clips,
                             "prompt_set": prompt_set, "folds": folds})
    before = path.read_text(encoding="utf-8")
    changed = write_params(path, values)
    try:
        params = load_params(path)
        train_settings(params, str(path))  # the written file must still hold a valid run
        paths = dataset_paths(params)
    except click.ClickException:
        write_text_atomic(path, before)
        raise
    click.echo(f"{path}: {dataset} ({values['dataset.variant']}, faces.detector {values['faces.detector']}), "
               f"profile {chosen}; {len(changed)} setting(s) changed")
    width = max((len(key) for key in changed), default=0)
    for key, (old, new) in changed.items():
        click.echo(f"  {key:<{width}}  {old!r} -> {new!r}")
    click.echo(f"profile: {describe_profile(params)}")
    step = "dvc repro" if dataset == "demo" else \
        "dvc repro evaluate (`dvc repro prepare` alone first checks the dataset against its official protocol)"
    click.echo(f"outputs: data/{paths.name}/, models/{paths.name}/, metrics/{paths.name}/. Next: {step}")
