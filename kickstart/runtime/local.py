"""The default runtime: actor processes on this machine, the learner in the main process.

Actors write unrolls straight into preallocated shared-memory slots (TorchBeast's design). Each
actor talks to the learner over its own pipe: the learner sends it the indices of free slots, the
actor sends back the index of each slot it has filled. Because every slot's owner is known, an actor
that dies loses nothing but the unroll it was writing: its slots go back to the free list, a new
process replaces it, and no unroll is ever counted twice. (A queue shared by all actors would not
survive a process killed while it holds the queue's lock.)

Parameters flow back through shared tensors guarded by a sequence counter, so an actor never loads
a half-written set of weights.
"""

from __future__ import annotations

import collections
import multiprocessing.connection as mpc
import signal
import time

import torch
import torch.multiprocessing as mp

from kickstart.config import Config
from kickstart.errors import UserError
from kickstart.runtime.backend import AgentFactory, HookFactory, actor_seed, assign_tasks, gather
from kickstart.runtime.proc import start_shielded
from kickstart.runtime.resources import resolve_runtime
from kickstart.runtime.unroll import Field, allocate

SLOTS_PER_ACTOR = 2


class ParamStore:
    """Learner -> actors broadcast of parameters and hyperparameters through shared memory.

    A sequence counter (odd while a write is in progress) guards every read, so an actor never
    loads a half-written set of weights.
    """

    def __init__(self, params: dict[str, torch.Tensor], hparams: dict[str, float], ctx):
        self.tensors = {k: v.detach().cpu().clone().share_memory_() for k, v in params.items()}
        self.hparam_names = sorted(hparams)
        self.hparams = torch.zeros(len(self.hparam_names), dtype=torch.float64).share_memory_()
        self.version = ctx.Value("q", 0, lock=False)

    def publish(self, params: dict[str, torch.Tensor], hparams: dict[str, float]) -> None:
        self.version.value += 1  # odd: a write is in progress
        with torch.no_grad():
            for k, v in params.items():
                self.tensors[k].copy_(v)
            self.hparams.copy_(torch.tensor([float(hparams[k]) for k in self.hparam_names], dtype=torch.float64))
        self.version.value += 1

    def read_into(self, net: torch.nn.Module, have: int) -> tuple[int, dict[str, float] | None]:
        """Load the latest complete parameters into ``net`` if newer than ``have``.

        Returns the version now held and the hyperparameters published with it (None if unchanged).
        """
        v1 = self.version.value
        if v1 == have or v1 % 2:
            return have, None
        net.load_state_dict(self.tensors)
        hparams = dict(zip(self.hparam_names, self.hparams.tolist()))
        return (v1, hparams) if self.version.value == v1 else (have, None)


def _actor_main(actor_id: int, cfg: Config, spec, task_ids: list[int], seed: int, slots: dict,
                conn, store: ParamStore, hook_factory: HookFactory | None,
                agent_factory: AgentFactory | None = None) -> None:
    """Entry point of an actor process."""
    # The learner process decides when to stop (and tells us through the pipe).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from kickstart.runtime.proc import setup_process

    setup_process(cfg.runtime.torch_threads)
    from kickstart.envs import make_batched_env
    from kickstart.nets import build_agent
    from kickstart.runtime.unroll import Actor

    from kickstart.errors import UserError

    try:
        env = make_batched_env(cfg.env, task_ids, seed, spec=spec)
        net = (agent_factory or build_agent)(cfg, env.spec)
        hooks = hook_factory(cfg, env.spec) if hook_factory is not None else []
    except UserError as e:  # a user mistake: report it once instead of dying and being restarted
        conn.send(("error", str(e)))
        return
    actor = Actor(env, net, cfg.learner.unroll_length, seed, hooks)
    version, hparams = -1, None
    while version < 0:
        version, hparams = store.read_into(net, version)
    actor.set_hparams(hparams)
    try:
        while True:
            idx = conn.recv()
            if idx is None:
                break
            version, hparams = store.read_into(net, version)
            if hparams is not None:
                actor.set_hparams(hparams)
            actor.collect({k: v[idx] for k, v in slots.items()})
            conn.send(idx)
    except (EOFError, OSError, KeyboardInterrupt):   # the learner is gone (a reset pipe is an OSError)
        pass
    finally:
        actor.close()


