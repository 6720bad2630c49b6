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
