"""Mix & Match: the math against hand computations, the agent's structure, the loss term, export,
bad input, and real learning runs: a short CartPole curriculum in the default tier, each MinAtar
curriculum and sampled mixing in the slow tier."""

import math

import numpy as np
import pytest
import torch

from kickstart.envs import env_spec
from kickstart.errors import ConfigError
from kickstart.learner import Learner, LossContext
from kickstart.losses import mixmatch as mm
from kickstart.methods import load_config
from kickstart.mixmatch import MixMatchTerm, alpha_value, default_lambda
from kickstart.mixmatch.net import MixMatchNet
from kickstart.nets import AgentNet, build_agent, build_net
from kickstart.runtime.unroll import (
    Actor,
    allocate,
    core_state_of,
    net_inputs,
    unroll_fields,
)

SMALL = ["net.torso=minatar", "net.hidden_size=16", "net.lstm_size=16"]
ACTION_SPACE = ["mixmatch.components=[{action_set: minimal}, {}]", "mixmatch.share=[torso, core]"]
CORES = ["mixmatch.components=[{core: ff}, {core: lstm}]", "mixmatch.share=[torso]"]
MULTITASK = ["env.id=minatar5", "mixmatch.components=[{core: lstm, per_task: true}, {core: lstm}]",
             "mixmatch.share=[torso]"]


def make(overrides, alpha=0.3):
    cfg = load_config(None, SMALL + list(overrides) + [f"mixmatch.alpha={alpha}"])
    spec = env_spec(cfg.env)
    torch.manual_seed(0)
    return cfg, spec, build_agent(cfg, spec)


def inputs(spec, T=4, B=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 2, (T, B) + spec.obs_shape, dtype=torch.uint8, generator=g)
    la = torch.randint(0, spec.num_actions, (T, B), generator=g)
    r = torch.rand(T, B, generator=g)
    first = torch.rand(T, B, generator=g) < 0.2
    task = torch.arange(B).remainder(spec.num_tasks)[None].expand(T, B)
    return obs, la, r, first, task


def forward(net, spec, **kw):
    obs, la, r, first, task = inputs(spec, **kw)
    out, _ = net(obs, la, r, first, net.initial_state(obs.shape[1]), task)
    return out


# -- pure math ---------------------------------------------------------------------------------

def test_chain_weights():
    assert mm.chain_weights(0.0, 2) == [1.0, 0.0]
    assert mm.chain_weights(0.25, 2) == [0.75, 0.25]
    assert mm.chain_weights(1.0, 2) == [0.0, 1.0]
    assert mm.chain_weights(0.0, 3) == [1.0, 0.0, 0.0]
    assert mm.chain_weights(0.5, 3) == [0.0, 1.0, 0.0]
    assert mm.chain_weights(1.0, 3) == [0.0, 0.0, 1.0]
    assert mm.chain_weights(0.75, 3) == pytest.approx([0.0, 0.5, 0.5])
    for a in np.linspace(0, 1, 17):
        w = mm.chain_weights(float(a), 4)
        assert sum(w) == pytest.approx(1.0) and min(w) >= 0
    with pytest.raises(ValueError):
        mm.chain_weights(1.1, 2)
    with pytest.raises(ValueError):
        mm.chain_weights(0.5, 1)


def _log(p):
    return torch.tensor(np.where(np.asarray(p) > 0, np.log(np.maximum(p, 1e-300)), mm.NEG), dtype=torch.float64)


def test_mixture_and_kl_against_hand_computation():
    p1 = np.array([0.5, 0.5, 0.0, 0.0])          # a small-action policy: 2 of 4 actions
    p2 = np.array([0.1, 0.2, 0.3, 0.4])
    a = 0.3
    mixed = mm.mixture_log_probs([_log(p1), _log(p2)], [1 - a, a])
    np.testing.assert_allclose(mixed.exp().numpy(), (1 - a) * p1 + a * p2, rtol=1e-12)
    # KL(p1 || p2) = 0.5 log(0.5/0.1) + 0.5 log(0.5/0.2)
    want = 0.5 * math.log(0.5 / 0.1) + 0.5 * math.log(0.5 / 0.2)
    support = torch.tensor([True, True, False, False])
    assert mm.kl(_log(p1), _log(p2), support).item() == pytest.approx(want, rel=1e-12)
    # masked: p2 renormalised over p1's support: (1/3, 2/3)
    want_masked = 0.5 * math.log(0.5 / (1 / 3)) + 0.5 * math.log(0.5 / (2 / 3))
    assert mm.kl(_log(p1), _log(p2), support, masked=True).item() == pytest.approx(want_masked, rel=1e-12)
    # the M&M term: (1 - alpha) KL, and 0 once alpha is 1
    assert mm.mm_loss([_log(p1), _log(p2)], a, [support, None]).item() == pytest.approx((1 - a) * want, rel=1e-12)
    assert mm.mm_loss([_log(p1), _log(p2)], 1.0, [support, None]).item() == 0.0
    # collision entropy -log sum p^2
    assert mm.collision_entropy(_log(p2)).item() == pytest.approx(-math.log((p2 ** 2).sum()), rel=1e-12)


def test_masked_kl_ignores_mass_outside_the_support():
    support = torch.tensor([True, True, False, False])
    p1 = _log([0.6, 0.4, 0.0, 0.0])
    q_a = _log([0.2, 0.2, 0.3, 0.3])
    q_b = _log([0.4, 0.4, 0.1, 0.1])               # same ratio inside the support, other mass outside
    assert mm.kl(p1, q_a, support, masked=True).item() == pytest.approx(mm.kl(p1, q_b, support, masked=True).item())
    assert mm.kl(p1, q_a, support).item() != pytest.approx(mm.kl(p1, q_b, support).item())


def test_kl_gradients_reach_both_policies_unless_stopped():
    z1 = torch.randn(3, 4, requires_grad=True)
    z2 = torch.randn(3, 4, requires_grad=True)
    lp1, lp2 = torch.log_softmax(z1, -1), torch.log_softmax(z2, -1)
    mm.mm_loss([lp1, lp2], 0.2).sum().backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0
    z1.grad = z2.grad = None
    mm.mm_loss([torch.log_softmax(z1, -1), torch.log_softmax(z2, -1)], 0.2, stop_simple=True).sum().backward()
    assert z1.grad is None and z2.grad.abs().sum() > 0


