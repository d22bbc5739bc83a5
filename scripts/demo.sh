#!/usr/bin/env bash
# The main job on a fresh machine: set up, check the seed spec, train it briefly on the built-in synthetic faces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/archspec check specs/conv_gan.yaml
.venv/bin/archspec train specs/conv_gan.yaml --max-steps "${DEMO_STEPS:-30}" --sample-every 10 --checkpoint-every 10 --log-every 5
