"""The ``prepare`` stage: a dataset as it ships -> data/<dataset>/manifest.csv + classes.json."""

from __future__ import annotations

from collections import Counter

import click

from pipeline.params import DEFAULT_PARAMS, dataset_paths, load_params, require, section
from tg_dfer.datasets import ADAPTERS, build_manifest
from tg_dfer.datasets.manifest import ManifestError, write_manifest
from tg_dfer.prompt_sets import PromptSetError, load_prompt_set


@click.command("prepare")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
def prepare(params_path: str) -> None:
    """List the clips of a dataset: writes data/<dataset.name>/manifest.csv and classes.json.

    manifest.csv has the columns clip_id,path,label,test_fold (path relative to dataset.root;
    label an id into classes.json, -1 unknown; test_fold k = test clip of fold k, 0 = training only).

    Params: dataset.name, dataset.adapter (demo | csv), dataset.root, dataset.labels (csv
    adapter: the label file, default <root>/labels.csv), and text.prompt_set, whose class list
    fixes the label ids.
    """
    params = load_params(params_path)
    values = section(params, "dataset", params_path)
    adapter = require(values, "adapter", str, "dataset", choices=tuple(ADAPTERS))
    paths = dataset_paths(params)
    try:
        classes = load_prompt_set(require(section(params, "text"), "prompt_set", str, "text"))
        manifest = build_manifest(adapter, paths["root"], classes, values)
        write_manifest(paths["folder"], manifest.rows, manifest.class_names)
    except (ManifestError, PromptSetError) as error:
        raise click.ClickException(str(error)) from error
    per_class = Counter(manifest.labels())
    click.echo(f"prepare: {len(manifest.rows)} clips -> {paths['manifest']}")
    for label, name in enumerate(manifest.class_names):
        click.echo(f"  {name:<16} {per_class.get(label, 0):>6}")
    if per_class.get(-1):
        click.echo(f"  {'(unlabelled)':<16} {per_class[-1]:>6}")
    click.echo(f"  test folds: {manifest.folds or 'none (all clips are training-only)'}")
