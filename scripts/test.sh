#!/usr/bin/env bash
# Sets up .venv and runs the default test tier (a few minutes on 2 cores). Extra args go to pytest,
# e.g. `bash scripts/test.sh -m slow` for the long learning tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec .venv/bin/python -m pytest -q "$@"
