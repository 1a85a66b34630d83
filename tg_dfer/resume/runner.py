"""The one runner of the resumable, shardable per-clip stages (faces and embed).

A run keeps each finished unit of work (faces: a clip; embed: the clips of one forward pass) as an
entry of its :class:`~tg_dfer.resume.journal.Journal`, and builds its output file from the entries
only when all of them exist, so a run killed at any point resumes where it stopped and writes the
same file. A shard's run does every n-th unit (:class:`~tg_dfer.resume.shards.Shard`); the shard
files are joined by :func:`merge_shards` into the file of one whole run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from tg_dfer.resume.journal import Journal
from tg_dfer.resume.shards import ShardSet

Keep = Callable[[int, dict[str, Any]], None]  # (unit, its entry) -> stored in the journal
Event = Callable[[str, int], None]  # (event, how many times it has happened): fault-injection hooks


def no_event(event: str, count: int) -> None:
    """The default hook: nothing happens."""


def run_resumable(journal: Journal, units: Sequence[int], compute: Callable[[list[int], Keep], None],
                  assemble: Callable[[Iterator[dict[str, Any]]], None], unit_event: str = "entry",
                  event: Event = no_event) -> None:
    """Do the ``units`` the journal lacks, then build the output from every unit's entry, in order.

    ``compute(todo, keep)`` does the units of ``todo`` (in any grouping or order) and hands each
    finished one to ``keep``; a unit may give no entry (embed: a forward pass none of whose clips
    decoded). ``assemble(entries)`` writes the output from the entries, in the order of ``units``.
    ``event`` hears ``unit_event`` after each kept entry and ``assemble`` after each entry is
    written. The journal is removed once the output is complete.
    """
    done = journal.done()
    kept = 0

    def keep(unit: int, values: dict[str, Any]) -> None:
        nonlocal kept
        journal.put(unit, values)
        kept += 1
        event(unit_event, kept)

    compute([unit for unit in units if unit not in done], keep)

    def entries() -> Iterator[dict[str, Any]]:
        stored = journal.done()
        for count, unit in enumerate((unit for unit in units if unit in stored), start=1):
            yield journal.get(unit)
            event("assemble", count)

    assemble(entries())
    journal.remove()


def merge_shards(files: list[Path], schema: str, order: list[str],
                 write: Callable[[dict[str, Any], Iterator[dict[str, Any]]], None], allow_missing: bool = False) -> None:
    """Join shard ``files`` into one output: ``write(attrs, rows)`` gets the shards' common root
    attributes and their rows in the clip order ``order``; the shard files are deleted after."""
    with ShardSet(files, schema) as shards:
        write(shards.attrs, shards.rows(order, allow_missing=allow_missing))
    for file in files:
        file.unlink()
