"""What the training loop needs from a runtime, and the pieces every backend shares.

A backend runs :class:`~kickstart.runtime.unroll.Actor` objects somewhere (in this process, in
local processes, on Ray) and hands the learner batches of unrolls. It knows nothing of the method
being trained: the actors' network and extra unroll fields come from picklable factories.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol, Sequence

import torch

from kickstart.config import Config
from kickstart.runtime.unroll import ActorHook, Field


AgentFactory = Callable[[Config, Any], torch.nn.Module]
"""A picklable ``fn(cfg, spec)`` -> the network an actor acts with (the trainer passes the registry's
:func:`kickstart.methods.build_agent`, so an actor process knows every method's network)."""


@dataclasses.dataclass(frozen=True)
class HookFactory:
    """A picklable recipe for the actor hooks of a run: ``fn(cfg, spec, *args)`` -> hooks."""

    fn: Callable[..., Sequence[ActorHook]]
    args: tuple = ()

    def __call__(self, cfg: Config, spec) -> list[ActorHook]:
        return list(self.fn(cfg, spec, *self.args))


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


def assign_tasks(actor_id: int, envs_per_actor: int, num_tasks: int) -> list[int]:
    """Spread tasks evenly: env j of actor i runs task (i * N + j) mod num_tasks."""
    base = actor_id * envs_per_actor
    return [(base + j) % num_tasks for j in range(envs_per_actor)]


def actor_seed(seed: int, actor_id: int, restart: int = 0, session: int = 0) -> int:
    """Distinct seeds per actor, per restart and per session (a restarted actor or a resumed run
    must not replay its env stream)."""
    return (int(seed) * 100_003 + actor_id * 1_009 + restart * 7_919_111 + session * 104_729 + 1) % 2**63


def gather(slots: dict[str, torch.Tensor], fields: dict[str, Field], idx: Sequence[int]) -> dict[str, torch.Tensor]:
    """Concatenate unrolls along the batch axis: per-step fields -> [T+1, B, ...], others -> [B, ...]."""
    return {k: torch.cat([slots[k][i] for i in idx], dim=1 if fields[k].per_step else 0) for k in fields}
