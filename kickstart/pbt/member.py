"""A PBT population member.

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
process, in a worker process per member or in a Ray actor (the hosts: :mod:`kickstart.pbt.hosts`,
:mod:`kickstart.pbt.ray_host`).

Preemption (:mod:`kickstart.preemption`): a member also watches its stop request from a thread and,
the moment it is made, writes ``checkpoint.pt`` with the state of its last completed update, however
long the current update takes (on every host). A member process whose controller is gone (killed, or
exited at once on a second signal) does the same and then exits at once (status 130).
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kickstart.config import CoreConfig
from kickstart.configio import save_config
from kickstart.method import MethodSetup
from kickstart.methods import build_methods
from kickstart.pbt.config import pbt_eval
from kickstart.pbt.decisions import is_ready
from kickstart.pbt.fitness import TaskWindows

SNAPSHOT = "pbt_snapshot.pt"
"""A member's checkpoint as of its last report: what donors are copied from. Periodic checkpoints
(``checkpoint.pt``) keep moving while the member trains; the snapshot matches the evaluations the
controller decided on."""

# -- what a member is built from and what it reports -------------------------------------------

def default_method(cfg: CoreConfig, spec) -> MethodSetup:
    """What the config's methods plug into a member's trainer (:func:`kickstart.methods.build_methods`).
    Any picklable ``fn(cfg, spec)`` returning a :class:`~kickstart.method.MethodSetup` may replace it."""
    return build_methods(cfg, spec)


@dataclass
class MemberSpec:
    """Everything needed to build (or rebuild) member ``index``; picklable."""

    index: int
    cfg: CoreConfig
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
    """The snapshot written with this report (ready, done or interrupted), which an exploit copies."""
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
        from kickstart.rundir import CHECKPOINT
        from kickstart.train import Trainer

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
                               self.setup.extra_fields, split_inference=self.setup.split_inference)
        # Per task: the last ttest_window training episodes, or every episode of the last evaluation
        # (eval_episodes per task); on a suite the samples are balanced over tasks (pbt/fitness.py).
        self.eval_mode = pbt_eval(self.cfg)                # pbt.eval, auto resolved for the run's methods
        window = self.pbt.eval_episodes if self.eval_mode == "evaluator" else self.pbt.ttest_window
        self._window = TaskWindows(self.trainer.spec.task_names, window)
        self._evals = 0
        # The windows (and the evaluator's seed count) travel in the checkpoint: a resumed member is
        # judged on the episodes it had before the stop, not on an empty window.
        self.trainer.state_extras["pbt_member"] = self
        ckpt = self.run_dir / CHECKPOINT
        try:
            if spec.resume and ckpt.exists():
                self.trainer.resume(load_checkpoint(ckpt))
            else:
                self.trainer.learner.set_hparams(spec.hparams)
        except BaseException:
            self.trainer.close()
            raise
        save_config(self.cfg, self.run_dir / "config.yaml")
        self._seen = dict(self.trainer.stats.count)   # episodes already turned into samples
        self._mark_episodes = self.trainer.stats.episodes   # episodes / frames at the last ready event
                                                            # (a resumed member's come from its checkpoint)
        self._mark_frames = self.trainer.frames
        self._stop_reason: str | None = None
        self.preemption = Preemption(saves=[self.trainer.save])
        self.preemption.watch(self._should_stop, should_exit)

    # -- commands ----------------------------------------------------------------------------------
    def hparams(self) -> dict[str, float]:
        return dict(self.trainer.learner.hparams)

    def samples(self) -> list[float]:
        """What the exploit rules compare: the window's returns on one task; on a suite, samples
        balanced over its tasks whose mean is the suite score (:mod:`kickstart.pbt.fitness`)."""
        return self._window.samples()

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
            self._mark_episodes, self._mark_frames = t.stats.episodes, t.frames
            checkpoint = str(self._snapshot())
        elif interrupted:
            # A snapshot as at a ready event: the population's last reports (pbt/reports.json) are what a
            # resumed controller compares first, and this one's samples must come with weights to copy.
            checkpoint = str(self._snapshot())
        return MemberReport(self.index, t.frames, t.stats.episodes, ready, done, interrupted, self.samples(),
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
        with self.trainer.learner.lock:
            own = self.trainer.state()
            self.trainer.restore({**donor, "counters": own["counters"], "rng": own["rng"], "extras": own["extras"]})
            self._window.clear()
        self.trainer.publish()
        return self.hparams()

    def set_hparams(self, values: dict[str, float]) -> dict[str, float]:
        with self.trainer.learner.lock:       # a stop request's checkpoint sees all of them or none
            self.trainer.learner.set_hparams(values)
        self.trainer.publish()
        return self.hparams()

    def close(self) -> None:
        self.preemption.close()               # a stop request's checkpoint in progress is finished
        self.trainer.close()

    # -- the state a checkpoint carries (Trainer.state_extras; changed only under the learner's lock) --
    def state_dict(self) -> dict:
        return {"windows": self._window.state_dict(), "evals": self._evals}

    def load_state_dict(self, state: dict) -> None:
        self._window.load_state_dict(state["windows"])
        self._evals = int(state["evals"])

    # -- internals ---------------------------------------------------------------------------------
    def _collect_training_returns(self) -> None:
        """Append the episodes finished since the last call to their task's window."""
        new = self.trainer.stats.returns_since(self._seen)
        with self.trainer.learner.lock:
            for task, returns in new.items():
                self._window.extend(task, returns)

    def _progress(self, trainer) -> None:
        """Called by the trainer after every update: gather samples, stop when ready or asked to."""
        if self.eval_mode != "evaluator":
            self._collect_training_returns()
        if self._should_stop():
            self._stop_reason = "stop"
        elif is_ready(trainer.stats.episodes - self._mark_episodes, trainer.frames - self._mark_frames,
                      ready_episodes=self.pbt.ready_episodes, ready_frames=self.pbt.ready_frames):
            self._stop_reason = "ready"

    def _ready_or_stopped(self, trainer) -> bool:
        return self._stop_reason is not None

    def _evaluate(self) -> None:
        """``pbt.eval=evaluator``: evaluate a copy of the current network for ``eval_episodes``
        episodes per task, with a fresh seed each time."""
        from kickstart.evaluate import evaluate

        net = copy.deepcopy(self.trainer.learner.net).cpu()
        if self.setup.eval_policy is not None:
            net = self.setup.eval_policy(net)
        seed = (self.cfg.runtime.seed * 1_000_003 + (self._evals + 1) * 7_919 + 17) % 2**31
        results = evaluate(net, self.cfg.env, self.pbt.eval_episodes, seed=seed, greedy=self.pbt.eval_greedy)
        with self.trainer.learner.lock:
            self._evals += 1
            self._window.clear()
            for r in results:
                self._window.extend(r.task, r.returns)

    def _snapshot(self) -> Path:
        ckpt = self.trainer.save()
        snap = self.run_dir / SNAPSHOT
        _link_or_copy(ckpt, snap)
        return snap
