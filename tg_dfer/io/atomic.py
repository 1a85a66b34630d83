"""Writing files so that a reader never sees a half-written one: under a temporary name beside the
target, renamed into place only when complete. Every writer of the project goes through here: a
house test (tests/unit/test_house.py) finds any other write in tg_dfer/ and pipeline/."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PARTIAL = ".partial"


def partial_path(path: str | Path) -> Path:
    """The temporary name a file of ``path`` is written under (its folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name + PARTIAL)


def commit(temporary: Path, path: str | Path) -> None:
    """Rename a complete temporary file into place (atomic on one file system)."""
    os.replace(temporary, path)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path`` to: renamed into place when the block ends cleanly,
    removed when it raises (a SIGKILL may leave it behind; nothing reads ``*.partial``)."""
    temporary = partial_path(path)
    try:
        yield temporary
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    commit(temporary, path)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a small text file atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
