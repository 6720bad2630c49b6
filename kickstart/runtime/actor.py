"""What every backend does with its actors, whatever runs them: build one, seed it, restart it.

An actor is an :class:`~kickstart.runtime.unroll.Actor` over ``runtime.envs_per_actor`` envs. The
backends run it in this process (:mod:`.serial`), in an actor process (:mod:`.local`) or in a Ray
actor (:mod:`.ray_backend`), and all of them build it with :func:`build_actor`, seed it with
:func:`actor_seed` and count its restarts with a :class:`RestartBudget`. Nothing here knows the
method being trained: the actors' network and extra unroll fields come from picklable factories.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import torch

from kickstart.config import CoreConfig
from kickstart.runtime.unroll import Actor, ActorHook

AgentFactory = Callable[[CoreConfig, Any], torch.nn.Module]
"""A picklable ``fn(cfg, spec)`` -> the network an actor acts with (the trainer passes the registry's
:func:`kickstart.methods.build_agent`, so an actor process knows every method's network)."""


@dataclasses.dataclass(frozen=True)
class HookFactory:
    """A picklable recipe for the actor hooks of a run: ``fn(cfg, spec, *args)`` -> hooks."""

    fn: Callable[..., Sequence[ActorHook]]
    args: tuple = ()

    def __call__(self, cfg: CoreConfig, spec) -> list[ActorHook]:
        return list(self.fn(cfg, spec, *self.args))


def assign_tasks(actor_id: int, envs_per_actor: int, num_tasks: int) -> list[int]:
    """Spread tasks evenly: env j of actor i runs task (i * N + j) mod num_tasks."""
    base = actor_id * envs_per_actor
    return [(base + j) % num_tasks for j in range(envs_per_actor)]


def actor_seed(seed: int, actor_id: int, restart: int = 0, session: int = 0) -> int:
    """Distinct seeds per actor, per restart and per session (a restarted actor or a resumed run
    must not replay its env stream)."""
    return (int(seed) * 100_003 + actor_id * 1_009 + restart * 7_919_111 + session * 104_729 + 1) % 2**63


def build_actor(cfg: CoreConfig, spec, actor_id: int, seed: int, hook_factory: HookFactory | None = None,
                agent_factory: AgentFactory | None = None) -> Actor:
    """Actor ``actor_id``: its envs (tasks by :func:`assign_tasks`), its network (``agent_factory``,
    default :func:`kickstart.nets.build_agent`; ``actor.net``) and its hooks. A
    :class:`~kickstart.errors.UserError` met on the way (a missing teacher file, say) is raised
    as is: each backend reports it once instead of restarting the actor."""
    from kickstart.envs import make_batched_env
    from kickstart.nets import build_agent

    tasks = assign_tasks(actor_id, cfg.runtime.envs_per_actor, spec.num_tasks)
    env = make_batched_env(cfg.env, tasks, seed, spec=spec)
    net = (agent_factory or build_agent)(cfg, env.spec)
    hooks = hook_factory(cfg, env.spec) if hook_factory is not None else []
    return Actor(env, net, cfg.learner.unroll_length, seed, hooks)


class RestartBudget:
    """``runtime.actor_restarts`` restarts in all, shared by a backend's actors, and the seed each
    actor gets after its restarts (``actor_seed(seed, i, restarts of i, session)``)."""

    def __init__(self, cfg: CoreConfig, session: int = 0):
        self.seed, self.session = cfg.runtime.seed, session
        self.limit = cfg.runtime.actor_restarts
        self.restarts = [0] * cfg.runtime.num_actors
        """Restarts per actor."""
        self.total = 0

    def seed_of(self, i: int) -> int:
        return actor_seed(self.seed, i, self.restarts[i], self.session)

    def spend(self, i: int, what: str) -> str:
        """Count a restart of actor ``i``, which ``what`` (e.g. ``actor 0 died (exit code -9)``) says
        happened. Raises RuntimeError when the budget is spent; returns the event to log otherwise."""
        self.total += 1
        self.restarts[i] += 1
        if self.total > self.limit:
            raise RuntimeError(f"{what} and the restart budget runtime.actor_restarts={self.limit} is spent")
        return f"{what}; restarted ({self.total} restarts so far)"
