"""Tests of kickstart.nets: shapes of every torso x core x head, LSTM resets, heads, errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from kickstart.config import NetConfig
from kickstart.errors import UserError
from kickstart.nets import (
    AgentNet,
    AgentOutput,
    build_net,
    fitting_torsos,
    resolve_torso,
)
from kickstart.nets.heads import FactorisedJointHead
from kickstart.specs import EnvSpec

torch.set_num_threads(1)

# ALE's 18 actions as (joystick, fire): joystick 0 none, 1 up, 2 right, 3 left, 4 down,
# 5 up-right, 6 up-left, 7 down-right, 8 down-left.
ATARI_FACTORS = ((0, 0), (0, 1), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0), (7, 0), (8, 0),
                 (1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1), (8, 1))
BREAKOUT_FACTORS = ((0, 0), (0, 1), (2, 0), (3, 0))  # minimal set NOOP, FIRE, RIGHT, LEFT

OBS = {  # name -> (obs_shape, obs_dtype, obs_scale)
    "img10": ((4, 10, 10), "uint8", 1.0),
    "img84": ((4, 84, 84), "uint8", 1 / 255),
    "vec8": ((8,), "float32", 1.0),
}
ACTIONS = {  # name -> (action_nvec, multi_discrete, action_factors, factor_sizes)
    "discrete6": ((6,), False, None, None),
    "multi32": ((3, 2), True, None, None),
    "atari18": ((18,), False, ATARI_FACTORS, (9, 2)),
}
TORSO_OBS = {"minatar": ["img10"], "nature": ["img84"], "impala_shallow": ["img84"],
             "impala_deep": ["img84"], "mlp": ["vec8"], "auto": ["img10", "img84", "vec8"]}


def make_spec(obs="img10", actions="discrete6", **changes) -> EnvSpec:
    obs_shape, obs_dtype, obs_scale = OBS[obs] if isinstance(obs, str) else obs
    nvec, multi, factors, sizes = ACTIONS[actions]
    kw = dict(obs_shape=obs_shape, obs_dtype=obs_dtype, obs_scale=obs_scale, action_nvec=nvec,
              multi_discrete=multi, action_meanings=() if multi else tuple(f"a{i}" for i in range(nvec[0])),
              frames_per_step=1, task_names=("test",), action_factors=factors, factor_sizes=sizes)
    kw.update(changes)
    return EnvSpec(**kw)


def make_inputs(spec: EnvSpec, T: int, B: int, seed: int = 0, first=None):
    g = torch.Generator().manual_seed(seed)
    if spec.obs_dtype == "uint8":
        obs = torch.randint(0, 256, (T, B, *spec.obs_shape), generator=g, dtype=torch.uint8)
    else:
        obs = torch.randn(T, B, *spec.obs_shape, generator=g)
    if spec.multi_discrete:
        last_action = torch.stack([torch.randint(0, n, (T, B), generator=g) for n in spec.action_nvec], -1)
    else:
        last_action = torch.randint(0, spec.num_actions, (T, B), generator=g)
    last_reward = 3 * torch.randn(T, B, generator=g)  # beyond [-1, 1], to exercise the clip
    if first is None:
        first = torch.zeros(T, B, dtype=torch.bool)
    return obs, last_action, last_reward, first


def random_state(net: AgentNet, B: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(s.shape, generator=g) for s in net.initial_state(B))


def valid_combos():
    for torso, obs_names in TORSO_OBS.items():
        for obs, core, actions in itertools.product(obs_names, ("ff", "lstm"), ACTIONS):
            heads = ["categorical"] + (["factorised"] if actions != "discrete6" else [])
            for head in heads:
                yield torso, obs, core, actions, head


@pytest.mark.parametrize("torso,obs,core,actions,head", list(valid_combos()))
def test_every_combination_runs_with_the_right_shapes(torso, obs, core, actions, head):
    torch.manual_seed(0)
    spec = make_spec(obs, actions)
    cfg = NetConfig(torso=torso, core=core, policy_head=head, hidden_size=32, lstm_size=24, mlp_sizes=[16])
    net = build_net(cfg, spec)
    T, B = 3, 2
    state = net.initial_state(B)
    out, new_state = net(*make_inputs(spec, T, B), state)
    assert isinstance(out, AgentOutput) and out.extras == {}
    L = sum(spec.action_nvec)
    assert out.policy_logits.shape == (T, B, L)
    assert out.baseline.shape == (T, B)
    assert torch.isfinite(out.policy_logits).all() and torch.isfinite(out.baseline).all()
    if core == "ff":
        assert state == () and new_state == ()
    else:
        assert [tuple(s.shape) for s in state] == [(B, 24), (B, 24)]
        assert [tuple(s.shape) for s in new_state] == [(B, 24), (B, 24)]
        assert all((s == 0).all() for s in state)
    if head == "factorised" and not spec.multi_discrete:
        assert torch.allclose(out.policy_logits.logsumexp(-1), torch.zeros(T, B), atol=1e-5)


@pytest.mark.parametrize("torso,obs", [("nature", "img84"), ("impala_shallow", "img84"), ("impala_deep", "img84"),
                                       ("minatar", "img10"), ("mlp", "vec8")])
def test_torso_widths(torso, obs):
    net = build_net(NetConfig(torso=torso, hidden_size=48), make_spec(obs))
    expected = 512 if torso == "nature" else 48  # nature keeps the DQN paper's FC 512
    assert net.torso.out_size == expected
    assert net.torso(torch.zeros(5, *OBS[obs][0])).shape == (5, expected)


def test_impala_deep_has_15_convs_and_nature_matches_the_paper():
    deep = build_net(NetConfig(torso="impala_deep"), make_spec("img84")).torso
    assert sum(isinstance(m, torch.nn.Conv2d) for m in deep.modules()) == 15
    nature = build_net(NetConfig(torso="nature"), make_spec("img84")).torso
    assert nature.fc.in_features == 64 * 7 * 7  # 84 -> 20 -> 9 -> 7


def test_impala_deep_channels_last_shortcut_changes_nothing():
    torch.manual_seed(0)
    deep = build_net(NetConfig(torso="impala_deep", hidden_size=32), make_spec("img84")).torso
    x = torch.rand(3, 4, 84, 84)
    with torch.no_grad():
        torch.testing.assert_close(deep(x), deep.fc(deep.convs(x).flatten(1)).relu())


# ---------------------------------------------------------------------------------------------
# The LSTM core: resets inside an unroll, splitting, fused == stepwise.

def lstm_net(actions="discrete6", mode="auto"):
    torch.manual_seed(0)
    net = build_net(NetConfig(torso="minatar", core="lstm", hidden_size=32, lstm_size=16), make_spec("img10", actions))
    net.core.mode = mode
    return net


def run(net, inputs, state, t0=0, t1=None, cols=slice(None)):
    """Forward over steps [t0, t1) and columns ``cols`` of ``inputs``, from ``state`` (of those columns)."""
    sl = [x[t0:t1, cols] for x in inputs]
    with torch.no_grad():
        return net(*sl, state)


@pytest.mark.parametrize("mode", ["auto", "fused", "stepwise"])
def test_lstm_state_is_reset_at_first_inside_the_unroll(mode):
    net = lstm_net(mode=mode)
    T, B = 6, 3
    first = torch.zeros(T, B, dtype=torch.bool)
    first[3, 0] = True  # column 0 starts an episode at t=3
    first[0, 1] = True  # column 1 at t=0; column 2 never
    inputs = make_inputs(net.spec, T, B, first=first)
    state = random_state(net, B)  # non-zero, so that a missing reset shows
    out, _ = run(net, inputs, state)

    fresh, _ = run(net, inputs, net.initial_state(1), t0=3, cols=slice(0, 1))
    torch.testing.assert_close(out.policy_logits[3:, 0:1], fresh.policy_logits)
    torch.testing.assert_close(out.baseline[3:, 0:1], fresh.baseline)
    fresh1, _ = run(net, inputs, net.initial_state(1), cols=slice(1, 2))
    torch.testing.assert_close(out.baseline[:, 1:2], fresh1.baseline)
    # Column 2 never resets: it equals its own unroll from its own state (no leak across columns).
    alone, _ = run(net, inputs, tuple(s[2:3] for s in state), cols=slice(2, 3))
    torch.testing.assert_close(out.baseline[:, 2:3], alone.baseline)

    # The reset matters: without it, step 3 of column 0 differs (so the checks above can fail).
    no_first = inputs[:3] + (torch.zeros_like(first),)
    out_nf, _ = run(net, no_first, state)
    assert not torch.allclose(out_nf.baseline[3:, 0], out.baseline[3:, 0])


@pytest.mark.parametrize("mode", ["auto", "fused", "stepwise"])
@pytest.mark.parametrize("with_first", [False, True])
def test_lstm_unroll_split_in_two_equals_the_whole(mode, with_first):
    net = lstm_net("multi32", mode=mode)
    T, B = 8, 3
    first = torch.zeros(T, B, dtype=torch.bool)
    if with_first:
        first[5, 1] = True
        first[2, 0] = True
    inputs = make_inputs(net.spec, T, B, first=first)
    state = random_state(net, B)
    whole, end = run(net, inputs, state)
    for cut in (1, 4, 5):
        a, mid = run(net, inputs, state, t1=cut)
        b, end2 = run(net, inputs, mid, t0=cut)
        torch.testing.assert_close(torch.cat([a.policy_logits, b.policy_logits]), whole.policy_logits)
        torch.testing.assert_close(torch.cat([a.baseline, b.baseline]), whole.baseline)
        for s1, s2 in zip(end, end2):
            torch.testing.assert_close(s1, s2)


def test_lstm_one_step_at_a_time_equals_the_unroll():
    """What an actor computes (T=1 per call) equals what the learner recomputes over the unroll."""
    net = lstm_net()
    T, B = 7, 4
    first = torch.rand(T, B, generator=torch.Generator().manual_seed(3)) < 0.3
    inputs = make_inputs(net.spec, T, B, first=first)
    state = random_state(net, B)
    whole, end = run(net, inputs, state)
    s = state
    for t in range(T):
        step, s = run(net, inputs, s, t0=t, t1=t + 1)
        torch.testing.assert_close(step.baseline, whole.baseline[t:t + 1])
    for s1, s2 in zip(s, end):
        torch.testing.assert_close(s1, s2)


def test_lstm_auto_runs_an_actors_single_step_stepwise_and_an_unroll_without_starts_fused(monkeypatch):
    """The actors' T=1 step skips nn.LSTM, whose per-call set-up costs more than the step on a CPU."""
    net = lstm_net()
    calls = []
    for name in ("_fused", "_stepwise"):
        monkeypatch.setattr(net.core, name, (lambda f, n: lambda *a, **k: calls.append(n) or f(*a, **k))(
            getattr(net.core, name), name))
    B = 3
    for T in (1, 6):
        run(net, make_inputs(net.spec, T, B, first=torch.zeros(T, B, dtype=torch.bool)), net.initial_state(B))
    assert calls == ["_stepwise", "_fused"]


