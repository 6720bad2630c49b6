"""The agent network: torso -> core -> (policy head, baseline head), over ``[T, B]`` unrolls."""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import nn

from kickstart.config import NetConfig
from kickstart.errors import ConfigError
from kickstart.method import enabled_methods
from kickstart.nets.cores import State, make_core
from kickstart.nets.heads import make_policy_head
from kickstart.nets.popart import make_value_head, value_outputs
from kickstart.nets.torsos import make_torso, torso_input
from kickstart.precision import resolve
from kickstart.specs import EnvSpec


class AgentOutput(NamedTuple):
    policy_logits: torch.Tensor
    """``[T, B, L]`` flat logits of the action distribution: ``L = A`` for Discrete, ``sum(nvec)``
    for MultiDiscrete (``policy_logits.split(spec.action_nvec, -1)`` gives each factor's logits).
    A factorised head over a Discrete space returns normalised joint log-probs over the A actions."""
    baseline: torch.Tensor
    """``[T, B]`` state values."""
    extras: dict
    """Empty for plain agents (but ``baseline_normalised``, ``[T, B]``, with a PopArt value head:
    :mod:`kickstart.nets.popart`); methods (e.g. Mix & Match) put per-component outputs here.
    ``extras["record"]``, if present, maps unroll field names to ``[T, B, ...]`` values the network
    sampled while acting (e.g. Mix & Match's selector): the actor stores them in the unroll, and the
    learner hands them back through ``replay`` (see :mod:`kickstart.runtime.unroll`)."""


def forward_in_precision(forward, precision: str, obs, *inputs, **options) -> tuple[AgentOutput, State]:
    """Run an agent's ``forward(obs, *inputs, **options)`` in ``precision`` (``bf16``, or ``auto``
    on a device where bf16 pays, see :mod:`kickstart.precision`: under autocast) and return its
    policy logits, baseline and state in float32 (extras as they are)."""
    if resolve(precision, obs.device.type) != "bf16":
        return forward(obs, *inputs, **options)
    with torch.autocast(device_type=obs.device.type, dtype=torch.bfloat16):
        out, state = forward(obs, *inputs, **options)
    return (AgentOutput(out.policy_logits.float(), out.baseline.float(), out.extras),
            tuple(s.float() for s in state))


class AgentNet(nn.Module):
    """An IMPALA-style agent network.

    The torso runs once over all ``T * B`` observations; only the LSTM core (if any) steps through
    time. Attributes ``torso``, ``core``, ``policy_head`` and ``baseline_head`` are the parts, so
    that methods such as Mix & Match can share or replace them.
    """

    def __init__(self, spec: EnvSpec, torso: nn.Module, core: nn.Module, policy_head: nn.Module,
                 baseline_head: nn.Module, precision: str = "auto"):
        super().__init__()
        self.spec = spec
        self.precision = precision
        self.torso = torso
        self.core = core
        self.policy_head = policy_head
        self.baseline_head = baseline_head

    def initial_state(self, batch_size: int, device=None) -> State:
        """``()`` for a feed-forward core; ``(h, c)``, each ``[B, lstm_size]`` zeros, for an LSTM."""
        if device is None:
            device = next(self.parameters()).device
        return self.core.initial_state(batch_size, device)

    def forward(self, obs: torch.Tensor, last_action: torch.Tensor, last_reward: torch.Tensor,
                first: torch.Tensor, state: State, task: torch.Tensor | None = None,
                replay: dict | None = None, generator: torch.Generator | None = None) -> tuple[AgentOutput, State]:
        """One unroll.

        Args:
          obs: ``[T, B, *obs_shape]`` uint8 or float32; multiplied by ``spec.obs_scale``.
          last_action: ``[T, B]`` int64 (``[T, B, D]`` for MultiDiscrete), the action taken before obs[t].
          last_reward: ``[T, B]`` float, the reward received on arriving at obs[t].
          first: ``[T, B]`` bool, obs[t] starts an episode: the core state is reset before step t.
          state: from :meth:`initial_state` or the previous call.
          task: ``[T, B]`` int64 task ids (multi-task agents such as Mix & Match's per-task
            specialists read it; this network ignores it).
          replay: the learner's batch of unrolls (``[T, B, ...]`` fields): a network that samples
            while acting (and so returns ``extras["record"]``) reuses the values recorded there
            instead of sampling. None when acting. This network samples nothing and ignores it.
          generator: the random generator a network that samples while acting draws from (the
            actor passes its own). A network called with neither ``replay`` nor ``generator``
            samples nothing and returns its expected policy (Mix & Match: pi_mm). Ignored here.

        Returns:
          ``(AgentOutput, state)`` with the state after step T-1. Outputs and state are float32
          whatever ``precision`` is.
        """
        return forward_in_precision(self._forward, self.precision, obs, last_action, last_reward, first, state, task)

    def _forward(self, obs, last_action, last_reward, first, state, task=None):
        T, B = obs.shape[:2]
        x = self.torso(torso_input(obs, self.spec.obs_scale, self.torso)).view(T, B, -1)
        core_out, state = self.core(x, last_action, last_reward, first, state)
        core_out = core_out.reshape(T * B, -1)
        logits = self.policy_head(core_out).view(T, B, -1)
        baseline, extras = value_outputs(self.baseline_head, core_out, task, (T, B))
        return AgentOutput(logits, baseline, extras), state


def orthogonal_init_(module: nn.Module, gain: float) -> None:
    """Orthogonal weights with ``gain`` and zero biases for every conv and linear layer of ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(m.weight, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def apply_init(init: str, torsos: Sequence[nn.Module], baseline_head: nn.Module) -> None:
    """``net.init`` on freshly built parts: ``orthogonal`` re-initialises the torsos (gain sqrt(2),
    their layers are ReLU'd) and the value head (gain 1); ``default`` keeps PyTorch's. The policy
    heads keep their own small orthogonal init either way (:mod:`kickstart.nets.heads`)."""
    if init == "orthogonal":
        for torso in torsos:
            orthogonal_init_(torso, math.sqrt(2.0))
        orthogonal_init_(baseline_head, 1.0)


def build_net(cfg: NetConfig, spec: EnvSpec) -> AgentNet:
    """Build the agent network described by ``cfg`` for ``spec``; raises UserError on a bad fit."""
    torso = make_torso(cfg.torso, spec.obs_shape, cfg.hidden_size, cfg.mlp_sizes)
    core = make_core(cfg.core, torso.out_size, spec.action_nvec, cfg.lstm_size)
    policy_head = make_policy_head(cfg.policy_head, core.out_size, spec)
    baseline_head = make_value_head(core.out_size, spec.num_tasks, cfg.popart, cfg.popart_beta)
    apply_init(cfg.init, [torso], baseline_head)
    return AgentNet(spec, torso, core, policy_head, baseline_head, cfg.precision)


def build_agent(cfg, spec: EnvSpec, methods=None) -> nn.Module:
    """The network a run trains, from its whole config (:func:`kickstart.config.make_config`): the
    network of the method that has one (Mix & Match), else a plain :class:`AgentNet` from ``cfg.net``.
    ``methods``: those to ask (default: the config's own, :func:`kickstart.method.methods_of`)."""
    nets = [(m.name, net) for m in enabled_methods(cfg, methods) if (net := m.network(cfg, spec)) is not None]
    if len(nets) > 1:
        raise ConfigError(f"{' and '.join(n for n, _ in nets)} each build the agent network; use one of them")
    return nets[0][1] if nets else build_net(cfg.net, spec)
