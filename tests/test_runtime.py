"""The actor/unroll/learner contract, the serial and local backends, faults."""

import os
import signal
import time

import numpy as np
import pytest
import torch

from kickstart.envs import env_spec, make_batched_env
from kickstart.learner import Learner
from kickstart.methods import load_config
from kickstart.nets import build_net
from kickstart.runtime.actor import assign_tasks
from kickstart.runtime.local import LocalBackend
from kickstart.runtime.unroll import (
    Actor,
    allocate,
    core_state_of,
    gather,
    net_inputs,
    unroll_fields,
)
from kickstart.train import Trainer, net_num_logits


def _cfg(out_dir, *overrides):
    return load_config(None, ["env.id=minatar:Breakout", "net.torso=minatar", "net.hidden_size=32",
                              "learner.unroll_length=8", "learner.batch_size=8", "runtime.envs_per_actor=4",
                              "runtime.num_actors=2", f"run.out_dir={out_dir}", "run.progress=false",
                              "run.tensorboard=false", *overrides])


def _actor(cfg, seed=3):
    spec = env_spec(cfg.env)
    net = build_net(cfg.net, spec)
    env = make_batched_env(cfg.env, assign_tasks(0, cfg.runtime.envs_per_actor, spec.num_tasks), seed)
    fields = unroll_fields(spec, net_num_logits(net), net.initial_state(1))
    return Actor(env, net, cfg.learner.unroll_length, seed), net, fields


@pytest.mark.parametrize("core", ["ff", "lstm"])
def test_learner_reproduces_actor_logits_across_unrolls(out_dir, core):
    """Same parameters => the learner's recomputed logits equal the behaviour logits (log rho = 0),
    across unroll boundaries and episode ends inside unrolls (Breakout episodes are short)."""
    cfg = _cfg(out_dir, f"net.core={core}", "net.lstm_size=16")
    actor, net, fields = _actor(cfg)
    saw_first_inside = False
    for _ in range(6):
        buf = allocate(fields, cfg.learner.unroll_length, cfg.runtime.envs_per_actor)
        actor.collect(buf)
        saw_first_inside |= bool(buf["first"][1:].any())
        with torch.no_grad():
            out, _ = net(*net_inputs(buf["obs"], buf["last_action"], buf["reward"], buf["first"]), core_state_of(buf))
        torch.testing.assert_close(out.policy_logits, buf["logits"], rtol=1e-5, atol=1e-5)
    assert saw_first_inside


def test_unroll_overlap_and_alignment(out_dir):
    cfg = _cfg(out_dir)
    actor, net, fields = _actor(cfg)
    T, N = cfg.learner.unroll_length, cfg.runtime.envs_per_actor
    a = allocate(fields, T, N)
    b = allocate(fields, T, N)
    actor.collect(a)
    actor.collect(b)
    for k in ("obs", "first", "reward", "last_action", "action", "logits", "task"):
        torch.testing.assert_close(b[k][0], a[k][T], msg=k)   # the T+1 overlap
    # last_action[t] is action[t-1], or 0 at an episode start
    expect = torch.where(a["first"][1:], torch.zeros_like(a["action"][:-1]), a["action"][:-1])
    assert torch.equal(a["last_action"][1:], expect)
    assert a["first"][0].all()                                 # the very first entry starts episodes
    # episode stats are only reported on entries 1..T, with the raw return
    assert not a["ep_end"][0].any()


def test_task_assignment_spreads_evenly():
    counts = np.bincount(sum((assign_tasks(i, 8, 5) for i in range(5)), []), minlength=5)
    assert counts.tolist() == [8, 8, 8, 8, 8]
    assert assign_tasks(1, 4, 3) == [1, 2, 0, 1]


def test_gather_concatenates_along_batch(out_dir):
    cfg = _cfg(out_dir)
    _, net, fields = _actor(cfg)
    slots = allocate(fields, 8, 4, num_slots=3)
    for i in range(3):
        slots["reward"][i].fill_(i)
    batch = gather(slots, fields, [2, 0])
    assert batch["reward"].shape == (9, 8)
    assert batch["reward"][:, :4].eq(2).all() and batch["reward"][:, 4:].eq(0).all()
    assert batch["obs"].shape[:2] == (9, 8)


def test_learner_step_changes_params_and_reports_metrics(out_dir):
    cfg = _cfg(out_dir, "runtime.backend=serial")
    tr = Trainer(cfg, out_dir, loggers=[])
    tr.start()
    before = {k: v.clone() for k, v in tr.learner.net.state_dict().items()}
    m = tr._update(tr.backend.get_batch())
    assert any(not torch.equal(before[k], v) for k, v in tr.learner.net.state_dict().items())
    for key in ("loss/policy", "loss/baseline", "loss/entropy", "loss/total", "policy/entropy", "grad/norm"):
        assert np.isfinite(m[key]), key
    # fresh behaviour == target policy: all importance ratios are 1
    assert m["vtrace/rho_mean"] == pytest.approx(1.0, abs=1e-5)
    assert tr.frames == 8 * 8
    tr.close()


def test_set_hparams_validates(out_dir):
    cfg = _cfg(out_dir, "runtime.backend=serial")
    learner = Learner(build_net(cfg.net, env_spec(cfg.env)), cfg.learner, 1000)
    learner.set_hparams({"learning_rate": 1e-3, "entropy_cost": 0.02})
    assert learner.hparams == {"learning_rate": 1e-3, "entropy_cost": 0.02}
    from kickstart.errors import ConfigError
    with pytest.raises(ConfigError, match="unknown hyperparameter 'lr'; mutable ones: entropy_cost, learning_rate"):
        learner.set_hparams({"lr": 1.0})
    with pytest.raises(ConfigError, match="must be a finite number >= 0"):
        learner.set_hparams({"learning_rate": float("nan")})


def test_local_backend_survives_a_killed_actor(out_dir):
    """Kill an actor mid-run: it is restarted, the learner goes on, and every batch is whole."""
    cfg = _cfg(out_dir, "runtime.actor_restarts=3")
    spec = env_spec(cfg.env)
    net = build_net(cfg.net, spec)
    fields = unroll_fields(spec, net_num_logits(net), net.initial_state(1))
    backend = LocalBackend(cfg, spec, fields)
    backend.start(net.state_dict(), {"learning_rate": 1e-3})
    try:
        for _ in range(3):
            backend.get_batch()
        victim = backend.actor_pids()[0]
        os.kill(victim, signal.SIGKILL)
        seen = 0
        deadline = time.monotonic() + 60
        while (backend.total_restarts == 0 or seen < 6) and time.monotonic() < deadline:
            batch = backend.get_batch()
            assert batch["obs"].shape[:2] == (9, 8)
            seen += 1
        assert backend.total_restarts == 1
        assert backend.actor_pids()[0] != victim
        assert any("actor 0 died" in e for e in backend.events)
        # no slot lost or duplicated: every slot is free, ready or held by exactly one actor
        held = [i for s in backend.assigned for i in s]
        everything = sorted(list(backend.free) + list(backend.ready) + held)
        assert everything == list(range(backend.num_slots))
    finally:
        backend.close()
