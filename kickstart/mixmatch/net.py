"""The Mix & Match agent: K component policies acting as one mixture.

Components are ordered from the simplest (pi_1) to the target agent (pi_K). Each has a torso, a
core and a policy head, built from the run's ``net`` settings overridden by its
:class:`~kickstart.mixmatch.config.ComponentConfig`; the modules named in ``mixmatch.share`` are one module
used by every component (the paper's Fig. 2: a shared conv torso; for the core curriculum also the
policy projection). A per-task component (a multitask *specialist*) holds one core and head per
task, and each env acts with its own task's copy.

Every component's policy is expressed over the target's (the env's) action space: a component over
a smaller action set maps each of its actions to the target action with the same meaning
(``NOOP`` -> ``NOOP``, ``LEFT`` -> ``LEFT``), and gives the others probability 0. The control policy
is the explicit mixture ``pi_mm = sum_i w_i pi_i`` (Sec. 3.1), with ``w = chain_weights(alpha, K)``.

With ``mixmatch.mixing=sampled`` the policy the network outputs at each step is instead ``pi_c`` for
a selector ``c ~ w`` drawn per env and step (:func:`kickstart.losses.mixmatch.select`, which derives
why its gradient is an unbiased estimate of the explicit one). Acting, the network draws ``c`` from
the generator the actor passes and returns it in ``extras["record"]["mixmatch/selector"]``; the
actor stores it in the unroll field of that name, and the learner, passing the batch as ``replay``,
gets ``pi_c`` for the recorded ``c`` back. Called with neither (evaluation, a teacher, shape
probes) it returns ``pi_mm``: acting with it is the same process (``c_t`` is drawn afresh at every
step, so ``a_t``'s distribution is ``pi_mm`` either way), without a random choice nobody records.
The mixture ``log pi_mm`` is in ``extras["mm_mixture"]`` in every case (diagnostics describe the
control policy).

The value function: one baseline head on the *target* component's core output, estimating the
value of the control policy pi_mm, which is what V-trace on pi_mm needs. It is trained from the
start, so the target exported alone has a trained value head; the paper found transferring
knowledge between value functions unhelpful (App. C), so there is no value distillation. With
``net.popart`` it is a PopArt head (:mod:`kickstart.nets.popart`), exported with the target.

``alpha`` lives in the network as a buffer: the learner's M&M loss term writes it before each
update (from PBT or the schedule), and it travels to the actors with the parameters.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from kickstart.config import CoreConfig, NetConfig
from kickstart.errors import ConfigError
from kickstart.losses import mixmatch as mmloss
from kickstart.losses.mixmatch import NEG, chain_weights, mixture_log_probs
from kickstart.mixmatch.config import ComponentConfig
from kickstart.nets.agent import AgentNet, AgentOutput, apply_init, forward_in_precision
from kickstart.nets.cores import make_core
from kickstart.nets.heads import make_policy_head
from kickstart.nets.popart import make_value_head, value_outputs
from kickstart.nets.torsos import make_torso, torso_input
from kickstart.specs import EnvSpec


def component_net_config(net: NetConfig, comp: ComponentConfig) -> NetConfig:
    """The plain network config of one component: ``net`` with the component's overrides."""
    return dataclasses.replace(net, core=comp.core or net.core, lstm_size=comp.lstm_size or net.lstm_size,
                               policy_head=comp.policy_head or net.policy_head)


def component_actions(spec: EnvSpec, comp: ComponentConfig, index: int) -> tuple[str, ...]:
    """The action meanings a component acts with, checked against the env's action space."""
    where = f"mixmatch.components[{index}]"
    if comp.actions:
        wanted = tuple(comp.actions)
    elif comp.action_set == "minimal":
        if spec.minimal_action_meanings is None:
            raise ConfigError(f"{where}.action_set=minimal: env {spec.task_names[0] if spec.num_tasks == 1 else 'suite'} "
                              f"has no single minimal action set; list the actions in {where}.actions")
        wanted = spec.minimal_action_meanings
    else:
        return spec.action_meanings
    missing = [a for a in wanted if a not in spec.action_meanings]
    if missing:
        raise ConfigError(f"{where}: actions {missing} have no image in the env's action space "
                          f"({', '.join(spec.action_meanings)})")
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"{where}.actions lists an action twice: {list(wanted)}")
    return wanted


