"""Measure the mean return of a uniform random policy on ViZDoom scenarios; print a table.

The figures feed ``kickstart/envs/data/doom_random_reference.csv`` (``random``), which defines the
0 of the ``doom`` suite's normalised scores. Each scenario is played through the real adapter
(``make_batched_env``, default settings: frame skip 4, 84x84 grayscale) with uniform random actions
over ``--actions`` (``large``, the suite's: each factor uniform and independent; or ``small``).
Episodes are collected with ``--envs`` envs in parallel, balanced over envs (``random_play.py``).

For ``deathmatch_bots`` it also plays ``--bot-matches`` matches with one ``ScenarioGame`` (same
rules: frag reward, respawn, 4200-tic match, random agent) and prints the built-in bots' mean frags
per match, the suite's reference for that task.

    python scripts/measure_doom_random.py --seed 0 basic:1000 take_cover:1000 my_way_home:300 ...
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from kickstart.config import DoomConfig, EnvConfig  # noqa: E402
from kickstart.envs import doom  # noqa: E402
from random_play import random_returns  # noqa: E402


def measure(scenario: str, episodes: int, num_envs: int, seed: int, actions: str) -> tuple[float, float, float, int]:
    """(mean return, standard error, mean length in agent steps, agent steps taken)."""
    cfg = EnvConfig(id=doom.PREFIX + scenario, doom=DoomConfig(actions=actions))
    return random_returns(cfg, episodes, num_envs, seed)


def bot_frags(matches: int, seed: int) -> tuple[float, float, int]:
    """(mean frags of one built-in bot per match, its standard error over matches, bots per match)."""
    dcfg = DoomConfig(actions="large")
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        g = doom.ScenarioGame("deathmatch_bots", dcfg, seed, f"{tmp}/bots.ini", 0)
        per_match = []
        try:
            for _ in range(matches):
                g.new_episode()
                while True:
                    factors = [int(rng.integers(0, n)) for n in doom.FACTOR_SIZES]
                    _, terminated, timed_out = g.act(doom.buttons_of(factors), dcfg.frame_skip)
                    if terminated or timed_out:
                        break
                state = g.game.get_server_state()
                frags = list(state.players_frags)[1:state.player_count]   # player 0 is the agent
                per_match.append(float(np.mean(frags)))
        finally:
            g.close()
    a = np.array(per_match)
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(len(a))), len(frags)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tasks", nargs="+", help="scenario:episodes, e.g. basic:1000")
    p.add_argument("--envs", type=int, default=10, help="envs stepped together")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--actions", choices=("large", "small"), default="large")
    p.add_argument("--bot-matches", type=int, default=20, help="matches for the bots' frags (deathmatch_bots)")
    args = p.parse_args()
    print(f"uniform random policy over the {args.actions} action set, seed {args.seed}, {args.envs} envs")
    print(f"{'scenario':<18} {'episodes':>8} {'mean return':>12} {'std err':>8} {'mean length':>12} {'steps/s':>8}")
    for item in args.tasks:
        name, _, n = item.partition(":")
        scenario = doom.scenario_name(name)
        t0 = time.perf_counter()
        mean, se, length, steps = measure(scenario, int(n or 100), args.envs, args.seed, args.actions)
        rate = steps / (time.perf_counter() - t0)
        print(f"{scenario:<18} {int(n or 100):>8} {mean:>12.4f} {se:>8.4f} {length:>12.1f} {rate:>8.0f}", flush=True)
        if scenario == "deathmatch_bots" and args.bot_matches > 0:
            bots, bse, count = bot_frags(args.bot_matches, args.seed)
            print(f"{'  built-in bots':<18} {args.bot_matches:>8} {bots:>12.4f} {bse:>8.4f}   (mean frags of each "
                  f"of the {count} bots per match)", flush=True)


if __name__ == "__main__":
    main()
