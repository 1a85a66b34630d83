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