class LocalBackend:
    """Actor processes + shared-memory slots; ``get_batch`` runs in the learner's process."""

    def __init__(self, cfg: Config, spec, fields: dict[str, Field], hook_factory: HookFactory | None = None,
                 session: int = 0, agent_factory: AgentFactory | None = None):
        self.cfg = cfg
        self.session = session
        self.spec = spec
        self.fields = fields
        self.hook_factory = hook_factory
        self.agent_factory = agent_factory
        self.num_tasks = spec.num_tasks
        rt, lc = cfg.runtime, cfg.learner
        self.unrolls_per_batch = lc.batch_size // rt.envs_per_actor
        need = rt.num_actors * SLOTS_PER_ACTOR + self.unrolls_per_batch
        self.num_slots = max(rt.num_buffers, need) if rt.num_buffers else need + self.unrolls_per_batch
        self.ctx = mp.get_context("spawn")
        self.slots = allocate(fields, lc.unroll_length, rt.envs_per_actor, self.num_slots, shared=True)
        self.store: ParamStore | None = None
        self.procs: list = [None] * rt.num_actors
        self.conns: list = [None] * rt.num_actors
        self.assigned: list[set[int]] = [set() for _ in range(rt.num_actors)]
        self.restarts = [0] * rt.num_actors
        self.total_restarts = 0
        self.free: collections.deque[int] = collections.deque(range(self.num_slots))
        self.ready: collections.deque[int] = collections.deque()
        self.events: list[str] = []
        self._closed = False

    # -- actor processes -------------------------------------------------------------------------
    def _spawn(self, i: int) -> None:
        parent, child = self.ctx.Pipe(duplex=True)
        seed = actor_seed(self.cfg.runtime.seed, i, self.restarts[i], self.session)
        tasks = assign_tasks(i, self.cfg.runtime.envs_per_actor, self.num_tasks)
        p = self.ctx.Process(target=_actor_main, name=f"kickstart-actor-{i}", daemon=True,
                             args=(i, self.cfg, self.spec, tasks, seed, self.slots, child, self.store,
                                   self.hook_factory, self.agent_factory))
        start_shielded(p)
        child.close()
        self.procs[i], self.conns[i] = p, parent
        for _ in range(SLOTS_PER_ACTOR):
            self._give(i)

    def _give(self, i: int) -> bool:
        if not self.free:
            return False
        idx = self.free.popleft()
        try:
            self.conns[i].send(idx)
        except (BrokenPipeError, OSError):
            self.free.appendleft(idx)
            return False
        self.assigned[i].add(idx)
        return True

    def _handle_dead(self, i: int) -> None:
        p = self.procs[i]
        code = p.exitcode
        self.conns[i].close()
        self.free.extend(sorted(self.assigned[i]))   # the unroll it was writing is dropped
        self.assigned[i].clear()
        self.total_restarts += 1
        self.restarts[i] += 1
        if self.total_restarts > self.cfg.runtime.actor_restarts:
            raise RuntimeError(f"actor {i} died (exit code {code}) and the restart budget "
                               f"runtime.actor_restarts={self.cfg.runtime.actor_restarts} is spent")
        self.events.append(f"actor {i} died (exit code {code}); restarted ({self.total_restarts} restarts so far)")
        self._spawn(i)

    def check_actors(self) -> None:
        for i, p in enumerate(self.procs):
            if p is not None and p.exitcode is not None:
                self._handle_dead(i)

    def actor_pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    # -- Backend API -----------------------------------------------------------------------------
    def start(self, params: dict[str, torch.Tensor], hparams: dict[str, float]) -> None:
        self.store = ParamStore(params, hparams, self.ctx)
        self.store.publish(params, hparams)
        for i in range(self.cfg.runtime.num_actors):
            self._spawn(i)

    def publish(self, params: dict[str, torch.Tensor], hparams: dict[str, float]) -> None:
        self.store.publish(params, hparams)

    def _poll(self, timeout: float) -> None:
        conns = {c: i for i, c in enumerate(self.conns) if c is not None and not c.closed}
        for c in mpc.wait(list(conns), timeout=timeout):
            i = conns[c]
            try:
                while c.poll():
                    idx = c.recv()
                    if isinstance(idx, tuple):  # ("error", message) from a failed actor setup
                        raise UserError(f"actor {i}: {idx[1]}")
                    self.assigned[i].discard(idx)
                    self.ready.append(idx)
            except (EOFError, OSError):
                self.procs[i].join(timeout=5)
                self._handle_dead(i)

    def _refill(self) -> None:
        """Hand free slots to the actors with the fewest slots in hand."""
        while self.free:
            i = min(range(len(self.assigned)), key=lambda j: len(self.assigned[j]))
            if len(self.assigned[i]) >= SLOTS_PER_ACTOR or not self._give(i):
                break

    def get_batch(self) -> dict[str, torch.Tensor]:
        k = self.unrolls_per_batch
        last_check = time.monotonic()
        while len(self.ready) < k:
            self._poll(timeout=1.0)
            if time.monotonic() - last_check > 1.0:
                self.check_actors()
                last_check = time.monotonic()
        idx = [self.ready.popleft() for _ in range(k)]
        batch = gather(self.slots, self.fields, idx)
        self.free.extend(idx)
        self._refill()
        return batch

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for c in self.conns:
            try:
                if c is not None and not c.closed:
                    c.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + 10
        for p in self.procs:
            if p is not None:
                p.join(timeout=max(0.1, deadline - time.monotonic()))
                if p.is_alive():
                    p.kill()
                    p.join(timeout=5)
        for c in self.conns:
            if c is not None:
                c.close()