def test_k3_pair_weights_and_loss_against_hand_computation():
    """K > 2: pair i is weighted by the mixture weight still on pi_1..pi_i (K = 2: 1 - alpha)."""
    assert mm.pair_weights(0.3, 2) == pytest.approx([0.7])
    assert mm.pair_weights(0.0, 3) == [1.0, 1.0]
    assert mm.pair_weights(0.25, 3) == pytest.approx([0.5, 1.0])     # w = (0.5, 0.5, 0)
    assert mm.pair_weights(0.5, 3) == pytest.approx([0.0, 1.0])      # pi_2 alone: pi_1 never acts again
    assert mm.pair_weights(0.75, 3) == pytest.approx([0.0, 0.5])     # w = (0, 0.5, 0.5)
    assert mm.pair_weights(1.0, 3) == [0.0, 0.0]
    p1 = np.array([0.7, 0.3, 0.0, 0.0])
    p2 = np.array([0.4, 0.2, 0.4, 0.0])
    p3 = np.array([0.1, 0.2, 0.3, 0.4])
    kl12 = 0.7 * math.log(0.7 / 0.4) + 0.3 * math.log(0.3 / 0.2)
    kl23 = 0.4 * math.log(0.4 / 0.1) + 0.2 * math.log(0.2 / 0.2) + 0.4 * math.log(0.4 / 0.3)
    supports = [torch.tensor([True, True, False, False]), torch.tensor([True, True, True, False]), None]
    lps = [_log(p1), _log(p2), _log(p3)]
    assert [k.item() for k in mm.pair_kls(lps, supports)] == pytest.approx([kl12, kl23], rel=1e-12)
    assert mm.mm_loss(lps, 0.25, supports).item() == pytest.approx(0.5 * kl12 + kl23, rel=1e-12)
    assert mm.mm_loss(lps, 0.75, supports).item() == pytest.approx(0.5 * kl23, rel=1e-12)
    assert mm.mm_loss(lps, 1.0, supports).item() == 0.0


# -- the agent ---------------------------------------------------------------------------------

def test_small_actions_map_into_the_large_space_by_meaning():
    cfg, spec, net = make(ACTION_SPACE)
    assert spec.minimal_action_meanings == ("NOOP", "LEFT", "RIGHT")
    support = net.supports()[0]
    assert [spec.action_meanings[i] for i in support.nonzero().flatten().tolist()] == ["NOOP", "LEFT", "RIGHT"]
    # Give pi_1's head distinct constant outputs for its three actions (NOOP, LEFT, RIGHT): each must
    # land on the env action of the same meaning, not merely somewhere in the support.
    head = net.heads[net._head_of[0]]
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.copy_(torch.tensor([0.0, 1.0, 2.0]))
    out = forward(net, spec)
    p1 = out.extras["mm_log_probs"][0].exp()
    want = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), -1)
    for j, meaning in enumerate(("NOOP", "LEFT", "RIGHT")):
        torch.testing.assert_close(p1[..., spec.action_meanings.index(meaning)], want[j].expand(p1.shape[:-1]))
    assert torch.all(p1[..., ~support] == 0)
    torch.testing.assert_close(p1.sum(-1), torch.ones(p1.shape[:-1]))
    torch.testing.assert_close(out.policy_logits.exp().sum(-1), torch.ones(p1.shape[:-1]))


@pytest.mark.parametrize("overrides", [ACTION_SPACE, CORES, MULTITASK], ids=["actions", "cores", "multitask"])
def test_all_weight_on_one_component_is_that_component(overrides):
    for alpha, k in ((0.0, 0), (1.0, 1)):
        cfg, spec, net = make(overrides, alpha)
        out = forward(net, spec)
        torch.testing.assert_close(out.policy_logits.exp(), out.extras["mm_log_probs"][k].exp(), atol=1e-6, rtol=0)
    # With alpha = 1 the M&M term is 0, and because its weight 1 - alpha is 0, not because there is
    # nothing to distil: the components still differ (KL(pi_1 || pi_2) > 0 in every state), the term
    # reports that KL, and the pure loss is that KL times 1 - alpha, 0 at alpha = 1 only.
    with torch.no_grad():      # freshly built heads are all near uniform: make the components differ
        g = torch.Generator().manual_seed(1)
        for p in net.heads.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    out = forward(net, spec)
    term = MixMatchTerm(cfg.mixmatch, 100.0, spec.action_meanings)
    ctx = LossContext(batch={"action": torch.zeros(4, 5, dtype=torch.long)}, out=out, dist=None,
                      hparams={"mixmatch/alpha": 1.0, "mixmatch/lambda": 100.0}, reduction="sum", frames=0)
    loss, metrics = term(ctx)
    assert loss.item() == 0.0 and metrics["mixmatch/alpha"] == 1.0
    lps, supports = [lp[:-1] for lp in out.extras["mm_log_probs"]], out.extras["mm_supports"]
    kl = mm.kl(lps[0], lps[1], supports[0])
    assert kl.min() > 1e-4
    assert metrics["mixmatch/kl"] == pytest.approx(kl.mean().item(), rel=1e-5)
    assert torch.equal(mm.mm_loss(lps, 1.0, supports), torch.zeros_like(kl))
    torch.testing.assert_close(mm.mm_loss(lps, 0.25, supports), 0.75 * kl)


def test_mixture_is_the_weighted_sum_of_the_components():
    cfg, spec, net = make(CORES, alpha=0.35)
    out = forward(net, spec)
    p1, p2 = (lp.exp() for lp in out.extras["mm_log_probs"])
    torch.testing.assert_close(out.policy_logits.exp(), 0.65 * p1 + 0.35 * p2)


def test_factorised_big_action_space_on_atari():
    cfg = load_config(None, ["env.id=atari:Pong", "env.full_action_space=true", "net.torso=impala_shallow",
                             "net.hidden_size=16", "net.core=ff",
                             "mixmatch.components=[{action_set: minimal, policy_head: categorical}, "
                             "{policy_head: factorised}]", "mixmatch.share=[torso, core]", "mixmatch.alpha=0.5"])
    spec = env_spec(cfg.env)
    net = build_agent(cfg, spec)
    out = forward(net, spec, T=2, B=2)
    p1, p2 = (lp.exp() for lp in out.extras["mm_log_probs"])
    assert p2.shape[-1] == 18 and int(net.supports()[0].sum()) == 6
    torch.testing.assert_close(p2.sum(-1), torch.ones(2, 2))
    torch.testing.assert_close(out.policy_logits.exp().sum(-1), torch.ones(2, 2))
    # pi_2 is a product of the joystick and fire factors: p(UPFIRE) p(NOOP) == p(UP) p(FIRE)
    m = spec.action_meanings
    lhs = p2[..., m.index("UPFIRE")] * p2[..., m.index("NOOP")]
    rhs = p2[..., m.index("UP")] * p2[..., m.index("FIRE")]
    torch.testing.assert_close(lhs, rhs)


