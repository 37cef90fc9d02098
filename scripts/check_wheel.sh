#!/usr/bin/env bash
# Build the wheel, install it (not editable, with the demo extra) into a fresh virtual environment and run
# the offline demo from an empty folder outside the checkout, as `python -m wsol.run` and as `wsol run`, and
# docs/api.md's Python snippets there.
# WSOL_TORCH overrides the torch/torchvision pair, as in setup.sh.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check build
"$work/venv/bin/python" -m build -q --wheel --outdir "$work/dist" "$repo" >/dev/null
wheel="$(ls "$work"/dist/wsol-*.whl)"
"$work/venv/bin/python" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
presets = [n for n in names if n.startswith("wsol/conf/") and n.endswith(".yaml")]
if "wsol/conf/config.yaml" not in names:
    sys.exit("error: the wheel has no wsol/conf/config.yaml")
print(f"{sys.argv[1].rsplit('/', 1)[-1]}: {len(names)} files, {len(presets)} config presets")
PY
# shellcheck disable=SC2086
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check ${WSOL_TORCH:-torch==2.14.1 torchvision==0.29.1} \
  "${wheel}[demo]"
mkdir "$work/empty"
cd "$work/empty"
"$work/venv/bin/python" -m wsol.run limit=4 hydra.run.dir=run_module | tail -n 3
"$work/venv/bin/wsol" run limit=4 hydra.run.dir=run_command | tail -n 3
test -f run_module/metrics.json && test -f run_command/metrics.json
cmp <(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metrics"])' run_module/metrics.json) \
    <(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metrics"])' run_command/metrics.json)
"$work/venv/bin/wsol" aggregate . --out table >/dev/null
test -f table/table.md
# docs/api.md's Python snippets, as written, on the installed package (not the checkout)
"$work/venv/bin/python" - "$repo/docs/api.md" "$repo" <<'PY'
import os, re, sys
blocks = re.findall(r"```python\n(.*?)```", open(sys.argv[1]).read(), re.S)
scope = {}
for block in blocks:
    exec(compile(block, "docs/api.md", "exec"), scope)
import wsol
if os.path.abspath(wsol.__file__).startswith(os.path.abspath(sys.argv[2]) + os.sep):
    sys.exit(f"error: wsol was imported from the checkout ({wsol.__file__})")
print(f"docs/api.md: {len(blocks)} snippets ran on the installed wsol {wsol.__version__}")
PY
echo "wheel check: $(basename "$wheel") installed into a fresh venv; the demo ran from an empty folder"
