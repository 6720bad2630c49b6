"""Unrolls: what actors write and the learner reads, and the actor that writes them.

Layout (TorchBeast's, with one fix noted below). An actor steps ``N`` envs together and writes one
unroll of ``T + 1`` entries for all of them. Entry ``t`` holds:

=================  =================  ==========================================================
field              shape              meaning
=================  =================  ==========================================================
``obs``            [T+1, N, *obs]     observation x_t
``first``          [T+1, N]           x_t is the first observation of an episode
``truncated``      [T+1, N]           x_t is the first observation of an episode whose
                                      predecessor was *truncated* by a time limit, not
                                      terminated (only where ``first``; see below)
``final_value``    [T+1, N]           where ``truncated``: V(x'), the behaviour network's value of
                                      that predecessor's final observation x' (which the reset
                                      replaced by x_t), from the core state that saw it; else 0
``reward``         [T+1, N]           reward received on arriving at x_t (raw, unclipped; at an
                                      episode start, the reward of arriving at the previous
                                      episode's last observation)
``last_action``    [T+1, N, *act]     action taken before x_t (0 when ``first``)
``action``         [T+1, N, *act]     action a_t sampled at x_t by the behaviour policy
``logits``         [T+1, N, L]        behaviour policy logits at x_t
``task``           [T+1, N]           task id of the env
``ep_end`` ...     [T+1, N]           finished *game* episodes arriving at x_t (stats only;
                                      written into columns 0..k-1, with ``ep_task``)
``core_state.i``   [N, *state_i]      the agent's core state *before* processing x_0
extra fields       [T+1, N, ...]      written by actor hooks (e.g. a teacher's logits), or
                                      recorded by the network (see below)
=================  =================  ==========================================================

Entry ``T`` of one unroll is entry ``0`` of the next (the ``T + 1`` overlap): the learner needs the
value of x_T to bootstrap, and the next unroll needs the action a_T taken there. The learner
realigns the transitions as: a_t, logits_t at entries ``0..T-1``; the transition from x_t ends the
episode iff ``first[t+1]``, and its reward is ``reward[t+1]``.

Terminations and truncations (Pardo et al. 2018, "Time Limits in Reinforcement Learning"). An
episode that ``first[t+1]`` ends either *terminated* (``truncated[t+1]`` False: the return ends, the
learner's discount is 0) or *truncated* by a time limit (``truncated[t+1]`` True: the return goes on
from the final observation x', the learner bootstraps with ``discount * final_value[t+1]`` and cuts
the trace there). The envs' same-step reset replaces x' by the next episode's x_{t+1}, so the actor
computes V(x') when the step returns it: one extra no-grad forward of the behaviour network over
the truncated envs only (about one per episode), with the inputs the network would have had at x'
had there been no reset (x', last action a_t, last reward ``reward[t+1]``, not ``first``) and the
core state the network carried out of x_t, so that an LSTM sees x' with its own state (tested).
Storing x' instead and letting the learner compute V(x') would double the observation memory of
every unroll (for a value needed about once per episode) and would need the learner's core state
at x_t, which its sequence-wide forward pass does not expose; the price of the actor's value is
that it comes from the behaviour parameters (as old as the behaviour policy), not the learner's.

Unlike TorchBeast (which stores the state *after* processing x_0), ``core_state`` is the state
*before* x_0, so that the learner, running the same network over entries ``0..T`` from that state,
reproduces the actor's logits (to rounding: an LSTM's single step and its unroll may take different
kernels) when its parameters are the actor's (tested).

Actor hooks (:class:`ActorHook`) write the extra fields. A hook with a ``finish`` method is called
once per unroll, after the actor has filled it, with ``start``: entries ``start..T`` are new (``start``
is 0 in an actor's first unroll, else 1, entry 0 being the previous entry T, copied with the hooks'
fields). Running a network once over ``[T, N]`` costs far less than ``T`` calls over ``[N]``, so this
is what hooks that only read the stream (teachers) use. A hook without ``finish`` is called per
entry (``__call__``), right after the behaviour policy acted there, for outputs needed within the step.

Recorded network outputs. A network whose behaviour policy depends on values it samples itself
(Mix & Match's sampled selector) returns them in ``extras["record"]``, a dict from an unroll field
name to a ``[T, B, ...]`` tensor; the actor, which calls the network with its own generator
(``generator=``), copies each into the field of that name at the current entry. The method
declares those fields (``MethodSetup.extra_fields``); like every per-step field, entry 0 of an
unroll is the previous entry ``T``. The learner calls the network with ``replay=`` the batch, and
the network reuses the recorded values instead of drawing new ones, so that with the actor's
parameters it reproduces the behaviour logits (to rounding). The runtime knows only the field names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import torch

from kickstart.distributions import make_dist
from kickstart.envs.batched import StepResult
from kickstart.specs import EnvSpec


@dataclass(frozen=True)
class Field:
    """One unroll field: its trailing shape, dtype, and whether it has the time axis."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    per_step: bool = True


