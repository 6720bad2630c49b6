#!/usr/bin/env bash
# Carries unfinished runs to the next machine through git, for machines that do not keep their disk
# between sessions (runs/ is not committed). A run directory (a single run or a whole population)
# travels without its TensorBoard events as carry/<its path>.tar.gz; put back, it resumes where its
# last checkpoint was (`kickstart train --resume`, or the experiment scripts, which resume what they find).
#   bash scripts/carry.sh pack RUN_DIR...     store (or refresh) these runs; then commit carry/
#   bash scripts/carry.sh unpack              put every carried run back where it was; one already
#                                             there is left alone
#   bash scripts/carry.sh drop RUN_DIR...     forget carried runs (finished, their results committed)
# RUN_DIR is a path inside this repository, e.g. runs/learning/pong-s2.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CARRY=carry

usage() { echo "usage: bash scripts/carry.sh pack|drop RUN_DIR... | unpack" >&2; exit 2; }
relative() {   # relative RUN_DIR: its path from the repository root, or an error
  local abs
  abs=$(cd "$1" 2>/dev/null && pwd) || { echo "carry: $1 is not a directory" >&2; exit 2; }
  case $abs/ in
    "$ROOT"/*/) echo "${abs#"$ROOT"/}" ;;
    *) echo "carry: $1 is not inside $ROOT; valid: a run directory under the repository" >&2; exit 2 ;;
  esac
}

[ $# -ge 1 ] || usage
cmd=$1; shift
case $cmd in
  pack)
    [ $# -ge 1 ] || usage
    for dir in "$@"; do
      rel=$(relative "$dir")
      find "$rel" -name checkpoint.pt -print -quit | grep -q . || {
        echo "carry: $rel holds no checkpoint.pt; nothing to resume from" >&2; exit 2; }
      mkdir -p "$CARRY/$(dirname "$rel")"
      tar -czf "$CARRY/$rel.tar.gz.tmp" --exclude=tb --exclude='*.tmp' "$rel"
      mv "$CARRY/$rel.tar.gz.tmp" "$CARRY/$rel.tar.gz"
      echo "carry: $rel -> $CARRY/$rel.tar.gz ($(du -h "$CARRY/$rel.tar.gz" | cut -f1))"
    done ;;
  unpack)
    [ $# -eq 0 ] || usage
    [ -d "$CARRY" ] || { echo "carry: nothing carried"; exit 0; }
    find "$CARRY" -name '*.tar.gz' | sort | while read -r archive; do
      rel=${archive#"$CARRY"/}; rel=${rel%.tar.gz}
      if [ -e "$rel" ]; then
        echo "carry: $rel is already here; left as it is"
      else
        tar -xzf "$archive"
        echo "carry: $rel put back"
      fi
    done ;;
  drop)
    [ $# -ge 1 ] || usage
    for dir in "$@"; do
      rel=${dir%/}; rel=${rel#"$ROOT"/}; rel=${rel#./}
      [ -f "$CARRY/$rel.tar.gz" ] || { echo "carry: $rel is not carried" >&2; exit 2; }
      rm "$CARRY/$rel.tar.gz"
      echo "carry: $rel dropped"
    done ;;
  *) echo "carry: unknown command $cmd; valid: pack, unpack, drop" >&2; exit 2 ;;
esac
