# Sourced by the experiment scripts: one run that survives the script being stopped at any point.
#   run_or_resume OUT NAME FRAMES CONFIG [OVERRIDES...]
# A run (or population) with a checkpoint is resumed (kickstart train --resume; a finished one returns at once); a run
# directory without one (stopped before its first checkpoint) is started again from scratch.
# Needs KS (the kickstart command).
run_or_resume() {
  local out=$1 name=$2 frames=$3; shift 3
  local common=(run.total_frames="$frames" run.progress=false run.tensorboard=false)
  # A population's checkpoints are its members' (one per member directory).
  if [ -d "$out/$name" ] && find "$out/$name" -name checkpoint.pt -print -quit | grep -q .; then
    $KS train --resume "$out/$name" "${common[@]}"
  else
    rm -rf "${out:?}/$name"
    $KS train "$@" "${common[@]}" run.out_dir="$out" run.name="$name"
  fi
}