def test_explicit_mixture_of_three_components_inside_the_chain():
    """alpha = 0.7 with K = 3: w = (0, 0.6, 0.4), pi_mm = 0.6 pi_2 + 0.4 pi_3 and pi_1 takes no part."""
    cfg, spec, net = make(CHAIN, 0.7)
    assert net.weights() == pytest.approx([0.0, 0.6, 0.4])
    out = forward(net, spec)
    p = [lp.exp() for lp in out.extras["mm_log_probs"]]
    torch.testing.assert_close(out.policy_logits.exp(), 0.6 * p[1] + 0.4 * p[2])
    # the reported mixture, against log(sum_i w_i softmax(l_i)) by hand (not the policy it is in this mode)
    torch.testing.assert_close(out.extras["mm_mixture"], torch.log(0.6 * p[1] + 0.4 * p[2]))


def test_shared_head_is_the_target_restricted_and_renormalised():
    cfg, spec, net = make(ACTION_SPACE + ["mixmatch.shared_head=true"])
    out = forward(net, spec)
    lp1, lp2 = out.extras["mm_log_probs"]
    s = net.supports()[0]
    want = lp2[..., s] - torch.logsumexp(lp2[..., s], -1, keepdim=True)
    torch.testing.assert_close(lp1[..., s], want)
    assert len(net.heads) == 1


def test_per_task_specialists_act_only_on_their_task():
    cfg, spec, net = make(MULTITASK, alpha=0.0)
    assert spec.num_tasks == 5
    obs, la, r, first, task = inputs(spec, B=10)
    out1, _ = net(obs, la, r, first, net.initial_state(10), task)
    with torch.no_grad():
        for p in net.heads[0].copies[2].parameters():   # the specialist of task 2
            p.add_(1.0)
    out2, _ = net(obs, la, r, first, net.initial_state(10), task)
    changed = (out1.policy_logits - out2.policy_logits).abs().amax(dim=(0, 2)) > 0
    assert changed.tolist() == (task[0] == 2).tolist()


@pytest.mark.parametrize("overrides", [ACTION_SPACE, CORES, MULTITASK], ids=["actions", "cores", "multitask"])
def test_learner_reproduces_the_actor_logits(overrides):
    """Over two unrolls (the core state carried between them), running the net over each stored unroll
    from its stored core state gives back the behaviour logits (to rounding)."""
    from kickstart.envs import make_batched_env
    from kickstart.train import net_num_logits

    cfg, spec, net = make(overrides, alpha=0.4)
    tasks = [i % spec.num_tasks for i in range(6)]
    env = make_batched_env(cfg.env, tasks, 3, spec=spec)
    actor = Actor(env, net, 7, seed=1)
    fields = unroll_fields(spec, net_num_logits(net), net.initial_state(1))
    for _ in range(2):
        buf = allocate(fields, 7, 6)
        actor.collect(buf)
        o, la, r, f = net_inputs(buf["obs"], buf["last_action"], buf["reward"], buf["first"])
        with torch.no_grad():
            out, _ = net(o, la, r, f, core_state_of(buf), buf["task"])
        torch.testing.assert_close(out.policy_logits, buf["logits"], atol=1e-5, rtol=0)
    actor.close()


@pytest.mark.parametrize("overrides", [ACTION_SPACE, CORES, MULTITASK], ids=["actions", "cores", "multitask"])
def test_exported_target_gives_exactly_pi_K(overrides):
    cfg, spec, net = make(overrides)
    target = net.export_target()
    assert isinstance(target, AgentNet)
    plain = build_net(net.target_config(), spec)
    plain.load_state_dict(target.state_dict())          # strict: the exported weights fit a plain net
    obs, la, r, first, task = inputs(spec)
    out = forward(net, spec)
    got, _ = plain(obs, la, r, first, plain.initial_state(obs.shape[1]))
    torch.testing.assert_close(torch.log_softmax(got.policy_logits, -1), out.extras["mm_log_probs"][-1], rtol=0, atol=0)
    torch.testing.assert_close(got.baseline, out.baseline, rtol=0, atol=0)


@pytest.mark.parametrize("overrides", [ACTION_SPACE, MULTITASK], ids=["actions", "multitask"])
def test_popart_value_head_is_normalised_per_task_and_exported_with_the_target(overrides):
    """net.popart on an M&M network: one PopArt head on the target's core, value = sigma_i * n_i + mu_i
    for each sample's task, and the exported target carries the head with its statistics."""
    from kickstart.nets.popart import PopArtHead

    cfg, spec, net = make([*overrides, "net.popart=true"])
    head = net.baseline_head
    assert isinstance(head, PopArtHead) and head.num_tasks == spec.num_tasks
    k = spec.num_tasks
    head.update(torch.linspace(-50.0, 80.0, 4 * k), torch.arange(4 * k).remainder(k))   # unequal statistics
    obs, la, r, first, task = inputs(spec)
    out, _ = net(obs, la, r, first, net.initial_state(obs.shape[1]), task)
    n = out.extras["baseline_normalised"]
    torch.testing.assert_close(out.baseline, head.sigma()[task] * n + head.mu[task])
    plain = build_net(net.target_config(), spec)
    plain.load_state_dict(net.export_target().state_dict())      # strict: mu and nu travel too
    got, _ = plain(obs, la, r, first, plain.initial_state(obs.shape[1]), task)
    torch.testing.assert_close(got.baseline, out.baseline, rtol=0, atol=0)


