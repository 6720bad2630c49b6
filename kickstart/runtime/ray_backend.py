"""Actors on a Ray cluster (``runtime.backend=ray``), and connecting to Ray (the ``ray`` section).

The learner stays in the driver process; each actor is a Ray actor (:class:`UnrollWorker`) that runs
one :class:`~kickstart.runtime.unroll.Actor` over ``runtime.envs_per_actor`` envs with one torch
thread, placed by Ray's ``SPREAD`` strategy so the actors of one learner spread over the nodes.

How things travel (all through Ray's object store, no shared filesystem):

* **Parameters.** ``publish`` puts ``(numpy parameters, hyperparameters)`` into the object store
  once (``ray.put``) and bumps a version number; it never waits for an actor. Every unroll request
  carries the version and the reference of the newest parameters at the time it is sent; an actor
  fetches them only when the version is newer than what it holds, between two unrolls.
* **Unrolls.** An unroll request (``collect``) returns the filled unroll as numpy arrays (stored
  once, read without a copy on the same node). Each actor has two requests in flight, so it starts
  the next unroll while the learner reads the last one; as soon as a result is taken, a new request
  goes out.
* **Failures.** A result that raises ``RayActorError`` or ``ObjectLostError`` means the actor's
  process or its node is gone: its other requests are dropped (so nothing is counted twice), an
  event goes to ``events``, and a new actor replaces it with a fresh seed
  (``actor_seed(seed, i, restart, session)``), up to ``runtime.actor_restarts`` in all. A
  :class:`~kickstart.errors.UserError` raised while an actor builds its env or hooks (a missing
  teacher file, say) is re-raised as is; any other exception inside an actor is a bug and ends
  the run with its traceback.

Ray is an optional dependency (the ``[ray]`` extra): nothing here imports it at module level.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import logging
import os
import socket
from typing import Any

import numpy as np
import torch

from kickstart.config import CoreConfig, RayConfig
from kickstart.errors import ConfigError, UserError
from kickstart.runtime.actor import AgentFactory, HookFactory, RestartBudget, build_actor
from kickstart.runtime.unroll import Field, allocate, gather

REQUESTS_PER_ACTOR = 2
"""Unroll requests in flight per actor: one being filled, one queued behind it."""


# -- connecting to Ray -----------------------------------------------------------------------------

def import_ray(setting: str = "runtime.backend"):
    """Ray, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"{setting}=ray needs Ray, which is not installed: pip install -e '.[ray]'") from None
    return ray


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _loopback_only() -> None:
    """Let Ray use a loopback address as this node's address.

    Ray replaces a loopback address given to ``ray.init`` (the node's or the cluster's) by the
    machine's outward-facing one, unless its single-machine mode is on (a switch Ray reads from
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``, false meaning "this cluster is one machine"). Turning it
    on here, and in the environment the Ray processes started from here inherit, keeps every Ray
    server of a ``ray.host=127.0.0.1`` run bound to and reached at 127.0.0.1.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def _cluster_address(address: str) -> str | None:
    """``host:port`` of the cluster ``ray.address`` names (``auto``: ``RAY_ADDRESS``, or the address
    file ``ray start`` writes on this machine); None when ``auto`` finds nothing."""
    if address != "auto":
        return address
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env:
        return env
    from ray._private.utils import read_ray_address

    return read_ray_address() or None


def _answers(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def connect(rc: RayConfig) -> bool:
    """Connect this process to Ray as ``rc`` says; True when it started a private instance (which
    the caller then stops with ``ray.shutdown()``).

    Already connected (inside a Ray worker, or a test that connected to its own cluster): nothing
    to do. An address where nothing answers fails at once, with one line, instead of Ray's
    minutes of retries.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    if _is_loopback(rc.host):
        _loopback_only()
    quiet = {"logging_level": logging.WARNING}
    if rc.address == "":
        # Ray lowers its workers' priority (nice 15) by default; the local backend's actor processes
        # compete with the learner as equals, and so do these (the same machine, the same terms).
        kwargs: dict[str, Any] = {"address": "local", "_node_ip_address": rc.host,
                                  "include_dashboard": rc.dashboard, "_system_config": {"worker_niceness": 0},
                                  **quiet}
        if rc.dashboard:
            kwargs["dashboard_host"] = rc.host
        if rc.num_cpus:
            kwargs["num_cpus"] = rc.num_cpus
        ray.init(**kwargs)
        return True
    target = _cluster_address(rc.address)
    if target is None:
        raise UserError("ray.address=auto found no Ray cluster on this machine (no RAY_ADDRESS, no 'ray start'); "
                        "start one with 'ray start --head --node-ip-address 127.0.0.1', give ray.address=host:port, "
                        "or leave ray.address empty for a private instance")
    host, _, port = target.replace("ray://", "").rpartition(":")
    if not port.isdigit() or not _answers(host.strip("[]"), int(port)):
        raise UserError(f"ray.address={rc.address!r}: no Ray cluster answers at {target}; start its head with "
                        f"'ray start --head --node-ip-address <ip>', or leave ray.address empty for a private "
                        f"instance")
    try:
        ray.init(address=target, _node_ip_address=rc.host, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"ray.address={rc.address!r}: cannot join the Ray cluster at {target} from "
                        f"ray.host={rc.host} ({first})") from None
    return False


