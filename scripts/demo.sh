#!/usr/bin/env bash
# The main job on a fresh machine: set up, check the seed spec, then train the 32x32 DCGAN (specs/dcgan32.yaml)
# on the built-in synthetic faces for a few minutes, and say where its sample grids and loss plot are.
# DEMO_STEPS sets the number of steps (default 750, by which faces are recognisable); DEMO_OUT the runs folder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/archspec check specs/conv_gan.yaml
out="${DEMO_OUT:-runs}"
.venv/bin/archspec train specs/dcgan32.yaml --max-steps "${DEMO_STEPS:-750}" --out "$out"
run="$(ls -td "$out"/dcgan32/*/ | head -n 1)"
echo
echo "faces:  ${run}samples/final.png (and step_000250.png, step_000500.png, ... on the way)"
echo "losses: ${run}loss.png"
