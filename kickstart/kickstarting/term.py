"""The kickstarting loss term of the learner: the teachers' weights, the distillation loss, metrics.

The weight of teacher i after ``frames`` env frames is ``lambda_i = schedule(frames) * alpha * rho_i``
(Schmitt et al. 2018, Sec. 4.2: ``lambda^i_k = alpha_k rho^i_k``, so that PBT can make all weights
stronger or weaker at once). ``alpha`` (``kickstart/alpha``) and each ``rho_i``
(``kickstart/rho/<teacher>``) are mutable hyperparameters: shared-lambda PBT evolves ``alpha``,
per-teacher PBT evolves ``alpha`` and the ``rho_i``, fixed schedules leave both at their initial
values. The learner publishes ``kickstart/lambda/<teacher>`` to the actors so that a teacher whose
weight is 0 is not run.

Every teacher's logits arrive with the batch as ``teacher_logits/<name>``: written by the actors'
hooks, or, for teachers placed in the learner or split between both (``kickstart.placement``),
completed by the trainer's :class:`~kickstart.runtime.placement.Placement` on the learner's device
before this term runs. Why the term does not run teachers itself: where a teacher runs, and the
balance between actors and learner, is the runtime's concern and the same for any frozen network;
this term only weighs what it is given.
"""

from __future__ import annotations

import torch

from kickstart.kickstarting.config import KickstartConfig
from kickstart.kickstarting.names import ALPHA, field_name, lambda_name, rho_name
from kickstart.kickstarting.schedules import schedule_value
from kickstart.learner import LossContext, LossTerm
from kickstart.losses.kickstart import distillation_loss, masked_means, per_step_stats

__all__ = ["KickstartTerm"]


class KickstartTerm(LossTerm):
    """``sum_i reduce(lambda_i * H(pi_Ti || pi_S))`` over the steps of the tasks teacher i covers."""

    name = "kickstart"

    def __init__(self, cfg: KickstartConfig, covered_tasks: dict[str, list[int]], num_tasks: int,
                 filled: set[str] | frozenset[str] = frozenset()):
        """
        Args:
          cfg: the schedule, ``alpha`` and each teacher's ``rho``.
          covered_tasks: per teacher (in ``cfg.teachers``), the task ids it covers.
          num_tasks: tasks of the run.
          filled: the teachers whose logits the learner completes before this term runs (placed in
            the learner, or split; :func:`kickstart.kickstarting.plan.learner_inference`): every
            step they cover must then hold logits, and a batch that lacks them (a trainer not given
            the run's ``MethodSetup.split_inference``) is an error rather than a silently smaller
            loss. The others' logits are NaN where the actor did not run the teacher.
        """
        self.cfg = cfg
        self.teachers = list(cfg.teachers)
        self.filled = frozenset(filled)
        unknown = self.filled - set(self.teachers)
        if unknown:
            raise ValueError(f"filled teachers {sorted(unknown)} are not teachers of the config")
        self.hparams = {ALPHA: float(cfg.alpha)}
        for t in self.teachers:
            self.hparams[rho_name(t)] = float(cfg.teachers[t].rho)
        self.covers = {}
        for t in self.teachers:
            mask = torch.zeros(num_tasks, dtype=torch.bool)
            mask[list(covered_tasks[t])] = True
            self.covers[t] = mask
        # No task covered by two teachers: the terms can share one pass (see __call__).
        self.disjoint = int(sum(m.long() for m in self.covers.values()).max()) <= 1 if self.covers else True

    def weights(self, hparams: dict[str, float], frames: int) -> dict[str, float]:
        """Each teacher's current lambda_i = schedule(frames) * alpha * rho_i."""
        lam = schedule_value(self.cfg, frames) * hparams[ALPHA]
        return {t: lam * hparams[rho_name(t)] for t in self.teachers}

    def actor_hparams(self, hparams: dict[str, float], frames: int) -> dict[str, float]:
        return {lambda_name(t): w for t, w in self.weights(hparams, frames).items()}

    def _logits(self, batch: dict[str, torch.Tensor], teacher: str) -> torch.Tensor:
        key = field_name(teacher)
        if key not in batch:
            where = ("the learner computes them (kickstart.placement): give the trainer the method setup's "
                     "split_inference") if teacher in self.filled else "the actors' hooks write them"
            raise KeyError(f"the batch has no {key!r}; {where}")
        return batch[key][:-1]

    def __call__(self, ctx: LossContext) -> tuple[torch.Tensor, dict[str, float]]:
        student = ctx.out.policy_logits[:-1]            # entries 0..T-1, as the IMPALA terms
        task = ctx.batch["task"][:-1]
        metrics: dict[str, float] = {}
        masks: dict[str, torch.Tensor] = {}
        missing: dict[str, torch.Tensor] = {}
        active = []
        for t, lam in self.weights(ctx.hparams, ctx.frames).items():
            metrics[f"kickstart/{t}/lambda"] = lam
            if lam == 0.0:
                continue                                # no cost: nothing computed
            cover = self.covers[t].to(task.device)[task]
            teacher = self._logits(ctx.batch, t)
            # NaN logits: the actor did not run the teacher there (see kickstarting/hooks.py).
            absent = torch.isnan(teacher[..., 0])
            masks[t] = cover & ~absent
            if t in self.filled:                        # counted with the stats: no extra device sync
                missing[t] = (cover & absent).sum()
            active.append((t, lam, teacher))
        if not active:
            metrics["loss/kickstart"] = 0.0
            return student.new_zeros(()), metrics
        if self.disjoint:
            # Teachers of disjoint tasks (task experts): one target and one weight per step, so one
            # pass over the batch whatever the number of teachers.
            target = torch.zeros_like(student)
            weight = torch.zeros_like(task, dtype=student.dtype)
            for t, lam, teacher in active:
                target = torch.where(masks[t].unsqueeze(-1), teacher, target)
                weight = weight.masked_fill(masks[t], lam)
            total = distillation_loss(target, student, ctx.dist, weight, reduction=ctx.reduction)
            per_step = per_step_stats(target, student, ctx.dist, weight > 0)
            stats = {t: masked_means(per_step, masks[t]) for t, _, _ in active}
        else:
            total = student.new_zeros(())
            stats = {}
            for t, lam, teacher in active:
                total = total + distillation_loss(teacher, student, ctx.dist, lam * masks[t].float(),
                                                  reduction=ctx.reduction)
                stats[t] = masked_means(per_step_stats(teacher, student, ctx.dist, masks[t]), masks[t])
        none = student.new_zeros(())
        values = torch.stack([torch.stack(v + [missing.get(t, none).to(v[0].dtype)])
                              for t, v in stats.items()]).tolist()          # one device sync
        lost = [t for (t, _, _), row in zip(active, values) if row[4]]
        if lost:
            raise RuntimeError(f"teacher(s) {', '.join(lost)}: covered steps without logits in the batch; the learner "
                               f"computes them where the actors did not: give the trainer the method setup's "
                               f"split_inference")
        for (t, _, _), (ce, kl, agree, count, _) in zip(active, values):
            if count:
                metrics[f"kickstart/{t}/cross_entropy"] = ce
                metrics[f"kickstart/{t}/kl"] = kl
                metrics[f"kickstart/{t}/agreement"] = agree
            metrics[f"kickstart/{t}/coverage"] = count / masks[t].numel()
        metrics["loss/kickstart"] = float(total.detach())
        return total, metrics

