"""V-trace off-policy value targets and policy-gradient advantages.

Espeholt et al. (2018), "IMPALA: Scalable Distributed Deep-RL with Importance Weighted
Actor-Learner Architectures", Section 4.1, eq. (1) and Remark 1.

The paper's constant discount ``gamma`` is generalised to a per-step ``discount_t``
(``gamma * (1 - terminated_t)``), so that an unroll may contain episode ends: ``gamma^(s-t)`` in
eq. (1) becomes ``prod_{i=t}^{s-1} discount_i``. With ``lambda = 1`` the trace coefficients are
``c_t = min(1, rho_t)``.

Episodes cut by a time limit (Pardo et al. 2018, "Time Limits in Reinforcement Learning"): when
the transition t -> t+1 is *truncated*, x_{t+1} is the first observation of the next episode and
the return of x_t goes on from the cut episode's final observation x'_{t+1}. There the target
bootstraps with ``discount_t * V(x'_{t+1})`` (``discount_t`` stays ``gamma``) instead of
``discount_t * V(x_{t+1})``, and the trace is cut as at a termination: the episode's targets are
those of an unroll that ended at x'_{t+1}, bootstrapped with V(x'_{t+1}).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class VTraceReturns(NamedTuple):
    """Outputs of V-trace; both are targets and carry no gradient."""

    vs: Tensor
    """``[T, B]`` V-trace value targets ``v_s`` for ``V(x_s)``, s = 0..T-1."""
    pg_advantages: Tensor
    """``[T, B]`` policy-gradient advantages
    ``min(rho_bar_pg, rho_s) * (r_s + discount_s * v_{s+1} - V(x_s))``."""
    advantages: Tensor
    """``[T, B]`` the same without the importance weight, ``r_s + discount_s * v_{s+1} - V(x_s)``
    (for a loss whose own ratio carries it: :func:`kickstart.losses.impala.clipped_surrogate_loss`)."""


def from_importance_weights(
    log_rhos: Tensor,
    discounts: Tensor,
    rewards: Tensor,
    values: Tensor,
    bootstrap_value: Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    *,
    lambda_: float = 1.0,
    truncated: Tensor | None = None,
    final_values: Tensor | None = None,
) -> VTraceReturns:
    """V-trace targets from log importance weights (IMPALA, eq. (1) and Remark 1).

    Computed with the backward recursion of Remark 1::

        v_s - V(x_s) = delta_s + discount_s * c_s * (v_{s+1} - V(x_{s+1})),   v_T = V(x_T)
        delta_s      = min(rho_bar, rho_s) * (r_s + discount_s * V(x_{s+1}) - V(x_s))
        c_s          = lambda * min(1, rho_s)

    and the advantage of the policy-gradient update (Section 4.2)::

        A_s = min(rho_bar_pg, rho_s) * (r_s + discount_s * v_{s+1} - V(x_s))

    Where the transition s -> s+1 is truncated (see the module docstring), ``V(x_{s+1})`` and
    ``v_{s+1}`` above both become ``V(x'_{s+1}) = final_values[s]`` and the recursion's trace term
    is 0, as at the end of an unroll.

    All computation is done without autograd: the outputs are targets.

    Args:
      log_rhos: ``[T, B]`` log importance ratios ``log pi(a_s|x_s) - log mu(a_s|x_s)`` of the
        actions taken (target policy ``pi``, behaviour policy ``mu``).
      discounts: ``[T, B]`` ``discount_s = gamma * (1 - terminated)`` of the transition
        s -> s+1 (0 where the episode terminates at that transition; ``gamma`` where it is
        truncated: a 0 there would make the truncation a termination).
      rewards: ``[T, B]`` rewards ``r_s`` of the transition s -> s+1.
      values: ``[T, B]`` baseline ``V(x_s)`` under the target policy.
      bootstrap_value: ``[B]`` ``V(x_T)``, the value of the state after the unroll.
      clip_rho_threshold: ``rho_bar``, clip of the importance weights in ``delta_s``; None for
        no clipping.
      clip_pg_rho_threshold: clip of the importance weights of the policy-gradient advantage;
        None for no clipping.
      truncated: optional ``[T, B]`` bool, the transition s -> s+1 was cut by a time limit:
        x_{s+1} starts the next episode. None: no truncation (every episode end is in
        ``discounts``). Given with ``final_values``.
      final_values: optional ``[T, B]``, ``V(x'_{s+1})``, the value of the truncated episode's
        final observation, where ``truncated`` (read nowhere else).
      lambda_: the trace's lambda (IMPALA, Remark 2: ``c_s = lambda * min(1, rho_s)``): 1 is the
        paper's V-trace; below 1 the targets lean on the critic sooner, trading bias for variance
        as TD(lambda) does (on-policy they are the lambda-returns).

    Returns:
      VTraceReturns(vs ``[T, B]``, pg_advantages ``[T, B]``), in the dtype of the inputs.
    """
    _check_inputs(log_rhos, discounts, rewards, values, bootstrap_value,
                  clip_rho_threshold, clip_pg_rho_threshold, truncated, final_values, lambda_)
    with torch.no_grad():
        rhos = torch.exp(log_rhos)
        clipped_rhos = rhos if clip_rho_threshold is None else rhos.clamp(max=clip_rho_threshold)
        discounted_cs = discounts * lambda_ * rhos.clamp(max=1.0)  # discount_s * c_s

        # V(x_{s+1}) for s = 0..T-1, the last one being the bootstrap value.
        values_tp1 = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)
        if truncated is not None:  # V(x'_{s+1}) at truncations, and the trace cut there
            values_tp1 = torch.where(truncated, final_values, values_tp1)
            discounted_cs = discounted_cs.masked_fill(truncated, 0.0)
        # delta_s; overwritten in place below, from the end, by acc_s = v_s - V(x_s).
        acc = clipped_rhos * (rewards + discounts * values_tp1 - values)
        acc_rows, dc_rows = acc.unbind(0), discounted_cs.unbind(0)
        for t in range(acc.shape[0] - 2, -1, -1):
            acc_rows[t].addcmul_(dc_rows[t], acc_rows[t + 1])
        vs = acc.add_(values)

        vs_tp1 = torch.cat([vs[1:], bootstrap_value.unsqueeze(0)], dim=0)
        if truncated is not None:
            vs_tp1 = torch.where(truncated, final_values, vs_tp1)
        clipped_pg_rhos = (rhos if clip_pg_rho_threshold is None
                           else rhos.clamp(max=clip_pg_rho_threshold))
        advantages = rewards + discounts * vs_tp1 - values
        pg_advantages = clipped_pg_rhos * advantages
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages, advantages=advantages)


def _check_inputs(log_rhos, discounts, rewards, values, bootstrap_value,
                  clip_rho_threshold, clip_pg_rho_threshold, truncated, final_values, lambda_=1.0) -> None:
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"vtrace: lambda_={lambda_} must be in [0, 1]")
    if log_rhos.dim() != 2:
        raise ValueError(f"vtrace: log_rhos must be [T, B], got shape {tuple(log_rhos.shape)}")
    for name, x in (("discounts", discounts), ("rewards", rewards), ("values", values)):
        if x.shape != log_rhos.shape:
            raise ValueError(f"vtrace: {name} must be [T, B] = {tuple(log_rhos.shape)} like "
                             f"log_rhos, got {tuple(x.shape)}")
    if bootstrap_value.shape != log_rhos.shape[1:]:
        raise ValueError(f"vtrace: bootstrap_value must be [B] = {tuple(log_rhos.shape[1:])}, "
                         f"got {tuple(bootstrap_value.shape)}")
    for name, c in (("clip_rho_threshold", clip_rho_threshold),
                    ("clip_pg_rho_threshold", clip_pg_rho_threshold)):
        if c is not None and not c > 0:
            raise ValueError(f"vtrace: {name} must be a positive number or None, got {c!r}")
    if (truncated is None) != (final_values is None):
        raise ValueError("vtrace: truncated and final_values go together (give both or neither)")
    if truncated is not None:
        for name, x in (("truncated", truncated), ("final_values", final_values)):
            if x.shape != log_rhos.shape:
                raise ValueError(f"vtrace: {name} must be [T, B] = {tuple(log_rhos.shape)} like "
                                 f"log_rhos, got {tuple(x.shape)}")
        if truncated.dtype != torch.bool:
            raise ValueError(f"vtrace: truncated must be a bool tensor, got {truncated.dtype}")
