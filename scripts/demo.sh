#!/usr/bin/env bash
# The main job: set up .venv, then train the same larger student (LSTM core) on MinAtar Breakout twice on
# the same budget -- kickstarted by the shipped small expert (teachers/minatar-breakout.pt) and from
# scratch -- and print the comparison table. A few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1
FRAMES=${FRAMES:-1000000}
DEMO=runs/demo-$(date +%Y%m%d-%H%M%S)
KS=.venv/bin/kickstart
COMMON=(run.total_frames=$FRAMES run.out_dir=$DEMO run.progress=false run.tensorboard=false)
echo "== kickstarted student (teacher: teachers/minatar-breakout.pt), $FRAMES frames"
$KS train configs/kickstart_breakout.yaml "${COMMON[@]}" run.name=kickstarted
echo "== the same student from scratch, $FRAMES frames"
$KS train configs/kickstart_breakout.yaml "${COMMON[@]}" run.name=scratch 'kickstart.teachers={}'
echo "== comparison (the teacher's own score is in teachers/README.md; random play scores 0.5)"
$KS report $DEMO/kickstarted $DEMO/scratch --baseline scratch --scores 1,2,4 --out $DEMO/report
