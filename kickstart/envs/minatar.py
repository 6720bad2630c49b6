"""MinAtar games (Young & Tian, 2019) as a :class:`BatchedEnv`.

Observations are MinAtar's ``10x10xC`` boolean state, returned channels-first as ``uint8`` 0/1
``(C, 10, 10)``; in a multi-game suite every game is zero-padded to the largest channel count
(10, Seaquest) so that all tasks share one shape. All games use MinAtar's full 6-action set
``NOOP, LEFT, UP, RIGHT, DOWN, FIRE`` (its ``n, l, u, r, d, f``). Sticky actions default to 0.1,
as the MinAtar authors recommend; one agent step is one frame.

The games are stepped in a plain Python loop over MinAtar's game objects. We load the game
modules from their files rather than through ``import minatar``, whose ``__init__`` imports
matplotlib, pandas and seaborn for rendering (over a second and ~100 MB per actor process);
:class:`_Game` reproduces ``minatar.Environment``'s seeding and sticky-action logic exactly, so a
seeded ``_Game`` and a seeded ``minatar.Environment`` produce the same stream (tested).

MinAtar games have no time limit of their own; ``env.max_episode_steps`` adds one: an episode that
reaches it without a terminal state is *truncated*, and its final observation is kept in
``final_obs`` (see :mod:`kickstart.envs.batched`).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from kickstart.config import EnvConfig
from kickstart.envs.batched import BatchedEnv, StepResult, env_seeds
from kickstart.envs.names import name_key
from kickstart.errors import UserError
from kickstart.specs import EnvSpec

PREFIX = "minatar:"
GAMES = {  # canonical name -> (module name, channels)
    "Asterix": ("asterix", 4),
    "Breakout": ("breakout", 4),
    "Freeway": ("freeway", 7),
    "Seaquest": ("seaquest", 10),
    "SpaceInvaders": ("space_invaders", 6),
}
ACTION_MEANINGS = ("NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE")
DEFAULT_STICKY = 0.1


_BY_KEY = {name_key(g): g for g in GAMES}


def canonical_task(game: str) -> str:
    """``"space_invaders"`` / ``"spaceinvaders"`` / ``"SpaceInvaders"`` -> ``"minatar:SpaceInvaders"``."""
    g = _BY_KEY.get(name_key(game))
    if g is None:
        raise UserError(f"unknown MinAtar game {game!r}; valid: "
                        + ", ".join(PREFIX + name for name in GAMES))
    return PREFIX + g


def _game_name(task: str) -> str:
    return canonical_task(task[len(PREFIX):] if task.lower().startswith(PREFIX) else task)[len(PREFIX):]


_MODULES: dict[str, ModuleType] = {}


def _game_module(module_name: str) -> ModuleType:
    """``minatar.environments.<module_name>`` without running ``minatar/__init__`` (see module doc)."""
    if module_name in _MODULES:
        return _MODULES[module_name]
    full = f"minatar.environments.{module_name}"
    mod = sys.modules.get(full)
    if mod is None:
        pkg = importlib.util.find_spec("minatar")  # locates the package without importing it
        if pkg is None or not pkg.submodule_search_locations:
            raise UserError("MinAtar is not installed; pip install minatar")
        path = Path(list(pkg.submodule_search_locations)[0]) / "environments" / f"{module_name}.py"
        spec = importlib.util.spec_from_file_location(f"kickstart.envs._minatar_{module_name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    _MODULES[module_name] = mod
    return mod


class _Game:
    """One MinAtar game: ``minatar.Environment``'s seed/act/reset logic, without its display code."""

    __slots__ = ("env", "random", "sticky", "last_action")

    def __init__(self, game: str, sticky: float, seed: int):
        self.env = _game_module(GAMES[game][0]).Env(ramping=True)
        self.random = np.random.RandomState(seed)  # shared by sticky actions and game dynamics,
        self.env.random = self.random              # exactly as Environment.seed() does
        self.sticky = sticky
        self.last_action = 0
        self.env.reset()
        # Environment.act(a) is inlined in MinAtarBatch._step: draw rand() on every step (even
        # with sticky 0), repeat last_action when it is below the sticky probability.


