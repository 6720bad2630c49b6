#!/usr/bin/env bash
# The kickstarting results in results/minatar5_experts/: the larger LSTM student on MinAtar-5 kickstarted
# by the five shipped task experts, against the same student from scratch, 2 seeds each, on the budget this
# 2-core machine affords (FRAMES, default 10M frames per run, about an hour for the four runs; lambda decays
# 1 -> 0 over the first fifth, the paper's best linear horizon: 2B of 10B frames in Table 2). The runs go
# one after the other, each with the whole machine. Runs go to runs/experiments/; the report, plots and
# each run's metrics.csv are copied to results/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1
FRAMES=${FRAMES:-10000000}
KS=.venv/bin/kickstart
OUT=runs/experiments
COMMON=(run.total_frames=$FRAMES run.out_dir=$OUT run.progress=false)
for seed in 0 1; do
  $KS train configs/experiments/minatar5_experts.yaml "${COMMON[@]}" runtime.seed=$seed run.name=experts-s$seed \
      kickstart.lambda_end_frames=$((FRAMES / 5))
  $KS train configs/experiments/minatar5_scratch.yaml "${COMMON[@]}" runtime.seed=$seed run.name=scratch-s$seed
done
mkdir -p results/minatar5_experts
$KS report $OUT/experts-s0 $OUT/experts-s1 $OUT/scratch-s0 $OUT/scratch-s1 --baseline scratch \
    --budgets $((FRAMES / 20)),$((FRAMES / 10)),$((FRAMES / 5)),$((FRAMES / 2)),$FRAMES --scores ${SCORES:-2,5,10,15} --out results/minatar5_experts
for r in experts-s0 experts-s1 scratch-s0 scratch-s1; do cp $OUT/$r/metrics.csv results/minatar5_experts/$r.metrics.csv; done