def test_popart_learner_step_moves_the_mixmatch_statistics():
    """The learner finds the M&M network's PopArt head: one step moves mu by beta towards the mean
    V-trace target, and the baseline loss is on the normalised targets."""
    from kickstart.envs import make_batched_env
    from kickstart.mixmatch import build
    from kickstart.train import net_num_logits

    cfg, spec, net = make([*ACTION_SPACE, "net.popart=true", "net.popart_beta=0.5"])
    setup = build(cfg, spec)
    learner = Learner(net, cfg.learner, 10_000, setup.terms, device=torch.device("cpu"))
    assert learner.popart is net.baseline_head
    env = make_batched_env(cfg.env, [0] * 4, 0, spec=spec)
    actor = Actor(env, net, 6, seed=0)
    buf = allocate(unroll_fields(spec, net_num_logits(net), net.initial_state(1)), 6, 4)
    actor.collect(buf)
    learner.loss(buf, 0)
    vs, _ = learner._popart_targets
    metrics = learner.step(buf, frames=0)
    assert float(net.baseline_head.mu[0]) == pytest.approx(0.5 * float(vs.mean()), rel=1e-4, abs=1e-6)
    assert "popart/sigma_max" in metrics
    actor.close()


def test_export_eval_and_teacher_from_a_trained_mixmatch_run(out_dir, tmp_path):
    from kickstart.evaluate import evaluate, export_policy, load_policy
    from kickstart.train import train, validate

    cfg = load_config(None, SMALL + CORES + [
        "mixmatch.alpha=0.5", "learner.unroll_length=8", "learner.batch_size=8", "runtime.envs_per_actor=8",
        "runtime.backend=serial", "runtime.num_actors=1", "run.total_frames=640", f"run.out_dir={out_dir}",
        "run.name=mm", "run.progress=false", "run.tensorboard=false"])
    train(cfg)
    full, _, _ = load_policy(str(out_dir / "mm" / "checkpoint.pt"))
    assert isinstance(full, MixMatchNet) and float(full.alpha) == 0.5
    path = export_policy(str(out_dir / "mm" / "checkpoint.pt"), str(tmp_path / "target.pt"))
    net, pcfg, _ = load_policy(str(path))
    assert isinstance(net, AgentNet) and pcfg.net.core == "lstm" and not pcfg.mixmatch.enabled
    spec = env_spec(cfg.env)
    obs, la, r, first, task = inputs(spec)
    with torch.no_grad():
        a, _ = net(obs, la, r, first, net.initial_state(5))
        b, _ = full(obs, la, r, first, full.initial_state(5), task)
    torch.testing.assert_close(torch.log_softmax(a.policy_logits, -1), b.extras["mm_log_probs"][-1])
    assert evaluate(net, cfg.env, episodes=2, max_steps=2000)[0].returns
    # kickstarting accepts the exported target as a teacher of a new student
    student = load_config(None, SMALL + [f"kickstart.teachers.mm.path={path}"])
    assert [t.name for t in validate(student).terms] == ["kickstart"]


# -- the loss term and alpha -------------------------------------------------------------------

def test_alpha_schedules():
    cfg = load_config(None, CORES + ["mixmatch.alpha=0.2", "mixmatch.alpha_schedule=linear",
                                     "mixmatch.alpha_end_frames=1000"]).mixmatch
    assert [alpha_value(cfg, 0.2, f) for f in (0, 500, 1000, 5000)] == pytest.approx([0.2, 0.6, 1.0, 1.0])
    cfg = load_config(None, CORES + ["mixmatch.alpha_schedule=piecewise",
                                     "mixmatch.alpha_piecewise=[[100, 0.0], [300, 1.0]]"]).mixmatch
    assert [alpha_value(cfg, 0.9, f) for f in (0, 100, 200, 300, 400)] == pytest.approx([0, 0, 0.5, 1, 1])
    cfg = load_config(None, CORES + ["mixmatch.alpha=0.2"]).mixmatch
    assert alpha_value(cfg, 0.45, 10**9) == 0.45          # constant: the (PBT-evolved) hyperparameter


def test_default_lambda_is_the_papers():
    assert default_lambda(load_config(None, SMALL + ACTION_SPACE)) == 1.0
    assert default_lambda(load_config(None, SMALL + CORES)) == 100.0
    assert default_lambda(load_config(None, SMALL + MULTITASK)) == 100.0
    assert default_lambda(load_config(None, SMALL + CORES + ["mixmatch.lambda_mm=3"])) == 3.0


def test_learner_step_writes_alpha_and_trains_both_components():
    from kickstart.envs import make_batched_env
    from kickstart.mixmatch import build
    from kickstart.train import net_num_logits

    cfg, spec, net = make(CORES, alpha=0.0)
    setup = build(cfg, spec)
    learner = Learner(net, cfg.learner, 10_000, setup.terms, device=torch.device("cpu"))
    learner.set_hparams({"mixmatch/alpha": 0.3})
    env = make_batched_env(cfg.env, [0] * 4, 0, spec=spec)
    actor = Actor(env, net, 6, seed=0)
    buf = allocate(unroll_fields(spec, net_num_logits(net), net.initial_state(1)), 6, 4)
    actor.collect(buf)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    metrics = learner.step(buf, frames=0)
    assert float(net.alpha) == pytest.approx(0.3) and metrics["mixmatch/alpha"] == pytest.approx(0.3)
    assert metrics["mixmatch/loss"] > 0 and math.isfinite(metrics["mixmatch/collision_entropy"])
    assert sum(v for k, v in metrics.items() if k.startswith("mixmatch/action_freq/")) == pytest.approx(1.0)
    after = net.state_dict()
    changed = {".".join(k.split(".")[:2]) for k in before if "." in k and not torch.equal(before[k], after[k])}
    assert {"heads.0", "heads.1", "cores.1"} <= changed
    actor.close()


# -- the sampled-selector mixture (mixmatch.mixing=sampled) ----------------------------------------

SAMPLED = ["mixmatch.mixing=sampled"]
CHAIN = ["mixmatch.components=[{action_set: minimal}, {core: ff}, {core: lstm}]", "mixmatch.share=[torso]"]


def _sampled_actor(overrides, alpha, n_envs=6, T=7, seed=1):
    from kickstart.envs import make_batched_env
    from kickstart.mixmatch import build
    from kickstart.train import net_num_logits

    cfg, spec, net = make(SAMPLED + list(overrides), alpha)
    setup = build(cfg, spec)
    env = make_batched_env(cfg.env, [i % spec.num_tasks for i in range(n_envs)], 3, spec=spec)
    fields = unroll_fields(spec, net_num_logits(net), net.initial_state(1), setup.extra_fields)
    return cfg, spec, net, setup, Actor(env, net, T, seed=seed), fields


