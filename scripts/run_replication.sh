#!/usr/bin/env bash
# Issue 14's experiments on MinAtar-5 (the kickstarting paper's Tables 1-3 and Fig. 5), every run resumable:
# stop the script at any point (or lose the session) and start it again with the same settings; finished
# runs are kept, stopped ones continue from their last checkpoint (populations too).
#   table1: the small multi-task teacher (teachers/minatar5-small.pt, a feed-forward net) kickstarting the
#           larger LSTM student, lambda 1 -> 0 linearly at FRAMES/10, against the student from scratch;
#   table2: the same teacher with lambda constant (1, 2), linear from 1 or 2 to 0 at FRAMES/10, /5, 2/5
#           (the paper's 1B/2B/4B of 10B), and evolved by PBT;
#   table3: the five task experts with per-teacher lambda_i = alpha * rho_i evolved by PBT, against from
#           scratch with PBT over the same hyperparameters (the paper's baseline is PBT-tuned too);
#   fig5:   the five experts four ways: a constant lambda for every teacher, one shared lambda evolved by
#           PBT, per-teacher lambdas evolved by PBT (table3's population), pure distillation.
# Settings (environment): FRAMES per run or member (default 20M), POP members per population (8),
# SEEDS of the single runs ("0 1 2"), PARTS to run ("table1 table2 table3 fig5"), METRIC the reports
# compare (default: the suite score; e.g. episode/return/minatar:Breakout for one game). Runs go to
# runs/replication/; `kickstart report` writes each part's tables and plots (PBT's lambda and rho schedules
# included) to results/replication/<part>/, with the single runs' metrics.csv beside them.
# Caveats to settle before table2 and fig5 run (table1 and table3 compare like with like):
#   - their PBT rows are the top 3 of 8 members with the learning rate and entropy cost tuned too, the
#     fixed-schedule rows 3 seeds with those fixed; the paper had PBT tune those for every row (Sec. 5.1.1);
#   - a rerun with another FRAMES extends finished runs, but a run keeps the lambda horizon it started with.
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
report() {   # report PART BASELINE ITEM...: tables and plots; ITEM is LABEL=NAME (NAME's seeded runs,
             # whose metrics.csv are copied beside the report) or pbt:NAME (a population)
  local part=$1 baseline=$2 item label name dirs; shift 2
  local args=()
  mkdir -p "$RESULTS/$part"
  for item in "$@"; do
    if [[ $item == pbt:* ]]; then
      args+=("$OUT/${item#pbt:}")
    else
      label=${item%%=*}; name=${item#*=}; dirs=""
      for s in $SEEDS; do
        dirs+="$OUT/$name-s$s,"
        cp "$OUT/$name-s$s/metrics.csv" "$RESULTS/$part/$name-s$s.metrics.csv"
      done
      args+=(--group "$label=${dirs%,}")
    fi
  done
  [ -n "${METRIC:-}" ] && args+=(--metric "$METRIC")
  $KS report "${args[@]}" --baseline "$baseline" \
      --budgets $((FRAMES / 20)),$((FRAMES / 10)),$((FRAMES / 5)),$((FRAMES / 2)),$FRAMES --out "$RESULTS/$part"
}
H1=$((FRAMES / 10)); H2=$((FRAMES / 5)); H4=$((2 * FRAMES / 5))   # the paper's 1B, 2B, 4B of 10B

for part in $PARTS; do
  case $part in
    table1)
      seeded scratch $E/minatar5_scratch.yaml
      seeded small-lin1-h1 $E/minatar5_small_linear1_2M.yaml kickstart.lambda_end_frames=$H1
      report table1 scratch scratch=scratch kickstarted=small-lin1-h1 ;;
    table2)
      seeded scratch $E/minatar5_scratch.yaml
      seeded small-const1 $E/minatar5_small_constant1.yaml
      seeded small-const2 $E/minatar5_small_constant2.yaml
      for l0 in 1 2; do
        seeded small-lin$l0-h1 $E/minatar5_small_linear${l0}_2M.yaml kickstart.lambda_end_frames=$H1
        seeded small-lin$l0-h2 $E/minatar5_small_linear${l0}_2M.yaml kickstart.lambda_end_frames=$H2
        seeded small-lin$l0-h4 $E/minatar5_small_linear${l0}_2M.yaml kickstart.lambda_end_frames=$H4
      done
      population small-pbt $E/minatar5_small_pbt.yaml
      report table2 scratch scratch=scratch const1=small-const1 const2=small-const2 lin1-h1=small-lin1-h1 \
          lin1-h2=small-lin1-h2 lin1-h4=small-lin1-h4 lin2-h1=small-lin2-h1 lin2-h2=small-lin2-h2 \
          lin2-h4=small-lin2-h4 pbt:small-pbt ;;
    table3)
      population experts-rho-pbt $E/minatar5_experts_pbt.yaml
      population scratch-pbt $E/minatar5_scratch_pbt.yaml
      report table3 scratch-pbt pbt:experts-rho-pbt pbt:scratch-pbt ;;
    fig5)
      seeded scratch $E/minatar5_scratch.yaml
      seeded experts-const $E/minatar5_experts.yaml kickstart.schedule=constant
      seeded distill $E/minatar5_distillation.yaml
      population experts-shared-pbt $E/minatar5_experts_shared_pbt.yaml
      population experts-rho-pbt $E/minatar5_experts_pbt.yaml
      report fig5 scratch scratch=scratch constant=experts-const distillation=distill pbt:experts-shared-pbt \
          pbt:experts-rho-pbt ;;
    *) echo "unknown part $part; valid: table1 table2 table3 fig5" >&2; exit 2 ;;
  esac
done
