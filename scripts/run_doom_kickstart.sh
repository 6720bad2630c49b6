#!/usr/bin/env bash
# Issue 15's kickstarting experiment on the doom suite: the kickstarting paper's five-experts setting
# (its Table 3) on eight first-person 3D tasks. Every run is resumable: stop the script at any point (or
# lose the session, carrying the unfinished run with scripts/carry.sh) and start it again. Finished runs are
# kept without their checkpoints in results/doom/kickstart/runs/ (KEEP, scripts/resumable.sh; commit it, and
# the exported teachers/doom-<task>.pt), so a later machine skips them.
#   experts: one expert per task (configs/doom_<task>.yaml, seed 0), EXPERT_FRAMES each (default: the
#            config's own budget), exported to teachers/doom-<task>.pt and evaluated over 100 episodes;
#   suite:   the suite's student kickstarted by the eight experts (configs/experiments/doom_experts.yaml,
#            lambda 1 -> 0 linearly at FRAMES/10: the paper's Table 2 has 1B and 2B of 10B within
#            1.4 points at the end, 1B ahead early and 4B well behind), against the
#            same student from scratch (configs/doom.yaml), over SEEDS.
# Settings (environment): FRAMES per suite run (default 20M), EXPERT_FRAMES (default: each config's),
# SEEDS ("0 1 2"), PARTS ("experts suite"). `kickstart report` writes the suite score at budgets, the
# frames the kickstarted student takes to the from-scratch final score, the final improvement and the
# per-task curves to results/doom/kickstart/, with each run's metrics.csv beside them.
# Cost at about 4k frames/s on 2 cores: the experts' own budgets add up to 132M frames (about 9 hours;
# deathmatch_bots alone 50M), the suite runs to 6 x FRAMES (about 8 hours at 20M).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1
KS=.venv/bin/kickstart
OUT=${OUT:-runs/doom-kickstart}
RESULTS=${RESULTS:-results/doom/kickstart}
FRAMES=${FRAMES:-20000000}
SEEDS=${SEEDS:-0 1 2}
PARTS=${PARTS:-experts suite}
TASKS=${TASKS:-"basic defend_the_center predict_position take_cover deadly_corridor my_way_home health_gathering deathmatch_bots"}
KEEP=${KEEP:-$RESULTS/runs}
source scripts/resumable.sh
mkdir -p "$RESULTS"

for part in $PARTS; do
  case $part in
    experts)
      for task in $TASKS; do
        frames=${EXPERT_FRAMES:-$(awk '/^ *total_frames:/ {print $2; exit}' configs/doom_$task.yaml)}
        run_or_resume "$OUT" expert-$task "$frames" configs/doom_$task.yaml runtime.seed=0
        # Exported and evaluated (100 episodes; deathmatch_bots' take minutes) once per expert: again only
        # when its run reached other frames. A run kept from an earlier machine was exported there.
        eval_txt="$RESULTS/expert-$task.eval.txt" stamp="$RESULTS/expert-$task.frames"
        if [ -f "$OUT/expert-$task/checkpoint.pt" ]; then
          reached=$(tail -n 1 "$OUT/expert-$task/metrics.csv" | cut -d, -f1)
          if [ ! -f teachers/doom-$task.pt ] || [ ! -s "$eval_txt" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$reached" ]; then
            $KS export "$OUT/expert-$task" teachers/doom-$task.pt
            $KS eval teachers/doom-$task.pt --episodes 100 > "$eval_txt"
            echo "$reached" > "$stamp"
          fi
        fi
        [ -f teachers/doom-$task.pt ] && [ -s "$eval_txt" ] || { echo "teachers/doom-$task.pt or its evaluation is" \
            "missing and expert-$task has no checkpoint here; delete $KEEP/expert-$task to train it again" >&2; exit 2; }
        cp "$(run_path "$OUT" expert-$task)/metrics.csv" "$RESULTS/expert-$task.metrics.csv"
      done
      for task in $TASKS; do cat "$RESULTS/expert-$task.eval.txt"; done > "$RESULTS/experts.txt" ;;
    suite)
      for task in $TASKS; do
        [ -f teachers/doom-$task.pt ] || { echo "teachers/doom-$task.pt is missing: run PARTS=experts first" >&2; exit 2; }
      done
      kicked="" scratch=""
      for s in $SEEDS; do
        run_or_resume "$OUT" kickstarted-s$s "$FRAMES" configs/experiments/doom_experts.yaml runtime.seed=$s \
            kickstart.lambda_end_frames=$((FRAMES / 10))
        run_or_resume "$OUT" scratch-s$s "$FRAMES" configs/doom.yaml runtime.seed=$s
        for arm in kickstarted scratch; do
          cp "$(run_path "$OUT" $arm-s$s)/metrics.csv" "$RESULTS/$arm-s$s.metrics.csv"
        done
        kicked+="$(run_path "$OUT" kickstarted-s$s)," scratch+="$(run_path "$OUT" scratch-s$s),"
      done
      $KS report --group "kickstarted=${kicked%,}" --group "scratch=${scratch%,}" --baseline scratch \
          --budgets $((FRAMES / 20)),$((FRAMES / 10)),$((FRAMES / 5)),$((FRAMES / 2)),$FRAMES --out "$RESULTS" ;;
    *) echo "unknown part $part; valid: experts suite" >&2; exit 2 ;;
  esac
done
