"""The kickstarting loss term of the learner.

The weight of teacher i after ``frames`` env frames is ``lambda_i = schedule(frames) * alpha * rho_i``
(Schmitt et al. 2018, Sec. 4.2: ``lambda^i_k = alpha_k rho^i_k``, so that PBT can make all weights
stronger or weaker at once). ``alpha`` (``kickstart/alpha``) and each ``rho_i``
(``kickstart/rho/<teacher>``) are mutable hyperparameters: shared-lambda PBT evolves ``alpha``,
per-teacher PBT evolves ``alpha`` and the ``rho_i``, fixed schedules leave both at their initial
values. The learner publishes ``kickstart/lambda/<teacher>`` to the actors so that a teacher whose
weight is 0 is not run.

Teachers placed in the learner (``kickstart.placement``) are held by this term and run here, on the
batch's covered columns and on the learner's device, before the loss; the others' logits arrive
with the batch (``teacher_logits/<name>``, written by the actors' hooks). Split teachers (``auto``
for feed-forward module teachers) are both: the actors run them on a share of the columns
(``kickstart/actor_share``, published with the parameters) and this term on the rest, where the
batch holds NaN. :meth:`KickstartTerm.balance` moves the share every few seconds towards whichever
side has slack, from the learner's idle fraction (``perf/learner_idle``). A teacher whose weight
is 0 is skipped everywhere.
"""

from __future__ import annotations

import torch

from kickstart.config import KickstartConfig
from kickstart.kickstarting.hooks import ACTOR_SHARE, TeacherHook, field_name, lambda_name, run_teacher
from kickstart.kickstarting.schedules import schedule_value
from kickstart.kickstarting.teachers import BoundTeacher
from kickstart.learner import LossContext, LossTerm
from kickstart.losses.kickstart import distillation_loss, masked_means, per_step_stats
from kickstart.runtime.unroll import net_inputs

ALPHA = "kickstart/alpha"


def rho_name(teacher: str) -> str:
    return f"kickstart/rho/{teacher}"


