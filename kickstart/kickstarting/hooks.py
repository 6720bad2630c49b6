"""Teachers in the actors: one :class:`TeacherHook` per actor-placed teacher (``kickstart.placement``)
writes its logits with the unroll.

The hook runs once per unroll (``finish``, see ``Actor.collect``), after the actor has filled the
unroll, over its new entries ``start..T`` (``start`` is 0 in an actor's first unroll, else 1: entry
0 is the previous unroll's entry T, copied with its logits, so every env step is seen exactly once).
It writes ``teacher_logits/<name>[start:T+1]``: ``[T+1-start, N, L_student]`` float32 log-probabilities
over the student's actions. One teacher call covers all new entries of all covered envs, as the
learner runs a network over an unroll: many small per-step forwards cost several times more.

* Columns: only the envs whose task the teacher covers are run (index-select ``[T', cols]`` once
  per unroll, run, scatter back); the column index is computed once per actor (tasks are fixed).
  A teacher split between actors and learner (``placement`` ``"split"``) runs on the first
  ``round(share * n)`` of its ``n`` covered columns, ``share`` being the published
  ``kickstart/actor_share`` (:func:`kickstart.runtime.placement.actor_columns`); the learner runs
  it where the field holds NaN (the trainer's :class:`~kickstart.runtime.placement.Placement`).
* Recurrent teachers keep one core state per env column, carried across unrolls and reset where
  ``first`` is set (by the teacher's own core, inside the unroll), so the logits are exactly those
  the teacher would output had it watched the same stream step by step (tested).
* A teacher whose published weight ``kickstart/lambda/<name>`` is 0 is not run at all (actors
  receive hyperparameters between unrolls, so one weight holds for a whole unroll).
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

from kickstart.config import CoreConfig
from kickstart.kickstarting.adapt import BoundTeacher, load_bound_teacher
from kickstart.kickstarting.names import ACTOR_SHARE, field_name, lambda_name
from kickstart.kickstarting.plan import coverage, placement
from kickstart.runtime.placement import MAX_ROWS, actor_columns, unroll_in_pieces
from kickstart.runtime.unroll import Field, net_inputs
from kickstart.specs import EnvSpec


class TeacherHook:
    """Runs one frozen teacher along the actor's env stream (an :class:`ActorHook` with ``finish``:
    once per unroll over its new entries)."""

    max_rows = MAX_ROWS
    """Rows (entries x envs) per teacher call at most (measured: :data:`~kickstart.runtime.placement.MAX_ROWS`)."""

    def __init__(self, name: str, teacher: BoundTeacher, tasks: Sequence[int], split: bool = False):
        """``split``: the teacher is split between actors and learner (``placement`` ``"split"``,
        feed-forward teachers only): run it on the first ``round(share * n)`` of the ``n`` covered
        columns, ``share`` being the published ``kickstart/actor_share`` (0 until one arrives)."""
        if split and teacher.recurrent:
            raise ValueError(f"teacher {name!r} is recurrent: its state must follow every column, it cannot be split")
        self.name = name
        self.split = split
        self.share = 0.0
        self.teacher = teacher
        self.key = field_name(name)
        self.lambda_key = lambda_name(name)
        self.fields = {self.key: Field((teacher.num_logits,), torch.float32)}
        self.tasks = torch.tensor(sorted(set(int(t) for t in tasks)), dtype=torch.long)
        self.weight: float | None = None   # None until the learner publishes one: run the teacher
        self.state: tuple[Tensor, ...] = ()
        self.synced = torch.zeros(0, dtype=torch.bool)
        self.num_envs = 0
        self._task: Tensor | None = None   # the envs' tasks the columns below were computed for
        self._cols: Tensor | None = None   # the columns (envs) whose task the teacher covers

    def reset(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.state = tuple(s.clone() for s in self.teacher.initial_state(num_envs))
        self.synced = torch.ones(num_envs, dtype=torch.bool)
        self._task = self._cols = None

    def set_hparams(self, hparams: dict[str, float]) -> None:
        if self.lambda_key in hparams:
            self.weight = float(hparams[self.lambda_key])
        if self.split and ACTOR_SHARE in hparams:
            self.share = min(1.0, max(0.0, float(hparams[ACTOR_SHARE])))

    def _columns(self, task: Tensor) -> Tensor:
        """The covered columns; an env's task is fixed, so this is computed once per actor."""
        if self._task is None or not torch.equal(task, self._task):
            self._task = task.clone()
            self._cols = torch.isin(task, self.tasks).nonzero().squeeze(-1)
        return self._cols

    def _run(self, obs: Tensor, first: Tensor, last_action: Tensor, last_reward: Tensor,
             state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        return unroll_in_pieces(self.teacher, obs, first, last_action, last_reward, state, self.max_rows)

    def __call__(self, obs: Tensor, first: Tensor, task: Tensor, last_action: Tensor,
                 last_reward: Tensor) -> dict[str, Tensor]:
        """One entry of ``N`` envs (``[N, ...]`` inputs): :meth:`finish` over a one-entry unroll.
        The actor does not call it (it calls ``finish``); kept for callers that step the hook."""
        one = {"obs": obs[None], "first": first[None], "task": task[None], "last_action": last_action[None],
               "reward": last_reward[None], self.key: torch.empty(1, obs.shape[0], self.teacher.num_logits)}
        self.finish(one, 0)
        return {self.key: one[self.key][0]}

    def finish(self, buf: dict[str, Tensor], start: int) -> None:
        """Write ``teacher_logits/<name>[start:T+1]`` of the unroll ``buf`` (entries ``start..T`` are
        new; entry 0 of all but an actor's first unroll is the previous entry T, already written)."""
        out = buf[self.key][start:]
        n = out.shape[1]
        if n != self.num_envs:
            self.reset(n)
        out.fill_(math.nan)
        if self.weight == 0.0:
            if self.teacher.recurrent:
                self.synced.zero_()     # the teacher misses these steps of every env's stream
            return
        cols = self._columns(buf["task"][start])
        if self.split:
            cols = actor_columns(cols, self.share)   # the learner runs the teacher on the others
        if cols.numel() == 0:
            return
        obs, last_action, reward, first = (buf[k][start:] for k in ("obs", "last_action", "reward", "first"))
        every = cols.numel() == n
        if not every:
            obs, last_action, reward, first = (x.index_select(1, cols) for x in (obs, last_action, reward, first))
        obs, last_action, reward, first = net_inputs(obs, last_action, reward, first)
        state = self.state if every else tuple(s.index_select(0, cols) for s in self.state)
        logits, state = self._run(obs, first, last_action, reward, state)
        if torch.isnan(logits).any():
            raise FloatingPointError(f"teacher {self.name!r} produced NaN logits")
        if self.teacher.recurrent:
            # A column is in sync from its first episode start on if its state missed steps before.
            synced = self.synced if every else self.synced.index_select(0, cols)
            in_sync = synced | first.cummax(0).values
            logits.masked_fill_(~in_sync.unsqueeze(-1), math.nan)
            if every:
                self.state, self.synced = state, in_sync[-1].clone()
            else:
                for s, new in zip(self.state, state):
                    s.index_copy_(0, cols, new)
                self.synced.index_copy_(0, cols, in_sync[-1])
        if every:
            out.copy_(logits)
        else:
            out.index_copy_(1, cols, logits)


def make_hooks(cfg: CoreConfig, spec: EnvSpec) -> list[TeacherHook]:
    """The hooks of the teachers that run in the actors (``kickstart.placement``, see
    :func:`~kickstart.kickstarting.plan.placement`); use as ``HookFactory(make_hooks)``, it runs
    in each actor process."""
    hooks = []
    covered = coverage(cfg.kickstart, spec)
    for name, tc in cfg.kickstart.teachers.items():
        teacher = load_bound_teacher(name, tc, spec)
        where = placement(name, cfg.kickstart.placement, teacher)
        if where in ("actor", "split"):
            hooks.append(TeacherHook(name, teacher, covered[name], split=where == "split"))
    return hooks