def test_lstm_auto_under_cpu_bf16_runs_fused_only_an_unroll_in_one_piece(monkeypatch):
    """The choice itself (``_recur``, where the core arrives under autocast only with native bf16;
    the paths are stubbed, so this holds on a CPU whose oneDNN has no bf16 LSTM too)."""
    core = lstm_net().core
    calls = []
    monkeypatch.setattr(core, "_fused", lambda *a: calls.append("fused"))
    monkeypatch.setattr(core, "_stepwise", lambda *a: calls.append("stepwise"))
    T, B, H = 10, 3, core.out_size
    one_start = torch.zeros(T, B, dtype=torch.bool)
    one_start[4, 1] = True                                   # two pieces: fused in fp32 (2 <= 0.4 T)
    args = torch.zeros(T, B, core.lstm.input_size), torch.ones(T, B, 1), torch.zeros(B, H), torch.zeros(B, H)
    for first in (torch.zeros(T, B, dtype=torch.bool), one_start):
        core._recur(*args, first)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            core._recur(*args, first)
    assert calls == ["fused", "fused", "fused", "stepwise"]


@pytest.mark.parametrize("p_first", [0.0, 0.1, 0.5])
def test_lstm_fused_equals_stepwise_with_gradients(p_first):
    T, B = 10, 4
    first = torch.rand(T, B, generator=torch.Generator().manual_seed(4)) < p_first
    first[0, 0] = True
    results = []
    for mode in ("fused", "stepwise"):
        net = lstm_net(mode=mode)
        inputs = make_inputs(net.spec, T, B, first=first)
        out, (h, c) = net(*inputs, random_state(net, B))
        (out.policy_logits.sum() + out.baseline.sum() + h.sum() + c.sum()).backward()
        grads = [p.grad.clone() for p in net.core.parameters()]
        results.append((out.policy_logits.detach(), out.baseline.detach(), h.detach(), c.detach(), grads))
    (l1, b1, h1, c1, g1), (l2, b2, h2, c2, g2) = results
    for x, y in [(l1, l2), (b1, b2), (h1, h2), (c1, c2), *zip(g1, g2)]:
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5 * max(1.0, y.abs().max().item()))


