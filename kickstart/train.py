"""Training orchestration: build, then collect -> update -> publish -> log.

:class:`Trainer` is one learner with its actors. It is also the unit Population Based Training
drives: ``run_until(frames)``, ``state()``/``restore()``, ``publish()``, ``learner.set_hparams``.
The run directory it trains in (its config, checkpoint and ``meta.json``): :mod:`kickstart.rundir`.
"""

from __future__ import annotations

import dataclasses
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from kickstart.checkpoint import load_checkpoint, save_checkpoint
from kickstart.config import resolve_config
from kickstart.configio import save_config, to_dict
from kickstart.errors import CheckpointError, ConfigError
from kickstart.learner import Learner, LossTerm
from kickstart.method import MethodSetup, methods_of
from kickstart.methods import Config, build_agent, build_methods
from kickstart.metrics import CSVLogger, EpisodeStats, Logger, MultiLogger, TensorBoardLogger
from kickstart.preemption import Preemption, writing
from kickstart.rundir import CHECKPOINT, log_precision, new_run_dir, record_session
from kickstart.runtime.actor import HookFactory
from kickstart.runtime.backend import make_backend
from kickstart.runtime.placement import Placement, SplitInference
from kickstart.runtime.proc import setup_process
from kickstart.runtime.resources import available_cores
from kickstart.runtime.threads import ThreadTuner
from kickstart.runtime.unroll import Field, unroll_fields

# -- the trainer ---------------------------------------------------------------------------------

@dataclass
class TrainResult:
    run_dir: Path
    frames: int
    agent_steps: int
    seconds: float
    mean_returns: dict[str, float]
    suite_score: float | None
    interrupted: bool = False
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


