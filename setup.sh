#!/usr/bin/env bash
# One-time (and idempotent) setup: a virtual environment in .venv with the project and its
# test tools. Needs only Python >= 3.10 and pip's package index; no system packages, no GPU.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# openai-clip is an sdist that imports pkg_resources while building: setuptools<81 first.
.venv/bin/python -m pip install --quiet 'setuptools<81' wheel
.venv/bin/python -m pip install --quiet -e '.[test]'
# DVC experiments need a git repository with a commit (a fresh clone has one).
.venv/bin/dvc config --local core.analytics false >/dev/null 2>&1 || true