def test_lstm_input_is_torso_one_hot_actions_and_clipped_reward():
    net = lstm_net("multi32")
    assert net.core.lstm.input_size == 32 + (3 + 2) + 1
    T, B = 2, 2
    obs, act, rew, first = make_inputs(net.spec, T, B)
    state = net.initial_state(B)
    with torch.no_grad():
        a, _ = net(obs, act, rew.clamp(-1, 1), first, state)
        b, _ = net(obs, act, torch.where(rew.abs() >= 1, rew * 10, rew), first, state)  # same once clipped
        c, _ = net(obs, act, rew.clamp(-1, 1) * 0.5, first, state)
        d, _ = net(obs, (act + 1) % torch.tensor([3, 2]), rew, first, state)
    torch.testing.assert_close(a.baseline, b.baseline)
    assert not torch.allclose(a.baseline, c.baseline)  # the reward is an input
    assert not torch.allclose(a.baseline, d.baseline)  # the last action is an input


# ---------------------------------------------------------------------------------------------
# Heads.

def test_factorised_joint_log_probs_hand_example():
    head = FactorisedJointHead(4, action_factors=((0, 0), (2, 1), (1, 1), (2, 0), (0, 1), (1, 0)),
                               factor_sizes=(3, 2))
    assert not head.renormalise  # the 6 actions are all 3 x 2 combinations
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.copy_(torch.tensor([1.0, 2.0, 3.0, 0.5, -0.5]))
    joint = head(torch.zeros(1, 4))[0]
    lse_a = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    lse_b = math.log(math.exp(0.5) + math.exp(-0.5))
    la = [1 - lse_a, 2 - lse_a, 3 - lse_a]
    lb = [0.5 - lse_b, -0.5 - lse_b]
    expected = [la[0] + lb[0], la[2] + lb[1], la[1] + lb[1], la[2] + lb[0], la[0] + lb[1], la[1] + lb[0]]
    np.testing.assert_allclose(joint.detach().numpy(), expected, rtol=1e-6)
    assert abs(joint.logsumexp(0).item()) < 1e-6


