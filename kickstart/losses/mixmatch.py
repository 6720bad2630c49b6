"""Mix & Match (Czarnecki et al. 2018) as pure functions on log-probabilities.

Every policy here is a ``[..., A]`` tensor of normalised log-probabilities over the *target's*
action space. A component acting over a smaller action set has ``NEG`` (not -inf: ``0 * NEG`` is
0, ``0 * -inf`` is NaN) at the actions outside its support; ``support`` masks say where it lives.

* :func:`chain_weights`: the mixture weights ``w_1..w_K`` from the curriculum position ``alpha``.
* :func:`mixture_log_probs`: ``log pi_mm = log sum_i w_i pi_i`` (explicit mixing, Sec. 3.1).
* :func:`sample_selector`, :func:`select`, :func:`selector_posterior`: the sampled-selector
  variant of the mixture (Sec. 3.1; the derivation of its gradient is in :func:`select`).
* :func:`kl`: ``KL(pi_1 || pi_2)`` per state, full or masked to pi_1's support (Sec. 4.1).
* :func:`mm_loss`: ``(1 - alpha) KL(pi_1 || pi_2)`` (Eq. 1); for K > 2 adjacent pairs, each weighted
  by the mixture weight still on its simpler side (:func:`pair_weights`).
* :func:`collision_entropy`: ``-log sum_a pi(a)^2`` (Fig. 5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

NEG = -1e30
"""Log-probability of an action outside a policy's support."""


