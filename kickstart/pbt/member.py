"""A PBT population member and the ways to host one.

:class:`Member` is one :class:`~kickstart.train.Trainer` (a learner and its actors, in its own run
directory ``RUN_DIR/members/<i>``) driven by a handful of commands, all of which take and return
plain values:

=====================  ===========================================================================
``hparams()``          the learner's current mutable hyperparameters
``run_until(frames)``  train until the member is ready (``pbt.ready_episodes`` / ``ready_frames``
                       since its last ready event), reaches ``frames``, or is asked to stop; return
                       a :class:`MemberReport` (frames, episodes, evaluation samples, hparams and,
                       when ready or done, the checkpoint snapshot donors are copied from)
``save()``             write ``checkpoint.pt`` (what a restarted member resumes); return its path
``restore(path)``      exploit: load another member's checkpoint (weights, optimiser state,
                       hyperparameters); keep this member's own frame counter and RNG; return the
                       hyperparameters now in force (the donor's)
``set_hparams(d)``     set hyperparameters (after ``restore``, so explored values are never
                       overwritten by the donor's); return them
``close()``            stop the actors and release everything
=====================  ===========================================================================

The controller never touches a member but through these commands, so the same class runs in this
process (:class:`SerialHost`, tests and debugging), in a worker process per member
(:class:`LocalHost`, the default) or in a Ray actor (:class:`kickstart.pbt.ray_host.RayHost`: each
command is an actor method, ``submit`` is ``.remote()`` and ``wait`` is ``ray.wait``).

Process protocol (:class:`LocalHost`): the controller sends ``(command, args)`` tuples over a
duplex pipe; the worker answers each with ``("ok", result)`` or ``("error", payload)``. Its first
message, sent once the member is built, answers an implicit ``init`` command with the member's
hyperparameters. At most one command is in flight per member. A stop request (SIGINT or SIGTERM at
the controller; member processes ignore both) travels through an event the member checks after
every learner update, so a running ``run_until`` returns early.

Preemption (:mod:`kickstart.preemption`): a member also watches its stop request from a thread and,
the moment it is made, writes ``checkpoint.pt`` with the state of its last completed update, however
long the current update takes (on every host). A member process whose controller is gone (killed, or
exited at once on a second signal) does the same and then exits at once (status 130).
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from kickstart.config import Config, pbt_eval, save_config
from kickstart.method import MethodSetup
from kickstart.methods import build_methods
from kickstart.pbt.decisions import is_ready
from kickstart.pbt.protocol import COMMANDS, MemberDied, claim, error_payload, raise_reply
from kickstart.runtime.proc import start_shielded

SNAPSHOT = "pbt_snapshot.pt"
"""A member's checkpoint as of its last report: what donors are copied from. Periodic checkpoints
(``checkpoint.pt``) keep moving while the member trains; the snapshot matches the evaluations the
controller decided on."""

# -- what a member is built from and what it reports -------------------------------------------

def default_method(cfg: Config, spec) -> MethodSetup:
    """What the config's methods plug into a member's trainer (:func:`kickstart.methods.build_methods`).
    Any picklable ``fn(cfg, spec)`` returning a :class:`~kickstart.method.MethodSetup` may replace it."""
    return build_methods(cfg, spec)


@dataclass
class MemberSpec:
    """Everything needed to build (or rebuild) member ``index``; picklable."""

    index: int
    cfg: Config
    """The member's config (the population's, with its own ``runtime.seed``)."""
    run_dir: str
    hparams: dict[str, float] = field(default_factory=dict)
    """Initial hyperparameters, set after the trainer is built (unused when resuming a checkpoint)."""
    resume: bool = False
    """Continue from ``run_dir/checkpoint.pt`` when it exists (a restart, a resumed population)."""
    method: Callable = default_method


@dataclass
class MemberReport:
    """What ``run_until`` returns: plain values only."""

    index: int
    frames: int
    episodes: int
    """Finished training episodes since the member (re)started."""
    ready: bool
    done: bool
    """Reached the frame budget."""
    interrupted: bool
    samples: list[float]
    """Evaluation samples, most recent last (see ``pbt.eval``)."""
    hparams: dict[str, float]
    checkpoint: str | None
    """The snapshot written with this report (ready or done); None otherwise."""
    seconds: float
    """Training seconds of this member so far."""
    mean_returns: dict[str, float] = field(default_factory=dict)

    @property
    def eval_mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


# -- the member ------------------------------------------------------------------------------------

def _link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a snapshot of ``src`` atomically (a hard link when the filesystem allows)."""
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