def check_cpus(ray, need: float, what: str) -> None:
    """Refuse a run whose Ray actors can never all be placed (they would wait forever)."""
    have = float(ray.cluster_resources().get("CPU", 0.0))
    if need > have * (1 + 1e-6) + 1e-9:           # (fractions add up with rounding errors)
        raise UserError(f"{what} need {need:g} CPUs and the Ray cluster has {have:g}: lower ray.cpus_per_actor "
                        f"or ray.cpus_per_member (fractions such as 0.5 share a core), or add nodes")


# -- the actor side --------------------------------------------------------------------------------

def _to_wire(t: torch.Tensor):
    """numpy where numpy has the dtype (stored once, read without a copy), the tensor otherwise."""
    return t if t.dtype == torch.bfloat16 else t.detach().cpu().numpy()


def _from_wire(x) -> torch.Tensor:
    # Arrays read from the object store are read-only views: copy (load_state_dict copies anyway).
    return torch.from_numpy(np.array(x)) if isinstance(x, np.ndarray) else x


class UnrollWorker:
    """One :class:`~kickstart.runtime.unroll.Actor` inside a Ray actor process (``ray.remote(UnrollWorker)``)."""

    def __init__(self, actor_id: int, cfg: CoreConfig, spec, seed: int, fields: dict[str, Field],
                 hook_factory: HookFactory | None, agent_factory: AgentFactory | None = None):
        from kickstart.runtime.proc import setup_process

        setup_process(cfg.runtime.torch_threads)
        self.actor_id, self.cfg, self.spec, self.seed = actor_id, cfg, spec, seed
        self.fields, self.hook_factory, self.agent_factory = fields, hook_factory, agent_factory
        self.actor = None
        self.version = -1

    def collect(self, version: int, box: list) -> dict[str, Any]:
        """The next unroll, with the parameters of ``version`` (``box[0]``: their object reference,
        inside a list so that Ray hands over the reference and only this method fetches it, and only
        when ``version`` is new)."""
        import ray

        # The actor is built in the first call, not in __init__, so that a UserError reaches the
        # learner as a task error (an error in __init__ would only say the actor died).
        if self.actor is None:
            self.actor = build_actor(self.cfg, self.spec, self.actor_id, self.seed, self.hook_factory,
                                     self.agent_factory)
        if version != self.version:
            params, hparams = ray.get(box[0])
            self.actor.net.load_state_dict({k: _from_wire(v) for k, v in params.items()})
            self.actor.set_hparams(hparams)
            self.version = version
        buf = allocate(self.fields, self.cfg.learner.unroll_length, self.cfg.runtime.envs_per_actor)
        self.actor.collect(buf)
        return {k: _to_wire(v) for k, v in buf.items()}

    def where(self) -> tuple[str, int]:
        """(Ray node id, process id) of this actor."""
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()


# -- the learner side ------------------------------------------------------------------------------

