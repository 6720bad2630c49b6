#!/usr/bin/env bash
# Mix & Match over tasks on MinAtar-5 (results/mixmatch/multitask/), 2 seeds, FRAMES per run (default 2M;
# alpha goes 0 -> 1 linearly over the first half): M&M (one LSTM specialist per game mixed with a
# central LSTM agent, configs/mixmatch/minatar5_multitask.yaml) against the central LSTM agent trained
# alone on the five games (configs/minatar5.yaml with the same LSTM core). Runs go to runs/mixmatch/,
# the report and each run's metrics.csv to results/mixmatch/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1
FRAMES=${FRAMES:-2000000}
KS=.venv/bin/kickstart
OUT=runs/mixmatch
COMMON=(run.total_frames=$FRAMES run.out_dir=$OUT run.progress=false run.tensorboard=false)
# The baseline keeps the learner these results were made with (one V-trace update per batch and a plain
# value head, as the M&M config), not configs/minatar5.yaml's current passes and PopArt.
ONE_PASS=(learner.discount=0.99 learner.entropy_cost=0.001 learner.advantage_norm=false learner.pg_clip=0
          learner.epochs=1 learner.minibatches=1 net.popart=false)
for seed in 0 1; do
  S=(runtime.seed=$seed)
  $KS train configs/mixmatch/minatar5_multitask.yaml "${COMMON[@]}" "${S[@]}" \
      mixmatch.alpha_end_frames=$((FRAMES / 2)) run.name=mt-mm-s$seed
  $KS train configs/minatar5.yaml "${COMMON[@]}" "${S[@]}" "${ONE_PASS[@]}" net.core=lstm net.lstm_size=128 \
      run.name=mt-central-only-s$seed
done
mkdir -p results/mixmatch/multitask
$KS report --group mm-multitask=$OUT/mt-mm-s0,$OUT/mt-mm-s1 --group central-only=$OUT/mt-central-only-s0,$OUT/mt-central-only-s1 \
    --baseline central-only --budgets $((FRAMES / 4)),$((FRAMES / 2)),$((3 * FRAMES / 4)),$FRAMES \
    --out results/mixmatch/multitask
for r in mt-mm mt-central-only; do
  for s in 0 1; do cp $OUT/$r-s$s/metrics.csv results/mixmatch/$r-s$s.metrics.csv; done
done
