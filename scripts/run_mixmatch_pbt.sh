#!/usr/bin/env bash
# Mix & Match with alpha evolved by PBT (results/mixmatch/freeway_pbt/): the action-space curriculum on
# MinAtar Freeway (configs/mixmatch/minatar_breakout_action_space_pbt.yaml on Freeway), a population of 4,
# FRAMES per member (default 1M, the budget of the scheduled runs in results/mixmatch/), ready every
# READY frames (default 20k: at this budget the paper's 300 episodes would be one or two ready events,
# Freeway episodes being 2,500 steps long). Compared, by their metrics in results/mixmatch/, with the
# scheduled M&M runs (alpha 0 -> 1 over the first half) and the big agent alone. About 5 minutes here.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1
FRAMES=${FRAMES:-1000000}
READY=${READY:-20000}
KS=.venv/bin/kickstart
OUT=runs/mixmatch
$KS train configs/mixmatch/minatar_breakout_action_space_pbt.yaml env.id=minatar:Freeway run.total_frames=$FRAMES \
    runtime.envs_per_actor=64 learner.batch_size=64 run.out_dir=$OUT run.progress=false run.tensorboard=false \
    run.name=fw-mm-pbt \
    pbt.ready_episodes=0 pbt.ready_frames=$READY
# The scheduled and big-only runs of scripts/run_mixmatch_freeway_sampled.sh, from their committed metrics.
for r in fw-mm-actions fw-big-only; do
  for s in 0 1; do
    mkdir -p $OUT/committed/$r-s$s
    cp results/mixmatch/$r-s$s.metrics.csv $OUT/committed/$r-s$s/metrics.csv
  done
done
mkdir -p results/mixmatch/freeway_pbt
$KS report $OUT/fw-mm-pbt --group mm-scheduled=$OUT/committed/fw-mm-actions-s0,$OUT/committed/fw-mm-actions-s1 \
    --group big-only=$OUT/committed/fw-big-only-s0,$OUT/committed/fw-big-only-s1 --baseline big-only \
    --budgets $((FRAMES / 4)),$((FRAMES / 2)),$((3 * FRAMES / 4)),$FRAMES --scores 5,10,20 --out results/mixmatch/freeway_pbt
for i in 0 1 2 3; do cp $OUT/fw-mm-pbt/members/$i/metrics.csv results/mixmatch/fw-mm-pbt-m$i.metrics.csv; done
cp $OUT/fw-mm-pbt/pbt/lineage.jsonl results/mixmatch/fw-mm-pbt-lineage.jsonl
