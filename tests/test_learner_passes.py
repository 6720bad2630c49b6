"""Several optimiser steps per batch (``learner.epochs``, ``learner.minibatches``): the learner's
update against a naive reference made of one-step updates on hand-cut minibatches, and what must
hold once per batch (the caller's commit, PopArt's statistics, the update lock)."""

import copy
import threading

import pytest
import torch

from kickstart.envs import env_spec, make_batched_env
from kickstart.errors import ConfigError
from kickstart.learner import Learner, LossTerm, explained_variance
from kickstart.methods import load_config
from kickstart.nets import build_net
from kickstart.runtime.actor import assign_tasks
from kickstart.runtime.unroll import Actor, allocate, unroll_fields
from kickstart.train import net_num_logits


def _cfg(*overrides):
    return load_config(None, ["env.id=minatar:Breakout", "net.hidden_size=16", "net.lstm_size=8", "net.core=lstm",
                              "learner.unroll_length=6", "learner.batch_size=4", "runtime.envs_per_actor=4",
                              "learner.optimizer=adam", "learner.learning_rate=0.01", *overrides])


def _setup(cfg, seed=0):
    """A network and one real batch of its own unrolls (the second, so core states are not zero)."""
    spec = env_spec(cfg.env)
    torch.manual_seed(seed)
    net = build_net(cfg.net, spec)
    B = cfg.learner.batch_size
    env = make_batched_env(cfg.env, assign_tasks(0, B, spec.num_tasks), seed)
    fields = unroll_fields(spec, net_num_logits(net), net.initial_state(1))
    actor = Actor(env, net, cfg.learner.unroll_length, seed)
    for _ in range(2):
        batch = allocate(fields, cfg.learner.unroll_length, B)
        actor.collect(batch)
    actor.close()
    return net, batch


def _columns(batch, cols):
    return {k: (v[cols] if k.startswith("core_state.") else v[:, cols])
            for k, v in batch.items() if not k.startswith("ep_")}


