"""Raw stepping speed of the batched environments: agent steps/s and frames/s, one thread.

    python bench/envs_speed.py [--envs 1 16 32] [--seconds 1.5] [ids ...]

Each id (default: the five MinAtar games, atari:Pong, atari:Breakout, and the ViZDoom scenarios
vizdoom:basic, vizdoom:health_gathering and vizdoom:deathmatch_bots, 7 bots) is stepped as one
``BatchedEnv`` of ``N`` envs with uniform random actions, as an actor would step it minus the
network. Each figure is the best of 5 timed windows of ``--seconds / 5``. Prints figures, not
verdicts. ``bench/throughput`` measures the same thing for the training configs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kickstart.config import EnvConfig  # noqa: E402
from kickstart.envs import env_spec, make_batched_env, minatar  # noqa: E402

DEFAULT_IDS = [minatar.PREFIX + g for g in minatar.GAMES] + ["atari:Pong", "atari:Breakout", "vizdoom:basic",
                                                             "vizdoom:health_gathering", "vizdoom:deathmatch_bots"]


def env_rate(env_id: str, num_envs: int, seconds: float, seed: int = 0) -> tuple[float, int]:
    """(best agent steps/s, frames per step) of ``num_envs`` envs of ``env_id``."""
    cfg = EnvConfig(id=env_id)
    spec = env_spec(cfg)
    rng = np.random.default_rng(seed)
    high = np.asarray(spec.action_nvec) if spec.multi_discrete else spec.action_nvec[0]
    actions = [rng.integers(0, high, size=(num_envs, *spec.action_shape)) for _ in range(256)]
    with make_batched_env(cfg, [i % spec.num_tasks for i in range(num_envs)], seed, spec) as env:
        env.reset()
        for a in actions[:10]:
            env.step(a)
        best, i = 0.0, 0
        for _ in range(5):
            n, t0 = 0, time.perf_counter()
            while True:
                env.step(actions[i % len(actions)])
                i += 1
                n += 1
                dt = time.perf_counter() - t0
                if dt >= seconds / 5:
                    break
            best = max(best, n * num_envs / dt)
    return best, spec.frames_per_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ids", nargs="*", default=DEFAULT_IDS,
                    help="env ids (default: MinAtar games, Pong, Breakout, three ViZDoom scenarios)")
    ap.add_argument("--envs", type=int, nargs="+", default=[1, 16, 32], help="batch sizes N")
    ap.add_argument("--seconds", type=float, default=1.5, help="timed seconds per figure")
    args = ap.parse_args()
    print("uniform random actions, one thread; agent steps/s (frames/s)")
    print(f"{'env':24s}" + "".join(f"{'N=' + str(n):>22s}" for n in args.envs))
    for env_id in args.ids:
        cells = []
        for n in args.envs:
            sps, fps = env_rate(env_id, n, args.seconds)
            cells.append(f"{sps:>10,.0f} ({sps * fps:>9,.0f})")
        print(f"{env_id:24s}" + "".join(f"{c:>22s}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
