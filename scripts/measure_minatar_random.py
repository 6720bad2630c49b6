"""Measure the mean return of a uniform random policy on each MinAtar game; print a table.

The figures feed ``kickstart/envs/minatar_reference.py`` (``RANDOM``), which defines the 0 of
MinAtar normalised scores. Episodes are collected with ``--envs`` envs in parallel, each
contributing exactly ``episodes / envs`` episodes (its first ones), so that short episodes are
not over-represented as they would be by taking the first ``episodes`` to finish.

    python scripts/measure_minatar_random.py --episodes 1000 --seed 0
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from kickstart.config import EnvConfig
from kickstart.envs import make_batched_env, minatar


def measure(game: str, episodes: int, num_envs: int, seed: int, sticky: float) -> tuple[float, float, float, int]:
    """(mean return, standard error, mean length, agent steps taken)."""
    per_env = math.ceil(episodes / num_envs)
    env = make_batched_env(EnvConfig(id=minatar.PREFIX + game, sticky_actions=sticky), [0] * num_envs, seed)
    rng = np.random.default_rng(seed)
    returns: list[list[float]] = [[] for _ in range(num_envs)]
    lengths: list[int] = []
    env.reset()
    steps = 0
    while min(len(r) for r in returns) < per_env:
        _, _, done, eps = env.step(rng.integers(0, env.spec.num_actions, num_envs))
        steps += num_envs
        env_of = np.flatnonzero(done)
        for i, ep in zip(env_of, eps):
            if len(returns[i]) < per_env:
                returns[i].append(ep.ret)
                lengths.append(ep.length)
    env.close()
    flat = np.array([r for rs in returns for r in rs])
    return float(flat.mean()), float(flat.std(ddof=1) / math.sqrt(len(flat))), float(np.mean(lengths)), steps


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
