"""Running git and dvc from the tool commands (ablate, report, check-metrics)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click


def executable(name: str) -> str:
    """The ``dvc``/``git`` beside this Python first (an un-activated venv), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        raise click.ClickException(f"{name} is not installed (or not on PATH)")
    return found


def run_tool(name: str, *args: str, check: bool = True, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess:
    """Run ``name args`` in the current folder, capturing text output; a failure is a clean error.

    ``env`` adds to (or overrides) this process's environment for the command."""
    done = subprocess.run([executable(name), *args], capture_output=True, text=True,
                          env={**os.environ, **env} if env else None)
    if check and done.returncode != 0:
        raise click.ClickException(f"`{name} {' '.join(args)}` failed:\n{(done.stderr or done.stdout).strip()}")
    return done