class Member:
    """One population member: a Trainer and the bookkeeping PBT needs (see the module docstring)."""

    def __init__(self, spec: MemberSpec, should_stop: Callable[[], bool] | None = None,
                 should_exit: Callable[[], bool] | None = None):
        """``should_stop``: the stop request (polled; once true it stays true). ``should_exit``: for a
        member in a process of its own, true when that process must exit at once (after the
        checkpoint the stop request writes)."""
        from kickstart.checkpoint import load_checkpoint
        from kickstart.envs import env_spec
        from kickstart.preemption import Preemption
        from kickstart.train import CHECKPOINT, Trainer

        self.spec = spec
        self.index = spec.index
        self.cfg = spec.cfg
        self.pbt = spec.cfg.pbt
        self.run_dir = Path(spec.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._should_stop = should_stop or (lambda: False)
        env = env_spec(self.cfg.env)
        self.setup = spec.method(self.cfg, env)
        self.trainer = Trainer(self.cfg, self.run_dir, self.setup.terms, self.setup.hook_factory,
                               self.setup.extra_fields)
        self.multi_task = len(self.trainer.spec.task_names) > 1
        ckpt = self.run_dir / CHECKPOINT
        try:
            if spec.resume and ckpt.exists():
                self.trainer.restore(load_checkpoint(ckpt))
            else:
                self.trainer.learner.set_hparams(spec.hparams)
        except BaseException:
            self.trainer.close()
            raise
        save_config(self.cfg, self.run_dir / "config.yaml")
        # evaluator: every episode of the last evaluation, eval_episodes per task
        self.eval_mode = pbt_eval(self.cfg)                # pbt.eval, auto resolved for the run's methods
        window = (self.pbt.eval_episodes * self.trainer.spec.num_tasks if self.eval_mode == "evaluator"
                  else self.pbt.ttest_window)
        self._window: collections.deque[float] = collections.deque(maxlen=window)
        self._seen = dict(self.trainer.stats.count)   # episodes already turned into samples
        self._mark_episodes = 0                          # episodes / frames at the last ready event
        self._mark_frames = self.trainer.frames
        self._evals = 0
        self._stop_reason: str | None = None
        self.preemption = Preemption(saves=[self.trainer.save])
        self.preemption.watch(self._should_stop, should_exit)

    # -- commands ----------------------------------------------------------------------------------
    def hparams(self) -> dict[str, float]:
        return dict(self.trainer.learner.hparams)

    def samples(self) -> list[float]:
        return list(self._window)

    def run_until(self, frames: int) -> MemberReport:
        """Train until ready, ``frames`` env frames, or a stop request; see :class:`MemberReport`."""
        t = self.trainer
        self._stop_reason = None
        if t.frames < frames and not self._should_stop():
            t.run_until(frames, progress=self._progress, until=self._ready_or_stopped)
        done = t.frames >= frames
        interrupted = not done and self._stop_reason != "ready"
        ready = not done and self._stop_reason == "ready"
        checkpoint = None
        if ready or done:
            if self.eval_mode == "evaluator":
                self._evaluate()
            self._mark_episodes, self._mark_frames = self._episodes(), t.frames
            checkpoint = str(self._snapshot())
        elif interrupted:
            t.save()
        return MemberReport(self.index, t.frames, self._episodes(), ready, done, interrupted, self.samples(),
                            self.hparams(), checkpoint, t.elapsed, t.stats.mean_returns())

    def save(self) -> str:
        return str(self.trainer.save())

    def restore(self, path: str) -> dict[str, float]:
        """Exploit: take another member's learner state (weights, optimiser state, hyperparameters,
        learner step count) from checkpoint ``path``; keep this member's frame counter (its own
        budget and schedules) and its RNG state. Clears the evaluation window: those samples
        belong to the weights just replaced. Returns the hyperparameters now in force."""
        from kickstart.checkpoint import load_checkpoint

        donor = load_checkpoint(path)
        own = self.trainer.state()
        self.trainer.restore({**donor, "counters": own["counters"], "rng": own["rng"]})
        self._window.clear()
        self._publish()
        return self.hparams()

    def set_hparams(self, values: dict[str, float]) -> dict[str, float]:
        with self.trainer.learner.lock:       # a stop request's checkpoint sees all of them or none
            self.trainer.learner.set_hparams(values)
        self._publish()
        return self.hparams()

    def close(self) -> None:
        self.preemption.close()               # a stop request's checkpoint in progress is finished
        self.trainer.close()

    # -- internals ---------------------------------------------------------------------------------
    def _episodes(self) -> int:
        return int(sum(self.trainer.stats.count.values()))

    def _publish(self) -> None:
        """Send the current weights and hyperparameters to running actors at once."""
        t = self.trainer
        if t.backend is not None:
            params = {k: v.detach() for k, v in t.learner.net.state_dict().items()}
            t.backend.publish(params, t.learner.published_hparams(t.frames))

    def _collect_training_returns(self) -> None:
        """Append the episodes finished since the last call to the evaluation window: the raw return
        on a single task, the capped normalised score on a multi-task suite (so that tasks with large
        returns do not dominate; the kickstarting paper's measure)."""
        from kickstart.envs.suites import capped_score

        stats = self.trainer.stats
        for task in stats.task_names:
            new = stats.count[task] - self._seen.get(task, 0)
            if new <= 0:
                continue
            self._seen[task] = stats.count[task]
            recent = list(stats.recent[task])[-new:]
            self._window.extend(capped_score(task, r) if self.multi_task else float(r) for r in recent)

    def _progress(self, trainer) -> None:
        """Called by the trainer after every update: gather samples, stop when ready or asked to."""
        if self.eval_mode != "evaluator":
            self._collect_training_returns()
        if self._should_stop():
            self._stop_reason = "stop"
        elif is_ready(self._episodes() - self._mark_episodes, trainer.frames - self._mark_frames,
                      ready_episodes=self.pbt.ready_episodes, ready_frames=self.pbt.ready_frames):
            self._stop_reason = "ready"

    def _ready_or_stopped(self, trainer) -> bool:
        return self._stop_reason is not None

    def _evaluate(self) -> None:
        """``pbt.eval=evaluator``: evaluate a copy of the current network for ``eval_episodes``
        episodes per task (capped scores on a suite), with a fresh seed each time."""
        from kickstart.envs.suites import capped_score
        from kickstart.evaluate import evaluate

        net = copy.deepcopy(self.trainer.learner.net).cpu()
        if self.setup.eval_policy is not None:
            net = self.setup.eval_policy(net)
        self._evals += 1
        seed = (self.cfg.runtime.seed * 1_000_003 + self._evals * 7_919 + 17) % 2**31
        results = evaluate(net, self.cfg.env, self.pbt.eval_episodes, seed=seed, greedy=self.pbt.eval_greedy)
        self._window.clear()
        for r in results:
            self._window.extend(capped_score(r.task, x) if self.multi_task else float(x) for x in r.returns)

    def _snapshot(self) -> Path:
        ckpt = self.trainer.save()
        snap = self.run_dir / SNAPSHOT
        _link_or_copy(ckpt, snap)
        return snap


# -- hosting -------------------------------------------------------------------------------------

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
