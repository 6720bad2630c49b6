"""The PBT controller and members: the exploit sequence, real tiny members, a real population.

* A scripted host (no torch training) checks what the controller asks of members: on an exploit,
  ``restore(donor snapshot)`` first, then ``set_hparams(explore(donor's hyperparameters))``.
* Two real tiny members (serial, in this process) check that the explored values survive the
  restore and are the ones the next update uses.
* A real population of three member processes on MinAtar Breakout, one with a hopeless learning
  rate, checks that the bad member copies a good one.
"""

import dataclasses
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from kickstart.checkpoint import load_checkpoint
from kickstart.cli import main
from kickstart.methods import load_config
from kickstart.pbt.controller import Controller, run_population
from kickstart.pbt.hosts import SerialHost
from kickstart.pbt.member import MemberReport, MemberSpec
from kickstart.pbt.records import read_lineage

TINY = ["env.id=minatar:Breakout", "net.torso=minatar", "net.hidden_size=32", "learner.optimizer=adam",
        "learner.lr_schedule=constant", "learner.loss_reduction=mean", "learner.unroll_length=8",
        "learner.batch_size=8", "runtime.backend=serial", "runtime.num_actors=1", "runtime.envs_per_actor=8",
        "run.progress=false", "run.tensorboard=false", "run.log_every_s=0.5"]
FRAMES_PER_UPDATE = 8 * 8


# -- the controller against scripted members ---------------------------------------------------

class ScriptedMember:
    """Answers commands at once from a script; records every call in ``log``."""

    def __init__(self, spec: MemberSpec, log: list, registry: dict):
        self.spec, self.index, self.log, self.registry = spec, spec.index, log, registry
        # entropy_cost is not mutable here; the members' values differ, so inheriting one is visible.
        self.hp = {"learning_rate": 1e-3, "entropy_cost": 0.01 * (self.index + 1), **spec.hparams}
        self.frames = 0
        registry[self.index] = self
        self.pending, self._reply = "init", dict(self.hp)

    def submit(self, command, *args):
        self.log.append((self.index, command, args))
        self.pending = command
        if command == "run_until":
            self.frames += 100
            # Member 0 plays badly, the others well: member 0 is the one that exploits.
            samples = [0.0, 1.0] * 15 if self.index == 0 else [5.0, 6.0] * 15
            self._reply = MemberReport(self.index, self.frames, self.frames // 10, self.frames < args[0],
                                       self.frames >= args[0], False, samples, dict(self.hp),
                                       f"snap-{self.index}", 1.0)
        elif command == "restore":
            donor = self.registry[int(args[0].split("-")[1])]
            self.hp = dict(donor.hp)
            self._reply = dict(self.hp)
        elif command == "set_hparams":
            self.hp.update(args[0])
            self._reply = dict(self.hp)
        else:
            self._reply = None

    def result(self):
        self.pending = None
        return self._reply

    def call(self, command, *args):
        self.submit(command, *args)
        return self.result()

    def stop(self):
        pass

    def restart(self):
        raise AssertionError("no restarts here")

    def close(self):
        pass


class ScriptedHost:
    def __init__(self):
        self.log, self.registry = [], {}

    def spawn(self, spec):
        return ScriptedMember(spec, self.log, self.registry)

    def wait(self, handles, timeout):
        return [h for h in handles if h.pending is not None]


def test_controller_restores_the_donor_then_sets_the_explored_hparams(tmp_path):
    cfg = load_config(None, [*TINY, "pbt.population_size=3", "pbt.explore_probability=1.0",
                             "run.total_frames=500", "pbt.mutable={learning_rate: {low: 1.0e-4, high: 1.0e-2}}"])
    host = ScriptedHost()
    Controller(cfg, tmp_path, host, {"learning_rate": 1e-3, "entropy_cost": 0.01}).run()
    exploits = [r for r in read_lineage(tmp_path) if r["event"] == "ready" and r["donor"] is not None]
    assert exploits and all(r["member"] == 0 for r in exploits)
    calls0 = [(c, a) for i, c, a in host.log if i == 0 and c != "run_until"]
    restores = [k for k, (c, _) in enumerate(calls0) if c == "restore"]
    assert len(restores) == len(exploits)
    for k, rec in zip(restores, exploits):
        (c1, a1), (c2, a2), (c3, _) = calls0[k: k + 3]
        assert (c1, a1) == ("restore", (f"snap-{rec['donor']}",))      # first the donor's checkpoint,
        assert c2 == "set_hparams" and c3 == "save"                    # then the explored values
        donor_hp = rec["donor_hparams"]
        assert a2[0]["learning_rate"] == pytest.approx(donor_hp["learning_rate"] * 0.8) or \
            a2[0]["learning_rate"] == pytest.approx(donor_hp["learning_rate"] * 1.2)
        assert a2[0]["entropy_cost"] == donor_hp["entropy_cost"]        # not mutable: the donor's value
        assert rec["hparams_after"] == a2[0] and rec["explored"] == ["learning_rate"]
    assert host.registry[0].hp["learning_rate"] == exploits[-1]["hparams_after"]["learning_rate"]
    assert (tmp_path / "pbt" / "population.csv").read_text().count("\n") == 1 + 3 * 5
    done = [r for r in read_lineage(tmp_path) if r["event"] == "done"]
    assert sorted(r["member"] for r in done) == [0, 1, 2] and all(r["frames"] == 500 for r in done)


