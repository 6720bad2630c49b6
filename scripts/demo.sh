#!/usr/bin/env bash
# The main job: set up .venv, train IMPALA on MinAtar Breakout for a few minutes, print the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1
RUN=runs/demo-breakout-$(date +%Y%m%d-%H%M%S)
.venv/bin/kickstart train configs/minatar_breakout.yaml run.total_frames=3000000 run.name="$(basename "$RUN")"
.venv/bin/kickstart eval "$RUN" --episodes 20
echo "random play scores 0.5 on MinAtar Breakout; curves: .venv/bin/kickstart plot $RUN"
