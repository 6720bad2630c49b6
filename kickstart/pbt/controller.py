"""The PBT controller: start the members, wait for ready ones, apply the pure decisions.

The controller decides nothing itself: :func:`~kickstart.pbt.decisions.choose_donor` and
:func:`~kickstart.pbt.decisions.explore` do, from the members' last reports and one random
generator. It only moves checkpoints and sets hyperparameters, in this order on a ready event:

1. ``donor = choose_donor(i, evaluations of every member's last report, rng)``;
2. if there is a donor: member i ``restore``\\s the donor's snapshot (written with the donor's last
   report), which brings the donor's weights, optimiser state *and hyperparameters*;
3. ``explored = explore(hyperparameters now in force, priors, rng)``;
4. member i ``set_hparams(explored)`` -- after the restore, so the checkpoint never overwrites
   the explored values (the Ray Tune bug) -- and saves, so that a restart resumes this state;
5. one lineage record; member i trains on.

Members train concurrently: every idle member is sent ``run_until(run.total_frames)`` and the
controller handles whichever answers first. Hosting is a :class:`~kickstart.pbt.hosts.MemberHost`
(processes, this process, or Ray later); the controller only uses the handle protocol.

Outputs (``RUN_DIR``): ``members/<i>/`` (each member's run directory), ``pbt/lineage.jsonl`` (one
record per event: start, ready, restart, done, stop), ``pbt/population.csv`` (one row per report:
frames, member, evaluation and hyperparameters, for plots) and ``metrics.csv``
(``pbt/<i>/eval_mean``, ``pbt/<i>/<hparam>``).
"""

from __future__ import annotations

import dataclasses
import difflib
import shlex
import time
from pathlib import Path
from typing import Callable

import numpy as np

from kickstart.config import CoreConfig, resolve_config
from kickstart.configio import save_config
from kickstart.errors import ConfigError, UserError
from kickstart.method import methods_of
from kickstart.pbt import decisions
from kickstart.pbt.config import PBTConfig
from kickstart.pbt.hosts import MemberHandle, MemberHost, make_host
from kickstart.pbt.member import MemberReport, MemberSpec, default_method
from kickstart.pbt.protocol import MemberDied, MemberError
from kickstart.pbt.records import MEMBERS, Lineage, PopulationResult, describe, load_reports, save_reports
from kickstart.preemption import Preemption
from kickstart.runtime.resources import resolve_runtime

# -- checks before anything starts ---------------------------------------------------------------

def learner_hparams(cfg: CoreConfig, method: Callable = default_method) -> dict[str, float]:
    """The mutable hyperparameters (and configured values) a member's learner will have: the
    learner's own plus those the method's loss terms declare."""
    import torch

    from kickstart.envs import env_spec
    from kickstart.learner import Learner
    from kickstart.methods import build_agent

    spec = env_spec(cfg.env)
    setup = method(cfg, spec)
    net = build_agent(cfg, spec)
    learner = Learner(net, cfg.learner, cfg.run.total_frames, setup.terms, device=torch.device("cpu"))
    return dict(learner.hparams)


def _unknown(where: str, name: str, valid: dict) -> ConfigError:
    close = difflib.get_close_matches(name, list(valid), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{where}: unknown hyperparameter {name!r}{hint}; mutable ones: {', '.join(sorted(valid))}")


def check_mutable(pbt: PBTConfig, hparams: dict[str, float]) -> None:
    """Every name in ``pbt.mutable`` and ``pbt.initial_hparams`` must be a learner hyperparameter."""
    for name in pbt.mutable:
        if name not in hparams:
            raise _unknown("pbt.mutable", name, hparams)
    for i, values in enumerate(pbt.initial_hparams):
        for name in values:
            if name not in hparams:
                raise _unknown(f"pbt.initial_hparams[{i}]", name, hparams)


def member_config(cfg: CoreConfig, index: int) -> CoreConfig:
    """Member ``index``'s config: the population's with its own seed (``runtime.seed + index``) and
    its share of the machine's actors (``runtime.num_actors=0``: the cores split among the members)."""
    cfg = resolve_runtime(cfg, members=cfg.pbt.population_size)
    return dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, seed=cfg.runtime.seed + index))


