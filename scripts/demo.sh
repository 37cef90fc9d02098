#!/usr/bin/env bash
# The main job on the embedded offline default: CAM, Grad-CAM and Grad-CAM++ on the demo set with
# EfficientNet-Lite0, one Hydra multirun with its HTML report (multirun/demo/report.html), aggregated
# into results/demo/table.{md,tex,html,csv}, and its methods × images grid as results/demo/grid.jpg.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
rm -rf multirun/demo
python -m wsol.run -m method=cam,gradcam,gradcampp report=true hydra.sweep.dir=multirun/demo "$@"
python -m wsol.aggregate multirun/demo --out results/demo
python -c "from PIL import Image; Image.open('multirun/demo/figures/grid.png').convert('RGB').save('results/demo/grid.jpg', quality=82, optimize=True)"
echo "report: multirun/demo/report.html (open it in a browser)"
