"""Uniform random play through the real env adapter, balanced over envs: what the reference scripts share.

Used by ``measure_minatar_random.py`` and ``measure_doom_random.py``, whose figures define the 0 of
normalised scores. Each of ``num_envs`` envs contributes exactly ``ceil(episodes / num_envs)``
episodes (its first ones), so that short episodes are not over-represented as they would be by
taking the first ``episodes`` to finish.
"""

from __future__ import annotations

import math

import numpy as np

from kickstart.config import EnvConfig
from kickstart.envs import make_batched_env


def random_returns(cfg: EnvConfig, episodes: int, num_envs: int, seed: int) -> tuple[float, float, float, int]:
    """(mean return, standard error, mean length in agent steps, agent steps taken) of uniform random
    actions on ``cfg``'s first task."""
    per_env = math.ceil(episodes / num_envs)
    env = make_batched_env(cfg, [0] * num_envs, seed)
    rng = np.random.default_rng(seed)
    returns: list[list[float]] = [[] for _ in range(num_envs)]
    lengths: list[int] = []
    steps = 0
    try:
        env.reset()
        while min(len(r) for r in returns) < per_env:
            _, _, done, eps = env.step(rng.integers(0, env.spec.num_actions, num_envs))
            steps += num_envs
            for i, ep in zip(np.flatnonzero(done), eps):
                if len(returns[i]) < per_env:
                    returns[i].append(ep.ret)
                    lengths.append(ep.length)
    finally:
        env.close()
    flat = np.array([r for rs in returns for r in rs])
    return float(flat.mean()), float(flat.std(ddof=1) / math.sqrt(len(flat))), float(np.mean(lengths)), steps