class Trainer:
    """One learner and its actors.

    ``terms`` and ``hook_factory`` are how methods plug in: loss terms for the learner, actor hooks
    that write extra unroll fields. The trainer passes them through without knowing what they are.
    It owns the :class:`~kickstart.runtime.placement.Placement` of ``split_inference`` (frozen
    networks the learner runs on the columns the actors leave): the learner fills each batch with
    it, and every ``BALANCE_EVERY_S`` the trainer moves the actors' share by the learner's idle time.
    """

    def __init__(self, cfg: Config, run_dir: str | Path, terms: Sequence[LossTerm] | None = None,
                 hook_factory: HookFactory | None = None, extra_fields: dict[str, Field] | None = None,
                 loggers: Sequence[Logger] | None = None, console=None,
                 split_inference: Sequence[SplitInference] | None = None):
        """``terms``, ``hook_factory``, ``extra_fields`` and ``split_inference`` default to what the
        config's methods add (:func:`kickstart.methods.build_methods`); pass them to plug in a method
        by hand."""
        from kickstart.envs import env_spec

        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.console = console
        setup_process(cfg.runtime.learner_threads or 1)
        torch.manual_seed(cfg.runtime.seed)
        np.random.seed(cfg.runtime.seed % 2**32)
        self.spec = env_spec(cfg.env)
        if terms is None and hook_factory is None and extra_fields is None and split_inference is None:
            setup = build_methods(cfg, self.spec)
            terms, hook_factory, extra_fields = setup.terms, setup.hook_factory, setup.extra_fields
            split_inference = setup.split_inference
        net = build_agent(cfg, self.spec)
        self.placement = Placement(split_inference or ())
        self.learner = Learner(net, cfg.learner, cfg.run.total_frames, terms or (), placement=self.placement)
        self.thread_tuner = self._thread_tuner()
        init_state = net.initial_state(1)
        self.fields = unroll_fields(self.spec, net_num_logits(net), init_state, extra_fields)
        self.hook_factory = hook_factory
        self.frames = 0
        self.agent_steps = 0
        self.elapsed = 0.0          # training seconds over all sessions of this run
        self.stats = EpisodeStats(self.spec.task_names)
        self.state_extras: dict[str, Any] = {"episode_stats": self.stats}
        """Objects whose state the checkpoint carries beside the learner's (``state_dict()`` /
        ``load_state_dict()``, by name), e.g. the episode windows or a PBT member's evaluation windows.
        They must change only under ``learner.lock``, so that a checkpoint sees them whole."""
        self.backend = None
        if loggers is None:
            loggers = [CSVLogger(self.run_dir / "metrics.csv")]
            if cfg.run.tensorboard:
                loggers.append(TensorBoardLogger(self.run_dir / "tb"))
        self.logger = MultiLogger(list(loggers))
        self._stop_requested = False
        self._save_lock = threading.Lock()
        self._acc: dict[str, tuple[float, int]] = {}
        self._acc_n = 0
        self.last_metrics: dict[str, float] = {}

    # -- state -------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"config": to_dict(self.cfg), "learner": self.learner.state_dict(),
                "counters": {"frames": self.frames, "agent_steps": self.agent_steps, "elapsed": self.elapsed},
                "rng": {"torch": torch.get_rng_state(), "numpy": _np_rng_state()},
                "spec": dataclasses.asdict(self.spec),
                "extras": {k: obj.state_dict() for k, obj in self.state_extras.items()}}

    def restore(self, state: dict) -> None:
        spec = state.get("spec")
        if spec is not None and tuple(spec["obs_shape"]) != tuple(self.spec.obs_shape):
            raise CheckpointError(f"checkpoint observation shape {tuple(spec['obs_shape'])} does not fit this "
                                  f"run's {tuple(self.spec.obs_shape)}")
        with self.learner.lock:     # a save from another thread sees all of it or none of it
            try:
                self.learner.load_state_dict(state["learner"])
            except (RuntimeError, KeyError, ValueError) as e:
                first = str(e).strip().splitlines()[0][:200]
                raise CheckpointError(f"checkpoint does not fit this run's network ({first})") from None
            c = state["counters"]
            self.frames, self.agent_steps, self.elapsed = int(c["frames"]), int(c["agent_steps"]), float(c["elapsed"])
            torch.set_rng_state(state["rng"]["torch"])
            _set_np_rng_state(state["rng"]["numpy"])
            extras = state.get("extras", {})          # none in checkpoints older than state_extras
            for k, obj in self.state_extras.items():
                if k in extras:
                    try:
                        obj.load_state_dict(extras[k])
                    except (ValueError, KeyError, TypeError) as e:
                        raise CheckpointError(f"checkpoint's {k} does not fit this run ({e})") from None

    def resume(self, state: dict) -> None:
        """:meth:`restore` from the run's own checkpoint, and forget what was logged after it: a run killed
        without a last checkpoint (SIGKILL, a lost session) logged updates it will now train again."""
        self.restore(state)
        self.logger.rewind(self.frames)

    def snapshot(self) -> dict:
        """A copy of :meth:`state` as of the last completed update, taken under the learner's update
        lock: consistent even while an update runs in another thread, and not changed by later ones."""
        with self.learner.lock:
            return _copy_tensors(self.state())

    def save(self) -> Path:
        """Write ``checkpoint.pt`` (atomically) with the state as of the last completed update. Safe
        from any thread while training goes on (:mod:`kickstart.preemption` calls it on a stop
        request); saves are serialised and each writes a state at least as new as the one before."""
        with writing(), self._save_lock:
            return save_checkpoint(self.run_dir / CHECKPOINT, self.snapshot())

    # -- phases ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the actors (idempotent; ``run_until`` calls it)."""
        if self.backend is None:
            self.backend = make_backend(self.cfg, self.spec, self.fields, self.hook_factory,
                                        session=self.learner.steps, agent_factory=build_agent)
            self.learner.prepare(self.frames)
            self.backend.start(self._cpu_params(), self.learner.published_hparams(self.frames))

    def _thread_tuner(self) -> ThreadTuner | None:
        """``runtime.learner_threads=0`` (auto): the learner's thread count is measured and watched
        (:mod:`kickstart.runtime.threads`), for a CPU learner with actors in other processes (a PBT
        member shares the cores with the others, and the serial backend's actors share its thread:
        one thread)."""
        rt = self.cfg.runtime
        if rt.learner_threads != 0 or self.learner.device.type != "cpu" or rt.backend == "serial" \
                or self.cfg.pbt.enabled:
            return None
        return ThreadTuner(max_threads=min(available_cores(), MAX_AUTO_LEARNER_THREADS))

    def _cpu_params(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.learner.net.state_dict().items()}

    def publish(self) -> None:
        """Send the current weights and actor-side hyperparameters to the running actors now (the
        loop does so after every update; PBT after it replaces either). No actors yet: nothing to do."""
        if self.backend is not None:
            self.backend.publish(self._cpu_params(), self.learner.published_hparams(self.frames))

    def _update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        T, B = batch["action"].shape[0] - 1, batch["action"].shape[1]

        def advance() -> None:      # with the optimiser step, under the learner's lock (see save)
            self.agent_steps += T * B
            self.frames += T * B * self.spec.frames_per_step
            self.stats.update(batch)    # a checkpoint counts the batch's episodes with its frames

        return self.learner.step(batch, self.frames, commit=advance)

    def _accumulate(self, metrics: dict[str, float]) -> None:
        # Per-key counts: a metric missing from some updates (e.g. a teacher whose weight is 0) is
        # averaged over the updates that reported it.
        for k, v in metrics.items():
            total, n = self._acc.get(k, (0.0, 0))
            self._acc[k] = (total + v, n + 1)
        self._acc_n += 1

    def _log(self, window_frames: int, window_seconds: float) -> dict[str, float]:
        m = {k: total / n for k, (total, n) in self._acc.items()}
        self._acc, self._acc_n = {}, 0
        m.update(self.stats.summary())
        m["perf/fps"] = window_frames / max(window_seconds, 1e-9)
        m["perf/sps"] = m["perf/fps"] / self.spec.frames_per_step
        m["perf/learner_steps"] = float(self.learner.steps)
        m["perf/learner_threads"] = float(torch.get_num_threads())
        m["perf/agent_steps"] = float(self.agent_steps)
        if self.backend.events:
            for event in self.backend.events:
                self._say(f"[yellow]{event}[/yellow]")
            m["perf/actor_restarts"] = float(self.backend.total_restarts)
            self.backend.events.clear()
        self.logger.write(self.frames, m)
        self.last_metrics = m
        return m

    def _say(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(msg)

    def request_stop(self, *_) -> None:
        """Stop at the end of the current update (safe from any thread; :func:`train` calls it on
        SIGINT/SIGTERM, see :mod:`kickstart.preemption`)."""
        self._stop_requested = True

    def run_until(self, frames: int, progress=None, until=None) -> bool:
        """Train until ``frames`` env frames, a stop request, or ``until(trainer)`` is true (checked
        after each update; PBT's ready events). Returns False if it stopped before ``frames``."""
        if self.frames >= frames:
            return True
        self.start()
        last_log = last_ckpt = last_balance = time.monotonic()
        log_frames, t_start = self.frames, time.monotonic()
        t_prev = t_start
        waited = 0.0
        while self.frames < frames and not self._stop_requested:
            t_get = time.monotonic()
            batch = self.backend.get_batch()                       # collect
            waited += time.monotonic() - t_get
            self._accumulate(self._update(batch))                  # update
            self.publish()                                         # publish
            now = time.monotonic()
            self.elapsed += now - t_prev
            t_prev = now
            if self.thread_tuner is not None and (n := self.thread_tuner.update(now, self.frames)) is not None:
                torch.set_num_threads(n)                            # tune the learner's threads
            if now - last_balance >= BALANCE_EVERY_S:               # balance learner and actor work
                idle = waited / (now - last_balance)
                self.placement.balance(idle)
                self._accumulate({"perf/learner_idle": idle})
                last_balance, waited = now, 0.0
            if progress is not None:
                progress(self)
            if now - last_log >= self.cfg.run.log_every_s:         # log
                self._log(self.frames - log_frames, now - last_log)
                last_log, log_frames = now, self.frames
            if now - last_ckpt >= self.cfg.run.checkpoint_every_s:  # checkpoint
                self.save()
                last_ckpt = now
            if until is not None and until(self):
                break
        if self._acc_n:
            self._log(self.frames - log_frames, max(time.monotonic() - last_log, 1e-9))
        return self.frames >= frames

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        self.logger.close()

    def result(self, interrupted: bool = False) -> TrainResult:
        return TrainResult(self.run_dir, self.frames, self.agent_steps, self.elapsed, self.stats.mean_returns(),
                           self.stats.suite_score(), interrupted, dict(self.last_metrics))


MAX_AUTO_LEARNER_THREADS = 4
"""The most learner threads ``runtime.learner_threads=0`` tries (each try costs a timed window)."""

BALANCE_EVERY_S = 2.0
"""How often the trainer reports the learner's idle fraction (time waiting for batches) to its
placement (``Placement.balance``) and logs it as ``perf/learner_idle``."""


def net_num_logits(net) -> int:
    """Width of ``net``'s policy logits, from one step on zeros on the net's own device (a CUDA
    learner's net is on the GPU by the time the trainer sizes the unroll)."""
    device = next(net.parameters()).device
    with torch.no_grad():
        spec = net.spec
        T, B = 1, 1
        obs = torch.zeros((T, B) + tuple(spec.obs_shape), dtype=torch.from_numpy(np.zeros(1, spec.np_obs_dtype)).dtype,
                          device=device)
        la = torch.zeros((T, B) + spec.action_shape, dtype=torch.int64, device=device)
        out, _ = net(obs, la, torch.zeros(T, B, device=device), torch.ones(T, B, dtype=torch.bool, device=device),
                     net.initial_state(B, device), torch.zeros(T, B, dtype=torch.int64, device=device))
    return out.policy_logits.shape[-1]


def _copy_tensors(x):
    """``x`` with every tensor in its dicts, lists and tuples cloned (detached)."""
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, dict):
        return {k: _copy_tensors(v) for k, v in x.items()}
    if isinstance(x, tuple) and hasattr(x, "_fields"):      # a named tuple
        return type(x)(*(_copy_tensors(v) for v in x))
    if isinstance(x, (list, tuple)):
        return type(x)(_copy_tensors(v) for v in x)
    return x