def test_factorised_head_is_normalised_over_atari_actions_full_and_minimal():
    torch.manual_seed(0)
    x = 10 * torch.randn(5, 16)  # large inputs: far from uniform
    full = FactorisedJointHead(16, ATARI_FACTORS, (9, 2))
    assert not full.renormalise
    torch.nn.init.normal_(full.linear.weight)
    lp = full(x)
    torch.testing.assert_close(lp.logsumexp(-1), torch.zeros(5), atol=1e-5, rtol=0)

    minimal = FactorisedJointHead(16, BREAKOUT_FACTORS, (9, 2))
    assert minimal.renormalise
    minimal.linear.load_state_dict(full.linear.state_dict())
    lp_min = minimal(x)
    torch.testing.assert_close(lp_min.logsumexp(-1), torch.zeros(5), atol=1e-5, rtol=0)
    # The minimal-set policy is the full product policy conditioned on the 4 actions that exist.
    idx = [ATARI_FACTORS.index(f) for f in BREAKOUT_FACTORS]
    torch.testing.assert_close(lp_min, lp[:, idx] - lp[:, idx].logsumexp(-1, keepdim=True))


def test_initial_policy_is_near_uniform():
    torch.manual_seed(0)
    for actions, head in [("discrete6", "categorical"), ("atari18", "factorised"), ("multi32", "categorical")]:
        spec = make_spec("img84", actions)
        net = build_net(NetConfig(torso="nature", core="lstm", policy_head=head), spec)
        with torch.no_grad():
            out, _ = net(*make_inputs(spec, 2, 3), net.initial_state(3))
        for logits in out.policy_logits.split(spec.action_nvec, -1):
            probs = logits.softmax(-1)
            n = logits.shape[-1]
            assert (probs - 1 / n).abs().max() < 0.05 / n, (actions, probs)


