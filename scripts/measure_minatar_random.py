"""Measure the mean return of a uniform random policy on each MinAtar game; print a table.

The figures feed ``kickstart/envs/minatar_reference.py`` (``RANDOM``), which defines the 0 of
MinAtar normalised scores. Episodes are collected with ``--envs`` envs in parallel, balanced over
envs (``random_play.py``).

    python scripts/measure_minatar_random.py --episodes 1000 --seed 0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from kickstart.config import EnvConfig  # noqa: E402
from kickstart.envs import minatar  # noqa: E402
from random_play import random_returns  # noqa: E402


def measure(game: str, episodes: int, num_envs: int, seed: int, sticky: float) -> tuple[float, float, float, int]:
    """(mean return, standard error, mean length, agent steps taken)."""
    return random_returns(EnvConfig(id=minatar.PREFIX + game, sticky_actions=sticky), episodes, num_envs, seed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=1000, help="episodes per game")
    p.add_argument("--envs", type=int, default=10, help="envs stepped together")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sticky", type=float, default=minatar.DEFAULT_STICKY)
    args = p.parse_args()
    print(f"uniform random policy, {args.episodes} episodes per game, sticky {args.sticky}, seed {args.seed}")
    print(f"{'game':<14} {'mean return':>12} {'std err':>8} {'mean length':>12} {'steps/s':>9}")
    for game in minatar.GAMES:
        t0 = time.perf_counter()
        mean, se, length, steps = measure(game, args.episodes, args.envs, args.seed, args.sticky)
        rate = steps / (time.perf_counter() - t0)
        print(f"{game:<14} {mean:>12.4f} {se:>8.4f} {length:>12.1f} {rate:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
