"""Teachers in the actors: one :class:`TeacherHook` per teacher writes its logits with the unroll.

The actor calls each hook once per entry ``t`` with ``(obs, first, task, last_action, last_reward)``
of its ``N`` envs (see ``Actor._hooks``; the overlapping entry 0 of an unroll is the previous
unroll's entry T, copied, so every env step is seen exactly once). The hook returns
``teacher_logits/<name>``: ``[N, L_student]`` float32 log-probabilities over the student's actions.

* Columns: only the envs whose task the teacher covers are run (index-select, run, scatter back).
* Recurrent teachers keep one core state per env column, carried across unrolls and reset where
  ``first`` is set (by the teacher's own core), so the logits are exactly those the teacher would
  output had it watched the same stream.
* A teacher whose published weight ``kickstart/lambda/<name>`` is 0 is not run at all.
* Where the teacher was not run (a column it does not cover, or lambda 0) the field holds NaN, which
  the loss term reads as "no teacher output" and ignores. A recurrent teacher that skipped steps has
  missed part of its envs' streams: it stays silent (NaN) in each env until that env's next episode
  starts, rather than output logits from a state that did not see the whole episode.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from kickstart.config import Config
from kickstart.errors import UserError
from kickstart.kickstarting.teachers import BoundTeacher, load_bound_teacher
from kickstart.runtime.unroll import Field
from kickstart.specs import EnvSpec


def field_name(teacher: str) -> str:
    return f"teacher_logits/{teacher}"


def lambda_name(teacher: str) -> str:
    return f"kickstart/lambda/{teacher}"


def task_ids(name: str, tasks: Sequence[str], spec: EnvSpec) -> list[int]:
    """Task ids (indices in ``spec.task_names``) of the tasks a teacher covers; [] covers all."""
    if not tasks:
        return list(range(spec.num_tasks))

    def norm(t: str) -> str:
        return t.strip().lower().replace("_", "").replace("-", "")

    exact = {t: i for i, t in enumerate(spec.task_names)}
    loose = {norm(t): i for i, t in enumerate(spec.task_names)}
    out = []
    for t in tasks:
        i = exact.get(t, loose.get(norm(t)))
        if i is None:
            raise UserError(f"teacher {name!r} covers task {t!r}, which is not a task of this run; "
                            f"tasks: {', '.join(spec.task_names)}")
        if i not in out:
            out.append(i)
    return out


class TeacherHook:
    """Runs one frozen teacher along the actor's env stream (an :class:`ActorHook`)."""

    def __init__(self, name: str, teacher: BoundTeacher, tasks: Sequence[int]):
        self.name = name
        self.teacher = teacher
        self.key = field_name(name)
        self.lambda_key = lambda_name(name)
        self.fields = {self.key: Field((teacher.num_logits,), torch.float32)}
        self.tasks = torch.tensor(sorted(set(int(t) for t in tasks)), dtype=torch.long)
        self.weight: float | None = None   # None until the learner publishes one: run the teacher
        self.state: tuple[Tensor, ...] = ()
        self.synced = torch.zeros(0, dtype=torch.bool)
        self.num_envs = 0

    def reset(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.state = tuple(s.clone() for s in self.teacher.initial_state(num_envs))
        self.synced = torch.ones(num_envs, dtype=torch.bool)

    def set_hparams(self, hparams: dict[str, float]) -> None:
        if self.lambda_key in hparams:
            self.weight = float(hparams[self.lambda_key])

    def _columns(self, task: Tensor, first: Tensor) -> Tensor:
        covered = torch.isin(task, self.tasks)
        if self.teacher.recurrent:
            self.synced |= first        # its state is reset at an episode start: in sync again
            covered &= self.synced
        return covered.nonzero().squeeze(-1)

    def __call__(self, obs: Tensor, first: Tensor, task: Tensor, last_action: Tensor,
                 last_reward: Tensor) -> dict[str, Tensor]:
        n = obs.shape[0]
        if n != self.num_envs:
            self.reset(n)
        out = torch.full((n, self.teacher.num_logits), math.nan)
        if self.weight == 0.0:
            if self.teacher.recurrent:
                self.synced.zero_()     # the teacher misses this step of every env's stream
            return {self.key: out}
        cols = self._columns(task, first)
        if cols.numel() == 0:
            return {self.key: out}
        if cols.numel() == n:
            logits, self.state = self.teacher(obs, first, last_action, last_reward, self.state)
            out = logits
        else:
            state = tuple(s.index_select(0, cols) for s in self.state)
            logits, state = self.teacher(obs.index_select(0, cols), first.index_select(0, cols),
                                         last_action.index_select(0, cols), last_reward.index_select(0, cols), state)
            for s, new in zip(self.state, state):
                s.index_copy_(0, cols, new)
            out.index_copy_(0, cols, logits)
        if torch.isnan(logits).any():
            raise FloatingPointError(f"teacher {self.name!r} produced NaN logits")
        return {self.key: out}


def make_hooks(cfg: Config, spec: EnvSpec) -> list[TeacherHook]:
    """The teacher hooks of a run (use as ``HookFactory(make_hooks)``; runs in each actor process)."""
    hooks = []
    for name, tc in cfg.kickstart.teachers.items():
        tasks = task_ids(name, tc.tasks, spec)
        hooks.append(TeacherHook(name, load_bound_teacher(name, tc, spec), tasks))
    return hooks