# ---------------------------------------------------------------------------------------------
# Observation scaling and gradients.

@pytest.mark.parametrize("torso", ["minatar", "impala_shallow"])
def test_obs_scale_is_applied(torso):
    shape = (4, 10, 10) if torso == "minatar" else (4, 24, 24)
    spec_u8 = make_spec((shape, "uint8", 1 / 255))
    spec_f = make_spec((shape, "float32", 1.0))
    cfg = NetConfig(torso=torso, core="lstm", hidden_size=32, lstm_size=16)
    torch.manual_seed(0)
    net_u8 = build_net(cfg, spec_u8)
    net_f = build_net(cfg, spec_f)
    net_f.load_state_dict(net_u8.state_dict())
    T, B = 2, 3
    _, act, rew, first = make_inputs(spec_u8, T, B)
    with torch.no_grad():
        a, _ = net_u8(torch.full((T, B, *shape), 255, dtype=torch.uint8), act, rew, first, net_u8.initial_state(B))
        b, _ = net_f(torch.ones(T, B, *shape), act, rew, first, net_f.initial_state(B))
        c, _ = net_f(torch.full((T, B, *shape), 255.0), act, rew, first, net_f.initial_state(B))
    torch.testing.assert_close(a.policy_logits, b.policy_logits)
    torch.testing.assert_close(a.baseline, b.baseline)
    assert not torch.allclose(a.baseline, c.baseline)  # unscaled input gives something else


@pytest.mark.parametrize("torso,obs", [("nature", "img84"), ("impala_shallow", "img84"), ("impala_deep", "img84"),
                                       ("minatar", "img10"), ("mlp", "vec8")])
@pytest.mark.parametrize("core", ["ff", "lstm"])
def test_gradients_reach_every_parameter(torso, obs, core):
    torch.manual_seed(0)
    spec = make_spec(obs, "atari18")
    net = build_net(NetConfig(torso=torso, core=core, policy_head="factorised", hidden_size=32, lstm_size=16), spec)
    inputs = make_inputs(spec, 3, 2)
    heads = {"policy": "policy_head.", "baseline": "baseline_head."}
    for which, own in heads.items():
        net.zero_grad(set_to_none=True)
        out, _ = net(*inputs, random_state(net, 2))
        if which == "policy":
            w = torch.randn(out.policy_logits.shape, generator=torch.Generator().manual_seed(0))
            loss = (out.policy_logits * w).sum()
        else:
            loss = out.baseline.sum()
        loss.backward()
        other = heads["baseline" if which == "policy" else "policy"]
        for name, p in net.named_parameters():
            if name.startswith(other):
                assert p.grad is None, name
            else:
                assert p.grad is not None and p.grad.abs().sum() > 0, (which, name)


# ---------------------------------------------------------------------------------------------
# Torso choice and errors.