def _sub_spec(spec: EnvSpec, meanings: tuple[str, ...]) -> EnvSpec:
    if meanings == spec.action_meanings:
        return spec
    idx = [spec.action_meanings.index(m) for m in meanings]
    factors = tuple(spec.action_factors[i] for i in idx) if spec.action_factors is not None else None
    return dataclasses.replace(spec, action_nvec=(len(meanings),), action_meanings=meanings, action_factors=factors,
                               factor_sizes=spec.factor_sizes if factors is not None else None)


class _PerTask(nn.Module):
    """One module per task; env column b uses the copy of its task (``task[0, b]``)."""

    def __init__(self, modules: list[nn.Module]):
        super().__init__()
        self.copies = nn.ModuleList(modules)
        self.out_size = getattr(modules[0], "out_size", None)

    def initial_state(self, batch_size: int, device=None):
        return self.copies[0].initial_state(batch_size, device)

    def forward_core(self, task, x, last_action, last_reward, first, state):
        if task is None:
            raise ValueError("a per-task Mix & Match component needs the env's task ids")
        out = None
        new_state = [s.clone() for s in state]
        for t in torch.unique(task[0]).tolist():
            cols = (task[0] == t).nonzero(as_tuple=True)[0]
            o, s = self.copies[t](x[:, cols], last_action[:, cols], last_reward[:, cols], first[:, cols],
                                  tuple(s[cols] for s in state))
            if out is None:
                out = o.new_zeros(o.shape[:1] + (x.shape[1],) + o.shape[2:])
            out[:, cols] = o
            for i, si in enumerate(s):
                new_state[i][cols] = si
        return out, tuple(new_state)

    def forward_head(self, task, x):
        """``x`` is ``[T, B, D]``."""
        out = None
        for t in torch.unique(task[0]).tolist():
            cols = (task[0] == t).nonzero(as_tuple=True)[0]
            o = self.copies[t](x[:, cols].reshape(-1, x.shape[-1])).view(x.shape[0], len(cols), -1)
            if out is None:
                out = o.new_zeros((x.shape[0], x.shape[1], o.shape[-1]))
            out[:, cols] = o
        return out


SELECTOR = "mixmatch/selector"
"""The unroll field holding the selector c each env acted with (``mixing=sampled``): int64, 0-based."""


