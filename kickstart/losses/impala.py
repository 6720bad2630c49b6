"""The actor-critic loss terms of IMPALA.

Espeholt et al. (2018), "IMPALA: Scalable Distributed Deep-RL with Importance Weighted
Actor-Learner Architectures", Section 4.2: the policy-gradient term
``rho_s * grad log pi(a_s|x_s) * (r_s + gamma v_{s+1} - V(x_s))``, the baseline regression towards
the V-trace targets ``v_s``, and the entropy bonus.

Every function takes ``[T, B]`` tensors and reduces them to a scalar with ``reduction``:
``"sum"`` over time and batch (IMPALA, TorchBeast; the papers' learning rates and RMSProp
``eps=0.1`` assume it) or ``"mean"``. The learner applies the weights (baseline_cost,
entropy_cost); the functions carry none, beyond the conventional 1/2 of the squared error.
"""

from __future__ import annotations

import torch
from torch import Tensor

REDUCTIONS = ("sum", "mean")


def reduce(x: Tensor, reduction: str) -> Tensor:
    """Reduces ``x`` to a scalar: ``"sum"`` or ``"mean"`` over all its elements."""
    if reduction == "sum":
        return x.sum()
    if reduction == "mean":
        return x.mean()
    raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")


def policy_gradient_loss(log_probs_taken: Tensor, advantages: Tensor, *,
                         reduction: str = "sum") -> Tensor:
    """Policy-gradient loss ``-reduce(log pi(a_s|x_s) * A_s)`` (IMPALA Section 4.2).

    Its gradient is the IMPALA policy gradient when ``advantages`` are V-trace's
    ``pg_advantages`` (which already hold the clipped importance weight ``rho_s``).

    Args:
      log_probs_taken: ``[T, B]`` ``log pi(a_s|x_s)`` of the actions taken, under the learner's
        policy (differentiable).
      advantages: ``[T, B]`` advantages ``A_s``; treated as constants (detached).
      reduction: ``"sum"`` or ``"mean"``.

    Returns:
      A scalar.
    """
    _same_shape("policy_gradient_loss", log_probs_taken=log_probs_taken, advantages=advantages)
    return -reduce(log_probs_taken * advantages.detach(), reduction)


def clipped_surrogate_loss(log_probs_taken: Tensor, behaviour_log_probs: Tensor, advantages: Tensor,
                           clip: float, *, reduction: str = "sum") -> Tensor:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7) on V-trace advantages:
    ``-reduce(min(r_s A_s, clip(r_s, 1 - clip, 1 + clip) A_s))`` with ``r_s = pi(a_s|x_s) / mu(a_s|x_s)``.

    The ratio carries the importance weight, so ``A_s`` is V-trace's advantage *without* its
    ``rho_s`` (``r_s + gamma v_{s+1} - V(x_s)``). At ``r_s = 1`` the gradient is IMPALA's policy
    gradient; where the ratio has left ``[1 - clip, 1 + clip]`` in the direction the advantage
    favours, the step has no gradient: when a batch is reused for several optimiser steps
    (``learner.epochs``), the policy cannot run away from the one that acted.

    Args:
      log_probs_taken: ``[T, B]`` ``log pi(a_s|x_s)`` under the learner's policy (differentiable).
      behaviour_log_probs: ``[T, B]`` ``log mu(a_s|x_s)`` of the actors' policy (constants).
      advantages: ``[T, B]`` advantages; constants (detached).
      clip: the clipping range epsilon, > 0.
    """
    _same_shape("clipped_surrogate_loss", log_probs_taken=log_probs_taken,
                behaviour_log_probs=behaviour_log_probs, advantages=advantages)
    if not clip > 0:
        raise ValueError(f"clip must be > 0; got {clip!r}")
    ratio = (log_probs_taken - behaviour_log_probs.detach()).exp()
    adv = advantages.detach()
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)
    return -reduce(surrogate, reduction)


def baseline_loss(values: Tensor, targets: Tensor, *, reduction: str = "sum") -> Tensor:
    """Baseline loss ``0.5 * reduce((v_s - V(x_s))^2)`` (IMPALA Section 4.2).

    Its gradient wrt ``V(x_s)`` is ``-(v_s - V(x_s))``, the paper's value update.

    Args:
      values: ``[T, B]`` baseline ``V(x_s)`` (differentiable).
      targets: ``[T, B]`` targets ``v_s`` (V-trace's ``vs``); treated as constants (detached).
      reduction: ``"sum"`` or ``"mean"``.

    Returns:
      A scalar.
    """
    _same_shape("baseline_loss", values=values, targets=targets)
    return 0.5 * reduce((targets.detach() - values) ** 2, reduction)


def entropy_loss(entropy: Tensor, *, reduction: str = "sum") -> Tensor:
    """Entropy loss ``-reduce(H(pi(.|x_s)))``: minimising it maximises the entropy.

    Args:
      entropy: ``[T, B]`` entropy of the learner's policy at each step (differentiable).
      reduction: ``"sum"`` or ``"mean"``.

    Returns:
      A scalar.
    """
    return -reduce(entropy, reduction)


def _same_shape(fn: str, **tensors: Tensor) -> None:
    (n1, a), *rest = tensors.items()
    for n2, b in rest:
        if a.shape != b.shape:
            raise ValueError(f"{fn}: {n1} {tuple(a.shape)} and {n2} {tuple(b.shape)} must have the "
                             f"same shape [T, B]")
