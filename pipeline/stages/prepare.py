"""The ``prepare`` stage: a dataset as it ships -> data/<dataset>/manifest.csv, classes.json and
prepare_report.json."""

from __future__ import annotations

from collections import Counter

import click

from pipeline.paths import uses_demo_backbone
from pipeline.settings.clip import backbone_spec
from pipeline.settings.dataset import adapter_options, dataset_paths
from pipeline.settings.dataset import adapter as dataset_adapter
from pipeline.settings.faces import face_settings
from pipeline.settings.params import DEFAULT_PARAMS, load_params
from pipeline.settings.profiles import describe_profile
from pipeline.settings.text import prompt_set
from tg_dfer.datasets.adapters import build_manifest
from tg_dfer.datasets.manifest import ManifestError, OptionError, write_manifest, write_report
from tg_dfer.datasets.protocols import PROTOCOLS, describe, protocol_check
from tg_dfer.datasets.splits import DEFAULT_VARIANT
from tg_dfer.prompt_sets import PromptSetError, load_prompt_set

SHOWN_MISSING = 10


@click.command("prepare")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
def prepare(params_path: str) -> None:
    """List the clips of a dataset: writes data/<dataset.name>/manifest.csv, classes.json and
    prepare_report.json.

    manifest.csv has the columns clip_id,path,label,test_fold (path relative to dataset.root;
    label an id into classes.json, -1 unknown; test_fold k = test clip of fold k, 0 = training only).
    prepare_report.json lists the files read and the clips a split file names but the data lacks
    (left out of the manifest; a summary is printed). For DFEW, FERV39k and MAFW it also compares
    the clips found with the official protocol's counts (all clips and each fold's test clips, as
    docs/datasets.md gives them) and says how far short a run would be; the variant, detector and
    backbone the params will use are printed before any hours of work.

    Params: dataset.name, dataset.adapter (demo | csv | dfew | ferv39k | mafw), dataset.root,
    dataset.labels (csv adapter: the label file, default <root>/labels.csv), dataset.variant
    (dfew, mafw: frames | original), dataset.splits and dataset.clips (dfew, ferv39k, mafw: split
    list and clip folders under the root, '' = the dataset's own layout, docs/datasets.md), and
    text.prompt_set, whose class list fixes the label ids.
    """
    params = load_params(params_path)
    adapter = dataset_adapter(params, params_path)
    paths = dataset_paths(params)
    try:
        classes = load_prompt_set(prompt_set(params, params_path))
        manifest = build_manifest(adapter, paths.root, classes, adapter_options(params, params_path))
        check = protocol_check(PROTOCOLS[adapter], manifest) if adapter in PROTOCOLS else None
        write_manifest(paths.folder, manifest.rows, manifest.class_names)
        write_report(paths.prepare_report, adapter, paths.root, manifest, check)
    except OptionError as error:
        raise click.ClickException(f"params: dataset.{error}") from error
    except (ManifestError, PromptSetError) as error:
        raise click.ClickException(str(error)) from error
    per_class = Counter(manifest.labels())
    click.echo(f"prepare: {len(manifest.rows)} clips -> {paths.manifest}")
    for label, name in enumerate(manifest.class_names):
        click.echo(f"  {name:<16} {per_class.get(label, 0):>6}")
    if per_class.get(-1):
        click.echo(f"  {'(unlabelled)':<16} {per_class[-1]:>6}")
    click.echo(f"  test folds: {manifest.folds or 'none (all clips are training-only)'}")
    if manifest.missing:
        shown = ", ".join(clip.clip_id for clip in manifest.missing[:SHOWN_MISSING])
        more = f" and {len(manifest.missing) - SHOWN_MISSING} more" if len(manifest.missing) > SHOWN_MISSING else ""
        click.echo(f"  missing: {len(manifest.missing)} clips named by the split files are not in the data and "
                   f"were left out ({shown}{more}); see {paths.prepare_report}")
    if check is not None:
        first, *rest = describe(check)
        click.echo(f"  protocol: {first}")
        for line in rest:
            click.echo(f"            {line}")
    click.echo(f"  next stages will use: {_settings_line(params, params_path, adapter)}")
    click.echo(f"  profile: {describe_profile(params)}")


def _settings_line(params: dict, params_path: str, adapter: str) -> str:
    """The variant, detector and backbone the params give the stages after this one."""
    variant = adapter_options(params, params_path).get("variant") or DEFAULT_VARIANT
    parts = [f"variant {variant}"] if adapter in PROTOCOLS else []
    parts.append(f"faces.detector {face_settings(params, params_path).detection.detector}")
    try:
        spec = backbone_spec(params, params_path)
    except click.ClickException as error:  # embed will stop on it; prepare only reports it
        return ", ".join(parts + [f"backbone: {error.message}"])
    weights = spec.checkpoint or "the clip package's cache file"
    parts.append(f"backbone {spec.name} ({weights})")
    if uses_demo_backbone(spec.checkpoint) and adapter != "demo":
        parts.append("the demo's own CLIP, which embed refuses for this dataset: `tg-dfer use DATASET --root ...` "
                     "sets ViT-B/32 (or set clip.model and clip.checkpoint '')")
    return ", ".join(parts)
