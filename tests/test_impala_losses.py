"""Tests of the IMPALA loss terms (kickstart.losses.impala)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kickstart.losses import impala

torch.set_num_threads(1)

T, B, A = 3, 2, 4


def rand(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_reduce():
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    assert impala.reduce(x, "sum").item() == 12.0
    assert impala.reduce(x, "mean").item() == 3.0
    with pytest.raises(ValueError, match="reduction must be one of sum, mean; got 'max'"):
        impala.reduce(x, "max")


def test_policy_gradient_loss_by_hand():
    log_probs = torch.tensor([[-0.5, -1.0], [-2.0, -0.1], [-0.3, -3.0]])
    advantages = torch.tensor([[1.0, -2.0], [0.5, 4.0], [0.0, -1.0]])
    # -(-0.5*1 + -1*-2 + -2*0.5 + -0.1*4 + -0.3*0 + -3*-1) = -(-0.5 + 2 - 1 - 0.4 + 0 + 3) = -3.1
    loss = impala.policy_gradient_loss(log_probs, advantages)
    torch.testing.assert_close(loss, torch.tensor(-3.1))
    torch.testing.assert_close(impala.policy_gradient_loss(log_probs, advantages, reduction="mean"),
                               torch.tensor(-3.1 / 6))


def test_baseline_loss_by_hand():
    values = torch.tensor([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])
    targets = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.5, -0.5]])
    # 0.5 * (1 + 0 + 4 + 4 + 0 + 1) = 5
    torch.testing.assert_close(impala.baseline_loss(values, targets), torch.tensor(5.0))
    torch.testing.assert_close(impala.baseline_loss(values, targets, reduction="mean"),
                               torch.tensor(5.0 / 6))


def test_entropy_loss_by_hand():
    entropy = torch.tensor([[1.0, 0.5], [0.25, 2.0], [0.0, 1.25]])
    torch.testing.assert_close(impala.entropy_loss(entropy), torch.tensor(-5.0))
    torch.testing.assert_close(impala.entropy_loss(entropy, reduction="mean"),
                               torch.tensor(-5.0 / 6))


@pytest.mark.parametrize("fn,args", [
    (impala.policy_gradient_loss, (torch.zeros(T, B), torch.zeros(T, B))),
    (impala.baseline_loss, (torch.zeros(T, B), torch.zeros(T, B))),
    (impala.entropy_loss, (torch.zeros(T, B),)),
])
def test_unknown_reduction_is_rejected(fn, args):
    with pytest.raises(ValueError, match="reduction must be one of sum, mean"):
        fn(*args, reduction="avg")


def test_mismatched_shapes_are_rejected_rather_than_broadcast():
    with pytest.raises(ValueError, match=r"log_probs_taken \(3, 2\) and advantages \(3, 2, 1\)"):
        impala.policy_gradient_loss(torch.zeros(T, B), torch.zeros(T, B, 1))
    with pytest.raises(ValueError, match=r"values \(3, 2\) and targets \(3,\)"):
        impala.baseline_loss(torch.zeros(T, B), torch.zeros(T))


def _log_probs_taken(logits, actions):
    return F.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def _entropy(logits):
    log_p = F.log_softmax(logits, -1)
    return -(log_p.exp() * log_p).sum(-1)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradcheck_through_log_softmax(reduction):
    logits = rand(T, B, A, seed=0).requires_grad_(True)
    actions = torch.tensor([[0, 3], [2, 1], [1, 1]])
    advantages = rand(T, B, seed=1)
    values = rand(T, B, seed=2).requires_grad_(True)
    targets = rand(T, B, seed=3)
    assert torch.autograd.gradcheck(
        lambda x: impala.policy_gradient_loss(_log_probs_taken(x, actions), advantages,
                                              reduction=reduction), (logits,))
    assert torch.autograd.gradcheck(
        lambda x: impala.entropy_loss(_entropy(x), reduction=reduction), (logits,))
    assert torch.autograd.gradcheck(
        lambda v: impala.baseline_loss(v, targets, reduction=reduction), (values,))


def test_gradients_have_the_papers_form():
    """d(pg loss)/d(log pi) = -A;  d(baseline loss)/dV = -(v_s - V);  d(entropy loss)/dH = -1."""
    log_probs = rand(T, B, seed=4).requires_grad_(True)
    advantages = rand(T, B, seed=5)
    impala.policy_gradient_loss(log_probs, advantages).backward()
    torch.testing.assert_close(log_probs.grad, -advantages)

    values, targets = rand(T, B, seed=6).requires_grad_(True), rand(T, B, seed=7)
    impala.baseline_loss(values, targets, reduction="mean").backward()
    torch.testing.assert_close(values.grad, -(targets - values.detach()) / (T * B))

    entropy = rand(T, B, seed=8).requires_grad_(True)
    impala.entropy_loss(entropy).backward()
    torch.testing.assert_close(entropy.grad, -torch.ones(T, B, dtype=torch.float64))


def test_advantages_and_targets_receive_no_gradient():
    log_probs = rand(T, B, seed=9).requires_grad_(True)
    advantages = rand(T, B, seed=10).requires_grad_(True)
    values = rand(T, B, seed=11).requires_grad_(True)
    targets = rand(T, B, seed=12).requires_grad_(True)
    loss = (impala.policy_gradient_loss(log_probs, advantages)
            + impala.baseline_loss(values, targets))
    loss.backward()
    assert log_probs.grad is not None and values.grad is not None
    assert advantages.grad is None and targets.grad is None


# -- PPO's clipped surrogate on V-trace advantages (learner.pg_clip) -------------------------------

def test_clipped_surrogate_by_hand():
    """-mean(min(r A, clip(r, 0.8, 1.2) A)) for ratios 1.5, 0.5, 1.1, 0.7 and advantages 2, 2, -1, -3."""
    logp = torch.log(torch.tensor([[1.5, 0.5], [1.1, 0.7]]))
    behaviour = torch.zeros(2, 2)
    adv = torch.tensor([[2.0, 2.0], [-1.0, -3.0]])
    # min(3.0, 2.4) = 2.4; min(1.0, 1.6) = 1.0; min(-1.1, -1.1) = -1.1; min(-2.1, -2.4) = -2.4
    expected = -(2.4 + 1.0 - 1.1 - 2.4)
    assert impala.clipped_surrogate_loss(logp, behaviour, adv, 0.2).item() == pytest.approx(expected, rel=1e-6)
    assert impala.clipped_surrogate_loss(logp, behaviour, adv, 0.2, reduction="mean").item() == \
        pytest.approx(expected / 4, rel=1e-6)


def test_clipped_surrogate_is_the_policy_gradient_on_policy():
    """At ratio 1 the gradient is IMPALA's policy gradient with the same advantages."""
    logits = torch.randn(5, 3, 4, requires_grad=True)
    actions = torch.randint(0, 4, (5, 3))
    adv = torch.randn(5, 3)

    def grad(fn):
        logp = F.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        (g,) = torch.autograd.grad(fn(logp), logits)
        return g

    behaviour = F.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1).detach()
    clipped = grad(lambda lp: impala.clipped_surrogate_loss(lp, behaviour, adv, 0.1))
    plain = grad(lambda lp: impala.policy_gradient_loss(lp, adv))
    torch.testing.assert_close(clipped, plain)


@pytest.mark.parametrize("ratio, adv, moves", [(1.5, 1.0, False), (0.5, -1.0, False), (1.5, -1.0, True),
                                               (0.5, 1.0, True), (1.1, 1.0, True), (0.9, -1.0, True)])
def test_clipped_surrogate_stops_only_where_the_ratio_left_the_range_the_advantage_favours(ratio, adv, moves):
    logp = torch.tensor([[float(torch.log(torch.tensor(ratio)))]], requires_grad=True)
    loss = impala.clipped_surrogate_loss(logp, torch.zeros(1, 1), torch.tensor([[adv]]), 0.2)
    (g,) = torch.autograd.grad(loss, logp)
    assert (g.abs().item() > 0) == moves
    if moves:   # d/dlogp of -r A is -r A
        assert g.item() == pytest.approx(-ratio * adv, rel=1e-6)


def test_clipped_surrogate_rejects_a_bad_clip():
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="clip must be > 0"):
        impala.clipped_surrogate_loss(x, x, x, 0.0)
