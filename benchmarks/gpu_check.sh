#!/usr/bin/env bash
# The checks that need a GPU, as one script (about 3 minutes on an H100; every step has a time limit, 8 minutes
# in all): the GPU and the torch build, the CUDA tests, a two-GPU torchrun when there are two GPUs, and the
# benchmark of the seed spec. Run from anywhere:
#
#     bash benchmarks/gpu_check.sh               # results in a temporary folder (printed at the end)
#     OUT=/some/dir bash benchmarks/gpu_check.sh  # bench_conv_gan.json, pytest.txt, ... in /some/dir
#
# PYTHON picks the interpreter (default: .venv/bin/python if present, else python3); it needs a CUDA build of
# torch and the package installed (pip install -e '.[test]'). Exits non-zero if any step failed, after running
# the others.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
RESULTS=${OUT:-$(mktemp -d -t archspec-gpu-check-XXXXXX)}
mkdir -p "$RESULTS"
export CI=1 PYTHONUNBUFFERED=1
failed=()

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep a log, remember a failure, carry on
    local name=$1 seconds=$2
    shift 2
    echo
    echo "=== $name (limit ${seconds}s)"
    local started=$SECONDS status=0
    timeout --kill-after=10 "$seconds" "$@" 2>&1 | tee "$RESULTS/$name.txt" || status=$?
    echo "=== $name: exit $status after $((SECONDS - started))s"
    if [[ $status -ne 0 ]]; then failed+=("$name"); fi
}

step nvidia-smi 30 nvidia-smi
step torch 60 "$PYTHON" -c "
import torch
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version())
print('GPUs', torch.cuda.device_count(), [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
assert torch.cuda.is_available(), 'no CUDA GPU visible to torch'
"
step pytest-cuda 180 "$PYTHON" -m pytest tests/test_cuda.py -q -p no:cacheprovider
GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [[ "$GPUS" -ge 2 ]]; then
    step torchrun-2gpu 120 "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=2 -m archspec \
        train specs/conv_gan.yaml --device cuda --data random --batch-size 32 --max-steps 20 --log-every 5 \
        --checkpoint-every 1000 --sample-every 1000 --out "$RESULTS/runs" --no-progress
fi
# The seed spec: (a) its one-image loop for 30 steps, (b)-(d) at batch 256 for 30 steps after 5 warm-up steps.
step bench-conv-gan 240 "$PYTHON" -m archspec bench specs/conv_gan.yaml --steps 30 --warmup 5 \
    --batch-size 256 --data synthetic --json "$RESULTS/bench_conv_gan.json"

echo
echo "results in $RESULTS"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all GPU checks passed"
