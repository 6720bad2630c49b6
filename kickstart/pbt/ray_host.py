"""PBT members as Ray actors (``pbt.backend=ray``): a population spread over a Ray cluster.

Each member is a :class:`~kickstart.pbt.member.Member` inside a Ray actor (:class:`MemberActor`),
placed with Ray's ``SPREAD`` strategy and ``ray.cpus_per_member`` CPUs. The controller drives it
through :class:`RayMember`, which implements the same handle protocol as the process host
(:class:`~kickstart.pbt.hosts.LocalHost`): ``submit`` is an actor method call, ``wait`` is
``ray.wait`` and ``stop`` a second, concurrent method call (the actor runs two threads: one for the
command in flight, one for ``stop``).

Checkpoints travel through the object store, so members need no shared filesystem:

* a reply that comes with a checkpoint (a ``run_until`` report carrying a snapshot, and ``save``)
  also returns the checkpoint file's bytes; the controller's side puts them into the object store
  from the driver, so that they outlive the member's node;
* ``restore(path)`` of a donor's snapshot sends the object reference of the snapshot that report
  came with; the member writes it to a file beside its own run directory and restores from it;
* a member lost with its process or node (``RayActorError``) is restarted (``pbt.member_restarts``)
  on whatever node Ray picks, from the checkpoint the controller holds for it, or from the node's own
  ``checkpoint.pt`` when that one is newer (a periodic checkpoint written since).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kickstart.config import CoreConfig
from kickstart.pbt.member import MemberSpec
from kickstart.pbt.protocol import MemberDied, MemberError, claim, error_payload, raise_reply
from kickstart.runtime.ray_backend import check_cpus, connect, import_ray
from kickstart.runtime.resources import resolve_runtime

DONOR = ".donor.pt"
"""Where a member writes a donor's checkpoint before restoring it (inside its own run directory)."""


