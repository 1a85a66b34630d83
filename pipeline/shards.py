"""Resumable, shardable per-clip stages (faces, embed): which clips a run does and where it writes.

A run of shard i of n takes every n-th unit of work starting at i and writes
``<name>.shard-i-of-n.h5`` beside the stage's output; ``--merge n`` joins the n shard files into
the output, row for row what one unsharded run writes. Every run, sharded or not, keeps finished
clips in a :class:`~tg_dfer.cache.ClipJournal` (``<file>.parts/``) and writes its HDF5 file only
when all its clips are done, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import click

KILL_ENV = "TG_DFER_KILL_AT"


@dataclass(frozen=True)
class Shard:
    index: int  # 0 .. count - 1
    count: int

    def take(self, items: Sequence) -> list:
        return list(items[self.index::self.count])

    def path(self, output: Path) -> Path:
        """Where this shard writes instead of ``output``; ``output`` itself for a whole run."""
        if self.count == 1:
            return output
        return output.with_name(f"{output.stem}.shard-{self.index}-of-{self.count}{output.suffix}")

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


WHOLE = Shard(0, 1)


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


def shard_paths(output: Path, count: int) -> list[Path]:
    return [Shard(index, count).path(output) for index in range(count)]


def code_digest(*modules: Any) -> str:
    """SHA-256 of the source of ``modules``: a journal made by other code is not resumed."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


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


def check_shard_params(found: dict[str, Any], expected: dict[str, Any], where: Path) -> None:
    """Shards must have been made with the params that the merged file will claim."""
    # Attributes read back from HDF5 hold numpy scalars: compare through JSON.
    if json.loads(found["params"]) != json.loads(json.dumps(expected["params"], default=lambda value: value.tolist())):
        raise click.ClickException(f"{where}: the shards were made with other params than the parameter file "
                                   "holds now; re-run them, or merge with the params they were made with")
