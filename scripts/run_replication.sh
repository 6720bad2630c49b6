#!/usr/bin/env bash
# Issue 14's experiments on MinAtar-5 (the kickstarting paper's Tables 1-3 and Fig. 5), every run resumable:
# stop the script at any point (or lose the session) and start it again with the same settings; finished
# runs are kept, stopped ones continue from their last checkpoint (populations too).
#   table1: the small multi-task teacher (teachers/minatar5-popart.pt, a feed-forward net of 128 units:
#           suite score 43.7, every game above random) kickstarting the
#           larger LSTM student, lambda 1 -> 0 linearly at FRAMES/10, against the student from scratch;
#   table2: the same teacher with lambda constant (1, 2), linear from 1 or 2 to 0 at FRAMES/10, /5, 2/5
#           (the paper's 1B/2B/4B of 10B), and evolved by PBT, against from scratch;
#   table3: the five task experts with per-teacher lambda_i = alpha * rho_i evolved by PBT, against from
#           scratch with PBT over the same hyperparameters (the paper's baseline is PBT-tuned too);
#   fig5:   the five experts four ways: a constant lambda for every teacher, one shared lambda evolved by
#           PBT, per-teacher lambdas evolved by PBT (table3's population), pure distillation.
# Every row of table2, table3 and fig5 is a population whose PBT tunes the learning rate and entropy cost
# (pure distillation, which has no entropy term, the learning rate alone),
# reported as the mean of its top 3 members, as in the paper (Sec. 5.1.1: "even for the manually-specified
# schedules, PBT still controls other hyperparameters"); a fixed-lambda row only keeps lambda out of PBT's
# hands. table1 compares two single runs over SEEDS, like with like and at an eighth of the cost.
# Settings (environment): FRAMES per run or member (default 20M), POP members per population (8),
# SEEDS of the single runs ("0 1 2"), PARTS to run ("table1 table2 table3 fig5"), METRIC the reports
# compare (default: the suite score; e.g. episode/return/minatar:Breakout for one game). Runs go to
# runs/replication/; `kickstart report` writes each part's tables and plots (PBT's lambda and rho schedules
# included) to results/replication/<part>/, with the single runs' metrics.csv beside them.
# Cost: a population of 8 trains at about 15.4k frames/s in all on 2 free cores on an Intel Xeon with AMX
# (bf16) and 8.4k on an AMD EPYC with AVX2 only (fp32), so 20M frames per member take 2.9 or 5.3 hours; table2 is ten populations, table3 two (one shared with table2), fig5 five (two shared with table3).
# A rerun with another FRAMES extends finished runs, but a run keeps the lambda horizon it started with.
# Across machines that do not keep runs/ (one session each): a finished run or population is kept without
# its checkpoints in results/replication/runs/ (KEEP; commit it), and a later run of this script skips it
# and reports from it; the population still training when a session ends goes to the next machine with
# its checkpoints (`bash scripts/carry.sh pack runs/replication/NAME`, about 80 MB for 8 members; then
# commit carry/, and `carry.sh unpack` there before starting this script again).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1
KS=.venv/bin/kickstart
OUT=${OUT:-runs/replication}
RESULTS=${RESULTS:-results/replication}
FRAMES=${FRAMES:-20000000}
POP=${POP:-8}
SEEDS=${SEEDS:-0 1 2}
PARTS=${PARTS:-table1 table2 table3 fig5}
KEEP=${KEEP:-$RESULTS/runs}   # finished runs without checkpoints: commit it (scripts/resumable.sh)
E=configs/experiments
source scripts/resumable.sh

