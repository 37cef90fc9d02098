#!/usr/bin/env bash
# One command for a lent GPU (README, docs/speed.md): the CUDA tests, CPU-vs-GPU map and metric parity for every
# method, and scripts/bench.py's GPU rows, into results/bench/cuda_*.md. About 10 minutes on one GPU.
# On a machine without a CUDA GPU it says so and exits 0 (CI runs it so).
#   bash scripts/gpu_check.sh            # uses .venv's python if there is one, else python
#   WSOL_PYTHON=/path/to/python bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
py="${WSOL_PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
out=results/bench
if ! "$py" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False): nothing to check here"
    exit 0
fi
mkdir -p "$out"
gpu="$("$py" -c "import torch; print(torch.cuda.get_device_name(0))")"
failed=0
step() {  # step NAME SECONDS COMMAND...: run one check under a time limit, keep going if it fails
    local name="$1" limit="$2"; shift 2
    echo "== $name (at most ${limit} s)"
    if ! timeout "$limit" "$@"; then echo "gpu_check: $name FAILED or ran out of time"; failed=1; fi
}
# 1. the CUDA tests: every method's maps and every metric, CPU against GPU
{
    echo "# CUDA tests on $gpu"; echo
    echo '`bash scripts/gpu_check.sh`: `pytest tests/test_zoo.py::test_cpu_and_gpu_agree tests/test_api.py::test_cpu_and_gpu_metrics_agree`'
    echo; echo '```'
} > "$out/cuda_tests.md"
step "CUDA tests" 240 "$py" -m pytest -q -p no:cacheprovider -rs \
    tests/test_zoo.py::test_cpu_and_gpu_agree tests/test_api.py::test_cpu_and_gpu_metrics_agree \
    > >(tee -a "$out/cuda_tests.md") 2>&1
echo '```' >> "$out/cuda_tests.md"
# 2. the GPU rows: gradient methods against the ideal forward + backward, bf16, the box stage (no compile rows)
step "bench: methods, bf16, boxes" 180 "$py" scripts/bench.py --device cuda --no-compile --iters 5
# 3. 1,000 images end to end: the CLI's loop and wsol.evaluate on the GPU
step "bench: 1,000 images end to end" 150 "$py" scripts/bench.py --api --api-images 1000 --repeats 1 --device cuda
# 4. the zoo beside pytorch-grad-cam and torchcam: ResNet-50 layer4, batch 32 (cuda_zoo_vs_libraries.md)
step "bench: the zoo vs the libraries" 150 "$py" scripts/bench.py --zoo --batch 32 --iters 3 --warmup 1 --device cuda
# 5. ROAD on the GPU beside pytorch-grad-cam's ROADCombined on this machine's CPU, 4 demo images (cuda_road.md)
step "bench: ROAD vs ROADCombined" 120 "$py" scripts/bench.py --road --road-images 4 --repeats 1 --device cuda
ls "$out"/cuda_*.md
exit "$failed"
