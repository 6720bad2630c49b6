#!/usr/bin/env bash
# Trains the shipped teachers with kickstart's own code and exports them under teachers/.
# Exactly the commands behind teachers/README.md; about 20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
KS=.venv/bin/kickstart
for game in Asterix Breakout Freeway Seaquest SpaceInvaders; do
  slug=$(echo "$game" | tr 'A-Z' 'a-z')
  $KS train configs/teachers/minatar_expert.yaml env.id=minatar:$game run.name=minatar-$slug run.progress=false
  $KS export runs/teachers/minatar-$slug teachers/minatar-$slug.pt
done
$KS train configs/teachers/minatar5_small.yaml run.name=minatar5-small run.progress=false
$KS export runs/teachers/minatar5-small teachers/minatar5-small.pt
for f in teachers/*.pt; do $KS eval "$f" --episodes 100; done
