"""The command-line side of the resumable, shardable stages (faces, embed): the --shard and --merge
options, torchrun's shard, the fault-injection hook of the resume tests, and the params check of a merge.

A run of shard i of n takes every n-th unit of work starting at i and writes
``<name>.shard-i-of-n.h5`` beside the stage's output; ``--merge n`` joins the n shard files into
the output, row for row what one unsharded run writes (the library's ``tg_dfer.resume``).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from tg_dfer.io.h5 import SchemaError, json_default
from tg_dfer.resume.journal import Journal
from tg_dfer.resume.runner import merge_shards
from tg_dfer.resume.shards import Shard, shard_paths

KILL_ENV = "TG_DFER_KILL_AT"


def parse_shard(ctx: click.Context | None, option: click.Parameter | None, text: str | None) -> Shard | None:
    """Click callback for ``--shard i/n`` (i counts from 0, like torchrun's RANK)."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected i/n such as 0/4, got {text!r}") from None
    if not 0 <= index < count:
        raise click.BadParameter(f"need 0 <= i < n, got {text!r}")
    return Shard(index, count)


def shard_options(output: str):
    """The ``--shard`` and ``--merge`` options of a stage that writes data/<dataset>/<output>.h5."""

    def decorate(command):
        command = click.option(
            "--merge", "merge_count", type=click.IntRange(min=1), metavar="N",
            help=f"Join the N shard files into data/<dataset>/{output}.h5 (same rows as one whole run).")(command)
        return click.option(
            "--shard", callback=parse_shard, metavar="I/N",
            help=f"Do only shard I of N (I from 0) -> data/<dataset>/{output}.shard-I-of-N.h5. Under torchrun "
                 "the shard is RANK/WORLD_SIZE.")(command)

    return decorate


def shard_from_env() -> Shard | None:
    """The shard of this process under torchrun (RANK of WORLD_SIZE), or None."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return Shard(int(os.environ.get("RANK", "0")), size) if size > 1 else None


def file_identity(path: Path) -> list[int]:
    """Size and modification time: a rewritten input makes a journal stale."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def kill_point(event: str, count: int) -> None:
    """Fault injection for the resume tests: ``TG_DFER_KILL_AT=<event>:<n>`` makes the process
    SIGKILL itself when ``event`` has happened ``n`` times (events: clip (faces), batch (embed), assemble)."""
    wanted = os.environ.get(KILL_ENV, "")
    if wanted and wanted == f"{event}:{count}":
        os.kill(os.getpid(), signal.SIGKILL)


def open_journal(stage: str, target: Path, fingerprint: dict[str, Any], units: list[int], what: str) -> Journal:
    """The resume journal of a run writing ``target``, saying whether it starts afresh or resumes."""
    journal = Journal(target.with_name(target.name + ".parts"), fingerprint)
    if journal.discarded:
        click.echo(f"{stage}: {journal.folder} was left by a run with other params, inputs or code: starting afresh")
    done = len(journal.done() & set(units))
    if done:
        click.echo(f"{stage}: resuming: {done} of {len(units)} {what} already done in {journal.folder}")
    return journal


def merge(output: Path, count: int, schema: str, order: list[str], expected: dict[str, Any],
          write: Callable[[dict[str, Any], Iterator[dict[str, Any]]], None], allow_missing: bool = False) -> None:
    """``--merge COUNT``: join the shard files of ``output``, which must have been made with the
    params of ``expected``, into ``output`` (``write(attrs, rows)``), then delete them."""
    files = shard_paths(output, count)

    def checked(found: dict[str, Any], rows: Iterator[dict[str, Any]]) -> None:
        # Attributes read back from HDF5 hold numpy scalars: compare through JSON.
        if json.loads(found["params"]) != json.loads(json.dumps(expected["params"], default=json_default)):
            raise click.ClickException(f"{files[0]}: the shards were made with other params than the parameter file "
                                       "holds now; re-run them, or merge with the params they were made with")
        write(found, rows)

    try:
        merge_shards(files, schema, order, checked, allow_missing)
    except SchemaError as error:
        raise click.ClickException(str(error)) from error