def chain_weights(alpha: float, k: int) -> list[float]:
    """Mixture weights of ``k`` components at curriculum position ``alpha`` in [0, 1].

    ``k = 2``: ``(1 - alpha, alpha)``, the paper's. ``k > 2`` (the natural extension): ``alpha``
    walks the chain pi_1 -> pi_K; at ``s = alpha (k - 1)`` the weight is split linearly between
    the two components either side of ``s``, so alpha = 0 is pi_1 alone, alpha = 1 is pi_K alone
    and every component in between acts alone at ``alpha = (i - 1) / (k - 1)``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha!r} must be in [0, 1]")
    if k < 2:
        raise ValueError(f"Mix & Match needs k >= 2 components, got {k}")
    s = alpha * (k - 1)
    i = min(int(s), k - 2)
    frac = s - i
    w = [0.0] * k
    w[i], w[i + 1] = 1.0 - frac, frac
    return w


def mixture_log_probs(log_probs: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """``log sum_i w_i pi_i(a)``, computed as a logsumexp. Zero weights drop out exactly (a
    component with weight 0 gets no gradient through the mixture)."""
    terms = [lp + torch.log(torch.tensor(float(w), dtype=lp.dtype, device=lp.device))
             for lp, w in zip(log_probs, weights) if w > 0]
    if not terms:
        raise ValueError("mixture weights are all 0")
    out = torch.logsumexp(torch.stack(terms), dim=0)
    return out.clamp(min=NEG)


def sample_selector(weights: Sequence[float], shape: Sequence[int],
                    generator: torch.Generator | None = None) -> Tensor:
    """Selectors ``c ~ Categorical(w)``, independently for each of ``shape``'s entries: an int64
    tensor of component indices ``0..K-1`` (on the CPU; ``generator`` None: the global RNG). A
    component with weight 0 is never drawn."""
    w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
    if not (w >= 0).all() or not w.sum() > 0:
        raise ValueError(f"mixture weights {list(weights)} must be >= 0 and not all 0")
    n = math.prod(shape)
    if n == 0:
        return torch.zeros(tuple(shape), dtype=torch.int64)
    return torch.multinomial(w, n, replacement=True, generator=generator).view(tuple(shape))


def select(log_probs: Sequence[Tensor], selector: Tensor) -> Tensor:
    """``log pi_{c}(.)`` per state: the log-probabilities of the component each state's selector
    ``c`` (``[...]`` int64, as ``log_probs[i]``'s leading axes) picks; ``[..., A]``. The gradient
    reaches only the selected component.

    The sampled-selector policy (M&M Sec. 3.1). The actor draws ``c_t ~ w`` and then
    ``a_t ~ pi_{c_t}``, so ``a_t``'s marginal is ``pi_mm = sum_i w_i pi_i``: the same behaviour as
    explicit mixing. Given ``a_t``, the selector is distributed as its posterior
    ``P(c | a_t) = w_c pi_c(a_t) / pi_mm(a_t)`` (:func:`selector_posterior`), hence

        E[grad log pi_{c_t}(a_t) | a_t] = sum_c w_c pi_c(a_t) / pi_mm(a_t) * grad pi_c(a_t) / pi_c(a_t)
                                        = grad (sum_c w_c pi_c(a_t)) / pi_mm(a_t)
                                        = grad log pi_mm(a_t)

    (``w`` does not depend on the parameters). A policy gradient on ``log pi_{c_t}(a_t)`` with the
    recorded ``c_t`` is therefore an unbiased Monte Carlo estimate of the explicit-mixing policy
    gradient, with more variance, which is why the paper mixes explicitly.
    """
    stacked = torch.stack(list(log_probs))                                   # [K, ..., A]
    if selector.shape != stacked.shape[1:-1]:
        raise ValueError(f"selector of shape {tuple(selector.shape)} does not match the policies' "
                         f"{tuple(stacked.shape[1:-1])}")
    idx = selector.to(device=stacked.device, dtype=torch.long)[None, ..., None].expand(1, *stacked.shape[1:])
    return stacked.gather(0, idx)[0]


def selector_posterior(log_probs: Sequence[Tensor], weights: Sequence[float], actions: Tensor) -> Tensor:
    """``P(c = i | a) = w_i pi_i(a) / pi_mm(a)``, the selector's posterior once action ``a``
    (``[...]``) is seen; ``[K, ...]``, summing to 1 over components."""
    joint = []                                                               # log w_i pi_i(a)
    for lp, w in zip(log_probs, weights):
        lp_a = lp.gather(-1, actions[..., None].long())[..., 0]
        joint.append(lp_a + math.log(float(w)) if w > 0 else torch.full_like(lp_a, NEG))
    return torch.softmax(torch.stack(joint), dim=0)


def kl(log_p: Tensor, log_q: Tensor, support: Tensor | None = None, masked: bool = False) -> Tensor:
    """``KL(p || q) = sum_a p(a) (log p(a) - log q(a))`` over the last axis.

    ``masked``: the sum runs over ``support`` (p's actions) only, with ``q`` renormalised there, so
    ``q`` is not penalised for mass on actions outside p's support (the paper's "Masked KL").
    Without masking, actions where p is 0 add nothing either, but q's mass there still lowers the
    log q(a) of the supported actions.
    """
    if masked:
        if support is None:
            raise ValueError("masked KL needs the support of p")
        q_in = log_q.masked_fill(~support, NEG)
        log_q = q_in - torch.logsumexp(q_in, dim=-1, keepdim=True)
    p = log_p.exp()
    diff = log_p - log_q
    if support is not None:
        # p is 0 outside its support: zero the difference there (NEG - NEG would be 0 anyway, but
        # NEG - finite is huge and 0 * huge is fine only while it stays finite).
        diff = torch.where(support, diff, torch.zeros_like(diff))
    return (p * diff).sum(-1)


def pair_weights(alpha: float, k: int) -> list[float]:
    """Weight of each adjacent pair's KL(pi_i || pi_{i+1}), ``i = 1..k-1``, at curriculum position
    ``alpha``: the mixture weight still on the simpler side of the pair, ``sum_{j<=i} w_j``.

    ``k = 2``: ``[1 - alpha]``, the paper's Eq. 1. ``k > 2`` (the natural extension): a pair is
    distilled while the policies up to pi_i still act, and its term vanishes once alpha has moved
    past pi_i (pi_i then never acts again); every term vanishes at alpha = 1.
    """
    w = chain_weights(alpha, k)
    return [sum(w[:i + 1]) for i in range(k - 1)]


def pair_kls(log_probs: Sequence[Tensor], supports: Sequence[Tensor | None] | None = None,
             masked: bool = False, stop_simple: bool = False) -> list[Tensor]:
    """``KL(pi_i || pi_{i+1})`` per state for each adjacent pair (``k - 1`` tensors ``[...]``).

    ``stop_simple`` stops the gradient into pi_i in each pair (only the more complex policy is
    pulled); by default both move, as in the paper's experiments.
    """
    supports = list(supports) if supports is not None else [None] * len(log_probs)
    out = []
    for i in range(len(log_probs) - 1):
        p = log_probs[i].detach() if stop_simple else log_probs[i]
        out.append(kl(p, log_probs[i + 1], supports[i], masked))
    return out


def mm_loss(log_probs: Sequence[Tensor], alpha: float, supports: Sequence[Tensor | None] | None = None,
            masked: bool = False, stop_simple: bool = False) -> Tensor:
    """The M&M distillation cost per state: ``sum_i c_i KL(pi_i || pi_{i+1})`` with ``c_i`` from
    :func:`pair_weights`; for K = 2 the paper's ``(1 - alpha) KL(pi_1 || pi_2)`` (Eq. 1).

    Returns ``[...]`` (no reduction). See :func:`pair_kls` for ``stop_simple``.
    """
    kls = pair_kls(log_probs, supports, masked, stop_simple)
    total = 0.0
    for c, term in zip(pair_weights(alpha, len(log_probs)), kls):
        total = total + c * term
    return total


def collision_entropy(log_probs: Tensor) -> Tensor:
    """Renyi entropy of order 2, ``-log sum_a pi(a)^2`` per state (M&M Fig. 5)."""
    return -torch.logsumexp(2.0 * log_probs, dim=-1)