class RayBackend:
    """Ray actors fill unrolls; ``get_batch`` runs in the learner's (driver) process."""

    def __init__(self, cfg: CoreConfig, spec, fields: dict[str, Field], hook_factory: HookFactory | None = None,
                 session: int = 0, agent_factory: AgentFactory | None = None):
        self.ray = import_ray("runtime.backend")
        self.cfg, self.spec, self.fields, self.hook_factory = cfg, spec, fields, hook_factory
        self.agent_factory = agent_factory
        rt = cfg.runtime
        self.unrolls_per_batch = cfg.learner.batch_size // rt.envs_per_actor
        self.events: list[str] = []
        self.workers: list = [None] * rt.num_actors
        self.seeds = [0] * rt.num_actors
        self.budget = RestartBudget(cfg, session)
        self.inflight: dict = {}                  # object ref of a requested unroll -> actor index
        self.ready: collections.deque = collections.deque()
        self.version = 0
        self._params = None
        self._closed = False
        self._owns_ray = connect(cfg.ray)
        try:
            check_cpus(self.ray, rt.num_actors * cfg.ray.cpus_per_actor,
                       f"runtime.num_actors={rt.num_actors} Ray actors x ray.cpus_per_actor={cfg.ray.cpus_per_actor:g}")
            self._worker_cls = self.ray.remote(UnrollWorker).options(
                num_cpus=cfg.ray.cpus_per_actor, scheduling_strategy="SPREAD", max_restarts=0)
        except BaseException:
            self.close()
            raise

    # -- actors ------------------------------------------------------------------------------------
    def _spawn(self, i: int) -> None:
        self.seeds[i] = self.budget.seed_of(i)
        self.workers[i] = self._worker_cls.remote(i, self.cfg, self.spec, self.seeds[i], self.fields,
                                                  self.hook_factory, self.agent_factory)
        for _ in range(REQUESTS_PER_ACTOR):
            self._request(i)

    def _request(self, i: int) -> None:
        ref = self.workers[i].collect.remote(self.version, [self._params])
        self.inflight[ref] = i

    def _replace(self, i: int, error: BaseException) -> None:
        """Actor ``i`` is gone (its process or its node): drop its requests, start another."""
        for ref in [r for r, j in self.inflight.items() if j == i]:
            del self.inflight[ref]
        with contextlib.suppress(Exception):  # already dead is what we expect
            self.ray.kill(self.workers[i], no_restart=True)
        self.events.append(self.budget.spend(i, f"Ray actor {i} lost ({type(error).__name__})"))
        self._spawn(i)

    @property
    def total_restarts(self) -> int:
        return self.budget.total

    @property
    def restarts(self) -> list[int]:
        """Restarts per actor."""
        return self.budget.restarts

    def _take(self, ref) -> None:
        """Read one finished request; queue its unroll and send the actor its next request."""
        from ray.exceptions import ObjectLostError, RayActorError, RayTaskError

        i = self.inflight.pop(ref, None)
        if i is None:                             # a request of an actor replaced meanwhile
            return
        try:
            unroll = self.ray.get(ref)
        except RayTaskError as e:
            if isinstance(e.cause, UserError):    # a user mistake met while building the actor
                raise type(e.cause)(f"actor {i}: {e.cause}") from None
            raise
        except (RayActorError, ObjectLostError) as e:
            self._replace(i, e)
            return
        self.ready.append(unroll)
        self._request(i)

    def actor_locations(self) -> list[tuple[str, int]]:
        """(Ray node id, process id) of every actor, in actor order."""
        return self.ray.get([w.where.remote() for w in self.workers])

    # -- Backend API -------------------------------------------------------------------------------
    def start(self, params: dict[str, torch.Tensor], hparams: dict[str, float]) -> None:
        self.publish(params, hparams)
        for i in range(self.cfg.runtime.num_actors):
            self._spawn(i)

    def publish(self, params: dict[str, torch.Tensor], hparams: dict[str, float]) -> None:
        self._params = self.ray.put(({k: _to_wire(v) for k, v in params.items()}, dict(hparams)))
        self.version += 1

    def get_batch(self) -> dict[str, torch.Tensor]:
        k = self.unrolls_per_batch
        while len(self.ready) < k:
            refs = list(self.inflight)
            done, _ = self.ray.wait(refs, num_returns=1, timeout=1.0)
            if done:
                done, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in done:
                self._take(ref)
        return gather([self.ready.popleft() for _ in range(k)], self.fields)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.inflight.clear()
        self.ready.clear()
        if self.ray.is_initialized():
            for w in self.workers:
                if w is not None:
                    with contextlib.suppress(Exception):  # close every actor, whatever one of them does
                        self.ray.kill(w, no_restart=True)
            if self._owns_ray:
                self.ray.shutdown()
