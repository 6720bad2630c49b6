# Sourced by the experiment scripts: one run that survives the script being stopped at any point, and
# (with KEEP) the loss of the machine it ran on.
#   run_or_resume OUT NAME FRAMES CONFIG [OVERRIDES...]
# A run (or population) with a checkpoint is resumed (kickstart train --resume; a finished one returns at once); a run
# directory without one (stopped before its first checkpoint) is started again from scratch.
#   KEEP=DIR (optional): a finished run is also kept in DIR/NAME without its checkpoints and TensorBoard
#   events (config, metadata, metrics, a population's members and lineage: what `kickstart report` reads;
#   a few MB where the checkpoints of a population of 8 are about 80). Commit DIR: on a machine that lost
#   OUT, a run kept there is done, and `run_path NAME` names it for reports and copies. An unfinished run
#   travels with its checkpoints instead (scripts/carry.sh).
#   run_path OUT NAME: OUT/NAME where it is, else KEEP/NAME.
# Needs KS (the kickstart command).
run_or_resume() {
  local out=$1 name=$2 frames=$3; shift 3
  local common=(run.total_frames="$frames" run.progress=false run.tensorboard=false)
  if [ ! -d "$out/$name" ] && [ -n "${KEEP:-}" ] && [ -f "$KEEP/$name/KEPT" ]; then
    local kept
    kept=$(cat "$KEEP/$name/KEPT")
    if [ "$kept" -ge "$frames" ]; then
      echo "$name: finished earlier ($kept frames), kept in $KEEP/$name"
      return 0
    fi
    echo "$name: kept in $KEEP/$name at $kept frames without its checkpoints, so it cannot go on to $frames;" \
         "delete $KEEP/$name to train it again from scratch" >&2
    return 2
  fi
  # A population's checkpoints are its members' (one per member directory).
  if [ -d "$out/$name" ] && find "$out/$name" -name checkpoint.pt -print -quit | grep -q .; then
    $KS train --resume "$out/$name" "${common[@]}"
  else
    rm -rf "${out:?}/$name"
    $KS train "$@" "${common[@]}" run.out_dir="$out" run.name="$name"
  fi
  [ -z "${KEEP:-}" ] || keep_run "$out" "$name" "$frames"
}

keep_run() {   # keep_run OUT NAME FRAMES: OUT/NAME, finished at FRAMES, into KEEP/NAME without checkpoints
  local out=$1 name=$2 frames=$3
  rm -rf "${KEEP:?}/$name.tmp"
  mkdir -p "$KEEP/$name.tmp"
  tar -C "$out/$name" -c --exclude=checkpoint.pt --exclude=pbt_snapshot.pt --exclude=tb --exclude='*.tmp' . | tar -C "$KEEP/$name.tmp" -x
  echo "$frames" > "$KEEP/$name.tmp/KEPT"
  rm -rf "${KEEP:?}/$name"
  mv "$KEEP/$name.tmp" "$KEEP/$name"
}

run_path() {   # run_path OUT NAME
  if [ -d "$1/$2" ] || [ -z "${KEEP:-}" ]; then echo "$1/$2"; else echo "$KEEP/$2"; fi
}
