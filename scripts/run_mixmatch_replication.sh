#!/usr/bin/env bash
# Mix & Match with the replication's discipline (issue 14, item 5): the cores curriculum (M&M Fig. 6-7) and
# the multitask curriculum (Fig. 9), 3 seeds each, at budgets where the earlier 2-seed runs
# (results/mixmatch/, 1M and 2M frames) had not separated. Every arm of a part is the same config, so the
# arms differ only in what M&M adds:
#   cores (MinAtar Breakout, FRAMES_CORES per run, default 5M): the Breakout experts' learner
#     (configs/minatar_breakout.yaml: 4 clipped passes of 4 minibatches per batch, entropy cost 0.01);
#       ff-only:   that config (a feed-forward core of 128);
#       lstm-only: the same with an LSTM core of 128;
#       mm-cores:  pi_1 feed-forward and pi_2 LSTM sharing the conv torso and the policy projection (the
#                  paper's Fig. 2b; the value head is the target's), lambda 100 (the paper's for cores),
#                  alpha 0 -> 1 linearly over the first half;
#     baseline lstm-only (the paper: M&M's LSTM ends about 20% above the LSTM trained alone, and is not
#     as fast as the feed-forward agent early).
#   multitask (MinAtar-5, FRAMES_MT per run, default 10M, 2M per game): the replication's students' learner
#     (configs/minatar5.yaml with one V-trace update per batch, as configs/experiments/minatar5_scratch.yaml,
#     and PopArt), LSTM 128;
#       central-only: one LSTM agent on the five games;
#       mm-multitask: one LSTM specialist per game (pi_1, per task) mixed in its game with the central
#                     agent (pi_2), sharing only the conv torso, lambda 100, alpha 0 -> 1 over the first half;
#     reported twice: the suite score, and the weakest game's capped score (episode/worst_score; the
#     paper: M&M keeps a much higher minimum over tasks).
# Settings: SEEDS ("0 1 2"), PARTS ("cores multitask"), FRAMES_CORES, FRAMES_MT. Every run resumes where it
# stopped (scripts/resumable.sh); finished runs are kept without checkpoints in
# results/mixmatch/replication/runs/ (KEEP; commit it), and an unfinished one travels with scripts/carry.sh.
# Runs go to runs/mixmatch-replication/; the reports and each run's metrics.csv to
# results/mixmatch/replication/<part>/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1
KS=.venv/bin/kickstart
OUT=${OUT:-runs/mixmatch-replication}
RESULTS=${RESULTS:-results/mixmatch/replication}
SEEDS=${SEEDS:-0 1 2}
PARTS=${PARTS:-cores multitask}
KEEP=${KEEP:-$RESULTS/runs}
source scripts/resumable.sh

# report PART DEST BASELINE FRAMES ARM...: PART's arms (their seeded runs) as groups, written to DEST;
# METRIC: the metric compared (default the run's own: the suite score on MinAtar-5, the return on Breakout).
report() {
  local part=$1 dest=$2 baseline=$3 frames=$4 arm s dirs; shift 4
  local groups=()
  mkdir -p "$RESULTS/$part"
  for arm in "$@"; do
    dirs=""
    for s in $SEEDS; do
      dirs+="$(run_path "$OUT" "$part-$arm-s$s"),"
      cp "$(run_path "$OUT" "$part-$arm-s$s")/metrics.csv" "$RESULTS/$part/$arm-s$s.metrics.csv"
    done
    groups+=(--group "$arm=${dirs%,}")
  done
  [ -z "${METRIC:-}" ] || groups+=(--metric "$METRIC")
  $KS report "${groups[@]}" --baseline "$baseline" \
      --budgets $((frames / 4)),$((frames / 2)),$((3 * frames / 4)),$frames --out "$dest"
}

for part in $PARTS; do
  case $part in
    cores)
      F=${FRAMES_CORES:-5000000}
      MM=(net.lstm_size=128 "mixmatch.components=[{core: ff}, {core: lstm}]" "mixmatch.share=[torso, policy_head]"
          mixmatch.lambda_mm=100 mixmatch.alpha=0 mixmatch.alpha_schedule=linear mixmatch.alpha_end_frames=$((F / 2)))
      for s in $SEEDS; do
        run_or_resume "$OUT" cores-mm-cores-s$s "$F" configs/minatar_breakout.yaml "${MM[@]}" runtime.seed=$s
        run_or_resume "$OUT" cores-lstm-only-s$s "$F" configs/minatar_breakout.yaml net.core=lstm net.lstm_size=128 \
            runtime.seed=$s
        run_or_resume "$OUT" cores-ff-only-s$s "$F" configs/minatar_breakout.yaml runtime.seed=$s
      done
      report cores "$RESULTS/cores" lstm-only "$F" mm-cores lstm-only ff-only ;;
    multitask)
      F=${FRAMES_MT:-10000000}
      STUDENT=(learner.epochs=1 learner.minibatches=1 learner.pg_clip=0 learner.advantage_norm=false
               learner.discount=0.99 learner.entropy_cost=0.001 learner.lr_schedule=constant net.lstm_size=128)
      MM=("mixmatch.components=[{core: lstm, per_task: true}, {core: lstm}]" "mixmatch.share=[torso]"
          mixmatch.lambda_mm=100 mixmatch.alpha=0 mixmatch.alpha_schedule=linear mixmatch.alpha_end_frames=$((F / 2)))
      for s in $SEEDS; do
        run_or_resume "$OUT" multitask-mm-multitask-s$s "$F" configs/minatar5.yaml "${STUDENT[@]}" "${MM[@]}" \
            runtime.seed=$s
        run_or_resume "$OUT" multitask-central-only-s$s "$F" configs/minatar5.yaml "${STUDENT[@]}" net.core=lstm \
            runtime.seed=$s
      done
      report multitask "$RESULTS/multitask" central-only "$F" mm-multitask central-only
      METRIC=episode/worst_score report multitask "$RESULTS/multitask/worst" central-only "$F" \
          mm-multitask central-only ;;
    *) echo "unknown part $part; valid: cores multitask" >&2; exit 2 ;;
  esac
done