def test_sampled_mixing_declares_the_selector_field_only_when_sampled():
    from kickstart.mixmatch import build
    from kickstart.runtime.unroll import Field

    cfg, spec, _ = make(CORES)
    assert build(cfg, spec).extra_fields == {}
    cfg, spec, _ = make(SAMPLED + CORES)
    assert build(cfg, spec).extra_fields == {"mixmatch/selector": Field((), torch.int64)}


@pytest.mark.parametrize("overrides, alpha", [(ACTION_SPACE, 0.4), (CORES, 0.4), (MULTITASK, 0.4), (CHAIN, 0.7)],
                         ids=["actions", "cores", "multitask", "chain3"])
def test_sampled_learner_reproduces_the_actor_logits(overrides, alpha):
    """The actor records each step's selector c; the learner, given the batch as ``replay`` and
    the actor's parameters, recomputes the behaviour logits log pi_c (to rounding), over several unrolls
    (the selector carried over in the T+1 overlap), so every importance ratio is 1."""
    cfg, _, net, setup, actor, fields = _sampled_actor(overrides, alpha)
    learner = Learner(net, cfg.learner, 10_000, setup.terms, device=torch.device("cpu"))
    learner.set_hparams({"mixmatch/alpha": alpha})
    weights = mm.chain_weights(alpha, net.k)
    prev = None
    for _ in range(3):
        buf = allocate(fields, 7, 6)
        actor.collect(buf)
        c = buf["mixmatch/selector"]
        assert set(c.unique().tolist()) == {i for i, w in enumerate(weights) if w > 0}   # both acted
        if prev is not None:
            assert torch.equal(c[0], prev[-1])
        prev = c.clone()
        o, la, r, f = net_inputs(buf["obs"], buf["last_action"], buf["reward"], buf["first"])
        with torch.no_grad():
            out, _ = net(o, la, r, f, core_state_of(buf), buf["task"], replay=buf)
        torch.testing.assert_close(out.policy_logits, buf["logits"], atol=1e-5, rtol=0)
        # the behaviour is pi_c for the recorded c, not the mixture
        torch.testing.assert_close(buf["logits"], mm.select(out.extras["mm_log_probs"], c), atol=1e-5, rtol=0)
        assert (out.extras["mm_mixture"] - buf["logits"]).abs().amax() > 1e-3
        assert torch.equal(out.extras["record"]["mixmatch/selector"], c)
        # through the learner itself: every importance ratio is 1
        with torch.no_grad():
            _, metrics = learner.loss(buf, frames=0)
        assert metrics["vtrace/rho_mean"] == pytest.approx(1.0, abs=1e-4)
        # each ratio is 1 up to rounding (the actor's single LSTM step and the learner's unroll take
        # different kernels), so the V-trace clip at 1 changes nothing worth a bit
        actions = buf["action"][:-1]
        log_rhos = learner.dist.log_prob(out.policy_logits[:-1], actions) - \
            learner.dist.log_prob(buf["logits"][:-1], actions)
        assert log_rhos.abs().amax() < 1e-5
        assert sum(metrics[f"mixmatch/selected/{i + 1}"] for i in range(net.k)) == pytest.approx(1.0)
    # without the recorded selectors the net draws new ones: other logits (so replay is what matters)
    with torch.no_grad():
        fresh, _ = net(o, la, r, f, core_state_of(buf), buf["task"], generator=torch.Generator().manual_seed(9))
    assert (fresh.policy_logits - buf["logits"]).abs().amax() > 1e-3
    actor.close()


@pytest.mark.parametrize("overrides, k", [(ACTION_SPACE, 2), (MULTITASK, 2), (CHAIN, 3)],
                         ids=["actions", "multitask", "chain3"])
def test_sampled_with_all_weight_on_one_component_picks_it_and_equals_explicit(overrides, k):
    for alpha in [i / (k - 1) for i in range(k)]:      # each component acting alone in turn
        want = round(alpha * (k - 1))
        _, spec, explicit = make(overrides, alpha)
        _, _, sampled = make(SAMPLED + list(overrides), alpha)   # same seed: the same parameters
        obs, la, r, first, task = inputs(spec, T=6, B=10)
        gen = torch.Generator().manual_seed(0)
        a, _ = explicit(obs, la, r, first, explicit.initial_state(10), task)
        b, _ = sampled(obs, la, r, first, sampled.initial_state(10), task, generator=gen)
        assert (b.extras["record"]["mixmatch/selector"] == want).all()
        torch.testing.assert_close(b.policy_logits.exp(), a.policy_logits.exp(), atol=1e-6, rtol=0)
        torch.testing.assert_close(b.policy_logits, b.extras["mm_log_probs"][want])


def test_selection_frequencies_match_the_weights():
    w = [0.2, 0.5, 0.0, 0.3]
    c = mm.sample_selector(w, (400, 500), torch.Generator().manual_seed(0))
    assert c.dtype == torch.int64 and c.shape == (400, 500)
    freq = torch.bincount(c.flatten(), minlength=4).double() / c.numel()
    # 200k draws: the standard error of each frequency is <= 0.0012; 0.005 is > 4 of them
    np.testing.assert_allclose(freq.numpy(), w, atol=0.005)
    assert freq[2] == 0.0                                    # a weight-0 component is never drawn
    assert torch.equal(c, mm.sample_selector(w, (400, 500), torch.Generator().manual_seed(0)))   # deterministic
    assert not torch.equal(c, mm.sample_selector(w, (400, 500), torch.Generator().manual_seed(1)))
    # through the network: per env and step, with the chain's weights at alpha
    _, spec, net = make(SAMPLED + CORES, alpha=0.3)
    obs, la, r, first, task = inputs(spec, T=40, B=50)
    out, _ = net(obs, la, r, first, net.initial_state(50), task, generator=torch.Generator().manual_seed(0))
    c = out.extras["record"]["mixmatch/selector"]
    assert c.shape == (40, 50)
    assert (c == 1).float().mean().item() == pytest.approx(0.3, abs=0.04)   # 2000 draws: s.e. 0.01


