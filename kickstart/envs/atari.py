"""Atari 2600 games through ale-py's C++ vector env, with the standard IMPALA/DQN processing.

Each agent step repeats the action for 4 frames and returns the max of the last two frames,
converted to grayscale and resized to 84x84 (area interpolation); ``frame_stack`` such frames
are stacked, oldest first, into a ``(frame_stack, 84, 84)`` uint8 observation (``obs_scale``
1/255). At the start of an episode the stack holds zeros except for the newest frame (this is
what ``AtariVectorEnv`` does). Other settings:

* no-op starts: 0 to ``noop_max`` NOOP *frames* after each reset (as OpenAI baselines'
  ``NoopResetEnv`` under the frame skip, and TorchBeast);
* sticky actions with probability ``sticky_actions`` (default 0.0, as IMPALA), applied per
  frame inside ALE (Machado et al., 2018);
* episodes are truncated after ``max_episode_frames`` frames (108k = 30 minutes): reported as
  ``truncated``, not ``terminated``, with the final observation (ALE's ``final_obs``) kept in
  ``final_obs`` (see :mod:`kickstart.envs.batched`);
* the game's minimal action set, or all 18 actions with ``full_action_space`` (always for
  multi-game suites, so that one policy head fits every game);
* no reward clipping (the learner clips), no FIRE on reset (not part of IMPALA).

**Episodic life.** ``AtariVectorEnv(episodic_life=True)`` resets the *whole game* on every life
loss (checked with ale-py 0.12.1: the lives counter is back to full after each life-loss
termination), so the agent would never play past its first life. We therefore run ALE without
it and derive life losses from the ``lives`` counter ourselves: a life loss sets ``terminated`` for
learning (a terminal state of the learning episode, nothing bootstrapped; it wins over a frame cap
reached on the same step), the game goes on, and the :class:`~kickstart.envs.batched.Episode`
(return, length) is reported once per game, when ALE ends it.

**Frames.** ``Episode.frames`` is ``4 * length``, the count the papers use. ALE itself stops the
frame repeat early on the frame where a game ends, so its own frame counter can be a few
frames lower.

A suite's games run in one ``AtariVectorEnv`` per game (each with a single worker thread); the
vector envs are stepped one after the other, so an actor process uses one core.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from kickstart.config import EnvConfig
from kickstart.envs.batched import BatchedEnv, StepResult, env_seeds
from kickstart.envs.names import name_key
from kickstart.errors import UserError
from kickstart.specs import EnvSpec

PREFIX = "atari:"
FRAMES_PER_STEP = 4
OBS_SIZE = 84
JOYSTICK = ("NOOP", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT")
"""Joystick factor of an ALE action (``action_factors[a][0]``); ``action_factors[a][1]`` is fire."""
DEFAULT_STICKY = 0.0


@lru_cache(maxsize=1)
def _roms_by_key() -> dict[str, str]:
    from ale_py import roms
    return {name_key(r): r for r in roms.get_all_rom_ids()}


def _camel(rom_id: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in rom_id.split("_"))


def task_of_rom(rom: str) -> str:
    """``"space_invaders"`` -> ``"atari:SpaceInvaders"`` without a ROM lookup."""
    return PREFIX + _camel(rom)


def rom_id(task_or_game: str) -> str:
    """ALE ROM id (``space_invaders``) of ``atari:SpaceInvaders``, ``SpaceInvaders``, ``space_invaders``..."""
    game = task_or_game[len(PREFIX):] if task_or_game.lower().startswith(PREFIX) else task_or_game
    roms = _roms_by_key()
    rom = roms.get(name_key(game))
    if rom is None:
        close = difflib.get_close_matches(name_key(game), list(roms), n=3)
        hint = f" (did you mean {', '.join(PREFIX + _camel(roms[c]) for c in close)}?)" if close else ""
        raise UserError(f"unknown Atari game {game!r}{hint}; use atari:<Game> with one of ALE's "
                        f"{len(roms)} ROMs, e.g. atari:Pong, atari:SpaceInvaders, atari:MsPacman")
    return rom


def canonical_task(game: str) -> str:
    """``"space_invaders"`` -> ``"atari:SpaceInvaders"`` (ALE's Gymnasium spelling)."""
    return PREFIX + _camel(rom_id(game))


def action_factors(meanings: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """(joystick in :data:`JOYSTICK`, fire in {0, 1}) of each ALE action name, e.g. ``UPFIRE`` -> (1, 1)."""
    out = []
    for m in meanings:
        fire = m.endswith("FIRE")
        stick = (m[:-4] if fire else m) or "NOOP"
        out.append((JOYSTICK.index(stick), int(fire)))
    return tuple(out)


def _full_action_meanings() -> tuple[str, ...]:
    import ale_py
    return tuple(a.name for a in ale_py.Action)[:18]


def _minimal_action_meanings(rom: str) -> tuple[str, ...]:
    import ale_py
    from ale_py import roms

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    ale = ale_py.ALEInterface()
    ale.loadROM(str(roms.get_rom_path(rom)))
    return tuple(a.name for a in ale.getMinimalActionSet())


def atari_spec(tasks: Sequence[str], cfg: EnvConfig, full_action_space: bool) -> EnvSpec:
    """Spec of one game (minimal or full action set) or of a suite (``full_action_space=True``)."""
    roms = [rom_id(t) for t in tasks]
    sets = {_minimal_action_meanings(r) for r in roms}
    if full_action_space:
        meanings = _full_action_meanings()
    else:
        if len(sets) != 1:
            raise UserError(f"Atari tasks {list(tasks)} have different minimal action sets; "
                            f"set env.full_action_space=true")
        (meanings,) = sets
    return EnvSpec(
        obs_shape=(cfg.frame_stack, OBS_SIZE, OBS_SIZE), obs_dtype="uint8", obs_scale=1.0 / 255.0,
        action_nvec=(len(meanings),), multi_discrete=False, action_meanings=meanings,
        frames_per_step=FRAMES_PER_STEP, task_names=tuple(PREFIX + _camel(r) for r in roms),
        action_factors=action_factors(meanings), factor_sizes=(len(JOYSTICK), 2),
        minimal_action_meanings=next(iter(sets)) if len(sets) == 1 else None,
    )


@dataclass
class _Group:
    """The envs of one game: one ``AtariVectorEnv``; ``idx[k]`` is the batch position of its env k."""

    env: object
    idx: np.ndarray


class AtariBatch(BatchedEnv):
    """``N`` Atari envs; env ``i`` is seeded (emulator, sticky actions, no-ops) with ``env_seeds(seed, N)[i]``."""

    def __init__(self, spec: EnvSpec, cfg: EnvConfig, task_ids: Sequence[int], seed: int,
                 full_action_space: bool):
        super().__init__(spec, task_ids)
        from ale_py.vector_env import AtariVectorEnv

        max_frames = cfg.max_episode_frames
        if cfg.max_episode_steps is not None:
            max_frames = min(max_frames, cfg.max_episode_steps * FRAMES_PER_STEP)
        # AtariVectorEnv draws noop_max-1 no-op frames at most; ask for one more so that
        # "up to noop_max" holds.
        noop_max = cfg.noop_max + 1 if cfg.noop_max > 0 else 0
        sticky = DEFAULT_STICKY if cfg.sticky_actions is None else float(cfg.sticky_actions)
        self._episodic_life = cfg.episodic_life
        self._seeds = np.asarray(env_seeds(seed, self.num_envs), dtype=np.int64)
        self._groups: list[_Group] = []
        for t in dict.fromkeys(self.task_ids.tolist()):  # distinct tasks, in order of first use
            idx = np.flatnonzero(self.task_ids == t)
            env = AtariVectorEnv(
                rom_id(spec.task_names[t]), num_envs=len(idx), num_threads=1,
                max_num_frames_per_episode=max_frames, repeat_action_probability=sticky,
                full_action_space=full_action_space, autoreset_mode="SameStep",
                img_height=OBS_SIZE, img_width=OBS_SIZE, grayscale=True,
                stack_num=spec.obs_shape[0], frameskip=FRAMES_PER_STEP, maxpool=True,
                noop_max=noop_max, episodic_life=False, life_loss_info=False,
                reward_clipping=False, use_fire_reset=False,
            )
            if env.single_action_space.n != spec.num_actions:
                raise RuntimeError(f"{spec.task_names[t]}: ALE gives {env.single_action_space.n} "
                                   f"actions, spec says {spec.num_actions}")
            self._groups.append(_Group(env, idx))
        self._lives = np.zeros(self.num_envs, np.int64)
        self._seeded = False

    def _reset(self) -> np.ndarray:
        out = np.empty((self.num_envs, *self.spec.obs_shape), np.uint8)
        for g in self._groups:
            # Seed on the first reset only; later resets continue each env's random streams.
            seed = None if self._seeded else self._seeds[g.idx]
            obs, info = g.env.reset(seed=seed)
            pos = g.idx[info["env_id"]]
            out[pos] = obs
            self._lives[pos] = info["lives"]
        self._seeded = True
        return out

    def _step(self, actions: np.ndarray) -> StepResult:
        n = self.num_envs
        out = np.empty((n, *self.spec.obs_shape), np.uint8)
        reward = np.empty(n, np.float32)
        terminated = np.empty(n, bool)
        truncated = np.empty(n, bool)
        lives = np.empty(n, np.int64)
        final_obs = None
        for g in self._groups:
            # SameStep autoreset: obs of an env whose game ended is its next game's first obs, and
            # info["final_obs"] (present when one ended) its last one.
            obs, r, term, trunc, info = g.env.step(actions[g.idx])
            pos = g.idx[info["env_id"]]
            out[pos] = obs
            reward[pos] = r
            terminated[pos] = term
            truncated[pos] = trunc & ~term
            lives[pos] = info["lives"]
            if truncated[pos].any():
                if final_obs is None:
                    final_obs = np.zeros_like(out)
                cut = truncated[pos]
                final_obs[pos[cut]] = info["final_obs"][cut]
        self._tracker.add(reward)
        game_over = terminated | truncated
        if self._episodic_life:
            lost = lives < self._lives       # a life lost; the game goes on
            terminated |= lost
            truncated &= ~lost
        self._lives = lives
        episodes = [self._tracker.finish(i) for i in np.flatnonzero(game_over)]
        return StepResult(out, reward, terminated, truncated, episodes, final_obs)

    def _close(self) -> None:
        for g in self._groups:
            g.env.close()
        self._groups = []
