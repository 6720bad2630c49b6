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

from kickstart.config import CoreConfig
from kickstart.errors import UserError
from kickstart.runtime.actor import AgentFactory, HookFactory, RestartBudget, build_actor
from kickstart.runtime.proc import start_shielded
from kickstart.runtime.unroll import Field, allocate, gather

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


def _actor_main(actor_id: int, cfg: CoreConfig, spec, seed: int, slots: dict,
                conn, store: ParamStore, hook_factory: HookFactory | None,
                agent_factory: AgentFactory | None = None) -> None:
    """Entry point of an actor process."""
    # The learner process decides when to stop (and tells us through the pipe).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from kickstart.runtime.proc import setup_process

    setup_process(cfg.runtime.torch_threads)
    try:
        actor = build_actor(cfg, spec, actor_id, seed, hook_factory, agent_factory)
    except UserError as e:  # a user mistake: report it once instead of dying and being restarted
        conn.send(("error", str(e)))
        return
    net = actor.net
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

    def __init__(self, cfg: CoreConfig, spec, fields: dict[str, Field], hook_factory: HookFactory | None = None,
                 session: int = 0, agent_factory: AgentFactory | None = None):
        self.cfg = cfg
        self.spec = spec
        self.fields = fields
        self.hook_factory = hook_factory
        self.agent_factory = agent_factory
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
        self.budget = RestartBudget(cfg, session)
        self.free: collections.deque[int] = collections.deque(range(self.num_slots))
        self.ready: collections.deque[int] = collections.deque()
        self.events: list[str] = []
        self._closed = False

    # -- actor processes -------------------------------------------------------------------------
    def _spawn(self, i: int) -> None:
        parent, child = self.ctx.Pipe(duplex=True)
        p = self.ctx.Process(target=_actor_main, name=f"kickstart-actor-{i}", daemon=True,
                             args=(i, self.cfg, self.spec, self.budget.seed_of(i), self.slots, child, self.store,
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
        self.events.append(self.budget.spend(i, f"actor {i} died (exit code {code})"))
        self._spawn(i)

    @property
    def total_restarts(self) -> int:
        return self.budget.total

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
