"""``runtime.backend=serial``: everything in one process (tests, debugging)."""

from __future__ import annotations

from kickstart.config import CoreConfig
from kickstart.runtime.actor import AgentFactory, HookFactory, actor_seed, build_actor
from kickstart.runtime.unroll import Field, allocate, gather


class SerialBackend:
    """Everything in one process: the actors step in turn inside ``get_batch`` (tests, debugging)."""

    def __init__(self, cfg: CoreConfig, spec, fields: dict[str, Field], hook_factory: HookFactory | None = None,
                 session: int = 0, agent_factory: AgentFactory | None = None):
        self.cfg, self.fields = cfg, fields
        rt, lc = cfg.runtime, cfg.learner
        self.unrolls_per_batch = lc.batch_size // rt.envs_per_actor
        self.events: list[str] = []
        self.total_restarts = 0                  # actors in this process are never restarted
        self.actors = [build_actor(cfg, spec, i, actor_seed(rt.seed, i, 0, session), hook_factory, agent_factory)
                       for i in range(rt.num_actors)]
        self.buffers = [allocate(fields, lc.unroll_length, rt.envs_per_actor) for _ in range(self.unrolls_per_batch)]
        self._next = 0

    def start(self, params, hparams):
        self.publish(params, hparams)

    def publish(self, params, hparams):
        for actor in self.actors:
            actor.net.load_state_dict(params)
            actor.set_hparams(hparams)

    def get_batch(self):
        for buf in self.buffers:
            self.actors[self._next].collect(buf)
            self._next = (self._next + 1) % len(self.actors)
        return gather(self.buffers, self.fields)

    def close(self):
        for a in self.actors:
            a.close()