# -- real members --------------------------------------------------------------------------------

def _member_cfg(tmp_path, *overrides):
    return load_config(None, [*TINY, "pbt.population_size=2", f"run.out_dir={tmp_path}", "run.total_frames=100000",
                              f"pbt.ready_frames={4 * FRAMES_PER_UPDATE}", "pbt.ready_episodes=0",
                              "pbt.mutable={learning_rate: {low: 1.0e-4, high: 1.0e-2}}", *overrides])


def test_explored_hparams_survive_the_restore(tmp_path):
    cfg = _member_cfg(tmp_path, "pbt.explore_probability=1.0")
    host = SerialHost()
    ctrl = Controller(cfg, tmp_path, host, {"learning_rate": 1e-3, "entropy_cost": 0.01},
                      rng=np.random.default_rng(0))
    from kickstart.pbt.controller import member_config
    from kickstart.pbt.records import Lineage

    ctrl.lineage = Lineage(tmp_path, ["entropy_cost", "learning_rate"])
    h0 = host.spawn(MemberSpec(0, member_config(cfg, 0), str(tmp_path / "m0"),
                               {"learning_rate": 1e-3, "entropy_cost": 0.02}))
    h1 = host.spawn(MemberSpec(1, member_config(cfg, 1), str(tmp_path / "m1"),
                               {"learning_rate": 3e-3, "entropy_cost": 0.005}))
    ctrl.handles = [h0, h1]
    try:
        assert h0.result() == {"learning_rate": 1e-3, "entropy_cost": 0.02}
        assert h1.result() == {"learning_rate": 3e-3, "entropy_cost": 0.005}
        rep1 = h1.call("run_until", 10**6)
        rep0 = h0.call("run_until", 10**6)
        assert rep0.ready and rep1.ready and rep0.frames == rep1.frames == 4 * FRAMES_PER_UPDATE
        rep1 = h1.call("run_until", 10**6)                              # the donor trains further
        assert rep1.frames == 8 * FRAMES_PER_UPDATE
        donor_state = load_checkpoint(rep1.checkpoint)["learner"]
        m0 = h0.member
        before = m0.trainer.learner.state_dict()["net"]
        assert any(not torch.equal(before[k], v) for k, v in donor_state["net"].items())

        # Member 1's evaluations are clearly better: member 0 must copy it, then explore.
        ctrl.latest = {0: dataclasses.replace(rep0, samples=[0.0, 1.0] * 15),
                       1: dataclasses.replace(rep1, samples=[5.0, 6.0] * 15)}
        ctrl.on_ready(h0, ctrl.latest[0])
        rec = read_lineage(tmp_path)[-1]
        assert rec["donor"] == 1 and rec["explored"] == ["learning_rate"]
        hp = m0.hparams()
        assert hp["learning_rate"] in (pytest.approx(3e-3 * 0.8), pytest.approx(3e-3 * 1.2))   # explored
        assert hp["entropy_cost"] == 0.005                                                     # the donor's
        assert rec["hparams_after"] == hp and rec["hparams_before"] == {"learning_rate": 1e-3, "entropy_cost": 0.02}

        # Weights and optimiser state are member 1's; the frame counter stays member 0's.
        mine = m0.trainer.learner.state_dict()
        for k, v in donor_state["net"].items():
            assert torch.equal(mine["net"][k], v), k
        opt_mine, opt_donor = mine["optimizer"]["state"], donor_state["optimizer"]["state"]
        assert opt_mine.keys() == opt_donor.keys()
        for k in opt_donor:
            for name in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(opt_mine[k][name], opt_donor[k][name]), (k, name)
        assert m0.trainer.frames == 4 * FRAMES_PER_UPDATE and m0.samples() == []
        # The member saved after the change: a restart resumes the explored values.
        assert load_checkpoint(tmp_path / "m0" / "checkpoint.pt")["learner"]["hparams"] == hp

        # The next update runs with the explored learning rate, not the donor's.
        m0.trainer.run_until(m0.trainer.frames + 1)
        assert m0.trainer.last_metrics["learner/lr"] == pytest.approx(hp["learning_rate"])
        assert m0.trainer.learner.optimizer.param_groups[0]["lr"] == pytest.approx(hp["learning_rate"])
        assert m0.hparams() == hp
    finally:
        ctrl.lineage.close()
        h0.close()
        h1.close()