def test_passes_equal_one_step_updates_on_hand_cut_minibatches():
    """epochs=3 x minibatches=2: the same parameters as six one-step updates, in order, on the
    minibatches cut by hand with the same random permutations (whole unrolls, their core states)."""
    cfg = _cfg("learner.epochs=3", "learner.minibatches=2")
    net, batch = _setup(cfg)
    assert any(k.startswith("core_state.") and v.abs().sum() > 0 for k, v in batch.items())
    ref_net = copy.deepcopy(net)
    learner = Learner(net, cfg.learner, 10_000, device=torch.device("cpu"))
    ref = Learner(ref_net, _cfg().learner, 10_000, device=torch.device("cpu"))

    torch.manual_seed(7)
    metrics = learner.step(batch, frames=100)
    torch.manual_seed(7)
    perms = [torch.randperm(4) for _ in range(3)]
    rhos = []
    for perm in perms:
        for cols in (perm[:2], perm[2:]):
            rhos.append(ref.step(_columns(batch, cols), frames=100)["vtrace/rho_mean"])

    for (name, p), q in zip(net.named_parameters(), ref_net.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    assert learner.steps == 1 and ref.steps == 6
    # The metrics are the means over the six steps; the first pass is on-policy, the later ones not.
    assert metrics["vtrace/rho_mean"] == pytest.approx(sum(rhos) / 6, rel=1e-5)
    assert rhos[0] == pytest.approx(1.0, abs=1e-5) and any(abs(r - 1) > 1e-3 for r in rhos[2:])


def test_default_is_one_step_per_batch():
    cfg = _cfg()
    net, batch = _setup(cfg)
    learner = Learner(net, cfg.learner, 10_000, device=torch.device("cpu"))
    calls = []
    step = learner.optimizer.step
    learner.optimizer.step = lambda *a, **k: (calls.append(1), step(*a, **k))[1]
    learner.step(batch, 0)
    assert len(calls) == 1 and learner.steps == 1


def test_commit_once_after_the_last_step_with_the_lock_held_throughout():
    """The caller's commit runs once, with the last optimiser step; between the steps another thread
    (a checkpoint) cannot take the lock, so it never sees part of a batch applied."""
    cfg = _cfg("learner.epochs=2", "learner.minibatches=2")
    net, batch = _setup(cfg)
    learner = Learner(net, cfg.learner, 10_000, device=torch.device("cpu"))
    steps, commits, free = [], [], []
    step = learner.optimizer.step

    def counted(*a, **k):
        steps.append(1)
        t = threading.Thread(target=lambda: free.append(learner.lock.acquire(blocking=False)))
        t.start()
        t.join()
        return step(*a, **k)

    learner.optimizer.step = counted
    learner.step(batch, 0, commit=lambda: commits.append(len(steps)))
    assert commits == [4] and free == [False] * 4


def test_popart_statistics_move_once_per_return():
    """PopArt's statistics move in the first pass only, once per minibatch: each return counts once."""
    cfg = load_config(None, ["env.id=minatar5", "net.torso=minatar", "net.hidden_size=16", "net.popart=true",
                             "learner.unroll_length=5", "learner.batch_size=5", "runtime.envs_per_actor=5",
                             "learner.epochs=3", "learner.minibatches=5"])
    net, batch = _setup(cfg)
    learner = Learner(net, cfg.learner, 10_000, device=torch.device("cpu"))
    seen = []
    update = learner.popart.update
    learner.popart.update = lambda vs, task: (seen.append(task.shape), update(vs, task))[1]
    learner.step(batch, 0)
    assert seen == [torch.Size([5, 1])] * 5


def test_minibatches_must_divide_the_batch():
    with pytest.raises(ConfigError, match=r"learner.minibatches=3 must divide learner.batch_size=4"):
        _cfg("learner.minibatches=3")
    with pytest.raises(ConfigError, match=r"learner.epochs=0 must be > 0"):
        _cfg("learner.epochs=0")


def test_pg_clip_is_impalas_update_on_policy_and_bounds_the_later_passes():
    """learner.pg_clip: on the actors' own batch (ratio 1) the clipped surrogate's gradients are the
    V-trace policy gradient's; the later passes report how many ratios left the clipping range."""
    grads = {}
    for clip in (0.0, 0.2):
        cfg = _cfg(f"learner.pg_clip={clip}")
        net, batch = _setup(cfg)
        learner = Learner(net, cfg.learner, 10_000, device=torch.device("cpu"))
        total, m = learner.loss(batch, 0)
        total.backward()
        grads[clip] = [p.grad.clone() for p in net.parameters()]
        assert m["vtrace/rho_mean"] == pytest.approx(1.0, abs=1e-5)
    for a, b in zip(grads[0.0], grads[0.2]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)

    cfg = _cfg("learner.pg_clip=0.01", "learner.epochs=4", "learner.learning_rate=0.05")
    net, batch = _setup(cfg)
    m = Learner(net, cfg.learner, 10_000, device=torch.device("cpu")).step(batch, 0)
    assert 0 < m["policy/ratio_clipped_frac"] < 1


def test_pg_clip_must_be_below_one():
    with pytest.raises(ConfigError, match=r"learner.pg_clip=1.5 must be in \[0, 1\)"):
        _cfg("learner.pg_clip=1.5")


class _EveryOther(LossTerm):
    """A method's term that covers only every other minibatch (as a teacher of some tasks does): its
    metric is reported there only, and its loss has a zero gradient elsewhere."""

    def __init__(self):
        self.calls = 0

    def __call__(self, ctx):
        self.calls += 1
        logits = ctx.out.policy_logits
        if self.calls % 2:
            return 1e-3 * logits.pow(2).mean(), {"probe/covered": 2.0}
        return 0.0 * logits.sum(), {}


def test_a_metric_some_minibatches_report_is_their_mean_not_diluted_by_the_others():
    cfg = _cfg("learner.epochs=2", "learner.minibatches=2")
    net, batch = _setup(cfg)
    m = Learner(net, cfg.learner, 10_000, terms=[_EveryOther()], device=torch.device("cpu")).step(batch, 0)
    assert m["probe/covered"] == 2.0          # reported by 2 of the 4 minibatches, 2.0 each


def test_a_minibatch_with_a_zero_gradient_takes_no_optimizer_step():
    """Pure distillation (no RL loss) where a minibatch holds no covered step: its gradient is exactly
    zero, and an Adam step there would still move the weights by its momentum. The batch's commit and
    step count are unchanged."""
    cfg = _cfg("learner.epochs=2", "learner.minibatches=2", "learner.rl_loss=false")
    net, batch = _setup(cfg)
    learner = Learner(net, cfg.learner, 10_000, terms=[_EveryOther()], device=torch.device("cpu"))
    calls, commits = [], []
    step = learner.optimizer.step
    learner.optimizer.step = lambda *a, **k: (calls.append(1), step(*a, **k))[1]
    m = learner.step(batch, 0, commit=lambda: commits.append(len(calls)))
    assert len(calls) == 2 and commits == [2] and learner.steps == 1
    assert m["grad/norm"] > 0                 # the mean over all four, two of them 0


def test_explained_variance_is_the_whole_batchs_with_the_first_pass_values():
    """Over the batch, each value as the first pass saw it: the naive reference steps on hand-cut
    minibatches and pools what each saw before its own step."""
    cfg = _cfg("learner.epochs=2", "learner.minibatches=2")
    net, batch = _setup(cfg)
    ref_net = copy.deepcopy(net)
    learner = Learner(net, cfg.learner, 10_000, device=torch.device("cpu"))
    ref = Learner(ref_net, _cfg().learner, 10_000, device=torch.device("cpu"))
    torch.manual_seed(3)
    m = learner.step(batch, frames=100)
    torch.manual_seed(3)
    perm = torch.randperm(4)
    values, targets = [], []
    for cols in (perm[:2], perm[2:]):
        mb = _columns(batch, cols)
        with torch.no_grad():
            ref.loss(mb, 100)
        v, t = ref._value_pairs
        values.append(v)
        targets.append(t)
        ref.step(mb, frames=100)
    want = explained_variance(torch.cat(values, 1), torch.cat(targets, 1))
    assert m["value/explained_variance"] == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_a_checkpoint_of_another_kernel_choice_loads_with_this_machines(optimizer):
    """Loading optimiser state brings back the saved param groups, kernel flags included: a checkpoint
    written with PyTorch's per-tensor kernels must not switch this learner off its faster ones."""
    cfg = _cfg(f"learner.optimizer={optimizer}")
    net, batch = _setup(cfg)
    learner = Learner(net, cfg.learner, 10_000, device=torch.device("cpu"))
    flag = "fused" if optimizer == "adam" else "foreach"
    assert learner.optimizer.defaults[flag] is True
    old = Learner(copy.deepcopy(net), cfg.learner, 10_000, device=torch.device("cpu"))
    for group in old.optimizer.param_groups:       # as PyTorch's defaults on the CPU make it
        group[flag] = None
    old.step(batch, frames=0)
    state = old.state_dict()
    assert all(g[flag] is None for g in state["optimizer"]["param_groups"])
    learner.load_state_dict(state)
    assert all(g[flag] is True for g in learner.optimizer.param_groups)
    learner.step(batch, frames=0)                  # and it steps from the loaded moments
    for p in learner.net.parameters():
        assert float(learner.optimizer.state[p]["step"]) == 2