class ActorHook(Protocol):
    """Computes extra per-step fields in the actor (e.g. a teacher's logits along the stream).

    The runtime stores what a hook writes without knowing what it is; the method that installed
    the hook reads it back in its loss term. A hook implements one of two ways to write its fields
    (see the module docstring): ``finish(buf, start)``, once per unroll (preferred: one batched
    pass over the unroll), or ``__call__`` per entry. The actor calls ``finish`` when the hook has
    one and then never calls ``__call__``.
    """

    fields: dict[str, Field]

    def reset(self, num_envs: int) -> None:
        """The actor (re)starts its ``num_envs`` envs: the next entry starts every episode."""

    def set_hparams(self, hparams: dict[str, float]) -> None:
        """The hyperparameters the learner published with its latest parameters (e.g. a teacher's
        current weight, so that a teacher whose weight is 0 can skip its forward pass). The actor
        passes them on between unrolls."""

    def __call__(self, obs: torch.Tensor, first: torch.Tensor, task: torch.Tensor,
                 last_action: torch.Tensor, last_reward: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per entry (hooks without ``finish``): the network inputs of entry t (``[N, ...]``, the
        last reward zeroed where ``first``); returns each field's ``[N, ...]`` value there."""

    # Optional, and then used instead of __call__ (a Protocol cannot mark a method optional):
    # def finish(self, buf: dict[str, torch.Tensor], start: int) -> None:
    #     """Write the hook's fields at entries ``start..T`` of the filled unroll ``buf``."""


def unroll_fields(spec: EnvSpec, num_logits: int, core_state: Sequence[torch.Tensor],
                  extra: dict[str, Field] | None = None) -> dict[str, Field]:
    """The fields of an unroll for this env, policy and core state (see the module docstring)."""
    obs_dtype = torch.from_numpy(np.zeros(1, dtype=spec.np_obs_dtype)).dtype
    act = spec.action_shape
    fields = {
        "obs": Field(tuple(spec.obs_shape), obs_dtype),
        "first": Field((), torch.bool),
        "truncated": Field((), torch.bool),
        "final_value": Field((), torch.float32),
        "reward": Field((), torch.float32),
        "last_action": Field(act, torch.int64),
        "action": Field(act, torch.int64),
        "logits": Field((num_logits,), torch.float32),
        "task": Field((), torch.int64),
        "ep_end": Field((), torch.bool),
        "ep_task": Field((), torch.int64),
        "ep_return": Field((), torch.float32),
        "ep_length": Field((), torch.int64),
    }
    for i, s in enumerate(core_state):
        fields[f"core_state.{i}"] = Field(tuple(s.shape[1:]), s.dtype, per_step=False)
    for name, f in (extra or {}).items():
        if name in fields:
            raise ValueError(f"actor hook field {name!r} clashes with a built-in unroll field")
        fields[name] = f
    return fields


def allocate(fields: dict[str, Field], unroll_length: int, num_envs: int,
             num_slots: int | None = None, shared: bool = False) -> dict[str, torch.Tensor]:
    """Zeroed storage for one unroll (``num_slots`` None) or ``num_slots`` of them."""
    out = {}
    for name, f in fields.items():
        shape = ((unroll_length + 1, num_envs) if f.per_step else (num_envs,)) + tuple(f.shape)
        if num_slots is not None:
            shape = (num_slots,) + shape
        t = torch.zeros(shape, dtype=f.dtype)
        out[name] = t.share_memory_() if shared else t
    return out


def gather(unrolls, fields: dict[str, Field], idx: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """Concatenate unrolls along the batch axis: per-step fields -> [T+1, B, ...], others -> [B, ...].

    ``unrolls``: a list of unrolls (dicts of tensors, or of numpy arrays as Ray's object store hands
    them over, joined here without another copy), or, with ``idx``, slots (:func:`allocate` with
    ``num_slots``) and the indices of the slots to take, in order."""
    out = {}
    for k, f in fields.items():
        parts = [unrolls[k][i] for i in idx] if idx is not None else [u[k] for u in unrolls]
        dim = 1 if f.per_step else 0
        if isinstance(parts[0], np.ndarray):
            out[k] = torch.from_numpy(np.concatenate(parts, axis=dim))
        else:
            out[k] = torch.cat(parts, dim=dim)
    return out


def core_state_of(unroll: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    n = sum(1 for k in unroll if k.startswith("core_state."))
    return tuple(unroll[f"core_state.{i}"] for i in range(n))


def net_inputs(obs, last_action, reward, first):
    """The network's inputs for entries: the last reward is zeroed at episode starts."""
    return obs, last_action, torch.where(first, torch.zeros_like(reward), reward), first


def step_full_of(env):
    """``env.step_full`` (see :mod:`kickstart.envs.batched`), or, for an env that has only the
    4-tuple ``step`` (a test double), a function that reads every episode end as a termination."""
    step_full = getattr(env, "step_full", None)
    if step_full is not None:
        return step_full

    def step(actions):
        obs, reward, done, episodes = env.step(actions)
        done = np.asarray(done, dtype=bool)
        return StepResult(obs, reward, done, np.zeros_like(done), episodes, None)
    return step


class Actor:
    """Steps a batched env with batched inference and fills unrolls, one after another.

    The same object runs in an actor process (local backend), in the learner's process (serial
    backend) or in a Ray actor: it only fills the tensors it is given.
    """

    def __init__(self, env, net: torch.nn.Module, unroll_length: int, seed: int,
                 hooks: Sequence[ActorHook] = ()):
        self.env = env
        self._step_env = step_full_of(env)
        self.net = net
        self.T = unroll_length
        self.hooks = list(hooks)
        self._step_hooks = [h for h in self.hooks if not callable(getattr(h, "finish", None))]
        self._unroll_hooks = [h for h in self.hooks if callable(getattr(h, "finish", None))]
        spec: EnvSpec = env.spec
        self.dist = make_dist(spec.action_nvec, spec.multi_discrete)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.task = torch.as_tensor(np.asarray(env.task_ids), dtype=torch.int64)
        self._last: dict[str, torch.Tensor] | None = None   # entry T of the previous unroll
        self._state_before_last = None                       # core state before that entry
        self._state = None                                   # core state after it
        self._ep_return = np.zeros(env.num_envs, np.float64)

    def set_hparams(self, hparams: dict[str, float]) -> None:
        for hook in self.hooks:
            hook.set_hparams(hparams)

    def _infer(self, buf, t, state):
        """Act at entry ``t`` (its inputs already written) from core ``state``: write the behaviour
        logits, the action and what the network recorded (see the module docstring) at ``t``, and
        return the core state after it."""
        with torch.no_grad():
            o, la, r, f = net_inputs(buf["obs"][t][None], buf["last_action"][t][None], buf["reward"][t][None],
                                     buf["first"][t][None])
            out, new_state = self.net(o, la, r, f, state, self.task[None], generator=self.generator)
        logits = out.policy_logits[0]
        buf["logits"][t].copy_(logits)
        buf["action"][t].copy_(self.dist.sample(logits, self.generator))
        for name, value in out.extras.get("record", {}).items():
            if name not in buf:
                raise KeyError(f"the network records {name!r} but the unroll has no such field; the method "
                               f"must declare it in MethodSetup.extra_fields")
            buf[name][t].copy_(value[0])
        return new_state

    def _final_values(self, final_obs, idx, last_action, last_reward, state) -> torch.Tensor:
        """V(x') of the final observations ``final_obs`` ``[k, *obs]`` of the truncated envs ``idx``
        ``[k]``: the behaviour network's value with the inputs it would have had at x' without the
        reset (``last_action``, ``last_reward`` ``[N, ...]`` of the step that reached x', not first),
        from ``state``, the core state carried out of the step's start (see the module docstring).
        Called with neither ``generator`` nor ``replay``: a network that samples while acting draws
        nothing here (its value does not depend on what it samples)."""
        with torch.no_grad():
            sub_state = tuple(s[idx] for s in state)
            first = torch.zeros((1, len(idx)), dtype=torch.bool)
            out, _ = self.net(final_obs[None], last_action[idx][None], last_reward[idx][None], first,
                              sub_state, self.task[idx][None])
        return out.baseline[0]

    def _hooks(self, buf, t):
        """The per-entry hooks (those without ``finish``) at entry ``t``."""
        if not self._step_hooks:
            return
        o, la, r, f = net_inputs(buf["obs"][t], buf["last_action"][t], buf["reward"][t], buf["first"][t])
        for hook in self._step_hooks:
            for name, value in hook(o, f, self.task, la, r).items():
                buf[name][t].copy_(value)

    def _start(self, buf):
        n = self.env.num_envs
        obs = torch.from_numpy(self.env.reset())
        buf["obs"][0].copy_(obs)
        buf["first"][0].fill_(True)
        buf["truncated"][0].fill_(False)
        buf["final_value"][0].zero_()
        buf["reward"][0].zero_()
        buf["last_action"][0].zero_()
        for hook in self.hooks:
            hook.reset(n)
        self._state_before_last = self.net.initial_state(n)
        self._state = self._infer(buf, 0, self._state_before_last)
        self._hooks(buf, 0)

    def collect(self, buf: dict[str, torch.Tensor]) -> None:
        """Fill ``buf`` (one unroll, see :func:`allocate`) with the next ``T`` steps."""
        for k in ("ep_end", "ep_task", "ep_return", "ep_length"):
            buf[k].zero_()
        buf["task"].copy_(self.task.expand_as(buf["task"]))
        start = 0 if self._last is None else 1     # the first new entry (see the module docstring)
        if self._last is None:
            self._start(buf)
        else:
            for k, v in self._last.items():
                buf[k][0].copy_(v)
        for i, s in enumerate(self._state_before_last):
            buf[f"core_state.{i}"].copy_(s)

        state = self._state
        action = buf["action"][0]
        for t in range(1, self.T + 1):
            step = self._step_env(action.numpy())
            first = torch.from_numpy(np.asarray(step.done, dtype=bool))
            truncated = np.asarray(step.truncated, dtype=bool)
            buf["obs"][t].copy_(torch.from_numpy(step.obs))
            buf["reward"][t].copy_(torch.from_numpy(np.asarray(step.reward, dtype=np.float32)))
            buf["first"][t].copy_(first)
            buf["truncated"][t].copy_(torch.from_numpy(truncated))
            buf["final_value"][t].zero_()
            if truncated.any():
                idx = torch.from_numpy(np.flatnonzero(truncated))
                buf["final_value"][t, idx] = self._final_values(
                    torch.from_numpy(step.final_obs[idx.numpy()]), idx, action, buf["reward"][t], state)
            last_action = buf["last_action"][t]
            last_action.copy_(action)
            last_action.masked_fill_(first.view(first.shape + (1,) * (last_action.dim() - 1)), 0)
            for k, ep in enumerate(step.episodes):
                buf["ep_end"][t, k] = True
                buf["ep_task"][t, k] = ep.task_id
                buf["ep_return"][t, k] = ep.ret
                buf["ep_length"][t, k] = ep.length
            state_before = state
            state = self._infer(buf, t, state)
            self._hooks(buf, t)
            action = buf["action"][t]

        self._state_before_last, self._state = state_before, state
        for hook in self._unroll_hooks:
            hook.finish(buf, start)
        self._last = {k: buf[k][self.T].clone() for k, f in buf.items()
                      if buf[k].dim() >= 2 and not k.startswith("core_state.") and not k.startswith("ep_")}

    def close(self) -> None:
        self.env.close()