def test_selected_policy_gradient_is_unbiased_for_the_mixture():
    """M&M Sec. 3.1 on a hand case: given the action a, the selector's posterior is
    w_c pi_c(a) / pi_mm(a), and the posterior-weighted average of grad log pi_c(a) is
    grad log pi_mm(a) exactly; so is the policy gradient summed over (c, a) ~ (w, pi_c)."""
    torch.manual_seed(0)
    z1 = torch.randn(2, dtype=torch.float64, requires_grad=True)    # pi_1 over actions {0, 1} of 3
    z2 = torch.randn(3, dtype=torch.float64, requires_grad=True)    # pi_2 over all 3
    w = [0.3, 0.7]
    params = [z1, z2]

    def log_probs():
        lp1 = torch.full((3,), mm.NEG, dtype=torch.float64).index_copy(0, torch.tensor([0, 1]),
                                                                       torch.log_softmax(z1, -1))
        return [lp1, torch.log_softmax(z2, -1)]

    def grad(y):
        return torch.cat([g if g is not None else torch.zeros_like(p)
                          for g, p in zip(torch.autograd.grad(y, params, allow_unused=True), params)])

    lp = log_probs()
    pi = [x.exp().detach() for x in lp]
    pi_mm = w[0] * pi[0] + w[1] * pi[1]
    f = torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64)   # any advantage per action
    pg_sampled = torch.zeros(5, dtype=torch.float64)
    for a in range(3):
        post = mm.selector_posterior(lp, w, torch.tensor(a))
        torch.testing.assert_close(post, torch.stack([w[c] * pi[c][a] / pi_mm[a] for c in range(2)]))
        avg = sum(post[c].detach() * grad(log_probs()[c][a]) for c in range(2))
        want = grad(mm.mixture_log_probs(log_probs(), w)[a])
        torch.testing.assert_close(avg, want, rtol=1e-10, atol=1e-12)
        if a < 2:   # one sample alone (c = 1, the target) is not the mixture's gradient
            assert (grad(log_probs()[1][a]) - want).abs().max() > 1e-3
        for c in range(2):
            pg_sampled += w[c] * pi[c][a] * f[a] * grad(log_probs()[c][a])
    pg_mixed = sum(pi_mm[a] * f[a] * grad(mm.mixture_log_probs(log_probs(), w)[a]) for a in range(3))
    torch.testing.assert_close(pg_sampled, pg_mixed, rtol=1e-10, atol=1e-12)


def test_sampled_net_called_without_generator_or_replay_gives_the_mixture():
    """Evaluation and teachers call the network plainly: no selector is drawn (none would be
    recorded) and the policy is pi_mm, the distribution the actor's sampled actions follow."""
    _, spec, explicit = make(CORES, alpha=0.35)
    _, _, sampled = make(SAMPLED + CORES, alpha=0.35)
    obs, la, r, first, task = inputs(spec)
    a, _ = explicit(obs, la, r, first, explicit.initial_state(5), task)
    b, _ = sampled(obs, la, r, first, sampled.initial_state(5), task)
    assert "record" not in b.extras
    torch.testing.assert_close(b.policy_logits, a.policy_logits)
    p1, p2 = (lp.exp() for lp in b.extras["mm_log_probs"])
    by_hand = torch.log(0.65 * p1 + 0.35 * p2)                  # log(sum_i w_i softmax(l_i))
    torch.testing.assert_close(b.policy_logits, by_hand)
    torch.testing.assert_close(b.extras["mm_mixture"], by_hand)


