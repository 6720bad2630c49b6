"""Environments: env ids, suites, specs and batched stepping.

Env ids:

* ``minatar:<Game>``: Asterix, Breakout, Freeway, Seaquest, SpaceInvaders (see :mod:`.minatar`);
* ``atari:<Game>``: any ALE ROM, e.g. ``atari:Pong``, ``atari:SpaceInvaders`` (see :mod:`.atari`);
* ``vizdoom:<scenario>``: a ViZDoom scenario, e.g. ``vizdoom:basic``, ``vizdoom:deathmatch_bots``
  (see :mod:`.doom`);
* any registered Gymnasium id with Discrete or MultiDiscrete actions, e.g. ``CartPole-v1``;
* a suite name (``minatar5``, ``atari5``, ``atari57``, ``doom``): several tasks trained together, which
  share one observation shape and one action space (see :mod:`.suites`).

Game names are case-insensitive and may be written in snake_case (``atari:space_invaders``);
task names use the canonical spelling (``atari:SpaceInvaders``).

The actors and the learner use three functions::

    tasks = resolve_tasks(cfg.id)                    # task names; task id = index in this list
    spec = env_spec(cfg)                             # shapes, action set, frames per step
    env = make_batched_env(cfg, task_ids, seed)      # env i runs task task_ids[i]

Heavy imports (ale-py, vizdoom, Gymnasium) happen only when an env of that family is used.
"""

from __future__ import annotations

from collections.abc import Sequence

from kickstart.config import EnvConfig
from kickstart.envs import atari, doom, minatar
from kickstart.envs.batched import BatchedEnv, Episode, StepResult
from kickstart.envs.suites import SUITES, capped_score, has_normalisation, normalised_score, suite_score
from kickstart.errors import UserError
from kickstart.specs import EnvSpec

__all__ = [
    "BatchedEnv", "Episode", "SUITES", "capped_score", "env_spec", "family", "has_normalisation",
    "make_batched_env", "normalised_score", "resolve_tasks", "StepResult", "suite_score",
]

_VALID = ("valid env ids: minatar:<Game> (" + ", ".join(minatar.GAMES) + "), atari:<Game> (e.g. "
          "atari:Pong), vizdoom:<scenario> (" + ", ".join(doom.SCENARIOS) + "), a registered Gymnasium id "
          "(e.g. CartPole-v1), or a suite (" + ", ".join(SUITES) + ")")


def family(task: str) -> str:
    """``"minatar"``, ``"atari"``, ``"vizdoom"`` or ``"gym"``."""
    low = task.strip().lower()
    if low.startswith(minatar.PREFIX):
        return "minatar"
    if low.startswith(atari.PREFIX):
        return "atari"
    if low.startswith(doom.PREFIX):
        return "vizdoom"
    return "gym"


def resolve_tasks(env_id: str) -> list[str]:
    """Task names of ``env_id``: a suite's tasks, or ``[canonical env_id]`` for a single env."""
    key = env_id.strip()
    if key.lower() in SUITES:
        return list(SUITES[key.lower()])
    fam = family(key)
    if fam == "minatar":
        return [minatar.canonical_task(key[len(minatar.PREFIX):])]
    if fam == "atari":
        return [atari.canonical_task(key[len(atari.PREFIX):])]
    if fam == "vizdoom":
        return [doom.canonical_task(key[len(doom.PREFIX):])]
    from kickstart.envs import gym

    if key and gym.is_registered(key):
        return [key]
    close = gym.close_ids(key) if key else []
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UserError(f"unknown env id {env_id!r}{hint}; {_VALID}")


def _is_suite(cfg: EnvConfig) -> bool:
    return cfg.id.strip().lower() in SUITES


def _family_of(tasks: Sequence[str]) -> str:
    fams = {family(t) for t in tasks}
    if len(fams) != 1:  # cannot happen with the built-in suites
        raise UserError(f"tasks {list(tasks)} mix env families; a suite must be all MinAtar, all Atari, all ViZDoom "
                        f"or all Gymnasium")
    return fams.pop()


def _atari_full_actions(cfg: EnvConfig, tasks: Sequence[str]) -> bool:
    """Atari suites always use the 18 actions, so one policy head fits every game."""
    return cfg.full_action_space or len(tasks) > 1 or _is_suite(cfg)


def env_spec(cfg: EnvConfig) -> EnvSpec:
    """What the agent sees of ``cfg.id``: builds one env per task, reads its spaces, closes it."""
    tasks = resolve_tasks(cfg.id)
    fam = _family_of(tasks)
    if fam == "minatar":
        return minatar.minatar_spec(tasks, cfg)
    if fam == "atari":
        return atari.atari_spec(tasks, cfg, _atari_full_actions(cfg, tasks))
    if fam == "vizdoom":
        return doom.doom_spec(tasks, cfg)
    from kickstart.envs import gym

    return gym.gym_spec(tasks, cfg)


def make_batched_env(cfg: EnvConfig, task_ids: Sequence[int], seed: int,
                     spec: EnvSpec | None = None) -> BatchedEnv:
    """``len(task_ids)`` envs; env ``i`` runs task ``resolve_tasks(cfg.id)[task_ids[i]]``.

    Env ``i`` is seeded from ``(seed, i)`` (see :func:`kickstart.envs.batched.env_seeds`), so the
    same seed and actions give the same observations and rewards. ``spec`` may be passed to skip
    recomputing :func:`env_spec`.
    """
    spec = spec or env_spec(cfg)
    fam = _family_of(spec.task_names)
    if fam == "minatar":
        return minatar.MinAtarBatch(spec, cfg, task_ids, seed)
    if fam == "atari":
        return atari.AtariBatch(spec, cfg, task_ids, seed, _atari_full_actions(cfg, spec.task_names))
    if fam == "vizdoom":
        return doom.DoomBatch(spec, cfg, task_ids, seed)
    from kickstart.envs import gym

    return gym.GymBatch(spec, cfg, task_ids, seed)