class KickstartTerm(LossTerm):
    """``sum_i reduce(lambda_i * H(pi_Ti || pi_S))`` over the steps of the tasks teacher i covers."""

    name = "kickstart"

    max_rows = TeacherHook.max_rows
    """Rows per teacher call on a CPU learner (as in the actors); one call on a GPU."""

    idle_margin_low = 0.01
    """``balance``: the learner idle less than this above its floor (the smallest idle fraction seen,
    at most ``idle_floor_cap``: the part of ``get_batch`` that is copying, not waiting) is the
    bottleneck; the actors take a larger share of the split teachers' work."""
    idle_margin_high = 0.025
    """... idle more than this above its floor: the actors are; the learner takes work back."""
    idle_floor_cap = 0.02
    """The floor is at most this: a learner idle more than 2% of the time at best has slack."""
    step_range = (0.025, 0.2)
    """The share moves by a step that starts at 0.1, grows x1.5 while moves go the same way and
    halves when they reverse (within this range), so that it converges in a few moves and then
    stays within a small step of the balance point."""

    def __init__(self, cfg: KickstartConfig, covered_tasks: dict[str, list[int]], num_tasks: int,
                 learner_teachers: dict[str, BoundTeacher] | None = None, split: set[str] | None = None):
        """
        Args:
          cfg: the schedule, ``alpha`` and each teacher's ``rho``.
          covered_tasks: per teacher (in ``cfg.teachers``), the task ids it covers.
          num_tasks: tasks of the run.
          learner_teachers: the teachers this term runs itself (placed in the learner, or split),
            by name; the others' logits are read from the batch.
          split: the learner teachers that the actors also run, on a share of the columns they
            cover (``kickstart/actor_share``, moved by :meth:`balance`): the term reads their logits
            from the batch and computes them itself where the batch holds NaN.
        """
        self.cfg = cfg
        self.teachers = list(cfg.teachers)
        self.learner_teachers = dict(learner_teachers or {})
        self.split = set(split or ())
        unknown = self.split - set(self.learner_teachers)
        if unknown:
            raise ValueError(f"split teachers {sorted(unknown)} must be learner teachers too")
        self.share = 0.0
        self._step, self._direction, self._floor = 0.1, 0, 1.0
        self._devices: dict[str, torch.device] = {}
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
        out = {lambda_name(t): w for t, w in self.weights(hparams, frames).items()}
        if self.split:
            out[ACTOR_SHARE] = self.share
        return out

    def balance(self, idle: float) -> None:
        """Move split teachers' work towards the side with slack, from the learner's idle fraction
        over the last few seconds: near its floor, the learner is the bottleneck and the actors take
        a step more of the columns; clearly above it, the actors are and the learner takes a step
        back (see ``idle_margin_low``, ``idle_margin_high``, ``step_range``). On a GPU learner, idle
        most of the time, the share stays at 0."""
        if not self.split:
            return
        self._floor = min(self._floor, idle)
        floor = min(self._floor, self.idle_floor_cap)
        if idle < floor + self.idle_margin_low:
            direction = 1
        elif idle > floor + self.idle_margin_high:
            direction = -1
        else:
            return
        low, high = self.step_range
        if direction == self._direction:
            self._step = min(high, self._step * 1.5)
        elif self._direction:
            self._step = max(low, self._step / 2)
        self._direction = direction
        self.share = min(1.0, max(0.0, self.share + direction * self._step))

    def _teacher_logits(self, name: str, batch: dict[str, torch.Tensor], cover: torch.Tensor,
                        width: int) -> torch.Tensor:
        """A learner-placed teacher's log-probabilities ``[T, B, L]`` at entries ``0..T-1``, computed
        on the batch columns with a covered step (0 in the others: masked out by ``cover``)."""
        teacher = self.learner_teachers[name]
        device = cover.device
        if self._devices.get(name) != device:
            teacher.to(device)
            self._devices[name] = device
        T, B = cover.shape
        cols = cover.any(0).nonzero().squeeze(-1)
        every = cols.numel() == B
        if cols.numel() == 0:
            return torch.zeros(T, B, width, device=device)
        inputs = [batch[k][:-1] for k in ("obs", "last_action", "reward", "first")]
        if not every:
            inputs = [x.index_select(1, cols) for x in inputs]
        obs, last_action, reward, first = net_inputs(*inputs)
        logits, _ = run_teacher(teacher, obs, first, last_action, reward, teacher.initial_state(first.shape[1]),
                                self.max_rows if device.type == "cpu" else None)
        if torch.isnan(logits).any():
            raise FloatingPointError(f"teacher {name!r} produced NaN logits")
        if every:
            return logits
        return logits.new_zeros(T, B, logits.shape[-1]).index_copy_(1, cols, logits)

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
            cover = self.covers[t].to(task.device)[task]
            if t in self.split and field_name(t) in ctx.batch:
                # The actors ran the teacher on a share of the columns; run it here where they did not.
                teacher = ctx.batch[field_name(t)][:-1]
                need = cover & torch.isnan(teacher[..., 0])
                if bool(need.any()):
                    mine = self._teacher_logits(t, ctx.batch, need, student.shape[-1])
                    teacher = torch.where(need.unsqueeze(-1), mine, teacher)
                masks[t] = cover
            elif t in self.learner_teachers:
                teacher = self._teacher_logits(t, ctx.batch, cover, student.shape[-1])
                masks[t] = cover
            else:
                teacher = ctx.batch[field_name(t)][:-1]
                # NaN logits: the actor did not run the teacher there (see kickstarting/hooks.py).
                masks[t] = cover & ~torch.isnan(teacher[..., 0])
            active.append((t, lam, teacher))
        if self.split:
            metrics["kickstart/actor_share"] = self.share
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