def test_sampled_mixing_needs_its_recorded_field():
    from kickstart.envs import make_batched_env
    from kickstart.train import net_num_logits

    cfg, spec, net = make(SAMPLED + CORES)
    obs, la, r, first, task = inputs(spec)
    with pytest.raises(ValueError, match="mixmatch/selector"):
        net(obs, la, r, first, net.initial_state(5), task, replay={"obs": obs})
    env = make_batched_env(cfg.env, [0] * 2, 0, spec=spec)
    actor = Actor(env, net, 4, seed=0)
    buf = allocate(unroll_fields(spec, net_num_logits(net), net.initial_state(1)), 4, 2)   # no extra field
    with pytest.raises(KeyError, match="extra_fields"):
        actor.collect(buf)
    actor.close()


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, fragments", [
    (["mixmatch.components=[{actions: [NOOP, JUMP]}, {}]"], ["['JUMP']", "no image", "NOOP, LEFT, UP"]),
    (["mixmatch.components=[{}, {}]", "mixmatch.alpha=-0.1"], ["mixmatch.alpha=-0.1", "[0, 1]"]),
    (["mixmatch.components=[{}]"], ["has 1 component", "K >= 2"]),
    (["mixmatch.components=[{}, {per_task: true}]"], ["components[-1].per_task", "target"]),
    (["mixmatch.components=[{}, {action_set: minimal}]"], ["target agent", "full action set"]),
    (["mixmatch.components=[{core: ff}, {core: lstm}]", "mixmatch.share=[torso, core]"], ["shared cores"]),
    (["mixmatch.components=[{action_set: minimal}, {}]", "mixmatch.shared_head=true"], ["share their core"]),
    (["mixmatch.components=[{}, {}]", "mixmatch.share=[head]"], ["mixmatch.share='head'", "policy_head"]),
    (["mixmatch.components=[{}, {}]", "mixmatch.alpha_schedule=linear"], ["alpha_end_frames > 0"]),
    (["env.id=minatar5", "mixmatch.components=[{action_set: minimal}, {}]"], ["no single minimal action set"]),
    (["mixmatch.components=[{}, {}]", "mixmatch.mixing=sample"], ["mixmatch.mixing='sample'", "explicit, sampled"]),
    (["mixmatch.components=[{}, {}]", "mixmatch.alpha_schedule=linear", "mixmatch.alpha_end_frames=10",
      "pbt.population_size=2", "pbt.mutable.mixmatch/alpha.low=0.001", "pbt.mutable.mixmatch/alpha.high=0.01"],
     ["PBT evolves alpha", "alpha_schedule=constant"]),

    (["mixmatch.components=[{actions: [NOOP, LEFT, RIGHT]}, {actions: [NOOP, UP]}, {}]"],
     ["components[0] acts with ['LEFT', 'RIGHT']", "components[1] cannot take", "subset of the next"]),
    (["mixmatch.components=[{action_set: minimal}, {}]", "mixmatch.share=[torso, core]", "mixmatch.shared_head=true",
      "mixmatch.kl=masked"], ["shared_head=true with mixmatch.kl=masked", "mixmatch.kl=full"]),
    (["mixmatch.components=[{}, {}]", "pbt.population_size=2", "pbt.mutable.mixmatch/alpha.distribution=uniform",
      "pbt.mutable.mixmatch/alpha.low=0.5", "pbt.mutable.mixmatch/alpha.high=3"],
     ["pbt.mutable.mixmatch/alpha", "up to 3.0 leaves [0, 1]"]),
    (["mixmatch.components=[{}, {}]", "pbt.population_size=2", "pbt.mutable.mixmatch/alpha.low=0.001",
      "pbt.mutable.mixmatch/alpha.high=0.01", "pbt.mutable.mixmatch/alpha.perturb=multiply"],
     ["mixmatch/alpha.perturb=multiply", "perturb: add"]),
    (["mixmatch.components=[{}, {}]", "pbt.population_size=2", "pbt.mutable.mixmatch/alpha.low=0.001",
      "pbt.mutable.mixmatch/alpha.high=0.01", "pbt.initial_hparams=[{mixmatch/alpha: 1.5}]"],
     ["pbt.initial_hparams[0].mixmatch/alpha=1.5", "[0, 1]"]),
])
def test_bad_input_is_a_one_line_error(overrides, fragments):
    from kickstart.train import validate

    with pytest.raises(ConfigError) as e:
        validate(load_config(None, SMALL + overrides))
    msg = str(e.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg


# -- learning ----------------------------------------------------------------------------------

LEARN = ["run.progress=false", "run.tensorboard=false", "runtime.num_actors=2", "runtime.envs_per_actor=32",
         "learner.batch_size=64"]


CARTPOLE = ["env.id=CartPole-v1", "net.torso=mlp", "net.hidden_size=64", "learner.optimizer=adam",
            "learner.learning_rate=0.002", "learner.loss_reduction=mean", "learner.lr_schedule=constant",
            "learner.entropy_cost=0.01", "learner.unroll_length=20", "learner.batch_size=16",
            "runtime.backend=serial", "runtime.num_actors=1", "runtime.envs_per_actor=16", "run.progress=false",
            "run.tensorboard=false"]


def test_curriculum_on_cartpole_hands_over_to_a_target_that_plays(out_dir, learning_seed, record_property):
    """The default tier's Mix & Match smoke run (explicit mixing, serial, 150k frames): pi_1 and the
    target pi_2 (each its own feed-forward core and head, one torso), alpha 0 -> 1 at 75k frames. At
    the end only the target acts, and after the handover (from 100k frames, the 100-episode window
    then holds the target's episodes) its mean return, logged every 0.5 s, climbs well above
    random play (about 22); the best logged mean, as on CartPole a return still swings late in a run.
    Checked on 5 seeds (runtime.seed 0-4, fp32, native and emulated AVX2 alike): best after 100k
    221, 175, 102-109, 205, 148-161 (last 220, 175, 38, 205, 130) against threshold 50; seeds 5-9:
    172, 239, 228, 235, 263."""
    from kickstart.metrics import read_metrics
    from kickstart.train import train

    cfg = load_config(None, CARTPOLE + [
        "mixmatch.components=[{core: ff}, {core: ff}]", "mixmatch.share=[torso]", "mixmatch.lambda_mm=1",
        "mixmatch.alpha=0.0", "mixmatch.alpha_schedule=linear", "mixmatch.alpha_end_frames=75000",
        f"runtime.seed={learning_seed}", "run.total_frames=150000", f"run.out_dir={out_dir}", "run.log_every_s=0.5"])
    result = train(cfg)
    assert result.metrics["mixmatch/alpha"] == 1.0 and result.metrics["mixmatch/weight/2"] == 1.0
    metrics = read_metrics(result.run_dir / "metrics.csv")
    assert all(a == 1.0 for f, a in metrics["mixmatch/alpha"] if f >= 100000)    # (a mean over each log window)
    best = max(v for f, v in metrics["episode/return/CartPole-v1"] if f >= 100000)
    record_property("best_after_100k", round(best, 1))
    record_property("final", round(result.mean_returns["CartPole-v1"], 1))
    assert best > 50, f"M&M curriculum: the target's best 100-episode mean return {best:.1f} (random: about 22)"


@pytest.mark.slow   # 3 runs of 400k frames on local actors (20-80 s each); the default tier: the CartPole curriculum
@pytest.mark.parametrize("config, task, threshold, extra", [
    # measured: 1.25, 2.27 and 4.98 (random: 0.49, 0.49, 2.77)
    ("configs/mixmatch/minatar_breakout_action_space.yaml", "minatar:Breakout", 0.8, LEARN),
    ("configs/mixmatch/minatar_breakout_cores.yaml", "minatar:Breakout", 1.2, LEARN),
    ("configs/mixmatch/minatar5_multitask.yaml", "minatar:SpaceInvaders", 3.5, ["run.progress=false",
                                                                               "run.tensorboard=false"]),
], ids=["actions", "cores", "multitask"])
def test_curriculum_learns_and_hands_over_to_the_target(out_dir, config, task, threshold, extra):
    """400k frames with alpha reaching 1 halfway: at the end only the target acts, and it plays
    well above random."""
    from kickstart.train import train

    cfg = load_config(config, extra + ["run.total_frames=400000", "mixmatch.alpha_end_frames=200000",
                                       f"run.out_dir={out_dir}", "run.log_every_s=0.5"])   # last window: alpha 1
    result = train(cfg)
    assert result.metrics["mixmatch/alpha"] == 1.0
    ret = result.mean_returns[task]
    assert ret > threshold, f"{config}: {task} return {ret:.2f} after 400k frames"


@pytest.mark.slow   # a second M&M learning run; the default tier: the CartPole curriculum
def test_sampled_mixing_learns_cartpole(out_dir):
    """Smoke run of mixing=sampled (serial, 150k frames, about 10 s): two feed-forward policies,
    each acting on about half the steps (alpha = 0.5), each trained on the steps it acted.
    Measured 281 at this seed, 77..294 over seeds 0-4 (random: about 22)."""
    from kickstart.train import train

    cfg = load_config(None, CARTPOLE + [
        "mixmatch.components=[{core: ff}, {core: ff}]", "mixmatch.share=[torso]", "mixmatch.alpha=0.5",
        "mixmatch.mixing=sampled", "run.total_frames=150000", f"run.out_dir={out_dir}"])
    result = train(cfg)
    assert result.metrics["mixmatch/selected/1"] == pytest.approx(0.5, abs=0.15)   # 320 draws a batch
    ret = result.mean_returns["CartPole-v1"]
    assert ret > 60, f"sampled M&M: CartPole return {ret:.1f} after 150k frames (random: about 22)"


# -- PBT evolves alpha ---------------------------------------------------------------------------

TINY_RUN = ["learner.unroll_length=8", "learner.batch_size=8", "runtime.backend=serial", "runtime.num_actors=1",
            "runtime.envs_per_actor=8", "run.progress=false", "run.tensorboard=false", "run.log_every_s=0.5"]


def test_pbt_explores_alpha_by_adding_steps_and_the_network_follows(tmp_path):
    import json

    from kickstart.checkpoint import load_checkpoint
    from kickstart.cli import main

    code = main(["train", "--no-progress", "configs/mixmatch/minatar_breakout_action_space_pbt.yaml", *SMALL,
                 *TINY_RUN, f"run.out_dir={tmp_path}", "run.name=pop", "pbt.population_size=2", "pbt.backend=serial",
                 "run.total_frames=768", "pbt.ready_frames=256", "pbt.explore_probability=1.0", "pbt.exploit=none",
                 "pbt.initial_hparams=[{mixmatch/alpha: 0.5}, {mixmatch/alpha: 0.02}]"])
    assert code == 0
    recs = [json.loads(line) for line in (tmp_path / "pop" / "pbt" / "lineage.jsonl").read_text().splitlines()]
    steps = [(r["hparams_before"]["mixmatch/alpha"], r["hparams_after"]["mixmatch/alpha"]) for r in recs
             if r["event"] == "ready"]
    assert steps
    for before, after in steps:   # explore: +-0.05, clipped to [0, 1]
        assert after == pytest.approx(min(1.0, before + 0.05)) or after == pytest.approx(max(0.0, before - 0.05))
    for i in (0, 1):
        state = load_checkpoint(tmp_path / "pop" / "members" / str(i) / "checkpoint.pt")
        alpha = state["learner"]["hparams"]["mixmatch/alpha"]
        last = [r for r in recs if r["member"] == i and r["event"] == "ready"][-1]
        assert alpha == pytest.approx(last["hparams_after"]["mixmatch/alpha"])   # the explored value trained on
        assert state["learner"]["net"]["alpha"].item() == pytest.approx(alpha)


def test_pbt_defaults_follow_the_paper_for_alpha_and_evaluation():
    """Without being told: alpha is explored by +-pbt.alpha_step (other values by factors), and a
    multitask M&M population is scored on the central policy alone, a single-task one on pi_mm."""

    from kickstart.pbt.config import PriorConfig
    from kickstart.pbt.decisions import perturb

    pop = ["pbt.population_size=2", "pbt.mutable.mixmatch/alpha.low=0.001", "pbt.mutable.mixmatch/alpha.high=0.01",
           "pbt.mutable.learning_rate.low=0.0003", "pbt.mutable.learning_rate.high=0.003"]
    cfg = load_config(None, SMALL + ACTION_SPACE + pop)
    assert cfg.pbt.mutable["mixmatch/alpha"].perturb == "add"
    assert cfg.pbt.mutable["learning_rate"].perturb == "multiply"
    assert cfg.pbt.eval == "training_returns"
    assert load_config(None, SMALL + MULTITASK + pop).pbt.eval == "evaluator"
    assert load_config(None, SMALL + MULTITASK + pop + ["pbt.eval=training_returns"]).pbt.eval == "training_returns"
    rng = np.random.default_rng(0)
    steps = {perturb(0.5, PriorConfig(), rng, factors=[0.8, 1.2], step=0.05, name="mixmatch/alpha") for _ in range(20)}
    assert sorted(steps) == pytest.approx([0.45, 0.55])
    steps = {perturb(0.5, PriorConfig(), rng, factors=[0.8, 1.2], step=0.05, name="learning_rate") for _ in range(20)}
    assert sorted(steps) == pytest.approx([0.4, 0.6])


def test_multitask_pbt_evaluates_the_central_policy_alone(tmp_path):
    from kickstart.pbt.hosts import SerialHost
    from kickstart.pbt.member import MemberSpec

    cfg = load_config(None, SMALL + MULTITASK + TINY_RUN + [
        "runtime.envs_per_actor=10", "learner.batch_size=10", "pbt.population_size=2", "pbt.eval=evaluator",
        "pbt.eval_episodes=2", "pbt.ready_frames=80", f"run.out_dir={tmp_path}", "run.total_frames=10000"])
    h = SerialHost().spawn(MemberSpec(0, cfg, str(tmp_path / "m0"), {"learning_rate": 1e-3}))
    try:
        h.result()
        calls = []
        member = h.member
        policy = member.setup.eval_policy
        member.setup.eval_policy = lambda net: calls.append(type(net).__name__) or policy(net)
        rep = h.call("run_until", 10**6)
        assert rep.ready and len(rep.samples) == 2                      # balanced: each averages the 5 tasks
        assert [len(w) for w in member._window.windows().values()] == [2] * 5   # eval_episodes per task
        assert calls == ["MixMatchNet"]                                  # the evaluator got pi_K of the M&M net
        assert type(policy(member.trainer.learner.net)).__name__ == "AgentNet"
    finally:
        h.close()


@pytest.mark.parametrize("overrides", [ACTION_SPACE, CORES], ids=["shared-torso", "own-torsos"])
def test_net_init_orthogonal_reaches_every_torso_and_the_value_head(overrides):
    """net.init=orthogonal is the same initialisation on an M&M network as on a plain one: each
    torso's weights orthogonal with gain sqrt(2) and zero biases, the value head's with gain 1."""
    def orthogonal(w, gain):
        w = w.reshape(w.shape[0], -1)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        return torch.allclose(gram, gain ** 2 * torch.eye(gram.shape[0]), atol=1e-4)

    _, _, net = make([*overrides, "net.init=orthogonal"])
    layers = [m for t in net.torsos for m in t.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert layers and all(orthogonal(m.weight, 2 ** 0.5) and not m.bias.any() for m in layers)
    value = [m for m in net.baseline_head.modules() if isinstance(m, torch.nn.Linear)]
    assert value and all(orthogonal(m.weight, 1.0) for m in value)
    _, _, default = make(overrides)
    assert not any(orthogonal(m.weight, 2 ** 0.5) for t in default.torsos for m in t.modules()
                   if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
