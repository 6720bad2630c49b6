"""The batched environment interface shared by every env family.

A :class:`BatchedEnv` steps ``N`` environments together and resets finished ones *in the same
call*: when env ``i``'s episode ended, ``obs[i]`` is already the first observation of its next
episode. Finished episodes are reported as :class:`Episode` records with the raw (unclipped)
return over the whole game, its length in agent steps and in environment frames.

An episode ends in one of two ways, which learning must tell apart (Pardo et al. 2018, "Time Limits
in Reinforcement Learning"):

* **terminated**: the MDP reached a terminal state (a game over; with Atari's ``episodic_life``, a
  life lost). The return ends there: nothing is bootstrapped.
* **truncated**: a time limit cut the episode (Gymnasium's ``TimeLimit``, ``max_episode_steps``,
  Atari's frame cap). The return does *not* end there: the value of the episode's final
  observation must be bootstrapped, so that observation (which the same-step reset replaces in
  ``obs``) is returned in ``final_obs``.

When both happen on one step the episode terminated (``truncated`` is never True with
``terminated``). Truncated episodes are finished episodes like any other for the statistics.

Shapes (``N`` = ``num_envs``)::

    reset() -> obs [N, *spec.obs_shape]      (dtype spec.obs_dtype)
    step_full(actions [N] or [N, D]) -> StepResult(obs [N, ...], reward float32 [N],
        terminated bool [N], truncated bool [N], episodes list[Episode], final_obs [N, ...] | None)
    step(actions) -> obs, reward, done = terminated | truncated, episodes   (when the kind of end
        does not matter: evaluation, benchmarks)

Every returned array is freshly allocated and owned by the caller.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from kickstart.specs import EnvSpec


@dataclass
class Episode:
    """One finished episode (one game, even when lives end learning episodes earlier)."""

    task_id: int
    """Index of the episode's task in ``spec.task_names``."""
    ret: float
    """Undiscounted, unclipped sum of rewards over the whole game."""
    length: int
    """Agent steps."""
    frames: int
    """Environment frames: ``length * spec.frames_per_step`` (the papers' frame count)."""
    env_index: int = -1
    """Which of the batched envs played it."""


class StepResult(NamedTuple):
    """What one step of a :class:`BatchedEnv` returns (see the module docstring)."""

    obs: np.ndarray
    """``[N, *obs_shape]``; where the episode ended, the first observation of the next one."""
    reward: np.ndarray
    """float32 ``[N]``, the raw reward of the step."""
    terminated: np.ndarray
    """bool ``[N]``: the episode ended in a terminal state (for learning: a life loss counts)."""
    truncated: np.ndarray
    """bool ``[N]``: a time limit cut the episode; never True where ``terminated`` is."""
    episodes: list[Episode]
    """The game episodes that finished at this step."""
    final_obs: np.ndarray | None
    """None when no env was truncated; else ``[N, *obs_shape]`` where row ``i`` of a truncated
    env ``i`` is the final observation of its episode (the other rows are unspecified)."""

    @property
    def done(self) -> np.ndarray:
        """bool ``[N]``: the episode ended (terminated or truncated); ``obs`` starts a new one."""
        return self.terminated | self.truncated


def env_seeds(seed: int, num_envs: int) -> list[int]:
    """Independent per-env seeds in ``[0, 2**31)``: env ``i`` gets a hash of ``(seed, i)``.

    Env ``i``'s seed does not depend on ``num_envs``, and nearby run seeds (actor ``k`` and
    ``k + 1``) give unrelated env seeds, unlike ``seed + i``.
    """
    return [int(np.random.SeedSequence((int(seed), i)).generate_state(1)[0] & 0x7FFFFFFF)
            for i in range(num_envs)]


class EpisodeTracker:
    """Running game returns and lengths of ``N`` envs."""

    def __init__(self, num_envs: int, task_ids: np.ndarray, frames_per_step: int):
        self.ret = np.zeros(num_envs, np.float64)
        self.length = np.zeros(num_envs, np.int64)
        self._task_ids = task_ids
        self._fps = frames_per_step

    def reset(self) -> None:
        self.ret[:] = 0.0
        self.length[:] = 0

    def add(self, reward: np.ndarray) -> None:
        self.ret += reward
        self.length += 1

    def finish(self, i: int) -> Episode:
        """Close env ``i``'s episode and start counting its next one."""
        length = int(self.length[i])
        ep = Episode(task_id=int(self._task_ids[i]), ret=float(self.ret[i]), length=length,
                     frames=length * self._fps, env_index=i)
        self.ret[i] = 0.0
        self.length[i] = 0
        return ep


class BatchedEnv(abc.ABC):
    """``N`` environments stepped together, with same-step auto-reset (see module docstring)."""

    spec: EnvSpec
    num_envs: int
    task_ids: np.ndarray
    """int64 [N]: env ``i`` runs task ``spec.task_names[task_ids[i]]``."""

    def __init__(self, spec: EnvSpec, task_ids: Sequence[int]):
        self.spec = spec
        self.task_ids = np.asarray(task_ids, dtype=np.int64).reshape(-1)
        self.num_envs = int(self.task_ids.shape[0])
        if self.num_envs == 0:
            raise ValueError("a BatchedEnv needs at least one env (task_ids is empty)")
        if self.task_ids.min() < 0 or self.task_ids.max() >= spec.num_tasks:
            raise ValueError(f"task_ids must be in [0, {spec.num_tasks}) for tasks {spec.task_names}, "
                             f"got {self.task_ids.tolist()}")
        self._tracker = EpisodeTracker(self.num_envs, self.task_ids, spec.frames_per_step)
        self._started = False
        self._closed = False

    # -- public API ---------------------------------------------------------------------------

    def reset(self) -> np.ndarray:
        """Start a new episode in every env; returns obs ``[N, *obs_shape]``."""
        if self._closed:
            raise RuntimeError("reset() on a closed BatchedEnv")
        self._tracker.reset()
        obs = self._reset()
        self._started = True
        return obs

    def step_full(self, actions: np.ndarray) -> StepResult:
        """Apply one action per env; see the module docstring for the auto-reset contract and the
        two kinds of episode end."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        return self._step(self._check_actions(actions))

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Episode]]:
        """:meth:`step_full` without the kind of end: ``(obs, reward, done, episodes)``, ``done``
        being ``terminated | truncated``. Learning needs :meth:`step_full`."""
        r = self.step_full(actions)
        return r.obs, r.reward, r.done, r.episodes

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> BatchedEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- for subclasses -----------------------------------------------------------------------

    @abc.abstractmethod
    def _reset(self) -> np.ndarray: ...

    @abc.abstractmethod
    def _step(self, actions: np.ndarray) -> StepResult: ...

    def _close(self) -> None:
        pass

    def _check_actions(self, actions: np.ndarray) -> np.ndarray:
        """int64 actions of shape ``[N, *spec.action_shape]``, each within the action space."""
        a = np.asarray(actions)
        shape = (self.num_envs, *self.spec.action_shape)
        if a.shape != shape:
            raise ValueError(f"actions must have shape {shape}, got {a.shape}")
        if a.dtype.kind not in "iu":
            raise ValueError(f"actions must be integers, got dtype {a.dtype}")
        a = a.astype(np.int64, copy=False)
        nvec = np.asarray(self.spec.action_nvec, dtype=np.int64)
        if (a < 0).any() or (a >= (nvec if self.spec.multi_discrete else nvec[0])).any():
            raise ValueError(f"actions must be in [0, n) for action_nvec {self.spec.action_nvec}, "
                             f"got {a.tolist()}")
        return a
