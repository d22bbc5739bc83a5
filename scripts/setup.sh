#!/usr/bin/env bash
# Create .venv (if needed) and install archspec with its test extra into it.
# torch is installed first, pinned, so that pip never resolves pyproject's range to a different build:
# on the project's CI machines torch==2.13.0 is a small CPU wheel on local disk; elsewhere it is PyPI's build
# (CUDA on Linux). Set ARCHSPEC_TORCH to pin another version, or install torch yourself first.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
PY=.venv/bin/python
"$PY" -m pip install --quiet --upgrade pip 2>/dev/null || true
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install --quiet "torch==${ARCHSPEC_TORCH:-2.13.0}"
fi
"$PY" -m pip install --quiet -e ".[test]"
# torch-fidelity is the peer the FID tests check our Inception network and metrics against (tests/runner/
# test_fid.py, test_inception.py). It is installed without its declared dependencies: pip would resolve its
# torchvision to the newest, whose exact torch pin replaces the CPU torch above with a CUDA build; the tests need
# only torch, numpy and tqdm (test extra), and torchvision's Python code from .venv/peers (below).
"$PY" -m pip install --quiet --no-deps "torch-fidelity==0.4.0"
# pytorch-fid, the second peer (tests/runner/test_pytorch_fid.py), builds its Inception from torchvision's model
# code. PyPI's torchvision is a CUDA build whose compiled ops do not load beside a CPU torch, but its pure-Python
# models work with it. Both go, without dependencies, into .venv/peers, which only the tests put on sys.path:
# `import torchvision` in .venv itself stays as it was. torchvision 0.N pairs with torch 2.(N-15).
if [ ! -d .venv/peers/pytorch_fid ]; then
  TORCHVISION=$("$PY" -c "import torch; print('0.%d.*' % (int(torch.__version__.split('.')[1]) + 15))")
  "$PY" -m pip install --quiet --no-deps --target .venv/peers "torchvision==$TORCHVISION" "pytorch-fid==0.3.0"
fi
