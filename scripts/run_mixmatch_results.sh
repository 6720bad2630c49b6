#!/usr/bin/env bash
# The Mix & Match results in results/mixmatch/, on MinAtar Breakout, 2 seeds each, FRAMES per run
# (default 1M; alpha goes 0 -> 1 linearly over the first half):
#   action spaces: M&M (minimal 3 actions -> all 6) vs the small agent alone vs the big agent alone;
#   cores:         M&M (feed-forward -> LSTM)       vs the FF agent alone   vs the LSTM agent alone.
# The small agent alone is the M&M agent with alpha fixed at 0 and lambda 0 (pi_1 acts and learns,
# pi_2 gets no gradient). Runs go to runs/mixmatch/, the reports and each run's metrics.csv to results/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1
FRAMES=${FRAMES:-1000000}
KS=.venv/bin/kickstart
OUT=runs/mixmatch
COMMON=(run.total_frames=$FRAMES run.out_dir=$OUT run.progress=false run.tensorboard=false)
HALF=mixmatch.alpha_end_frames=$((FRAMES / 2))
# The baselines keep the learner settings these results were made with (one V-trace update per batch,
# as the M&M configs), not the expert configs' current PPO-style passes.
ONE_PASS=(learner.discount=0.99 learner.entropy_cost=0.001 learner.advantage_norm=false learner.pg_clip=0
          learner.epochs=1 learner.minibatches=1)
for seed in 0 1; do
  S=(runtime.seed=$seed)
  $KS train configs/mixmatch/minatar_breakout_action_space.yaml "${COMMON[@]}" "${S[@]}" $HALF run.name=mm-actions-s$seed
  $KS train configs/mixmatch/minatar_breakout_action_space.yaml "${COMMON[@]}" "${S[@]}" run.name=small-only-s$seed \
      mixmatch.alpha_schedule=constant mixmatch.alpha=0 mixmatch.lambda_mm=0
  $KS train configs/minatar_breakout.yaml "${COMMON[@]}" "${S[@]}" "${ONE_PASS[@]}" run.name=big-only-s$seed
  $KS train configs/mixmatch/minatar_breakout_cores.yaml "${COMMON[@]}" "${S[@]}" $HALF run.name=mm-cores-s$seed
  $KS train configs/minatar_breakout.yaml "${COMMON[@]}" "${S[@]}" "${ONE_PASS[@]}" net.core=lstm net.lstm_size=128 run.name=lstm-only-s$seed
done
B="--budgets $((FRAMES / 4)),$((FRAMES / 2)),$((3 * FRAMES / 4)),$FRAMES --scores 1,2,4"
mkdir -p results/mixmatch/action_spaces results/mixmatch/cores
$KS report $OUT/mm-actions-s0 $OUT/mm-actions-s1 $OUT/small-only-s0 $OUT/small-only-s1 $OUT/big-only-s0 \
    $OUT/big-only-s1 --baseline big-only $B --out results/mixmatch/action_spaces
$KS report --group mm-cores=$OUT/mm-cores-s0,$OUT/mm-cores-s1 --group ff-only=$OUT/big-only-s0,$OUT/big-only-s1 \
    --group lstm-only=$OUT/lstm-only-s0,$OUT/lstm-only-s1 --baseline lstm-only $B --out results/mixmatch/cores
for r in mm-actions small-only big-only mm-cores lstm-only; do
  for s in 0 1; do cp $OUT/$r-s$s/metrics.csv results/mixmatch/$r-s$s.metrics.csv; done
done