def test_auto_torso_choice():
    assert resolve_torso("auto", (8,)) == "mlp"
    assert resolve_torso("auto", (4, 10, 10)) == "minatar"
    assert resolve_torso("auto", (4, 16, 16)) == "minatar"
    assert resolve_torso("auto", (4, 84, 84)) == "nature"
    assert resolve_torso("auto", (4, 20, 30)) == "minatar"  # too small for nature
    assert resolve_torso("auto", (4, 2, 40)) == "impala_deep"  # too small for minatar too
    assert fitting_torsos((8,)) == ["auto", "mlp"]
    assert fitting_torsos((4, 10, 10)) == ["auto", "impala_deep", "minatar", "mlp"]


@pytest.mark.parametrize("torso,ok,too_small", [("nature", 36, 35), ("impala_shallow", 20, 19), ("minatar", 3, 2)])
def test_smallest_images_each_conv_torso_accepts(torso, ok, too_small):
    net = build_net(NetConfig(torso=torso, hidden_size=8), make_spec(((1, ok, ok), "uint8", 1.0)))
    out, _ = net(*make_inputs(net.spec, 1, 1), ())
    assert out.policy_logits.shape == (1, 1, 6)
    with pytest.raises(UserError, match="torsos that fit"):
        build_net(NetConfig(torso=torso), make_spec(((1, too_small, ok), "uint8", 1.0)))


@pytest.mark.parametrize("cfg,spec,match", [
    (NetConfig(torso="nature"), make_spec("vec8"), "torsos that fit: auto, mlp"),
    (NetConfig(torso="impala_deep"), make_spec("vec8"), "torsos that fit: auto, mlp"),
    (NetConfig(torso="minatar"), make_spec("vec8"), "torsos that fit: auto, mlp"),
    (NetConfig(torso="nature"), make_spec("img10"), "torsos that fit: auto, impala_deep, minatar, mlp"),
    (NetConfig(torso="impala_shallow"), make_spec("img10"), "needs images"),
    (NetConfig(torso="mlp", policy_head="factorised"), make_spec("vec8", "discrete6"), "policy_head=categorical"),
    (NetConfig(torso="mlp", policy_head="factorised"),
     make_spec("vec8", "atari18", action_factors=ATARI_FACTORS[:17]), "action_factors"),
    (NetConfig(torso="mlp", policy_head="factorised"),
     make_spec("vec8", "atari18", factor_sizes=(8, 2)), "action_factors"),
])
def test_bad_combinations_raise_a_one_line_user_error(cfg, spec, match):
    with pytest.raises(UserError, match=match) as info:
        build_net(cfg, spec)
    assert "\n" not in str(info.value)


def test_orthogonal_init_makes_torso_and_value_head_orthogonal_with_their_gains():
    from kickstart.envs import env_spec
    from kickstart.errors import ConfigError
    from kickstart.methods import load_config
    from kickstart.nets import build_net

    cfg = load_config(None, ["env.id=minatar:Breakout", "net.torso=minatar", "net.hidden_size=32", "net.init=orthogonal"])
    net = build_net(cfg.net, env_spec(cfg.env))
    w = net.torso.fc.weight                                   # [32, n]: orthonormal rows, scaled by the gain
    torch.testing.assert_close(w @ w.T, 2.0 * torch.eye(32), atol=1e-4, rtol=0)
    assert torch.count_nonzero(net.torso.fc.bias) == 0
    v = net.baseline_head.linear.weight
    assert v.norm().item() == pytest.approx(1.0, rel=1e-5)
    conv = net.torso.convs[0].weight.flatten(1)             # [16, C*9], 16 <= C*9
    torch.testing.assert_close(conv @ conv.T, 2.0 * torch.eye(16), atol=1e-4, rtol=0)
    default = build_net(load_config(None, ["env.id=minatar:Breakout", "net.torso=minatar"]).net, env_spec(cfg.env))
    assert torch.count_nonzero(default.torso.fc.bias) > 0     # PyTorch's defaults are left alone
    with pytest.raises(ConfigError, match="net.init='xavier' is not valid; choose one of: default, orthogonal"):
        load_config(None, ["net.init=xavier"])
    p = net.policy_head.linear.weight                        # unchanged: orthogonal, gain 0.01
    assert p.norm().item() == pytest.approx(0.01 * math.sqrt(min(p.shape)), rel=1e-4)
