"""The kickstarting loss term of the learner.

The weight of teacher i after ``frames`` env frames is ``lambda_i = schedule(frames) * alpha * rho_i``
(Schmitt et al. 2018, Sec. 4.2: ``lambda^i_k = alpha_k rho^i_k``, so that PBT can make all weights
stronger or weaker at once). ``alpha`` (``kickstart/alpha``) and each ``rho_i``
(``kickstart/rho/<teacher>``) are mutable hyperparameters: shared-lambda PBT evolves ``alpha``,
per-teacher PBT evolves ``alpha`` and the ``rho_i``, fixed schedules leave both at their initial
values. The learner publishes ``kickstart/lambda/<teacher>`` to the actors so that a teacher whose
weight is 0 is not run.
"""

from __future__ import annotations

import torch

from kickstart.config import KickstartConfig
from kickstart.kickstarting.hooks import field_name, lambda_name
from kickstart.kickstarting.schedules import schedule_value
from kickstart.learner import LossContext
from kickstart.losses.kickstart import distillation_loss, masked_means, per_step_stats

ALPHA = "kickstart/alpha"


def rho_name(teacher: str) -> str:
    return f"kickstart/rho/{teacher}"


class KickstartTerm:
    """``sum_i reduce(lambda_i * H(pi_Ti || pi_S))`` over the steps of the tasks teacher i covers."""

    name = "kickstart"

    def __init__(self, cfg: KickstartConfig, covered_tasks: dict[str, list[int]], num_tasks: int):
        """
        Args:
          cfg: the schedule, ``alpha`` and each teacher's ``rho``.
          covered_tasks: per teacher (in ``cfg.teachers``), the task ids it covers.
          num_tasks: tasks of the run.
        """
        self.cfg = cfg
        self.teachers = list(cfg.teachers)
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

    def __call__(self, ctx: LossContext) -> tuple[torch.Tensor, dict[str, float]]:
        student = ctx.out.policy_logits[:-1]            # entries 0..T-1, as the IMPALA terms
        task = ctx.batch["task"][:-1]
        metrics: dict[str, float] = {}
        masks: dict[str, torch.Tensor] = {}
        active = []
        for t, lam in self.weights(ctx.hparams, ctx.frames).items():
            metrics[f"kickstart/{t}/lambda"] = lam
            if lam == 0.0:
                continue                                # no cost: nothing computed
            teacher = ctx.batch[field_name(t)][:-1]
            # NaN logits: the actor did not run the teacher there (see kickstarting/hooks.py).
            masks[t] = self.covers[t].to(task.device)[task] & ~torch.isnan(teacher[..., 0])
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
        values = torch.stack([torch.stack(v) for v in stats.values()]).tolist()   # one device sync
        for (t, _, _), (ce, kl, agree, count) in zip(active, values):
            if count:
                metrics[f"kickstart/{t}/cross_entropy"] = ce
                metrics[f"kickstart/{t}/kl"] = kl
                metrics[f"kickstart/{t}/agreement"] = agree
            metrics[f"kickstart/{t}/coverage"] = count / masks[t].numel()
        metrics["loss/kickstart"] = float(total.detach())
        return total, metrics