seeded() {   # seeded NAME CONFIG [OVERRIDES...]: one run per seed, NAME-s<seed>
  local name=$1; shift
  for s in $SEEDS; do run_or_resume "$OUT" "$name-s$s" "$FRAMES" "$@" runtime.seed="$s"; done
}
population() {   # population NAME CONFIG [OVERRIDES...]: one PBT population of POP members
  local name=$1; shift
  run_or_resume "$OUT" "$name" "$FRAMES" "$@" pbt.population_size="$POP"
}
# The ranges every *_pbt config in configs/experiments gives the learning rate and entropy cost
# (tests/test_shipped_configs.py holds them equal): a fixed-lambda row is tuned as its PBT rival is.
TUNE_HPARAMS='{learning_rate: {distribution: log_uniform, low: 0.0003, high: 0.003, perturb: multiply}, entropy_cost: {distribution: log_uniform, low: 0.0001, high: 0.01, perturb: multiply}}'
# Pure distillation (learner.rl_loss=false) has no entropy term, so an entropy cost PBT moved there would
# be a dimension of noise: that row tunes the learning rate alone, over the same range.
TUNE_LR='{learning_rate: {distribution: log_uniform, low: 0.0003, high: 0.003, perturb: multiply}}'
tuned() {   # [MUTABLE=...] tuned NAME CONFIG [OVERRIDES...]: a population of CONFIG, PBT tuning only
            # MUTABLE (default TUNE_HPARAMS)
  local name=$1; shift
  population "$name" "$@" pbt.exploit=ttest pbt.ready_episodes=300 "pbt.mutable=${MUTABLE:-$TUNE_HPARAMS}"
}
report() {   # report PART BASELINE ITEM...: tables and plots; ITEM is LABEL=NAME (NAME's seeded runs,
             # whose metrics.csv are copied beside the report) or pbt:NAME (a population)
  local part=$1 baseline=$2 item label name dirs; shift 2
  local args=()
  mkdir -p "$RESULTS/$part"
  for item in "$@"; do
    if [[ $item == pbt:* ]]; then
      args+=("$(run_path "$OUT" "${item#pbt:}")")
    else
      label=${item%%=*}; name=${item#*=}; dirs=""
      for s in $SEEDS; do
        dirs+="$(run_path "$OUT" "$name-s$s"),"
        cp "$(run_path "$OUT" "$name-s$s")/metrics.csv" "$RESULTS/$part/$name-s$s.metrics.csv"
      done
      args+=(--group "$label=${dirs%,}")
    fi
  done
  [ -n "${METRIC:-}" ] && args+=(--metric "$METRIC")
  $KS report "${args[@]}" --baseline "$baseline" \
      --budgets $((FRAMES / 20)),$((FRAMES / 10)),$((FRAMES / 5)),$((FRAMES / 2)),$FRAMES --out "$RESULTS/$part"
}
H1=$((FRAMES / 10))   # the paper's 1B of 10B
finished() {   # finished NAME...: every NAME kept at FRAMES or more (run_or_resume keeps what it finishes)
  local name
  for name in "$@"; do
    [ -f "$KEEP/$name/KEPT" ] && [ "$(cat "$KEEP/$name/KEPT")" -ge "$FRAMES" ] || return 1
  done
}
# PBT can walk the from-scratch population's learning rate far below its prior (it did on MinAtar-5), so
# Table 3 is also reported against Table 1's fixed-rate runs from scratch once both exist: the judgement
# takes the stronger baseline.
table3_fixed_rate() {
  local scratch=() s
  for s in $SEEDS; do scratch+=("scratch-s$s"); done
  finished experts-rho-pbt scratch-pbt "${scratch[@]}" || return 0
  report table3/fixed-rate scratch scratch=scratch pbt:experts-rho-pbt pbt:scratch-pbt
}

for part in $PARTS; do
  case $part in
    table1)
      seeded scratch $E/minatar5_scratch.yaml
      seeded small-lin1-h1 $E/minatar5_small_linear1_2M.yaml kickstart.lambda_end_frames=$H1
      report table1 scratch scratch=scratch kickstarted=small-lin1-h1
      table3_fixed_rate ;;
    table2)
      population scratch-pbt $E/minatar5_scratch_pbt.yaml
      tuned small-const1 $E/minatar5_small_constant1.yaml
      for h in 1 2 4; do      # lambda 1 -> 0 at h/10 of the budget: the paper's 1B, 2B, 4B of 10B
        tuned small-lin1-h$h $E/minatar5_small_linear1_2M.yaml kickstart.lambda_end_frames=$((FRAMES * h / 10))
      done
      population small-pbt $E/minatar5_small_pbt.yaml
      tuned small-const2 $E/minatar5_small_constant2.yaml
      for h in 1 2 4; do
        tuned small-lin2-h$h $E/minatar5_small_linear2_2M.yaml kickstart.lambda_end_frames=$((FRAMES * h / 10))
      done
      report table2 scratch-pbt pbt:scratch-pbt pbt:small-const1 pbt:small-const2 pbt:small-lin1-h1 \
          pbt:small-lin1-h2 pbt:small-lin1-h4 pbt:small-lin2-h1 pbt:small-lin2-h2 pbt:small-lin2-h4 \
          pbt:small-pbt ;;
    table3)
      population experts-rho-pbt $E/minatar5_experts_pbt.yaml
      population scratch-pbt $E/minatar5_scratch_pbt.yaml
      report table3 scratch-pbt pbt:experts-rho-pbt pbt:scratch-pbt
      table3_fixed_rate ;;
    fig5)
      population experts-rho-pbt $E/minatar5_experts_pbt.yaml
      population experts-shared-pbt $E/minatar5_experts_shared_pbt.yaml
      tuned experts-const $E/minatar5_experts.yaml kickstart.schedule=constant
      MUTABLE=$TUNE_LR tuned distill $E/minatar5_distillation.yaml
      population scratch-pbt $E/minatar5_scratch_pbt.yaml
      report fig5 scratch-pbt pbt:scratch-pbt pbt:experts-const pbt:distill pbt:experts-shared-pbt \
          pbt:experts-rho-pbt ;;
    *) echo "unknown part $part; valid: table1 table2 table3 fig5" >&2; exit 2 ;;
  esac
done
