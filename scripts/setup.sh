#!/usr/bin/env bash
# Creates .venv (if missing) and installs kickstart with its test and Ray extras into it (Ray: the
# tests of runtime.backend=ray start a real two-node Ray cluster on loopback). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch is pinned to 2.13.0 in pyproject.toml: pip takes the CPU wheel on this machine.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,ray]'