class SerialBackend:
    """Everything in one process: the actors step in turn inside ``get_batch`` (tests, debugging)."""

    def __init__(self, cfg: Config, spec, fields: dict[str, Field], hook_factory: HookFactory | None = None,
                 session: int = 0, agent_factory: AgentFactory | None = None):
        from kickstart.envs import make_batched_env
        from kickstart.nets import build_agent
        from kickstart.runtime.unroll import Actor

        self.cfg, self.fields = cfg, fields
        rt, lc = cfg.runtime, cfg.learner
        self.unrolls_per_batch = lc.batch_size // rt.envs_per_actor
        self.events: list[str] = []
        self.total_restarts = 0                  # actors in this process are never restarted
        self.actors = []
        self.nets = []
        for i in range(rt.num_actors):
            seed = actor_seed(rt.seed, i, 0, session)
            env = make_batched_env(cfg.env, assign_tasks(i, rt.envs_per_actor, spec.num_tasks), seed, spec=spec)
            net = (agent_factory or build_agent)(cfg, env.spec)
            hooks = hook_factory(cfg, env.spec) if hook_factory is not None else []
            self.actors.append(Actor(env, net, lc.unroll_length, seed, hooks))
            self.nets.append(net)
        self.buffers = [allocate(fields, lc.unroll_length, rt.envs_per_actor) for _ in range(self.unrolls_per_batch)]
        self._next = 0

    def start(self, params, hparams):
        self.publish(params, hparams)

    def publish(self, params, hparams):
        for net, actor in zip(self.nets, self.actors):
            net.load_state_dict(params)
            actor.set_hparams(hparams)

    def get_batch(self):
        for buf in self.buffers:
            self.actors[self._next].collect(buf)
            self._next = (self._next + 1) % len(self.actors)
        return {k: torch.cat([b[k] for b in self.buffers], dim=1 if f.per_step else 0)
                for k, f in self.fields.items()}

    def close(self):
        for a in self.actors:
            a.close()


def make_backend(cfg: Config, spec, fields: dict[str, Field], hook_factory: HookFactory | None = None,
                 session: int = 0, agent_factory: AgentFactory | None = None):
    """``session`` salts the actors' seeds (the learner step count on resume: no replayed streams).
    ``runtime.num_actors=0`` is resolved here for this machine (:mod:`kickstart.runtime.resources`).
    ``agent_factory`` builds each actor's network (default :func:`kickstart.nets.build_agent`)."""
    cfg = resolve_runtime(cfg)
    if cfg.runtime.backend == "serial":
        return SerialBackend(cfg, spec, fields, hook_factory, session, agent_factory)
    if cfg.runtime.backend == "ray":
        from kickstart.runtime.ray_backend import RayBackend   # ray is an optional extra

        return RayBackend(cfg, spec, fields, hook_factory, session, agent_factory)
    return LocalBackend(cfg, spec, fields, hook_factory, session, agent_factory)
