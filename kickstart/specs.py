"""What an environment looks like to an agent: shapes, action set, frame accounting, tasks.

An :class:`EnvSpec` is all a network, an actor or a teacher needs to know about an environment
(or about a multi-task suite, whose tasks share one observation shape and one action space).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class EnvSpec:
    obs_shape: tuple[int, ...]
    """Shape of one observation after processing: ``(C, H, W)`` for images, ``(D,)`` for vectors."""
    obs_dtype: str
    """numpy dtype name of observations as stored in unrolls (``uint8`` or ``float32``)."""
    obs_scale: float
    """Networks multiply observations by this before use (1/255 for Atari pixels, 1 otherwise)."""
    action_nvec: tuple[int, ...]
    """Action space: ``(A,)`` for ``Discrete(A)``; ``(n_1, ..., n_D)`` for ``MultiDiscrete``."""
    multi_discrete: bool
    """True when actions are vectors (``MultiDiscrete``), False for ``Discrete``."""
    action_meanings: tuple[str, ...]
    """Name of each discrete action (e.g. ALE's ``UPFIRE``); used to map a teacher's actions onto
    a student's. Empty for MultiDiscrete spaces."""
    frames_per_step: int
    """Environment frames per agent step (the action repeat: 4 on Atari, 1 otherwise)."""
    task_names: tuple[str, ...]
    """Tasks of the run (one for a single env, several for a suite), indexed by task id."""
    action_factors: tuple[tuple[int, ...], ...] | None = field(default=None)
    """Optional factorisation of a Discrete action set: ``action_factors[a]`` is the tuple of
    factor indices of action ``a`` (e.g. (joystick, fire) for Atari's 18 actions), over factor sizes
    ``factor_sizes``. Lets a factorised policy head act in a Discrete space."""
    factor_sizes: tuple[int, ...] | None = field(default=None)
    minimal_action_meanings: tuple[str, ...] | None = field(default=None)
    """The game's minimal action set by meaning (MinAtar, Atari), a subset of ``action_meanings``;
    None when the env has none or a suite's games differ. Mix & Match's small action spaces."""

    @property
    def num_actions(self) -> int:
        """Number of discrete actions (Discrete only)."""
        assert not self.multi_discrete
        return self.action_nvec[0]

    @property
    def action_shape(self) -> tuple[int, ...]:
        """Shape of one action as stored: ``()`` for Discrete, ``(D,)`` for MultiDiscrete."""
        return (len(self.action_nvec),) if self.multi_discrete else ()

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    @property
    def np_obs_dtype(self) -> np.dtype:
        return np.dtype(self.obs_dtype)
