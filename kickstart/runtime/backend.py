"""What the training loop needs from a runtime, and the backend ``runtime.backend`` picks.

A backend runs :class:`~kickstart.runtime.unroll.Actor` objects somewhere (in this process, in
local processes, on Ray) and hands the learner batches of unrolls. It knows nothing of the method
being trained: the actors' network and extra unroll fields come from picklable factories
(:mod:`kickstart.runtime.actor`, with what else every backend shares about its actors).
"""

from __future__ import annotations

from typing import Protocol

import torch

from kickstart.config import CoreConfig
from kickstart.runtime.actor import AgentFactory, HookFactory
from kickstart.runtime.resources import resolve_runtime
from kickstart.runtime.unroll import Field


class Backend(Protocol):
    events: list[str]
    """Human-readable notices (actor restarts, ...) the training loop logs and clears."""
    total_restarts: int
    """Actors restarted so far (logged as ``perf/actor_restarts`` with the events)."""

    def start(self, params: dict[str, torch.Tensor], hparams: dict[str, float]) -> None: ...

    def get_batch(self) -> dict[str, torch.Tensor]:
        """Block until ``batch_size`` unrolls are ready; return them as [T+1, B] tensors."""

    def publish(self, params: dict[str, torch.Tensor], hparams: dict[str, float]) -> None:
        """Make the learner's new parameters and actor-side hyperparameters available to the actors."""

    def close(self) -> None: ...


def make_backend(cfg: CoreConfig, spec, fields: dict[str, Field], hook_factory: HookFactory | None = None,
                 session: int = 0, agent_factory: AgentFactory | None = None) -> Backend:
    """``session`` salts the actors' seeds (the learner step count on resume: no replayed streams).
    ``runtime.num_actors=0`` is resolved here for this machine (:mod:`kickstart.runtime.resources`).
    ``agent_factory`` builds each actor's network (default :func:`kickstart.nets.build_agent`)."""
    cfg = resolve_runtime(cfg)
    if cfg.runtime.backend == "serial":
        from kickstart.runtime.serial import SerialBackend

        return SerialBackend(cfg, spec, fields, hook_factory, session, agent_factory)
    if cfg.runtime.backend == "ray":
        from kickstart.runtime.ray_backend import RayBackend  # ray is an optional extra

        return RayBackend(cfg, spec, fields, hook_factory, session, agent_factory)
    from kickstart.runtime.local import LocalBackend

    return LocalBackend(cfg, spec, fields, hook_factory, session, agent_factory)