def _sticky(cfg: EnvConfig) -> float:
    return DEFAULT_STICKY if cfg.sticky_actions is None else float(cfg.sticky_actions)


def minatar_spec(tasks: Sequence[str], cfg: EnvConfig) -> EnvSpec:
    """Spec of one MinAtar game, or of a suite (channels padded to the largest game)."""
    games = [_game_name(t) for t in tasks]
    channels = max(_Game(g, 0.0, 0).env.state_shape()[2] for g in games)
    minimal = {tuple(ACTION_MEANINGS[a] for a in _Game(g, 0.0, 0).env.minimal_action_set()) for g in games}
    return EnvSpec(
        obs_shape=(channels, 10, 10), obs_dtype="uint8", obs_scale=1.0,
        action_nvec=(len(ACTION_MEANINGS),), multi_discrete=False,
        action_meanings=ACTION_MEANINGS, frames_per_step=1,
        task_names=tuple(PREFIX + g for g in games),
        minimal_action_meanings=minimal.pop() if len(minimal) == 1 else None,
    )


class MinAtarBatch(BatchedEnv):
    """``N`` MinAtar games stepped in one Python loop; env ``i`` is seeded with ``env_seeds(seed, N)[i]``."""

    def __init__(self, spec: EnvSpec, cfg: EnvConfig, task_ids: Sequence[int], seed: int):
        super().__init__(spec, task_ids)
        self._games_of_env = [_game_name(spec.task_names[t]) for t in self.task_ids]
        self._sticky = _sticky(cfg)
        self._seeds = env_seeds(seed, self.num_envs)
        self._max_steps = cfg.max_episode_steps
        self._envs = [_Game(g, self._sticky, s) for g, s in zip(self._games_of_env, self._seeds)]
        channels = [env.env.state_shape()[2] for env in self._envs]
        # Channels-last boolean states are written here (padding channels stay False) and
        # transposed to [N, C, 10, 10] uint8 once per call.
        self._hwc = np.zeros((self.num_envs, 10, 10, spec.obs_shape[0]), dtype=bool)
        self._views = [self._hwc[i, :, :, :c] for i, c in enumerate(channels)]

    def _obs(self) -> np.ndarray:
        return np.ascontiguousarray(self._hwc.transpose(0, 3, 1, 2)).view(np.uint8)

    def _reset(self) -> np.ndarray:
        for env, view in zip(self._envs, self._views):
            env.env.reset()
            view[...] = env.env.state()
        return self._obs()

    def _step(self, actions: np.ndarray) -> StepResult:
        envs, views = self._envs, self._views
        rewards, terminals = [], []
        for i, a in enumerate(actions.tolist()):
            g = envs[i]
            if g.random.rand() < g.sticky:  # minatar.Environment.act, inlined (hot loop)
                a = g.last_action
            g.last_action = a
            r, terminal = g.env.act(a)
            rewards.append(r)
            terminals.append(terminal)
            if not terminal:
                views[i][...] = g.env.state()
        reward = np.array(rewards, np.float32)
        terminated = np.array(terminals, bool)
        tracker = self._tracker
        tracker.add(reward)
        final_obs = None
        if self._max_steps is not None:
            truncated = (tracker.length >= self._max_steps) & ~terminated
            if truncated.any():
                final_obs = self._obs()  # before the resets below; rows of truncated envs are final
        else:
            truncated = np.zeros_like(terminated)
        done = terminated | truncated
        episodes = []
        if done.any():
            for i in np.flatnonzero(done).tolist():
                episodes.append(tracker.finish(i))
                envs[i].env.reset()
                views[i][...] = envs[i].env.state()
        return StepResult(self._obs(), reward, terminated, truncated, episodes, final_obs)