def test_evaluator_samples_come_from_separate_episodes(tmp_path):
    cfg = _member_cfg(tmp_path, "pbt.eval=evaluator", "pbt.eval_episodes=3")
    h = SerialHost().spawn(MemberSpec(0, cfg, str(tmp_path / "m0"), {"learning_rate": 1e-3}))
    try:
        h.result()
        rep = h.call("run_until", 10**6)
        assert rep.ready and len(rep.samples) == 3                      # eval_episodes, not training episodes
        assert rep.episodes > 3 and all(s >= 0 for s in rep.samples)
        again = h.call("run_until", 10**6)
        assert len(again.samples) == 3 and h.member._evals == 2        # a fresh evaluation per ready event
    finally:
        h.close()


def test_serial_population_through_the_cli(tmp_path, capsys):
    code = main(["train", "--no-progress", "configs/minatar_breakout.yaml", *TINY, f"run.out_dir={tmp_path}",
                 "run.name=pop", "pbt.population_size=2", "pbt.backend=serial",
                 f"run.total_frames={12 * FRAMES_PER_UPDATE}",
                 f"pbt.ready_frames={4 * FRAMES_PER_UPDATE}", "pbt.explore_probability=1.0"])
    assert code == 0
    run = tmp_path / "pop"
    out = capsys.readouterr().out
    assert "best member" in out
    recs = read_lineage(run)
    assert [r["event"] for r in recs].count("start") == 2 and [r["event"] for r in recs].count("done") == 2
    ready = [r for r in recs if r["event"] == "ready"]
    assert len(ready) == 4 and all(r["explored"] for r in ready)   # explore_probability=1: every event explores
    for i in (0, 1):
        state = load_checkpoint(run / "members" / str(i) / "checkpoint.pt")
        assert state["counters"]["frames"] == 12 * FRAMES_PER_UPDATE
        last = [r for r in recs if r["member"] == i and r["event"] in ("ready", "done")][-1]
        assert state["learner"]["hparams"] == last.get("hparams_after", last.get("hparams"))
        assert (run / "members" / str(i) / "metrics.csv").exists()
    header = (run / "pbt" / "population.csv").read_text().splitlines()[0]
    assert header.split(",")[-2:] == ["entropy_cost", "learning_rate"]