def _np_rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_np_rng_state(s: dict) -> None:
    np.random.set_state((s["name"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["cached"]))


# -- the whole run -------------------------------------------------------------------------------

def validate(cfg: Config) -> MethodSetup:
    """Everything that can be checked before a run starts: the config against every method, env,
    network, device, teachers. Returns the config's :class:`~kickstart.method.MethodSetup`."""
    from kickstart.envs import env_spec
    from kickstart.learner import pick_device

    resolve_config(cfg)     # checks it again (resolving runs the checks of the config's methods)
    spec = env_spec(cfg.env)
    build_agent(cfg, spec)
    pick_device(cfg.learner.device)
    setup = build_methods(cfg, spec)
    if not cfg.learner.rl_loss and not setup.terms:
        raise ConfigError(f"learner.rl_loss=false leaves no loss to train: configure a method that adds a loss term "
                          f"(methods: {', '.join(m.name for m in methods_of(cfg))})")
    return setup


def train(cfg: Config, resume_dir: str | Path | None = None, terms: Sequence[LossTerm] | None = None,
          hook_factory: HookFactory | None = None, extra_fields: dict[str, Field] | None = None,
          console=None, progress_bar: bool | None = None,
          split_inference: Sequence[SplitInference] | None = None) -> TrainResult:
    """Train one agent as ``cfg`` says (resuming ``resume_dir`` if given); checkpoint on exit."""
    cfg = resolve_config(cfg)   # what config.yaml records: ``auto`` settings that depend on the methods
    setup = validate(cfg)       # a rejected config leaves no run directory behind
    if terms is None and hook_factory is None and extra_fields is None and split_inference is None:
        terms, hook_factory, extra_fields = setup.terms, setup.hook_factory, setup.extra_fields
        split_inference = setup.split_inference
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        state = load_checkpoint(run_dir / CHECKPOINT)
    else:
        run_dir, state = new_run_dir(cfg), None
    trainer = Trainer(cfg, run_dir, terms, hook_factory, extra_fields, console=console,
                      split_inference=split_inference)
    if state is not None:
        try:
            trainer.resume(state)    # only a successful restore may touch the run directory
        except BaseException:
            trainer.close()
            raise
    save_config(cfg, run_dir / "config.yaml")
    log_precision(record_session(run_dir, cfg)[-1]["precision"], console)
    # SIGINT/SIGTERM: the checkpoint of the last completed update is written at once, from a thread,
    # and the loop stops at the end of the current update; a second signal exits at once (130).
    preemption = Preemption(saves=[trainer.save], on_stop=[trainer.request_stop],
                            message=f"kickstart: stopped at once by a second signal; the checkpoint written on the "
                                    f"first is in {run_dir}; resume with: kickstart train --resume "
                                    f"{shlex.quote(str(run_dir))}")
    show = cfg.run.progress if progress_bar is None else progress_bar
    with preemption.signals():
        try:
            if show and console is not None:
                from kickstart.progress import TrainProgress

                with TrainProgress(console, cfg.run.total_frames, trainer.frames) as bar:
                    done = trainer.run_until(cfg.run.total_frames, progress=bar.update)
            else:
                done = trainer.run_until(cfg.run.total_frames)
            trainer.save()
        except BaseException:
            try:  # a crash loses nothing: keep what was learned so far
                trainer.save()
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise
        finally:
            trainer.close()
    return trainer.result(interrupted=not done)