def initial_hparams(pbt: PBTConfig, defaults: dict[str, float], rng: np.random.Generator) -> list[dict[str, float]]:
    """Per member: values drawn from the priors, overridden by ``pbt.initial_hparams[i]``."""
    out = []
    for i in range(pbt.population_size):
        hp = decisions.sample_initial(pbt.mutable, rng, defaults)
        if i < len(pbt.initial_hparams):
            hp.update({k: float(v) for k, v in pbt.initial_hparams[i].items()})
        out.append(hp)
    return out


# -- the controller ------------------------------------------------------------------------------

class Controller:
    """Runs one population to ``run.total_frames`` frames per member (see the module docstring).

    Args:
      cfg: the population's config (``cfg.pbt`` enabled).
      run_dir: the population's directory.
      host: where members live (:func:`~kickstart.pbt.hosts.make_host`).
      defaults: the learner's configured hyperparameters (:func:`learner_hparams`).
      method: builds a member's loss terms and actor hooks (picklable).
      rng: the generator of every decision; default seeded from ``runtime.seed``.
      resume: members continue from their checkpoints where they have one.
      on_event: called with every lineage record (tests, live displays).
    """

    def __init__(self, cfg: CoreConfig, run_dir: str | Path, host: MemberHost, defaults: dict[str, float],
                 method: Callable = default_method, rng: np.random.Generator | None = None, resume: bool = False,
                 on_event: Callable[[dict, "Controller"], None] | None = None, console=None):
        self.cfg = cfg
        self.pbt = cfg.pbt
        self.run_dir = Path(run_dir)
        self.host = host
        self.defaults = dict(defaults)
        self.method = method
        self.rng = rng if rng is not None else np.random.default_rng([cfg.runtime.seed, 0x5EED_9B7])
        self.resume = resume
        self.on_event = on_event
        self.console = console
        self.handles: list[MemberHandle] = []
        self.latest: dict[int, MemberReport] = {}
        self.hparams: dict[int, dict[str, float]] = {}
        self.finished: set[int] = set()
        self.exploits = 0
        self.restarts = 0
        self._stop = False
        self._stopping = False
        self._restarted: set[int] = set()
        self.lineage: Lineage | None = None

    # -- public ------------------------------------------------------------------------------------
    def request_stop(self, *_) -> None:
        """Stop every member at the end of its current update; each writes the checkpoint of its last
        completed update at once (:class:`~kickstart.pbt.member.Member`). Safe from any thread
        (:func:`run_population` calls it on SIGINT/SIGTERM; a second signal exits at once)."""
        if self._stop:
            return
        self._stop = True
        for h in list(self.handles):
            h.stop()

    def run(self) -> PopulationResult:
        t0 = time.monotonic()
        self.lineage = Lineage(self.run_dir, sorted(self.defaults))
        if self.resume:
            self.latest = load_reports(self.run_dir)    # the stopped population's last reports
        try:
            self._start_members()
            self._loop()
        finally:
            self._close_members()
            self.lineage.close()
            close_host = getattr(self.host, "close", None)   # e.g. a Ray instance the host started
            if close_host is not None:
                close_host()
        return PopulationResult(self.run_dir, dict(self.latest), self._best(), self.exploits, self.restarts,
                                self._stopping, time.monotonic() - t0, {i: dict(h) for i, h in self.hparams.items()})

    def member_dir(self, i: int) -> Path:
        return self.run_dir / MEMBERS / str(i)

    # -- phases ------------------------------------------------------------------------------------
    def _start_members(self) -> None:
        for i, hp in enumerate(initial_hparams(self.pbt, self.defaults, self.rng)):
            spec = MemberSpec(i, member_config(self.cfg, i), str(self.member_dir(i)), hp, self.resume, self.method)
            self.hparams[i] = hp
            h = self.host.spawn(spec)
            self.handles.append(h)
            if self._stop:                    # a stop requested while members were starting
                h.stop()

    def _loop(self) -> None:
        total = self.cfg.run.total_frames
        while len(self.finished) < len(self.handles):
            if self._stop and not self._stopping:
                self._stopping = True
                self._event({"event": "stop"})
            busy = [h for h in self.handles if h.pending is not None]
            if not busy:
                break
            for h in self.host.wait(busy, timeout=1.0):
                self._on_reply(h, total)

    def _on_reply(self, h: MemberHandle, total: int) -> None:
        """Handle the reply of ``h``'s command in flight; a member that died (or failed while
        training, e.g. a non-finite loss) is restarted from its last checkpoint."""
        command = h.pending
        try:
            self._handle(h, command, h.result(), total)
        except MemberDied as e:
            self._restart(h, str(e))
        except MemberError as e:
            if command != "run_until":
                raise
            self._restart(h, f"member {h.index} failed in run_until: {str(e).splitlines()[-1]}")

    def _handle(self, h: MemberHandle, command: str, out, total: int) -> None:
        i = h.index
        if command == "init":
            self.hparams[i] = dict(out)
            self._event({"event": "start", "member": i, "hparams": dict(out),
                         "resumed": self.resume or i in self._restarted})
        elif command == "run_until":
            finished = not self._on_report(h, out)
            save_reports(self.run_dir, self.latest)
            if finished:
                return
        if self._stopping:
            self.finished.add(i)
        else:
            h.submit("run_until", total)

    def _on_report(self, h: MemberHandle, rep: MemberReport) -> bool:
        """Handle a ``run_until`` report; False when the member is finished."""
        i = rep.index
        self.latest[i] = rep
        self.hparams[i] = dict(rep.hparams)
        if rep.done or rep.interrupted:
            event = "done" if rep.done else "interrupted"
            self.lineage.row(rep, event, rep.hparams)
            self._event({"event": event, "member": i, "frames": rep.frames, "eval_mean": rep.eval_mean,
                         "eval_n": len(rep.samples), "hparams": dict(rep.hparams)})
            self.finished.add(i)
            return False
        if rep.ready:
            self.on_ready(h, rep)
        return True

    def on_ready(self, h: MemberHandle, rep: MemberReport) -> None:
        """A ready event of member ``rep.index`` (idle, behind handle ``h``): exploit, explore, record."""
        i = rep.index
        # Only a report with a snapshot can be copied from: one whose weights an exploit replaced, or
        # whose snapshot was lost with its machine (records.load_reports), is no donor.
        population = {j: r.samples for j, r in self.latest.items() if j == i or r.checkpoint is not None}
        donor = decisions.choose_donor(i, population, self.rng, self.pbt)
        before = dict(rep.hparams)
        base = before
        if donor is not None:
            base = h.call("restore", self.latest[donor].checkpoint)   # the donor's hparams come with it
        after = decisions.explore(base, self.pbt.mutable, self.rng, self.pbt, methods_of(self.cfg))
        if donor is not None or after != before:
            after = h.call("set_hparams", after)    # after the restore: never overwritten by it
            h.call("save")
        self.hparams[i] = dict(after)
        self.lineage.row(rep, "exploit" if donor is not None else "ready", after, donor)
        rec = {"event": "ready", "member": i, "frames": rep.frames, "episodes": rep.episodes,
               "eval_mean": rep.eval_mean, "eval_n": len(rep.samples), "hparams_before": before,
               "hparams_after": dict(after), "donor": donor, "explored": decisions.changed_keys(base, after)}
        if donor is not None:
            d = self.latest[donor]
            rec.update(donor_frames=d.frames, donor_eval_mean=d.eval_mean, donor_hparams=dict(base))
            self.exploits += 1
            # Its samples belonged to the weights it just replaced: no decision may use them again.
            self.latest[i] = dataclasses.replace(rep, samples=[], checkpoint=None, hparams=dict(after))
        self._event(rec)

    def _restart(self, h: MemberHandle, reason: str) -> None:
        i = h.index
        self.restarts += 1
        if self.restarts > self.pbt.member_restarts:
            raise RuntimeError(f"{reason}; the restart budget pbt.member_restarts={self.pbt.member_restarts} "
                               f"is spent")
        last = self.latest.get(i)
        self._event({"event": "restart", "member": i, "reason": reason,
                     "frames": last.frames if last is not None else 0})
        self.latest.pop(i, None)
        save_reports(self.run_dir, self.latest)
        self._restarted.add(i)
        h.restart()

    def _close_members(self) -> None:
        for h in self.handles:
            try:
                h.close()
            except Exception:  # noqa: BLE001 - close every member, whatever one of them does
                pass

    def _event(self, rec: dict) -> None:
        rec = self.lineage.record(rec)
        if self.on_event is not None:
            self.on_event(rec, self)
        shown = rec.get("donor") is not None or rec.get("event") in ("restart", "stop", "done")
        if self.console is not None and shown:
            self.console.print(describe(rec), markup=False, highlight=False, soft_wrap=True)

    def _best(self) -> int | None:
        return decisions.best_member({j: r.samples for j, r in self.latest.items()})


