#!/usr/bin/env bash
# The Mix & Match action-space results in results/doom/mixmatch/ (issue 15; M&M Fig. 3-4's shape): on
# ViZDoom basic and defend_the_center, 3 seeds each of
#   mm:         M&M, the scenario's buttons (4 actions) -> the 108-action factorised set, alpha 0 -> 1
#               over the first half (configs/mixmatch/doom_<task>_action_space.yaml);
#   small-only: the same network with alpha fixed at 0 and lambda 0 (pi_1 acts and learns alone);
#   big-only:   the task's expert config over the 108-action set with a factorised head, alone.
# FRAMES_BASIC / FRAMES_DTC per run (defaults: 2M and 5M). Every run resumes where it stopped
# (kickstart train --resume), so the script can be stopped and started again at any point; finished runs
# are kept without checkpoints in results/doom/mixmatch/runs/ (KEEP, scripts/resumable.sh; commit it), so a
# machine that lost runs/ skips them, and an unfinished one travels with scripts/carry.sh.
# Runs go to runs/doom-mixmatch/; the reports and each run's metrics.csv to results/doom/mixmatch/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1
KS=.venv/bin/kickstart
OUT=runs/doom-mixmatch
SEEDS=${SEEDS:-0 1 2}
KEEP=${KEEP:-results/doom/mixmatch/runs}
source scripts/resumable.sh
run() { run_or_resume "$OUT" "$@"; }

for task in basic defend_the_center; do
  if [ $task = basic ]; then frames=${FRAMES_BASIC:-2000000}; else frames=${FRAMES_DTC:-5000000}; fi
  for seed in $SEEDS; do
    S=(runtime.seed=$seed)
    run $task-mm-s$seed $frames configs/mixmatch/doom_${task}_action_space.yaml "${S[@]}" \
        mixmatch.alpha_end_frames=$((frames / 2))
    run $task-small-only-s$seed $frames configs/mixmatch/doom_${task}_action_space.yaml "${S[@]}" \
        mixmatch.alpha_schedule=constant mixmatch.alpha=0 mixmatch.lambda_mm=0
    run $task-big-only-s$seed $frames configs/doom_$task.yaml "${S[@]}" env.doom.actions=large \
        net.policy_head=factorised
  done
  B="--budgets $((frames / 4)),$((frames / 2)),$((3 * frames / 4)),$frames"
  mkdir -p results/doom/mixmatch/$task
  groups=()
  for r in mm small-only big-only; do
    dirs=$(for s in $SEEDS; do printf '%s,' "$(run_path "$OUT" $task-$r-s$s)"; done)
    groups+=(--group "$r=${dirs%,}")
    for s in $SEEDS; do
      cp "$(run_path "$OUT" $task-$r-s$s)/metrics.csv" "results/doom/mixmatch/$task/$r-s$s.metrics.csv"
    done
  done
  $KS report "${groups[@]}" --baseline big-only $B --out results/doom/mixmatch/$task
done
