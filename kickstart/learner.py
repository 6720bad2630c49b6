"""The IMPALA learner: V-trace actor-critic updates on batches of unrolls (one per batch by default).

Methods (kickstarting, Mix & Match) do not fork this class: they pass extra :class:`LossTerm`
objects, which see the batch and the network's outputs and return a weighted loss and metrics.
Frozen networks whose outputs a term reads (e.g. a teacher's logits computed here rather than in the
actors) are not terms: the trainer's :class:`~kickstart.runtime.placement.Placement` completes the
batch with them on this learner's device before the terms run.

Loss reduction: with ``learner.loss_reduction=sum`` (the default, as IMPALA and TorchBeast) every
term is summed over time and batch, so the effective learning rate grows with ``T x B``; the
papers' RMSProp epsilon of 0.1 and their learning rates assume this. ``mean`` averages instead.
All terms use the same reduction, so a kickstarting weight lambda means the same in both.

The network sees the whole batch as ``replay``: a network that samples values while acting and
records them in the unroll (``extras["record"]``, e.g. Mix & Match's sampled selector; see
:mod:`kickstart.runtime.unroll`) reuses the recorded values, so that its policy logits are those of
the policy that acted. Other networks ignore it.
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import torch

from kickstart.config import LearnerConfig
from kickstart.distributions import ActionDist, make_dist
from kickstart.errors import ConfigError
from kickstart.losses import impala, vtrace
from kickstart.nets.popart import PopArtHead
from kickstart.runtime.placement import Placement
from kickstart.runtime.unroll import core_state_of, net_inputs


@dataclass
class LossContext:
    """What a loss term may read. Time-major; ``out`` covers all ``T + 1`` entries."""

    batch: dict[str, torch.Tensor]
    out: Any                      # AgentOutput over [T+1, B]
    dist: ActionDist
    hparams: dict[str, float]
    reduction: str
    frames: int                   # env frames consumed before this update


class LossTerm:
    """An extra loss term added to the IMPALA loss (kickstarting, Mix & Match, ...).

    Subclass it and implement ``__call__``; every other hook is a no-op here, so the learner calls
    each of them on every term without asking which it has.
    """

    name: str = ""
    hparams: Mapping[str, float] = MappingProxyType({})
    """The mutable hyperparameters it declares, with their initial values (set your own dict)."""

    def __call__(self, ctx: LossContext) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(ctx) -> (loss, metrics)")

    def actor_hparams(self, hparams: dict[str, float], frames: int) -> dict[str, float]:
        """Values the actors need (published with the parameters), e.g. a teacher's current weight."""
        return {}

    def prepare(self, net, hparams: dict[str, float], frames: int) -> None:
        """Before each forward pass of the learner (and before parameters are first published):
        set what the network reads from the hyperparameters (e.g. Mix & Match's alpha buffer)."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("learner.device=cuda but no CUDA device is available; use learner.device=auto or cpu")
    return torch.device(name)


def make_optimizer(params, cfg: LearnerConfig) -> torch.optim.Optimizer:
    """The configured optimiser in its fastest form for the parameters' device: PyTorch picks its
    multi-tensor kernels only for CUDA by default, and on the CPU its per-tensor Adam costs 3-6x the
    fused one (a few ms an update on the Atari nets, where the learner makes 16 updates a batch)."""
    params = list(params)
    fast = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    if cfg.optimizer == "rmsprop":    # no fused RMSprop in PyTorch: its multi-tensor form
        return torch.optim.RMSprop(params, lr=cfg.learning_rate, alpha=cfg.rmsprop_decay,
                                   eps=cfg.rmsprop_eps, momentum=cfg.rmsprop_momentum, foreach=fast or None)
    return torch.optim.Adam(params, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                            eps=cfg.adam_eps, fused=fast or None)


def vtrace_targets(batch: dict[str, torch.Tensor], log_rhos: torch.Tensor, values: torch.Tensor,
                   cfg: LearnerConfig) -> vtrace.VTraceReturns:
    """V-trace on a batch of unrolls: the transitions realigned (see kickstart/runtime/unroll.py).

    ``log_rhos`` ``[T, B]`` of the actions at entries ``0..T-1``; ``values`` ``[T+1, B]`` V(x_t) at
    every entry, the last one bootstrapping. The transition from x_t has reward ``reward[t+1]``
    (clipped to ``cfg.reward_clip``) and ends the episode iff ``first[t+1]``: with discount 0 where
    it terminates, and where it is truncated (``truncated[t+1]``) with ``cfg.discount`` and the
    actor's ``final_value[t+1]`` to bootstrap from, the trace cut there. A batch without the
    ``truncated`` field has terminations only.
    """
    first = batch["first"][1:]
    truncated = batch["truncated"][1:] if "truncated" in batch else None
    ended = first if truncated is None else first & ~truncated      # terminated
    discounts = (~ended).to(values.dtype) * cfg.discount
    rewards = batch["reward"][1:]
    if cfg.reward_clip > 0:
        rewards = rewards.clamp(-cfg.reward_clip, cfg.reward_clip)
    final_values = None if truncated is None else batch["final_value"][1:].to(values.dtype)
    return vtrace.from_importance_weights(
        log_rhos, discounts, rewards, values[:-1], values[-1],
        clip_rho_threshold=cfg.clip_rho_threshold, clip_pg_rho_threshold=cfg.clip_pg_rho_threshold,
        truncated=truncated, final_values=final_values, lambda_=cfg.vtrace_lambda)


def explained_variance(values: torch.Tensor, targets: torch.Tensor) -> float:
    """``1 - Var(targets - values) / Var(targets)`` over the batch: 1 for a critic that predicts its
    targets, 0 for one no better than their mean (a state-blind critic: then the advantages carry no
    information about the state and the policy cannot learn), negative when worse. NaN when the
    targets do not vary."""
    var = targets.var(unbiased=False)
    if var.item() == 0.0:
        return float("nan")
    return (1.0 - (targets - values).var(unbiased=False) / var).item()


class Learner:
    """Owns the network being trained, its optimiser and the mutable hyperparameters."""

    def __init__(self, net: torch.nn.Module, cfg: LearnerConfig, total_frames: int,
                 terms: Sequence[LossTerm] = (), device: torch.device | None = None,
                 placement: Placement | None = None):
        self.cfg = cfg
        self.device = device or pick_device(cfg.device)
        if self.device.type == "cuda":
            # fp32 means fp32: cuDNN's default TF32 convolutions would move a CUDA learner's
            # log-probabilities ~1e-3 away from the CPU actors'. The fast path on a GPU is bf16
            # (net.precision=auto picks it where the GPU has it).
            torch.backends.cudnn.allow_tf32 = False
        self.net = net.to(self.device)
        self.dist = make_dist(net.spec.action_nvec, net.spec.multi_discrete)
        self.terms = list(terms)
        self.placement = placement if placement is not None else Placement()
        """Frozen networks this learner runs on its batches before the loss terms (the trainer's;
        see :mod:`kickstart.runtime.placement`)."""
        heads = [m for m in self.net.modules() if isinstance(m, PopArtHead)]
        if len(heads) > 1:
            raise ValueError(f"the network has {len(heads)} PopArt value heads; the learner normalises one")
        self.popart: PopArtHead | None = heads[0] if heads else None
        """The network's PopArt value head (``net.popart``), whose statistics this learner moves after
        each update; None: plain values."""
        self._popart_targets: tuple[torch.Tensor, torch.Tensor] | None = None
        self._value_pairs: tuple[torch.Tensor, torch.Tensor] | None = None   # last loss(): values, V-trace targets
        self.optimizer = make_optimizer(self.net.parameters(), cfg)
        self.total_frames = total_frames
        self.hparams: dict[str, float] = {"learning_rate": cfg.learning_rate, "entropy_cost": cfg.entropy_cost}
        for term in self.terms:
            for k, v in term.hparams.items():
                if k in self.hparams:
                    raise ValueError(f"loss term {term.name!r} declares hyperparameter {k!r} twice")
                self.hparams[k] = float(v)
        self.steps = 0
        self.lock = threading.RLock()
        """Held while an update is applied: the optimiser step, ``steps`` and the caller's counters
        (``step``'s ``commit``). Forward and backward passes change neither parameters nor optimiser
        state, so a state read under this lock is consistent however long the update takes
        (``Trainer.save`` snapshots under it; see :mod:`kickstart.preemption`)."""

    # -- hyperparameters (PBT sets them) ---------------------------------------------------------
    def set_hparams(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            if k not in self.hparams:
                raise ConfigError(f"unknown hyperparameter {k!r}; mutable ones: {', '.join(sorted(self.hparams))}")
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"hyperparameter {k}={v!r} must be a finite number >= 0")
            self.hparams[k] = float(v)

    def published_hparams(self, frames: int) -> dict[str, float]:
        """Hyperparameters sent to the actors with the parameters: the mutable ones plus what the
        loss terms derive from them (e.g. each teacher's scheduled weight)."""
        out = dict(self.hparams)
        for term in self.terms:
            out.update(term.actor_hparams(self.hparams, frames))
        out.update(self.placement.published())
        return out

    def prepare(self, frames: int) -> None:
        """Let the loss terms set what the network reads from the hyperparameters (see LossTerm)."""
        for term in self.terms:
            term.prepare(self.net, self.hparams, frames)

    def learning_rate(self, frames: int) -> float:
        lr = self.hparams["learning_rate"]
        if self.cfg.lr_schedule == "linear":
            lr *= max(0.0, 1.0 - frames / self.total_frames)
        return lr

    # -- the update ------------------------------------------------------------------------------
    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.device.type == "cpu":
            return batch
        return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in batch.items()}

    def loss(self, batch: dict[str, torch.Tensor], frames: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The total loss on a batch of unrolls ([T+1, B] fields) and its metrics."""
        cfg, red = self.cfg, self.cfg.loss_reduction
        self.prepare(frames)
        # Outputs of frozen networks the actors left NaN (e.g. split teachers' logits), on this device.
        batch = self.placement.fill(batch, self.published_hparams(frames))
        obs, last_action, last_reward, first = net_inputs(batch["obs"], batch["last_action"],
                                                          batch["reward"], batch["first"])
        # replay: recorded values (e.g. a sampled M&M selector) are reused, not drawn again.
        out, _ = self.net(obs, last_action, last_reward, first, core_state_of(batch), batch["task"], replay=batch)
        logits, values = out.policy_logits, out.baseline

        # Realignment (see kickstart/runtime/unroll.py): action a_t and behaviour logits at entries
        # 0..T-1; the transition from x_t has reward reward[t+1] and ends the episode iff first[t+1]
        # (terminated, or truncated and bootstrapped: vtrace_targets); the value of x_T bootstraps.
        actions = batch["action"][:-1]
        target_logp = self.dist.log_prob(logits[:-1], actions)
        behaviour_logp = self.dist.log_prob(batch["logits"][:-1], actions)
        log_rhos = target_logp.detach() - behaviour_logp
        vt = vtrace_targets(batch, log_rhos, values.detach(), cfg)

        self._value_pairs = (values[:-1].detach(), vt.vs)
        entropy = self.dist.entropy(logits[:-1])
        # The clipped surrogate's ratio carries the importance weight; IMPALA's advantage holds it.
        advantages = vt.advantages if cfg.pg_clip > 0 else vt.pg_advantages
        if self.popart is None:
            baseline = cfg.baseline_cost * impala.baseline_loss(values[:-1], vt.vs, reduction=red)
        else:
            # PopArt (Hessel et al. 2019): V-trace on unnormalised values, the value head trained on
            # each task's normalised targets, the advantage divided by the task's scale; the
            # statistics move after the optimiser step (step()), preserving the outputs.
            task = batch["task"][:-1]
            advantages = advantages / self.popart.sigma()[task]
            baseline = cfg.baseline_cost * impala.baseline_loss(
                out.extras["baseline_normalised"][:-1], self.popart.normalise(vt.vs, task), reduction=red)
            self._popart_targets = (vt.vs, task)
        if cfg.advantage_norm:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        if cfg.pg_clip > 0:
            pg = impala.clipped_surrogate_loss(target_logp, behaviour_logp, advantages, cfg.pg_clip, reduction=red)
        else:
            pg = impala.policy_gradient_loss(target_logp, advantages, reduction=red)
        ent = self.hparams["entropy_cost"] * impala.entropy_loss(entropy, reduction=red)
        # learner.rl_loss=false: pure distillation, only the method terms train the network.
        total = pg + baseline + ent if cfg.rl_loss else logits.new_zeros(())
        with torch.no_grad():
            rhos = log_rhos.exp()
            metrics = {
                "loss/policy": pg.item(), "loss/baseline": baseline.item(), "loss/entropy": ent.item(),
                "policy/entropy": entropy.mean().item(),
                "vtrace/rho_mean": rhos.mean().item(),
                "vtrace/rho_clipped_frac": (rhos > cfg.clip_rho_threshold).float().mean().item(),
                "value/mean": values[:-1].mean().item(),
                "value/target_mean": vt.vs.mean().item(),
            }
            if cfg.pg_clip > 0:
                metrics["policy/ratio_clipped_frac"] = ((rhos - 1).abs() > cfg.pg_clip).float().mean().item()
            if self.popart is not None:
                sig = self.popart.sigma()
                metrics.update({"popart/sigma_min": sig.min().item(), "popart/sigma_max": sig.max().item()})
        ctx = LossContext(batch=batch, out=out, dist=self.dist, hparams=self.hparams, reduction=red, frames=frames)
        for term in self.terms:
            term_loss, term_metrics = term(ctx)
            total = total + term_loss
            metrics.update(term_metrics)
        metrics["loss/total"] = total.item()
        metrics.update(self.placement.metrics())
        return total, metrics

    def step(self, batch: dict[str, torch.Tensor], frames: int,
             commit: Callable[[], None] | None = None) -> dict[str, float]:
        """The update on ``batch``: ``learner.epochs`` passes of ``learner.minibatches`` optimiser
        steps each (one step by default); ``frames`` is the env frame count before it. ``commit``
        (e.g. advancing the caller's frame counter) runs under :attr:`lock` with the last optimiser
        step, so that no state read under the lock sees one without the other. The metrics are the
        means over the minibatches that report them; ``value/explained_variance`` is the whole batch's."""
        cfg = self.cfg
        batch = self.to_device(batch)
        lr = self.learning_rate(frames)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # Frozen networks' outputs (e.g. split teachers' logits) once per batch, not once per pass.
        batch = self.placement.fill(batch, self.published_hparams(frames))
        parts = cfg.epochs * cfg.minibatches
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        first_pass: list[tuple[torch.Tensor, torch.Tensor]] = []
        stepped = 0
        # Several optimiser steps on one batch hold the lock throughout: a checkpoint never holds
        # parameters trained on part of a batch whose frames are not yet counted.
        with self.lock if parts > 1 else contextlib.nullcontext():
            for i, (epoch, part) in enumerate(self._passes(batch)):
                total, metrics = self.loss(part, frames)
                if epoch == 0:
                    first_pass.append(self._value_pairs)
                # A loss without a graph holds for the whole batch (pure distillation, learner.rl_loss
                # =false, once every teacher's lambda is 0): the other parts need not be computed.
                last = i == parts - 1 or not total.requires_grad
                took = self._backward(total, metrics, lr)
                with self.lock:          # the one window where the state is not consistent
                    targets, self._popart_targets = self._popart_targets, None
                    if took:
                        self.optimizer.step()
                        # Each return moves PopArt's statistics once, in the first pass.
                        if self.popart is not None and targets is not None and epoch == 0:
                            self.popart.update(*targets)
                        stepped += 1
                    if last:
                        if stepped:
                            self.steps += 1
                        if commit is not None:
                            commit()
                # Per key: a method's term reports some metrics only where a minibatch has the steps
                # they describe (e.g. a teacher's tasks), and a missing one is not a zero.
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v
                    counts[k] = counts.get(k, 0) + 1
                if last:
                    break
        metrics = {k: v / counts[k] for k, v in sums.items()}
        # Over the whole batch, each value as the first pass saw it (before its own minibatch's step),
        # as PPO implementations report it: a mean of per-minibatch ratios would not be the batch's.
        values, targets = (torch.cat(x, dim=1) for x in zip(*first_pass))
        metrics["value/explained_variance"] = explained_variance(values, targets)
        metrics["learner/lr"] = lr
        for k, v in self.hparams.items():
            metrics[f"hparams/{k}"] = v
        return metrics

    def _backward(self, total: torch.Tensor, metrics: dict[str, float], lr: float) -> bool:
        """Gradients of ``total`` (clipped), their norm into ``metrics``; False when there is nothing to
        step on: no graph, or a gradient of exactly zero (a minibatch without any step a pure
        distillation term covers), where Adam's momentum would still move the weights."""
        self.optimizer.zero_grad(set_to_none=True)
        if not total.requires_grad:
            metrics["grad/norm"] = 0.0
            return False
        total.backward()
        if self.cfg.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.max_grad_norm)
        else:
            norm = torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in self.net.parameters()
                                  if p.grad is not None))
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite loss {total.item()} at learner step {self.steps}; "
                                     f"lower learner.learning_rate (now {lr:g}) or check rewards")
        metrics["grad/norm"] = float(norm)
        return metrics["grad/norm"] > 0

    def _passes(self, batch: dict[str, torch.Tensor]):
        """``(epoch, minibatch)`` for each optimiser step on ``batch``: every pass splits its unrolls
        anew into ``learner.minibatches`` random groups of whole unrolls (each keeps its core
        state). Episode statistics (``ep_*``) are not per unroll and are left out of the groups."""
        k = self.cfg.minibatches
        for epoch in range(self.cfg.epochs):
            if k == 1:
                yield epoch, batch
                continue
            task = batch["task"]
            order = torch.randperm(task.shape[1], device=task.device)
            for cols in order.tensor_split(k):
                yield epoch, {key: v.index_select(0 if key.startswith("core_state.") else 1, cols)
                              for key, v in batch.items() if not key.startswith("ep_")}

    # -- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"net": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "hparams": dict(self.hparams), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        # A saved param group brings back its kernel choice too: keep this machine's (make_optimizer),
        # so that a checkpoint from a per-tensor optimiser (or another device) does not slow this one.
        kernels = {k: self.optimizer.defaults[k] for k in ("fused", "foreach") if k in self.optimizer.defaults}
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:
            group.update(kernels)
            if group.get("fused"):          # the fused kernels keep the step count beside the parameter
                for p in group["params"]:
                    st = self.optimizer.state.get(p, {})
                    if torch.is_tensor(st.get("step")) and st["step"].device != p.device:
                        st["step"] = st["step"].to(device=p.device, dtype=torch.float32)
        self.hparams.update(state["hparams"])
        self.steps = int(state["steps"])