# -- the whole population ------------------------------------------------------------------------

def new_population_dir(cfg: CoreConfig) -> Path:
    from kickstart.rundir import new_run_dir

    d = new_run_dir(cfg)
    if (d / MEMBERS).exists() or (d / "pbt").exists():
        raise UserError(f"run directory {str(d)!r} already holds a population; resume it with "
                        f"'kickstart train --resume {d}' or choose another run.name")
    return d


def run_population(cfg: CoreConfig, resume_dir: str | Path | None = None, method: Callable = default_method,
                   console=None, on_event: Callable | None = None) -> PopulationResult:
    """Train ``cfg.pbt.population_size`` members with PBT; the population's ``train``."""
    from kickstart.rundir import log_precision, record_session
    from kickstart.train import validate

    if not cfg.pbt.enabled:
        raise ConfigError("run_population needs pbt.population_size >= 2")
    cfg = resolve_config(cfg)                         # what config.yaml records (pbt.eval, perturb rules)
    validate(cfg)
    defaults = learner_hparams(cfg, method)
    check_mutable(cfg.pbt, defaults)                  # all before a run directory exists
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        if not (run_dir / MEMBERS).is_dir():
            raise UserError(f"{str(run_dir)!r} holds no population (no members/ directory)")
    else:
        run_dir = new_population_dir(cfg)
    save_config(cfg, run_dir / "config.yaml")
    sessions = record_session(run_dir, cfg)
    log_precision(sessions[-1]["precision"], console)
    rng = np.random.default_rng([cfg.runtime.seed, 0x5EED_9B7, len(sessions)])  # a resume does not replay draws
    controller = Controller(cfg, run_dir, make_host(cfg.pbt.backend, cfg), defaults, method, rng,
                            resume=resume_dir is not None, on_event=on_event, console=console)
    # SIGINT/SIGTERM: every member writes its checkpoint at once and stops at the end of its current
    # update; a second signal exits at once (130), and member processes follow their controller.
    preemption = Preemption(on_stop=[controller.request_stop],
                            message=f"kickstart: stopped at once by a second signal; the members' checkpoints "
                                    f"written on the first are in {run_dir / MEMBERS}; resume with: kickstart "
                                    f"train --resume {shlex.quote(str(run_dir))}")
    with preemption.signals():
        result = controller.run()
    if console is not None:
        for line in result.summary_lines():
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    return result


__all__ = ["Controller", "PopulationResult", "check_mutable", "initial_hparams", "learner_hparams",
           "member_config", "new_population_dir", "run_population"]
