"""Any registered Gymnasium env with Discrete or MultiDiscrete actions, as a :class:`BatchedEnv`.

Observations: a ``uint8`` image Box ``HxWxC`` becomes ``(C, H, W)`` (``HxW``: ``(1, H, W)``),
kept as uint8 with ``obs_scale`` 1/255; a Discrete observation becomes a float32 one-hot; any
other Box is flattened to float32 ``(D,)`` with ``obs_scale`` 1. The N envs are stepped in a
plain loop and reset in the same step when they terminate or are truncated; Gymnasium's own
``terminated`` and ``truncated`` (a ``TimeLimit``: the id's registered ``max_episode_steps``, or
``env.max_episode_steps``) are reported as they are, and a truncated episode's final observation is
kept in ``final_obs`` (see :mod:`kickstart.envs.batched`).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Sequence

import numpy as np

from kickstart.config import EnvConfig
from kickstart.envs.batched import BatchedEnv, StepResult, env_seeds
from kickstart.errors import UserError
from kickstart.specs import EnvSpec


def _registry() -> dict:
    import gymnasium
    return gymnasium.envs.registry


def is_registered(env_id: str) -> bool:
    """Whether ``env_id`` is a Gymnasium id (``module:Id`` imports ``module`` first, as gymnasium does)."""
    import gymnasium

    if env_id.startswith("ALE/"):
        try:
            import ale_py
            gymnasium.register_envs(ale_py)
        except ImportError:
            return False
    if ":" in env_id:
        module, _, name = env_id.partition(":")
        try:
            importlib.import_module(module)
        except ImportError:
            return False
        return name in _registry()
    return env_id in _registry()


def close_ids(env_id: str, n: int = 3) -> list[str]:
    return difflib.get_close_matches(env_id, list(_registry()), n=n)


def _make(env_id: str, cfg: EnvConfig):
    import gymnasium

    kwargs = {}
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    try:
        return gymnasium.make(env_id, **kwargs)
    except gymnasium.error.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot make Gymnasium env {env_id!r}: {first}") from None


def _obs_converter(space, env_id: str) -> tuple[tuple[int, ...], str, float, Callable]:
    """(obs_shape, dtype, obs_scale, fn(obs) -> processed obs) for a Gymnasium observation space."""
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        if space.dtype == np.uint8 and len(space.shape) == 3:
            h, w, c = space.shape
            return (c, h, w), "uint8", 1.0 / 255.0, lambda o: np.transpose(o, (2, 0, 1))
        if space.dtype == np.uint8 and len(space.shape) == 2:
            return (1, *space.shape), "uint8", 1.0 / 255.0, lambda o: o[None]
        d = int(np.prod(space.shape))
        return (d,), "float32", 1.0, lambda o: np.asarray(o, np.float32).reshape(-1)
    if isinstance(space, spaces.Discrete):
        n, start = int(space.n), int(space.start)
        eye = np.eye(n, dtype=np.float32)
        return (n,), "float32", 1.0, lambda o: eye[int(o) - start]
    raise UserError(f"Gymnasium env {env_id!r} has observation space {space}; supported: Box, Discrete")


def _action_space(space, env_id: str) -> tuple[tuple[int, ...], bool, np.ndarray]:
    """(action_nvec, multi_discrete, start offsets) of a Discrete or MultiDiscrete action space."""
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return (int(space.n),), False, np.asarray(int(space.start))
    if isinstance(space, spaces.MultiDiscrete) and space.nvec.ndim == 1:
        return tuple(int(v) for v in space.nvec), True, np.asarray(space.start, np.int64)
    raise UserError(f"Gymnasium env {env_id!r} has action space {space}; supported: Discrete, "
                    f"MultiDiscrete (1-D)")


def _frames_per_step(env) -> int:
    skip = getattr(env.unwrapped, "_frameskip", 1)  # ALE/...-v5 repeats actions inside the env
    return skip if isinstance(skip, int) and skip > 0 else 1


def gym_spec(tasks: Sequence[str], cfg: EnvConfig) -> EnvSpec:
    specs = []
    for task in tasks:
        env = _make(task, cfg)
        try:
            obs_shape, dtype, scale, _ = _obs_converter(env.observation_space, task)
            nvec, multi, _ = _action_space(env.action_space, task)
            meanings: tuple[str, ...] = ()
            if not multi:
                get = getattr(env.unwrapped, "get_action_meanings", None)
                meanings = tuple(get()) if callable(get) else tuple(str(a) for a in range(nvec[0]))
            specs.append(EnvSpec(obs_shape=obs_shape, obs_dtype=dtype, obs_scale=scale, action_nvec=nvec,
                                 multi_discrete=multi, action_meanings=meanings,
                                 frames_per_step=_frames_per_step(env), task_names=tuple(tasks)))
        finally:
            env.close()
    first = specs[0]
    for task, s in zip(tasks, specs):
        if (s.obs_shape, s.obs_dtype, s.action_nvec, s.multi_discrete) != (
                first.obs_shape, first.obs_dtype, first.action_nvec, first.multi_discrete):
            raise UserError(f"Gymnasium tasks {tasks[0]!r} and {task!r} differ in observation or action "
                            f"space; tasks trained together must share both")
    return first


class GymBatch(BatchedEnv):
    """``N`` Gymnasium envs in a loop; env ``i``'s first reset uses seed ``env_seeds(seed, N)[i]``."""

    def __init__(self, spec: EnvSpec, cfg: EnvConfig, task_ids: Sequence[int], seed: int):
        super().__init__(spec, task_ids)
        self._envs = [_make(spec.task_names[t], cfg) for t in self.task_ids]
        self._convert = _obs_converter(self._envs[0].observation_space, spec.task_names[0])[3]
        self._start = _action_space(self._envs[0].action_space, spec.task_names[0])[2]
        self._seeds = env_seeds(seed, self.num_envs)
        self._seeded = False

    def _reset(self) -> np.ndarray:
        out = np.empty((self.num_envs, *self.spec.obs_shape), self.spec.np_obs_dtype)
        for i, env in enumerate(self._envs):
            obs, _ = env.reset(seed=None if self._seeded else self._seeds[i])
            out[i] = self._convert(obs)
        self._seeded = True
        return out

    def _step(self, actions: np.ndarray) -> StepResult:
        n = self.num_envs
        out = np.empty((n, *self.spec.obs_shape), self.spec.np_obs_dtype)
        reward = np.empty(n, np.float32)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        final_obs = None
        if self.spec.multi_discrete:
            acts = list(actions + self._start)
        else:
            acts = (actions + int(self._start)).tolist()
        for i, env in enumerate(self._envs):
            obs, r, term, trunc, _ = env.step(acts[i])
            reward[i] = r
            terminated[i] = term
            truncated[i] = trunc and not term   # a terminal state on the time limit's step terminates
            if truncated[i]:
                if final_obs is None:
                    final_obs = np.zeros_like(out)
                final_obs[i] = self._convert(obs)
            if term or trunc:
                obs, _ = env.reset()
            out[i] = self._convert(obs)
        self._tracker.add(reward)
        episodes = [self._tracker.finish(i) for i in np.flatnonzero(terminated | truncated)]
        return StepResult(out, reward, terminated, truncated, episodes, final_obs)

    def _close(self) -> None:
        for env in self._envs:
            env.close()
        self._envs = []