def _frames(path: Path) -> int:
    from kickstart.checkpoint import load_checkpoint
    from kickstart.errors import CheckpointError

    try:
        return int(load_checkpoint(path)["counters"]["frames"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return -1


def place_checkpoint(run_dir: Path, data: bytes) -> Path:
    """Write the controller's copy of a member's checkpoint to ``run_dir/checkpoint.pt``, unless the
    one already there has more frames (a later periodic checkpoint on this node)."""
    from kickstart.rundir import CHECKPOINT

    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / CHECKPOINT
    tmp = run_dir / f".{CHECKPOINT}.controller-{os.getpid()}"
    tmp.write_bytes(data)
    if ckpt.exists() and _frames(ckpt) > _frames(tmp):
        tmp.unlink()
    else:
        os.replace(tmp, ckpt)
    return ckpt


class MemberActor:
    """One member inside a Ray actor (``ray.remote(MemberActor)``, two threads). Every command
    answers ``(status, payload, checkpoint bytes or None)``, ``status``/``payload`` as the process
    protocol of :mod:`kickstart.pbt.hosts`."""

    def __init__(self, spec: MemberSpec, checkpoint: bytes | None = None):
        self.spec = spec
        self.member = None
        self._checkpoint = checkpoint
        self._stop = threading.Event()

    def init(self) -> tuple[str, Any, None]:
        from kickstart.pbt.member import Member

        try:
            if self._checkpoint is not None:
                place_checkpoint(Path(self.spec.run_dir), self._checkpoint)
                self._checkpoint = None
            self.member = Member(self.spec, should_stop=self._stop.is_set)
            return "ok", self.member.hparams(), None
        except Exception as e:  # noqa: BLE001 - reported to the controller
            return "error", error_payload(e), None

    def command(self, name: str, args: tuple, donor: bytes | None = None) -> tuple[str, Any, bytes | None]:
        try:
            if name == "restore" and donor is not None:
                path = Path(self.spec.run_dir) / DONOR
                path.write_bytes(donor)
                args = (str(path),)
            result = getattr(self.member, name)(*args)
            data = None
            if name == "run_until" and result.checkpoint is not None:
                data = Path(result.checkpoint).read_bytes()
            elif name == "save":
                data = Path(result).read_bytes()
            if name == "close":
                self.member = None
            return "ok", result, data
        except Exception as e:  # noqa: BLE001
            return "error", error_payload(e), None

    def stop(self) -> None:
        self._stop.set()

    def where(self) -> tuple[str, int]:
        """(Ray node id, process id) of this member."""
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()


class RayMember:
    """The controller's handle on a member in a Ray actor (see the module docstring)."""

    def __init__(self, spec: MemberSpec, host: RayHost):
        self.spec = spec
        self.index = spec.index
        self.host = host
        self.ray = host.ray
        self.pending: str | None = None
        self.ref = None
        self.actor = None
        self.checkpoint = None
        """Object reference (owned by the driver) of the member's latest checkpoint."""
        self._start()

    def _start(self) -> None:
        self.actor = self.host.actor_cls.remote(self.spec, self.checkpoint)
        self.ref, self.pending = self.actor.init.remote(), "init"

    def where(self) -> tuple[str, int]:
        return self.ray.get(self.actor.where.remote())

    def submit(self, command: str, *args) -> None:
        self.pending = claim(self.index, self.pending, command)
        donor = self.host.snapshots.get(args[0]) if command == "restore" else None
        self.ref = self.actor.command.remote(command, args, donor)

    def result(self) -> Any:
        from ray.exceptions import ObjectLostError, RayActorError, RayTaskError

        command = self.pending
        try:
            status, payload, data = self.ray.get(self.ref)
        except (RayActorError, ObjectLostError) as e:
            raise MemberDied(f"member {self.index} died ({type(e).__name__}) during {command}") from None
        except RayTaskError as e:      # the reply itself failed (e.g. it could not be serialised)
            raise MemberError(f"member {self.index} failed in {command}: {e}") from None
        finally:
            self.pending, self.ref = None, None
        if data is not None:
            self.checkpoint = self.ray.put(data)
            if command == "run_until":
                self.host.snapshots[payload.checkpoint] = self.checkpoint
        return raise_reply(self.index, command, status, payload)

    def call(self, command: str, *args) -> Any:
        self.submit(command, *args)
        return self.result()

    def stop(self) -> None:
        with contextlib.suppress(Exception):  # a dead member needs no stop
            self.actor.stop.remote()

    def restart(self) -> None:
        self._kill()
        self.spec = dataclasses.replace(self.spec, resume=True)
        self._start()

    def _kill(self) -> None:
        if self.actor is not None:
            with contextlib.suppress(Exception):  # already gone
                self.ray.kill(self.actor, no_restart=True)

    def close(self, timeout: float = 30.0) -> None:
        """Ask the member to close (its actors stop, its logs flush); kill it if it does not."""
        if self.actor is None:
            return
        with contextlib.suppress(Exception):  # a dead member is closed already
            if self.pending is not None:       # a command in flight: let it finish (stop asks it to hurry)
                self.stop()
                self.ray.wait([self.ref], timeout=timeout)
                self.pending = None
            self.ray.wait([self.actor.command.remote("close", ())], timeout=timeout)
        self._kill()
        self.actor = None


class RayHost:
    """One Ray actor per member, spread over the nodes of the cluster ``cfg.ray`` names."""

    def __init__(self, cfg: CoreConfig):
        self.ray = import_ray("pbt.backend")
        self._owns_ray = connect(cfg.ray)
        self.snapshots: dict[str, Any] = {}
        """Snapshot path of a member's report -> object reference of that snapshot's bytes."""
        try:
            need = cfg.pbt.population_size * cfg.ray.cpus_per_member
            what = f"pbt.population_size={cfg.pbt.population_size} members x ray.cpus_per_member={cfg.ray.cpus_per_member:g}"
            if cfg.runtime.backend == "ray":
                actors = resolve_runtime(cfg, members=cfg.pbt.population_size).runtime.num_actors
                need += cfg.pbt.population_size * actors * cfg.ray.cpus_per_actor
                what += f" and their runtime.num_actors={actors} actors x ray.cpus_per_actor=" \
                        f"{cfg.ray.cpus_per_actor:g}"
            check_cpus(self.ray, need, what)
        except BaseException:
            self.close()
            raise
        self.actor_cls = self.ray.remote(MemberActor).options(
            num_cpus=cfg.ray.cpus_per_member, scheduling_strategy="SPREAD", max_restarts=0, max_concurrency=2)

    def spawn(self, spec: MemberSpec) -> RayMember:
        return RayMember(spec, self)

    def wait(self, handles: Sequence[RayMember], timeout: float | None) -> list[RayMember]:
        by_ref = {h.ref: h for h in handles if h.pending is not None and h.ref is not None}
        if not by_ref:
            return []
        refs = list(by_ref)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        return sorted((by_ref[r] for r in ready), key=lambda h: h.index)

    def close(self) -> None:
        """Stop the private Ray instance this host started, if any (after the members closed)."""
        self.snapshots.clear()
        if self._owns_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self._owns_ray = False