def test_cli_rejects_an_unknown_mutable_hyperparameter(tmp_path, capsys):
    code = main(["train", "configs/minatar_breakout.yaml", *TINY, f"run.out_dir={tmp_path}", "run.name=bad",
                 "pbt.population_size=2", "pbt.mutable={lr: {low: 1.0e-4, high: 1.0e-3}}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == ("kickstart: error: pbt.mutable: unknown hyperparameter 'lr'; "
                   "mutable ones: entropy_cost, learning_rate")
    assert not (tmp_path / "bad").exists()                 # rejected before a run directory exists


# -- a real population of member processes --------------------------------------------------------

def test_population_bad_member_copies_a_good_one(tmp_path, learning_seed, record_property):
    """Three member processes on MinAtar Breakout; member 2's learning rate (1e-7) cannot learn, so
    at a ready event it finds a significantly better member and copies it, learning rate included.

    The good members' fast learning rate (0.01) lifts their return from random play (about 0.5) to
    about 1 by 15k-20k frames and 2-3 by 30k; member 2 has a ready event every 5k frames (40k in
    all), and a t-test on 100 episodes each side (p < 0.01: few chance copies among the others) is
    decisive at those from about 20k frames on. Checked on 5 seeds (runtime.seed 0-4, fp32): member
    2 first copied at its ready event at 20k, 20k, 15k, 15k and 5k frames (the 4th, 4th, 3rd, 3rd
    and 1st of its 7), its mean then 0.4-0.6; the good members' means at 30k frames: 1.1-3.0."""
    cfg = load_config("configs/minatar_breakout.yaml", [
        f"run.out_dir={tmp_path}", "run.name=pop", "run.progress=false", "run.tensorboard=false",
        "run.total_frames=40000", "net.hidden_size=64", "runtime.backend=serial", "runtime.num_actors=1",
        "runtime.envs_per_actor=16", "learner.batch_size=16", "learner.unroll_length=20",
        f"runtime.seed={learning_seed}",
        "pbt.population_size=3", "pbt.ready_episodes=0", "pbt.ready_frames=5000", "pbt.exploit=ttest",
        "pbt.ttest_window=100", "pbt.ttest_pvalue=0.01",
        "pbt.initial_hparams=[{learning_rate: 0.01, entropy_cost: 0.01}, {learning_rate: 0.01, "
        "entropy_cost: 0.01}, {learning_rate: 1.0e-7, entropy_cost: 0.01}]"])
    result = run_population(cfg)
    recs = read_lineage(tmp_path / "pop")
    record_property("ready", [(r["member"], r["frames"], r["eval_mean"], r["donor"])
                              for r in recs if r["event"] == "ready"])
    starts = {r["member"]: r["hparams"]["learning_rate"] for r in recs if r["event"] == "start"}
    assert starts == {0: 0.01, 1: 0.01, 2: 1e-7}                     # no randomness in the start
    copied = [r for r in recs if r["event"] == "ready" and r["member"] == 2 and r["donor"] is not None]
    assert copied, [r for r in recs if r["event"] == "ready"]
    first = copied[0]
    assert first["donor"] in (0, 1) and first["donor_eval_mean"] > first["eval_mean"]
    lr = first["donor_hparams"]["learning_rate"]
    assert lr >= 0.01 * 0.8 ** 2                                     # the donor's, not 1e-7
    assert first["hparams_after"]["learning_rate"] in (pytest.approx(lr), pytest.approx(lr * 0.8),
                                                       pytest.approx(lr * 1.2))
    assert sorted(result.reports) == [0, 1, 2] and all(r.frames >= 40000 for r in result.reports.values())
    assert result.exploits >= 1 and not result.interrupted
    final = load_checkpoint(tmp_path / "pop" / "members" / "2" / "checkpoint.pt")["learner"]["hparams"]
    assert final["learning_rate"] > 1e-4


def test_a_member_process_that_dies_is_restarted_from_its_checkpoint(tmp_path):
    killed = []

    def kill_member_1_once(rec, controller):
        if rec["event"] == "ready" and rec["member"] == 1 and not killed:
            killed.append(rec["frames"])
            os.kill(controller.handles[1].pid, signal.SIGKILL)      # idle, between two commands

    total, every = 24 * FRAMES_PER_UPDATE, 8 * FRAMES_PER_UPDATE
    cfg = load_config("configs/minatar_breakout.yaml", [
        *TINY, f"run.out_dir={tmp_path}", "run.name=pop", f"run.total_frames={total}", "pbt.population_size=2",
        "pbt.exploit=none", "pbt.ready_episodes=0", f"pbt.ready_frames={every}", "pbt.explore_probability=1.0"])
    result = run_population(cfg, on_event=kill_member_1_once)
    recs = read_lineage(tmp_path / "pop")
    events = [(r["event"], r.get("member")) for r in recs]
    assert killed == [every] and result.restarts == 1
    k = events.index(("restart", 1))
    assert "member 1 died" in recs[k]["reason"] and recs[k]["frames"] == every
    # It resumed its checkpoint, saved after the explore: frames and explored values go on from there.
    explored = next(r for r in recs if r["event"] == "ready" and r["member"] == 1)["hparams_after"]
    mine = [r for r in recs[k + 1:] if r.get("member") == 1]
    assert mine[0]["event"] == "start" and mine[0]["resumed"] and mine[0]["hparams"] == explored
    after = [r["frames"] for r in mine if r["event"] in ("ready", "done")]
    assert after == [2 * every, total]
    assert sorted(result.reports) == [0, 1] and all(r.frames == total for r in result.reports.values())
