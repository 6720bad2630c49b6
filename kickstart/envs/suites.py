"""Multi-task suites and score normalisation.

Suites (tasks share one observation shape and one action space):

* ``minatar5``: the five MinAtar games; observations are zero-padded to 10 channels (Seaquest's
  count), all games use MinAtar's 6 actions.
* ``atari5``: Pong, Breakout, Boxing, SpaceInvaders, Seaquest: cheap to emulate, with known
  human/random scores, and diverse (a two-player duel, paddle control, a one-on-one fight, a
  shooter, and a shooter with a resource to manage; dense and sparse rewards, short and long
  episodes). Atari suites always use the full 18-action set, whatever ``env.full_action_space``.
* ``atari57``: the 57 games of the human-normalised benchmark (table in ``data/``).
* ``doom``: eight ViZDoom scenarios, one per skill (see :mod:`.doom`): aiming (``basic``,
  ``defend_the_center``, ``predict_position``), dodging (``take_cover``), combat
  (``deadly_corridor``), navigation (``my_way_home``), foraging (``health_gathering``) and a
  deathmatch against built-in bots (``deathmatch_bots``). The tasks share the observation settings
  and ``env.doom.actions``: ``large`` (the 108-action factorised set, what ``configs/doom.yaml``
  trains with) is the same set for every task; ``small`` is the union of the tasks' own buttons.

Scores:

* Atari: human-normalised, ``100 * (ret - random) / (human - random)`` with the random and human
  returns of ``data/atari57_human_random.csv`` (DQN Zoo's table).
* MinAtar: ``100 * (ret - random) / (reference - random)`` with the measured uniform-random
  return and a reference return per game from :mod:`kickstart.envs.minatar_reference`.
* ViZDoom: ``100 * (ret - random) / (reference - random)`` with the table
  ``data/doom_random_reference.csv``: ``random`` is the measured mean return of a uniform random
  policy over the large action set (``scripts/measure_doom_random.py``, default env settings);
  ``reference`` is the most an episode can return under the scenario's rules (with frame skip 4;
  reaching it takes near-perfect play), and for ``deathmatch_bots``, whose frags have no bound, the
  built-in bots' own mean frags per match. Each row says how its reference follows from the
  scenario's rewards (ViZDoom's scenario documentation, docs/environments/default.md).
* Other tasks have no normalisation: :func:`normalised_score` returns the raw return and
  :func:`has_normalisation` is False.

``capped_score`` caps a normalised score at 100 (so a suite score rewards breadth rather than one
game far above human), and ``suite_score`` is the mean capped score over all the suite's tasks,
or None while some task has no finished episode yet.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

from kickstart.envs import atari, doom, minatar
from kickstart.envs.minatar_reference import RANDOM as MINATAR_RANDOM
from kickstart.envs.minatar_reference import REFERENCE as MINATAR_REFERENCE
from kickstart.envs.names import name_key
from kickstart.errors import UserError

ATARI_TABLE = Path(__file__).with_name("data") / "atari57_human_random.csv"
DOOM_TABLE = Path(__file__).with_name("data") / "doom_random_reference.csv"


@lru_cache(maxsize=1)
def atari_human_random() -> dict[str, tuple[float, float]]:
    """``{rom_id: (random, human)}`` from the packaged Atari-57 table."""
    rows = [line for line in ATARI_TABLE.read_text().splitlines() if line and not line.startswith("#")]
    return {r["game"]: (float(r["random"]), float(r["human"])) for r in csv.DictReader(rows)}


@lru_cache(maxsize=1)
def doom_random_reference() -> dict[str, tuple[float, float]]:
    """``{scenario: (random, reference)}`` from the packaged ViZDoom table."""
    rows = [line for line in DOOM_TABLE.read_text().splitlines() if line and not line.startswith("#")]
    return {r["scenario"]: (float(r["random"]), float(r["reference"])) for r in csv.DictReader(rows)}


SUITES: dict[str, list[str]] = {
    "minatar5": [minatar.PREFIX + g for g in minatar.GAMES],
    "atari5": ["atari:Pong", "atari:Breakout", "atari:Boxing", "atari:SpaceInvaders", "atari:Seaquest"],
    "atari57": [atari.task_of_rom(g) for g in atari_human_random()],
    "doom": [doom.PREFIX + s for s in ("basic", "defend_the_center", "predict_position", "take_cover",
                                       "deadly_corridor", "my_way_home", "health_gathering", "deathmatch_bots")],
}


def _bounds(task: str) -> tuple[float, float] | None:
    """(score-0 return, score-100 return) of ``task``, or None without a normalisation."""
    low = task.strip().lower()
    if low.startswith(atari.PREFIX):
        by_key = {name_key(g): v for g, v in atari_human_random().items()}
        return by_key.get(name_key(low[len(atari.PREFIX):]))
    if low.startswith(minatar.PREFIX):
        game = {name_key(g): g for g in minatar.GAMES}.get(name_key(low[len(minatar.PREFIX):]))
        if game is None:
            return None
        return MINATAR_RANDOM[game], MINATAR_REFERENCE[game]
    if low.startswith(doom.PREFIX):
        try:
            scenario = doom.scenario_name(low)
        except UserError:
            return None
        return doom_random_reference().get(scenario)
    return None


def has_normalisation(task: str) -> bool:
    """Whether ``task`` has a normalised score (Atari-57 games, MinAtar games, the ``doom`` suite's tasks)."""
    return _bounds(task) is not None


def normalised_score(task: str, ret: float) -> float:
    """``100 * (ret - low) / (high - low)``; the raw ``ret`` when ``task`` has no normalisation."""
    b = _bounds(task)
    if b is None:
        return float(ret)
    low, high = b
    return 100.0 * (float(ret) - low) / (high - low)


def capped_score(task: str, ret: float) -> float:
    """``min(100, normalised_score)``; the raw ``ret`` (uncapped) when there is no normalisation."""
    s = normalised_score(task, ret)
    return min(100.0, s) if has_normalisation(task) else s


def suite_score(mean_return_per_task: Mapping[str, float | None],
                tasks: Sequence[str] | None = None) -> float | None:
    """Mean of the capped scores of ``tasks`` (default: the mapping's keys).

    Args:
      mean_return_per_task: mean episode return of each task with a finished episode; missing
        tasks, None and NaN mean "no episode yet".
      tasks: every task of the suite (``spec.task_names``). Pass it: the score is None until every
        one of these tasks has a return, so that an early score is not the mean of easy tasks.
    """
    tasks = list(mean_return_per_task) if tasks is None else list(tasks)
    if not tasks:
        return None
    scores = []
    for t in tasks:
        r = mean_return_per_task.get(t)
        if r is None or (isinstance(r, float) and math.isnan(r)):
            return None
        scores.append(capped_score(t, r))
    return sum(scores) / len(scores)
