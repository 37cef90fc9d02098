#!/usr/bin/env bash
# Install wsol with its test tools into ./.venv (or into the virtual environment already active).
# Sourced by demo.sh and test.sh. WSOL_TORCH overrides the torch/torchvision pair, e.g. for a CUDA build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python -m pip install -q --disable-pip-version-check --upgrade pip
# shellcheck disable=SC2086
python -m pip install -q --disable-pip-version-check ${WSOL_TORCH:-torch==2.14.1 torchvision==0.29.1} -e ".[test]"
