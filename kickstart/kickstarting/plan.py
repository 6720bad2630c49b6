"""Each teacher's plan: the tasks it covers, where it runs, and what the runtime computes for it.

Used by both sides of a run: :mod:`.method` (the learner's setup) and :mod:`.hooks` (each actor
process builds its own hooks from the config), so that both read ``kickstart.task_teachers``,
the teachers' ``tasks`` and ``kickstart.placement`` the same way.
"""

from __future__ import annotations

from typing import Sequence

from kickstart.errors import UserError
from kickstart.kickstarting.adapt import BoundTeacher
from kickstart.kickstarting.config import KickstartConfig
from kickstart.kickstarting.names import ACTOR_SHARE, field_name, lambda_name
from kickstart.runtime.placement import SplitInference
from kickstart.specs import EnvSpec


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


def coverage(ks: KickstartConfig, spec: EnvSpec) -> dict[str, list[int]]:
    """The task ids each teacher covers: from ``kickstart.task_teachers`` (task -> teacher) when it
    is given, else from each teacher's own ``tasks`` list (empty: every task)."""
    if not ks.task_teachers:
        return {name: task_ids(name, tc.tasks, spec) for name, tc in ks.teachers.items()}
    out: dict[str, list[int]] = {name: [] for name in ks.teachers}
    for task, name in ks.task_teachers.items():
        for i in task_ids(name, [task], spec):
            if i not in out[name]:
                out[name].append(i)
    return out


def placement(name: str, mode: str, teacher: BoundTeacher) -> str:
    """Where teacher ``name`` runs, ``"actor"``, ``"learner"`` or ``"split"`` (both: the actors on a
    share of the columns it covers, the learner on the rest), under ``kickstart.placement=mode`` (see
    :mod:`kickstart.kickstarting`): ``auto`` splits feed-forward torch-module teachers and puts the
    others in the actors; ``learner`` with a recurrent teacher is a UserError."""
    if mode == "actor":
        return "actor"
    if teacher.recurrent:
        if mode == "learner":
            raise UserError(f"teacher {name!r} is recurrent: it runs in the actors, where its core state "
                            f"follows each env's stream; use kickstart.placement=auto or actor")
        return "actor"
    if mode == "learner":
        return "learner"
    return "split" if teacher.teacher.movable else "actor"


def learner_inference(name: str, teacher: BoundTeacher, tasks: Sequence[int], num_tasks: int,
                      split: bool) -> SplitInference:
    """What the runtime computes in the learner for teacher ``name`` placed ``learner`` or ``split``
    (``split``: the actors take the share ``kickstart/actor_share`` of its covered columns): its
    log-probabilities as the field ``teacher_logits/<name>``, skipped while its published weight
    ``kickstart/lambda/<name>`` is 0 (the loss does not read them then)."""
    return SplitInference(name=name, field=field_name(name), net=teacher, width=teacher.num_logits, tasks=tasks,
                          num_tasks=num_tasks, share=ACTOR_SHARE if split else None, gate=lambda_name(name))