class MixMatchNet(nn.Module):
    """``forward`` has :class:`~kickstart.nets.AgentNet`'s signature and returns the control
    policy's log-probabilities as the policy logits: ``log pi_mm``, or with ``mixing=sampled``
    ``log pi_c`` for each step's selector c. ``extras["mm_log_probs"]`` holds each component's
    log-probabilities over the env's actions (``NEG`` outside its support), ``extras["mm_weights"]``
    the mixture weights, ``extras["mm_mixture"]`` ``log pi_mm``; sampled mode, given ``replay`` or
    ``generator``, adds ``extras["record"] = {SELECTOR: c}`` (``[T, B]`` int64) and otherwise
    returns ``log pi_mm``, as explicit mode does."""

    def __init__(self, cfg: CoreConfig, spec: EnvSpec):
        super().__init__()
        mm, net = cfg.mixmatch, cfg.net
        if spec.multi_discrete:
            raise ConfigError("mixmatch needs a Discrete action space (Atari's 18 actions can be factorised with "
                              "component policy_head=factorised); this env's is MultiDiscrete")
        self.spec, self.precision = spec, net.precision
        self.k = len(mm.components)
        self.comp_cfgs = [component_net_config(net, c) for c in mm.components]
        self.comp_specs = [_sub_spec(spec, component_actions(spec, c, i)) for i, c in enumerate(mm.components)]
        if self.comp_specs[-1].action_meanings != spec.action_meanings:
            raise ConfigError(f"mixmatch.components[{self.k - 1}] is the target agent and must act over the env's "
                              f"full action set ({', '.join(spec.action_meanings)}); give it action_set=full")
        for i in range(self.k - 1):
            # KL(pi_i || pi_{i+1}) is finite only if pi_{i+1} can take every action pi_i takes.
            nxt = set(self.comp_specs[i + 1].action_meanings)
            missing = [a for a in self.comp_specs[i].action_meanings if a not in nxt]
            if missing:
                takes = ", ".join(self.comp_specs[i + 1].action_meanings)
                raise ConfigError(f"mixmatch.components[{i}] acts with {missing}, which components[{i + 1}] "
                                  f"cannot take ({takes}); each component's actions must be a subset of the next one's")
        self.per_task = [c.per_task for c in mm.components]
        self.shared_head = mm.shared_head
        self.mixing = mm.mixing
        share = set(mm.share)
        n_tasks = spec.num_tasks
        self.register_buffer("alpha", torch.tensor(float(mm.alpha)))

        # The modules of each component (shared ones are the same object in every slot).
        torsos, cores, heads = [], [], []
        for i, (ncfg, cspec, comp) in enumerate(zip(self.comp_cfgs, self.comp_specs, mm.components)):
            if "torso" in share and torsos:
                torso = torsos[0]
            else:
                torso = make_torso(net.torso, spec.obs_shape, net.hidden_size, net.mlp_sizes)
            torsos.append(torso)

            if "core" in share and cores:
                if comp.per_task or (ncfg.core, ncfg.lstm_size) != (self.comp_cfgs[0].core, self.comp_cfgs[0].lstm_size):
                    raise ConfigError(f"mixmatch.share has core but component {i} has its own core "
                                      f"({ncfg.core}, per_task={comp.per_task}); shared cores must be identical")
                core = cores[0]
            else:
                copies = [make_core(ncfg.core, torso.out_size, spec.action_nvec, ncfg.lstm_size)
                          for _ in range(n_tasks if comp.per_task else 1)]
                core = _PerTask(copies) if comp.per_task else copies[0]
            cores.append(core)

            if mm.shared_head and i < self.k - 1:
                heads.append(None)
                continue

            if "policy_head" in share and any(h is not None for h in heads):
                prev = next(j for j, h in enumerate(heads) if h is not None)
                if cspec.action_meanings != self.comp_specs[prev].action_meanings or comp.per_task:
                    raise ConfigError("mixmatch.share has policy_head but the components act over different action "
                                      "sets or per task; share heads only between identical action sets")
                if core.out_size != cores[prev].out_size:
                    raise ConfigError(f"mixmatch.share has policy_head but component {i}'s core outputs "
                                      f"{core.out_size} features and component {prev}'s {cores[prev].out_size}; "
                                      f"set the same net.hidden_size and lstm_size")
                head = heads[prev]
            else:
                copies = [make_policy_head(ncfg.policy_head, core.out_size, cspec)
                          for _ in range(n_tasks if comp.per_task else 1)]
                head = _PerTask(copies) if comp.per_task else copies[0]
            heads.append(head)
        if mm.shared_head:
            for i in range(self.k - 1):
                if cores[i] is not cores[-1]:
                    raise ConfigError("mixmatch.shared_head needs the components to share their core "
                                      "(mixmatch.share: [torso, core])")
        # Register each distinct module once (shared ones under the first component using them).
        self.torsos = nn.ModuleList(_distinct(torsos))
        self.cores = nn.ModuleList(_distinct(cores))
        self.heads = nn.ModuleList(_distinct([h for h in heads if h is not None]))
        self._torso_of = [_position(self.torsos, m) for m in torsos]
        self._core_of = [_position(self.cores, m) for m in cores]
        self._head_of = [None if h is None else _position(self.heads, h) for h in heads]
        # net.popart: the value head normalises its targets per task (the learner moves its statistics).
        self.baseline_head = make_value_head(cores[-1].out_size, n_tasks, net.popart, net.popart_beta)
        apply_init(net.init, self.torsos, self.baseline_head)
        # Component actions as indices into the env's actions, and their support masks.
        for i, cspec in enumerate(self.comp_specs):
            idx = torch.tensor([spec.action_meanings.index(m) for m in cspec.action_meanings], dtype=torch.long)
            self.register_buffer(f"index_{i}", idx, persistent=False)
            support = torch.zeros(spec.num_actions, dtype=torch.bool)
            support[idx] = True
            self.register_buffer(f"support_{i}", support, persistent=False)
        # Core state layout: one state tuple per distinct core.
        self._state_sizes = [len(c.initial_state(1)) for c in self.cores]

    # -- structure -----------------------------------------------------------------------------
    def supports(self) -> list[torch.Tensor]:
        """``[A]`` bool mask of each component's actions in the env's action space."""
        return [getattr(self, f"support_{i}") for i in range(self.k)]

    def weights(self) -> list[float]:
        return chain_weights(float(self.alpha.clamp(0.0, 1.0)), self.k)

    def initial_state(self, batch_size: int, device=None):
        if device is None:
            device = self.alpha.device
        return tuple(s for c in self.cores for s in c.initial_state(batch_size, device))

    def _split_state(self, state):
        out, i = [], 0
        for n in self._state_sizes:
            out.append(tuple(state[i:i + n]))
            i += n
        return out

    # -- forward -------------------------------------------------------------------------------
    def forward(self, obs, last_action, last_reward, first, state, task=None, replay=None, generator=None):
        return forward_in_precision(self._forward, self.precision, obs, last_action, last_reward, first, state, task,
                                    replay=replay, generator=generator)

    def _selector(self, weights, shape, replay, generator, device) -> torch.Tensor:
        """The selectors of ``mixing=sampled``: the recorded ones (learner), else draws from
        ``generator`` (the actor's)."""
        if replay is None:
            return mmloss.sample_selector(weights, shape, generator).to(device)
        if SELECTOR not in replay:
            raise ValueError(f"mixmatch.mixing=sampled: the replayed batch has no {SELECTOR!r} field; the unrolls "
                             f"must come from actors whose unroll fields include mixmatch.build()'s extra_fields")
        return replay[SELECTOR].to(device)

    def _forward(self, obs, last_action, last_reward, first, state, task, replay=None, generator=None):
        T, B = obs.shape[:2]
        x = torso_input(obs, self.spec.obs_scale, self.torsos[0])   # every torso is of the net.torso kind
        feats = [t(x).view(T, B, -1) for t in self.torsos]
        states = self._split_state(state)
        core_out: list = [None] * len(self.cores)
        new_states = list(states)
        for i in range(self.k):
            c = self._core_of[i]
            if core_out[c] is not None:
                continue
            core, f = self.cores[c], feats[self._torso_of[i]]
            if isinstance(core, _PerTask):
                core_out[c], new_states[c] = core.forward_core(task, f, last_action, last_reward, first, states[c])
            else:
                core_out[c], new_states[c] = core(f, last_action, last_reward, first, states[c])
        log_probs: list = [None] * self.k
        for i in reversed(range(self.k)):   # the target first: shared-head components derive from it
            h = self._head_of[i]
            support = getattr(self, f"support_{i}")
            if h is None:   # shared head: the next component's policy restricted to our actions
                nxt = log_probs[i + 1].masked_fill(~support, NEG)
                log_probs[i] = (nxt - torch.logsumexp(nxt, -1, keepdim=True)).clamp(min=NEG)
                continue
            head, z = self.heads[h], core_out[self._core_of[i]]
            if isinstance(head, _PerTask):
                logits = head.forward_head(task, z)
            else:
                logits = head(z.reshape(T * B, -1)).view(T, B, -1)
            lp = F.log_softmax(logits.float(), dim=-1)
            if support.all():
                log_probs[i] = lp
            else:
                full = lp.new_full((T, B, self.spec.num_actions), NEG)
                log_probs[i] = full.index_copy(-1, getattr(self, f"index_{i}"), lp)
        weights = self.weights()
        mixed = mixture_log_probs(log_probs, weights)
        extras = {"mm_log_probs": tuple(log_probs), "mm_weights": weights, "mm_supports": self.supports(),
                  "mm_mixture": mixed}
        policy = mixed
        if self.mixing == "sampled" and (replay is not None or generator is not None):
            selector = self._selector(weights, (T, B), replay, generator, mixed.device)
            policy = mmloss.select(log_probs, selector)
            extras["record"] = {SELECTOR: selector}
        baseline, value_extras = value_outputs(self.baseline_head, core_out[self._core_of[-1]].reshape(T * B, -1),
                                               task, (T, B))
        extras.update(value_extras)
        flat_state = tuple(s for st in new_states for s in st)
        return AgentOutput(policy, baseline.float(), extras), flat_state

    # -- export --------------------------------------------------------------------------------
    def target_config(self) -> NetConfig:
        """The plain network config of the target agent pi_K."""
        return self.comp_cfgs[-1]

    def export_target(self) -> AgentNet:
        """The target agent pi_K alone, as a plain :class:`AgentNet` (copied modules) whose outputs
        equal pi_K's: ``build_net(self.target_config(), spec)`` loads its state dict."""
        torso = copy.deepcopy(self.torsos[self._torso_of[-1]])
        core = copy.deepcopy(self.cores[self._core_of[-1]])
        head = copy.deepcopy(self.heads[self._head_of[-1]])
        return AgentNet(self.spec, torso, core, head, copy.deepcopy(self.baseline_head), self.precision)


def _distinct(modules):
    out = []
    for m in modules:
        if not any(m is o for o in out):
            out.append(m)
    return out


def _position(modules, m) -> int:
    return next(i for i, o in enumerate(modules) if o is m)


def target_policy(net: MixMatchNet) -> AgentNet:
    """PBT's evaluation policy for multitask M&M: the central (target) agent alone."""
    return net.export_target()
