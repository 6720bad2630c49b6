"""Where PBT members live: ``pbt.backend`` -> a host, and the hosts on this machine.

A host builds :class:`~kickstart.pbt.member.Member` objects somewhere and hands the controller a
handle per member (:class:`MemberHandle`) that sends it the member's commands: in this process
(:class:`SerialHost`, tests and debugging), in a worker process per member (:class:`LocalHost`, the
default) or in a Ray actor (:class:`kickstart.pbt.ray_host.RayHost`: each command is an actor method,
``submit`` is ``.remote()`` and ``wait`` is ``ray.wait``).

Process protocol (:class:`LocalHost`): the controller sends ``(command, args)`` tuples over a
duplex pipe; the worker answers each with ``("ok", result)`` or ``("error", payload)``. Its first
message, sent once the member is built, answers an implicit ``init`` command with the member's
hyperparameters. At most one command is in flight per member. A stop request (SIGINT or SIGTERM at
the controller; member processes ignore both) travels through an event the member checks after
every learner update, so a running ``run_until`` returns early.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import signal
from typing import Any, Protocol, Sequence

from kickstart.config import CoreConfig
from kickstart.pbt.member import Member, MemberSpec
from kickstart.pbt.protocol import COMMANDS, MemberDied, claim, error_payload, raise_reply
from kickstart.runtime.proc import start_shielded


def make_host(backend: str, cfg: CoreConfig | None = None) -> MemberHost:
    """``pbt.backend``: ``local`` (a process per member), ``serial`` (this process) or ``ray`` (a Ray
    actor per member on the cluster ``cfg.ray`` names; :mod:`kickstart.pbt.ray_host`)."""
    if backend == "ray":
        from kickstart.pbt.ray_host import RayHost  # ray is an optional extra

        return RayHost(cfg if cfg is not None else CoreConfig())
    return SerialHost() if backend == "serial" else LocalHost()


class MemberHandle(Protocol):
    """The controller's view of one member, wherever it runs. One command in flight at a time."""

    index: int
    pending: str | None
    """The command in flight (``init`` after spawn or restart), or None when idle."""

    def submit(self, command: str, *args) -> None: ...

    def result(self) -> Any:
        """The reply to the command in flight (blocks); raises :class:`MemberDied`, a member's
        :class:`~kickstart.errors.UserError` as is, or :class:`~kickstart.pbt.protocol.MemberError`."""

    def call(self, command: str, *args) -> Any: ...

    def stop(self) -> None:
        """Ask a running ``run_until`` to return at the end of its current update."""

    def restart(self) -> None:
        """Replace a dead member by a new one resuming its last checkpoint (``init`` pending)."""

    def close(self) -> None: ...


class MemberHost(Protocol):
    def spawn(self, spec: MemberSpec) -> MemberHandle:
        """Start building a member; its ``init`` reply (the hyperparameters) is pending."""

    def wait(self, handles: Sequence[MemberHandle], timeout: float | None) -> list[MemberHandle]:
        """The handles among ``handles`` whose pending reply can be read without blocking."""


# serial: members live in this process and run one command at a time, when it is submitted.

class SerialMember:
    def __init__(self, spec: MemberSpec):
        self.spec = spec
        self.index = spec.index
        self.member: Member | None = None
        self._stop = False
        self.pending: str | None = None
        self._reply: tuple[str, Any] = ("ok", None)
        self._build()

    def _build(self) -> None:
        self.pending = "init"
        try:
            self.member = Member(self.spec, should_stop=lambda: self._stop)
            self._reply = ("ok", self.member.hparams())
        except Exception as e:  # noqa: BLE001 - delivered by result(), as from a process
            self._reply = ("error", error_payload(e))

    def submit(self, command: str, *args) -> None:
        self.pending = claim(self.index, self.pending, command)
        try:
            self._reply = ("ok", getattr(self.member, command)(*args))
        except Exception as e:  # noqa: BLE001
            self._reply = ("error", error_payload(e))

    def result(self) -> Any:
        command, self.pending = self.pending, None
        status, payload = self._reply
        self._reply = ("ok", None)
        return raise_reply(self.index, command, status, payload)

    def call(self, command: str, *args) -> Any:
        self.submit(command, *args)
        return self.result()

    def stop(self) -> None:
        self._stop = True

    def restart(self) -> None:
        self.close()
        self.spec = dataclasses.replace(self.spec, resume=True)
        self._build()

    def close(self) -> None:
        if self.member is not None:
            self.member.close()
            self.member = None


class SerialHost:
    """Members in this process; each command runs when submitted (tests, debugging)."""

    def spawn(self, spec: MemberSpec) -> SerialMember:
        return SerialMember(spec)

    def wait(self, handles: Sequence[SerialMember], timeout: float | None) -> list[SerialMember]:
        return [h for h in handles if h.pending is not None]


