#!/usr/bin/env bash
# More Mix & Match results, 2 seeds each, FRAMES per run (default 1M; alpha goes 0 -> 1 linearly over
# the first half); runs go to runs/mixmatch/, reports and each run's metrics.csv to results/mixmatch/:
#   freeway_action_spaces/: action spaces on MinAtar Freeway, M&M (minimal 3 actions -> all 6) vs the
#     small agent alone (alpha fixed at 0, lambda 0) vs the big agent alone (plain IMPALA, same network);
#   sampled_cores/: the feed-forward -> LSTM curriculum on Breakout with sampled mixing
#     (mixmatch.mixing=sampled) against the explicit-mixing runs of run_mixmatch_results.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1
FRAMES=${FRAMES:-1000000}
KS=.venv/bin/kickstart
OUT=runs/mixmatch
CFG=configs/mixmatch/minatar_freeway_action_space.yaml
COMMON=(run.total_frames=$FRAMES run.out_dir=$OUT run.progress=false run.tensorboard=false)
HALF=mixmatch.alpha_end_frames=$((FRAMES / 2))
# The baselines keep the learner settings these results were made with (one V-trace update per batch,
# as the M&M configs), not the expert configs' current PPO-style passes.
ONE_PASS=(learner.discount=0.99 learner.entropy_cost=0.001 learner.advantage_norm=false learner.pg_clip=0
          learner.epochs=1 learner.minibatches=1)
for seed in 0 1; do
  S=(runtime.seed=$seed)
  $KS train $CFG "${COMMON[@]}" "${S[@]}" $HALF run.name=fw-mm-actions-s$seed
  $KS train $CFG "${COMMON[@]}" "${S[@]}" run.name=fw-small-only-s$seed \
      mixmatch.alpha_schedule=constant mixmatch.alpha=0 mixmatch.lambda_mm=0
  $KS train configs/minatar_breakout.yaml env.id=minatar:Freeway "${COMMON[@]}" "${S[@]}" "${ONE_PASS[@]}" run.name=fw-big-only-s$seed
  $KS train configs/mixmatch/minatar_breakout_cores.yaml "${COMMON[@]}" "${S[@]}" $HALF mixmatch.mixing=sampled \
      run.name=mm-cores-sampled-s$seed
done
B="--budgets $((FRAMES / 4)),$((FRAMES / 2)),$((3 * FRAMES / 4)),$FRAMES --scores 5,10,20"
mkdir -p results/mixmatch/freeway_action_spaces
$KS report --group mm-actions=$OUT/fw-mm-actions-s0,$OUT/fw-mm-actions-s1 \
    --group small-only=$OUT/fw-small-only-s0,$OUT/fw-small-only-s1 \
    --group big-only=$OUT/fw-big-only-s0,$OUT/fw-big-only-s1 --baseline big-only $B \
    --out results/mixmatch/freeway_action_spaces
mkdir -p results/mixmatch/sampled_cores
$KS report --group sampled=$OUT/mm-cores-sampled-s0,$OUT/mm-cores-sampled-s1 \
    --group explicit=$OUT/mm-cores-s0,$OUT/mm-cores-s1 --group lstm-only=$OUT/lstm-only-s0,$OUT/lstm-only-s1 \
    --baseline lstm-only --budgets $((FRAMES / 4)),$((FRAMES / 2)),$((3 * FRAMES / 4)),$FRAMES --scores 1,2,4 \
    --out results/mixmatch/sampled_cores
for r in fw-mm-actions fw-small-only fw-big-only mm-cores-sampled; do
  for s in 0 1; do cp $OUT/$r-s$s/metrics.csv results/mixmatch/$r-s$s.metrics.csv; done
done
