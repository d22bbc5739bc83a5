#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: lint, types, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check archspec runner tests benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
