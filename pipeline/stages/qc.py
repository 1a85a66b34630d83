"""The ``qc`` stage: one table of every clip that is not fully usable, and why."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import click
import numpy as np

from pipeline.settings.dataset import dataset_paths
from pipeline.settings.params import DEFAULT_PARAMS, load_params
from tg_dfer.datasets.manifest import ManifestError, read_manifest
from tg_dfer.io.atomic import write_text_atomic
from tg_dfer.io.faces_h5 import FacesFile
from tg_dfer.io.h5 import SchemaError

COLUMNS = ("clip_id", "path", "status", "face_frames", "frames", "embedded", "reason")


@click.command("qc")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
@click.option("--show", default=20, show_default=True, help="Rows printed (all are in the CSV).")
def qc(params_path: str, show: int) -> None:
    """Quality report -> metrics/<dataset>/qc.csv: every clip that is not fully ok, and why.

    Reads data/<dataset>/faces.h5, manifest.csv and, once embed has run, embed_skipped.json.
    One row per clip whose faces status is not 'ok' or that embed skipped, with the columns
    clip_id, path, status (ok | partial | no_face | failed), face_frames (sampled frames with a
    face) of frames, embedded (yes | no | empty before embed has run) and reason (for a partial
    clip also how many of the other frames' boxes were tracked, interpolated and held from the
    detections around them). Prints the counts per status and the first rows.

    Params: none of its own; dataset.name picks the files.
    """
    paths = dataset_paths(load_params(params_path))
    try:
        manifest = read_manifest(paths.manifest)
        faces = FacesFile(paths.faces)
    except (ManifestError, SchemaError) as error:
        raise click.ClickException(str(error)) from error
    skipped_file = paths.embed_skipped
    skipped = json.loads(skipped_file.read_text()) if skipped_file.is_file() else None
    path_of = {row.clip_id: row.path for row in manifest.rows}
    with faces:
        with_face = np.count_nonzero(faces.frame_status == "detected", axis=1)
        rows = []
        for row, clip_id in enumerate(faces.clip_id):
            embedded = "" if skipped is None else "no" if clip_id in skipped else "yes"
            if faces.status[row] == "ok" and embedded != "no":
                continue
            reason = faces.reason[row] or (skipped or {}).get(clip_id, "")
            rows.append((clip_id, path_of.get(clip_id, ""), faces.status[row], int(with_face[row]),
                         faces.frames_per_clip, embedded, reason))
        counts = Counter(faces.status)
        total = len(faces)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    target = paths.qc
    write_text_atomic(target, table.getvalue())
    click.echo(f"qc: {total} clips: " + ", ".join(f"{counts.get(status, 0)} {status}"
                                                  for status in ("ok", "partial", "no_face", "failed"))
               + ("" if skipped is None else f"; {len(skipped)} not embedded")
               + f" -> {len(rows)} rows in {target}")
    if rows:
        click.echo(f"  {'status':<8} {'faces':>5}  {'clip_id':<24} reason")
    for clip_id, _, status, found, frames, _, reason in rows[:show]:
        click.echo(f"  {status:<8} {found:>2}/{frames:<2}  {clip_id:<24} {reason[:100]}")
    if len(rows) > show:
        click.echo(f"  ... and {len(rows) - show} more in {target}")
