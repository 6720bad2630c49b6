"""The kickstarting distillation loss and its diagnostics.

Schmitt et al. (2018), "Kickstarting Deep Reinforcement Learning", Eq. (2)-(3): the student's RL
loss plus ``lambda_k * H(pi_T(a|x_t) || pi_S(a|x_t, omega))``, the cross-entropy from the
teacher's policy to the student's, on trajectories the *student* generated.

Every function takes time-major ``[T, B, L]`` flat logits (``L`` as in
:mod:`kickstart.distributions`) and ``[T, B]`` per-step weights or masks. The teacher's logits are
data: they are detached, so gradients reach the student only. A teacher logit of ``-inf`` (an action
the teacher cannot take) is a probability of 0 and contributes nothing.

Reduction: the same ``"sum"`` / ``"mean"`` over all ``T x B`` steps as the IMPALA terms
(:func:`kickstart.losses.impala.reduce`), steps of weight 0 included, so that ``lambda`` weighs a
step's distillation term against that step's RL terms whichever reduction is used.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from kickstart.distributions import ActionDist
from kickstart.losses.impala import reduce

__all__ = ["DistillationStats", "distillation_loss", "distillation_stats", "masked_means", "per_step_stats"]


def distillation_loss(teacher_logits: Tensor, student_logits: Tensor, dist: ActionDist, weights: Tensor, *,
                      reduction: str = "sum") -> Tensor:
    """Kickstarting loss ``reduce(lambda_t * H(pi_T(.|x_t) || pi_S(.|x_t)))`` (Schmitt et al., Eq. 2).

    Args:
      teacher_logits: ``[T, B, L]`` logits of the teacher's policy, in the student's action space
        (``-inf`` for actions it cannot take); treated as constants (detached). Values at steps of
        weight 0 are ignored, even if they are not finite.
      student_logits: ``[T, B, L]`` logits of the student's policy (differentiable).
      dist: the student's action distribution (cross-entropy summed over factors for MultiDiscrete).
      weights: ``[T, B]`` per-step ``lambda``: the teacher's current weight where it covers the
        step, 0 elsewhere (other tasks, or no teacher output). Constants.
      reduction: ``"sum"`` or ``"mean"`` over all ``T x B`` steps, as the IMPALA terms.

    Returns:
      A scalar. Its gradient wrt the student logits at step t is ``lambda_t (pi_S - pi_T)`` per
      categorical; it is minimal (``sum lambda_t H(pi_T)``) when the student equals the teacher.
    """
    if teacher_logits.shape != student_logits.shape or weights.shape != student_logits.shape[:-1]:
        raise ValueError(f"distillation_loss: teacher_logits {tuple(teacher_logits.shape)} and student_logits "
                         f"{tuple(student_logits.shape)} must be [T, B, L] and weights {tuple(weights.shape)} [T, B]")
    weights = weights.detach()
    on = weights > 0
    # Steps of weight 0 may hold anything (NaN when the actor did not run the teacher): replace them
    # with a harmless uniform target, so that neither the loss nor its gradient sees them.
    teacher = torch.where(on.unsqueeze(-1), teacher_logits.detach(), 0.0)
    ce = dist.cross_entropy(teacher, student_logits)
    return reduce(torch.where(on, weights * ce, 0.0), reduction)


class DistillationStats(NamedTuple):
    """Diagnostics of a teacher against the student over the steps it covers (means over them)."""

    cross_entropy: float
    """``H(pi_T || pi_S)`` in nats (the unweighted loss per step)."""
    kl: float
    """``KL(pi_T || pi_S) = H(pi_T || pi_S) - H(pi_T)`` in nats: 0 when the student equals the teacher."""
    agreement: float
    """Fraction of steps where the student's and the teacher's most probable actions are equal
    (every factor, for MultiDiscrete)."""
    count: int
    """Number of steps covered; the other fields are 0 when it is 0."""


@torch.no_grad()
def per_step_stats(teacher_logits: Tensor, student_logits: Tensor, dist: ActionDist,
                   mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-step cross-entropy, KL and greedy-action agreement (``[T, B]`` each, 0 off ``mask``).

    Teacher logits off ``mask`` may hold anything (NaN where the actor did not run the teacher).
    """
    mask = mask.bool()
    safe = torch.where(mask.unsqueeze(-1), teacher_logits, 0.0)
    student = student_logits.detach()
    ce = dist.cross_entropy(safe, student)
    kl = dist.kl(safe, student)
    same = dist.greedy(safe) == dist.greedy(student)
    if same.dim() > mask.dim():  # MultiDiscrete: every factor
        same = same.all(-1)
    zero = torch.zeros_like(ce)
    return torch.where(mask, ce, zero), torch.where(mask, kl, zero), (same & mask).to(ce.dtype)


@torch.no_grad()
def masked_means(per_step: tuple[Tensor, ...], mask: Tensor) -> list[Tensor]:
    """Means of each per-step statistic over ``mask`` (0 when it is empty), then the count; tensors,
    so that many teachers' statistics reach the host in one transfer."""
    m = mask.to(per_step[0].dtype)
    n = m.sum()
    return [(x * m).sum() / n.clamp(min=1) for x in per_step] + [n]


def distillation_stats(teacher_logits: Tensor, student_logits: Tensor, dist: ActionDist,
                       mask: Tensor) -> DistillationStats:
    """Cross-entropy, KL and greedy-action agreement of teacher and student where ``mask`` is set.

    Args:
      teacher_logits: ``[T, B, L]`` teacher logits (anything where ``mask`` is False).
      student_logits: ``[T, B, L]`` student logits.
      dist: the student's action distribution.
      mask: ``[T, B]`` bool, the steps to average over.

    Returns:
      :class:`DistillationStats`.
    """
    ce, kl, agree, n = (float(x) for x in masked_means(per_step_stats(teacher_logits, student_logits, dist, mask), mask))
    return DistillationStats(ce, kl, agree, int(n))
