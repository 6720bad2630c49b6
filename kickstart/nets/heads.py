"""Policy and value heads on the core output, ``[N, in_size] -> [N, L]`` and ``[N]``.

Policy heads return the flat logits of the action distribution: ``L = A`` for ``Discrete(A)``
and ``L = sum(nvec)`` (one independent categorical per factor, split with ``spec.action_nvec``)
for ``MultiDiscrete``. In both cases ``logits.split(spec.action_nvec, -1)`` gives the per-factor
(or the single) categorical logits.

Initialisation: the final policy layer is orthogonal with gain 0.01 and zero bias, so the
initial policy is close to uniform (the logits are ~1e-2 of the input's scale); every other
layer keeps PyTorch's default initialisation.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kickstart.errors import UserError
from kickstart.specs import EnvSpec

POLICY_INIT_GAIN = 0.01


def policy_linear(in_size: int, out_size: int) -> nn.Linear:
    """A Linear layer initialised as a policy output: orthogonal(gain 0.01), zero bias."""
    layer = nn.Linear(in_size, out_size)
    nn.init.orthogonal_(layer.weight, gain=POLICY_INIT_GAIN)
    nn.init.zeros_(layer.bias)
    return layer


class CategoricalHead(nn.Module):
    """Linear -> L logits (A for Discrete; sum(nvec) independent per-factor logits for MultiDiscrete)."""

    def __init__(self, in_size: int, num_logits: int):
        super().__init__()
        self.linear = policy_linear(in_size, num_logits)
        self.num_logits = num_logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class FactorisedJointHead(nn.Module):
    """A product of independent factor categoricals, returned as joint log-probs over A actions.

    Linear -> ``sum(factor_sizes)`` factor logits; then for each env action ``a``:
    ``logits[a] = sum_j log_softmax(factor_logits_j)[action_factors[a][j]]``.

    When the A actions are exactly all the combinations of the factors (Atari's full 18 actions =
    joystick 9 x fire 2) this is already normalised over A. When they are a strict subset (a
    game's minimal action set) or repeat a combination, the probabilities of the A actions do not
    sum to 1, so they are renormalised with a logsumexp over the A actions: the policy is then
    the product distribution conditioned on the actions that exist.
    """

    def __init__(self, in_size: int, action_factors: Sequence[Sequence[int]], factor_sizes: Sequence[int]):
        super().__init__()
        self.factor_sizes = tuple(int(n) for n in factor_sizes)
        self.linear = policy_linear(in_size, sum(self.factor_sizes))
        offsets = [0, *itertools.accumulate(self.factor_sizes)][:-1]
        index = torch.tensor([[o + int(i) for o, i in zip(offsets, f)] for f in action_factors], dtype=torch.long)
        self.register_buffer("index", index, persistent=False)  # [A, D] columns of the factor logits
        combos = {tuple(int(i) for i in f) for f in action_factors}
        self.renormalise = not (len(action_factors) == math.prod(self.factor_sizes) == len(combos))
        self.num_logits = len(action_factors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor_logits = self.linear(x)
        log_probs = torch.cat([F.log_softmax(z, dim=-1) for z in factor_logits.split(self.factor_sizes, -1)], -1)
        joint = log_probs[..., self.index].sum(-1)  # [N, A, D] -> [N, A]
        if self.renormalise:
            joint = joint - joint.logsumexp(-1, keepdim=True)
        return joint


def _check_factors(spec: EnvSpec) -> None:
    A, sizes = spec.num_actions, spec.factor_sizes
    bad = None
    if len(spec.action_factors) != A:
        bad = f"has {len(spec.action_factors)} entries for {A} actions"
    elif not sizes or any(n <= 0 for n in sizes):
        bad = f"factor_sizes={sizes} must be positive"
    elif any(len(f) != len(sizes) or any(not 0 <= i < n for i, n in zip(f, sizes)) for f in spec.action_factors):
        bad = f"holds a tuple that is not {len(sizes)} indices within factor_sizes={sizes}"
    if bad:
        raise UserError(f"env spec action_factors {bad}")


def make_policy_head(name: str, in_size: int, spec: EnvSpec) -> nn.Module:
    """Build policy head ``name`` (``categorical`` or ``factorised``) for ``spec``'s action space."""
    if name not in ("categorical", "factorised"):
        raise UserError(f"net.policy_head={name!r} is not valid; choose one of: categorical, factorised")
    if spec.multi_discrete or name == "categorical":
        # For MultiDiscrete, both names mean independent per-factor logits.
        return CategoricalHead(in_size, sum(spec.action_nvec))
    if spec.action_factors is None or spec.factor_sizes is None:
        raise UserError(f"net.policy_head='factorised' needs a MultiDiscrete action space or an env that "
                        f"declares action factors, but this env has Discrete({spec.num_actions}) without "
                        f"factors; use net.policy_head=categorical")
    _check_factors(spec)
    return FactorisedJointHead(in_size, spec.action_factors, spec.factor_sizes)


class BaselineHead(nn.Module):
    """Linear -> 1, squeezed: ``[N, in_size] -> [N]``."""

    def __init__(self, in_size: int):
        super().__init__()
        self.linear = nn.Linear(in_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)