# local: one worker process per member.

def member_main(conn, spec: MemberSpec, stop_event, parent_pid: int) -> None:
    """Entry point of a member process: build the member, then serve commands until ``close``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # the controller decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import torch

    torch.set_num_threads(spec.cfg.runtime.learner_threads or 1)   # auto (0): members share the cores, one each

    def orphaned() -> bool:
        return os.getppid() != parent_pid

    def should_stop() -> bool:
        return stop_event.is_set() or orphaned()

    member = None
    try:
        member = Member(spec, should_stop, should_exit=orphaned)
        conn.send(("ok", member.hparams()))
    except Exception as e:  # noqa: BLE001 - reported to the controller
        conn.send(("error", error_payload(e)))
        return
    try:
        while True:
            try:
                command, args = conn.recv()
            except (EOFError, OSError):
                break                                   # the controller is gone
            if command not in COMMANDS:
                conn.send(("error", (None, f"unknown member command {command!r}")))
                continue
            try:
                result = getattr(member, command)(*args)
                if command == "close":
                    member = None
                conn.send(("ok", result))
            except Exception as e:  # noqa: BLE001
                conn.send(("error", error_payload(e)))
            if command == "close":
                break
    finally:
        if member is not None:
            member.close()


class ProcessMember:
    """A member in its own (non-daemonic: it starts actor processes) worker process."""

    def __init__(self, spec: MemberSpec, ctx):
        self.spec = spec
        self.index = spec.index
        self.ctx = ctx
        self.pending: str | None = None
        self.proc = None
        self.conn = None
        self._start()

    def _start(self) -> None:
        parent, child = self.ctx.Pipe(duplex=True)
        self.stop_event = self.ctx.Event()
        p = self.ctx.Process(target=member_main, name=f"kickstart-member-{self.index}", daemon=False,
                             args=(child, self.spec, self.stop_event, os.getpid()))
        start_shielded(p)
        child.close()
        self.proc, self.conn, self.pending = p, parent, "init"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def waitables(self) -> list:
        return [self.conn, self.proc.sentinel]

    def submit(self, command: str, *args) -> None:
        self.pending = claim(self.index, self.pending, command)
        try:
            self.conn.send((command, args))
        except (BrokenPipeError, OSError):
            pass                                         # result() reports the death

    def result(self) -> Any:
        command = self.pending
        try:
            mpc.wait([self.conn, self.proc.sentinel])
            if not self.conn.poll():
                raise EOFError
            status, payload = self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(timeout=5)
            code = self.proc.exitcode
            raise MemberDied(f"member {self.index} died (exit code {code}) during {command}") from None
        finally:
            self.pending = None
        return raise_reply(self.index, command, status, payload)

    def call(self, command: str, *args) -> Any:
        self.submit(command, *args)
        return self.result()

    def stop(self) -> None:
        self.stop_event.set()

    def restart(self) -> None:
        self._terminate()
        self.spec = dataclasses.replace(self.spec, resume=True)
        self._start()

    def _terminate(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
        if self.proc is not None:
            self.proc.join(timeout=10)
        if self.conn is not None:
            self.conn.close()

    def close(self, timeout: float = 30.0) -> None:
        """Ask the member to close (its actors stop, its logs flush); kill it if it does not."""
        if self.proc is None:
            return
        if self.proc.is_alive():
            if self.pending is not None:        # a command in flight: let it finish (stop asked it to hurry)
                self.stop_event.set()
                try:
                    if self.conn.poll(timeout):
                        self.conn.recv()
                except (EOFError, OSError):
                    pass
                self.pending = None
            try:
                self.conn.send(("close", ()))
                if self.conn.poll(timeout):
                    self.conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                pass
            self.proc.join(timeout=timeout)
        self._terminate()
        self.proc = None


class LocalHost:
    """One worker process per member on this machine; members train concurrently."""

    def __init__(self):
        self.ctx = mp.get_context("spawn")

    def spawn(self, spec: MemberSpec) -> ProcessMember:
        return ProcessMember(spec, self.ctx)

    def wait(self, handles: Sequence[ProcessMember], timeout: float | None) -> list[ProcessMember]:
        by_obj = {}
        for h in handles:
            if h.pending is not None:
                for w in h.waitables():
                    by_obj[w] = h
        if not by_obj:
            return []
        ready = mpc.wait(list(by_obj), timeout=timeout)
        out: list[ProcessMember] = []
        for w in ready:
            if by_obj[w] not in out:
                out.append(by_obj[w])
        return sorted(out, key=lambda h: h.index)
