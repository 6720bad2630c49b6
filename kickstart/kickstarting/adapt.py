"""Frozen teachers seen from the student's env: :func:`bind` adapts a teacher (:mod:`.teachers`) to
the student's env spec (:class:`BoundTeacher`):

* Observations: identical shapes pass through; when the student plays a multi-task suite whose
  images have more channels than the teacher's and the other dims match (MinAtar suites zero-pad
  every game to 10 channels), the teacher sees the leading ``C_teacher`` channels. Anything else
  (a single-game student with other channels included) is a :class:`UserError`.
* Actions, by ``EnvSpec.action_meanings``: teacher action i becomes the student action with the
  same meaning; student actions the teacher lacks get probability 0 (logit ``-inf``). A teacher
  action the student cannot take is a :class:`UserError`. Without meanings, the teacher must have
  exactly the student's number of actions, taken to be the student's. MultiDiscrete students need
  a teacher with the identical action space.
* Last actions (LSTM teachers take the previous action as input): the actor's ``last_action`` is
  a student action; it is mapped back to the teacher's action with the same meaning. A student action
  the teacher lacks becomes the teacher action made of the most of its buttons, where meanings are
  button combinations joined by ``+`` (ViZDoom's large set: ``MOVE_FORWARD+TURN_LEFT+SPEED`` is a
  ``MOVE_FORWARD`` to a teacher with the scenario's buttons), else the teacher's action 0 (NOOP in ALE,
  MinAtar and ViZDoom). Without this a navigation teacher's memory would see NOOP after nearly every
  step of a student exploring the combinations.

Why apart from loading: loading knows the sources (files, callables), this the student's spaces; a
bound teacher is what the actor hooks and the learner-side inference run.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from kickstart.distributions import log_softmax
from kickstart.errors import UserError
from kickstart.kickstarting.config import TeacherConfig
from kickstart.kickstarting.teachers import State, Teacher, load_teacher
from kickstart.specs import EnvSpec

__all__ = ["BoundTeacher", "action_mapping", "bind", "load_bound_teacher", "nearest_action", "obs_channels"]


def obs_channels(name: str, teacher_shape: Sequence[int], student_shape: Sequence[int],
                 padded: bool = True) -> int | None:
    """How the teacher sees the student's observations: None (as they are) or a number of leading
    channels to keep, when the student's extra channels are padding (``padded``: a multi-task suite
    whose games are zero-padded to a common channel count; in a single game extra channels are
    real, so a teacher with fewer cannot read them). UserError when neither fits."""
    t, s = tuple(int(d) for d in teacher_shape), tuple(int(d) for d in student_shape)
    if t == s:
        return None
    if padded and len(t) == len(s) == 3 and t[1:] == s[1:] and 0 < t[0] < s[0]:
        return t[0]
    raise UserError(f"teacher {name!r} expects observations of shape {t} but the student's are {s}")


def _key(meaning: str) -> str:
    return str(meaning).strip().upper()


def action_mapping(name: str, teacher_meanings: Sequence[str], student_meanings: Sequence[str]) -> list[int]:
    """``index[i]``: the student action with the meaning of teacher action ``i``.

    UserError when a teacher action has no counterpart in the student's set, or when the teacher
    names an action twice.
    """
    student = {}
    for j, m in enumerate(student_meanings):
        student.setdefault(_key(m), j)
    keys = [_key(m) for m in teacher_meanings]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise UserError(f"teacher {name!r} names actions more than once: {', '.join(dup)}")
    missing = [m for m, k in zip(teacher_meanings, keys) if k not in student]
    if missing:
        raise UserError(f"teacher {name!r} has actions the student cannot take: {', '.join(missing)}; "
                        f"student actions: {', '.join(student_meanings)}")
    return [student[k] for k in keys]


def _buttons(meaning: str) -> frozenset[str]:
    return frozenset(b.strip() for b in _key(meaning).split("+"))


def nearest_action(student_meaning: str, teacher_meanings: Sequence[str]) -> int:
    """The teacher action made of the most buttons of ``student_meaning`` and of no other (meanings
    are ``+``-joined buttons; the first such action on a tie), or 0 when none is."""
    want = _buttons(student_meaning)
    best, size = 0, 0
    for i, m in enumerate(teacher_meanings):
        have = _buttons(m)
        if have <= want and len(have) > size:
            best, size = i, len(have)
    return best


class BoundTeacher:
    """A teacher seen from the student's env: student observations and last actions in, logits
    over the student's actions out (see the module docstring for the mappings)."""

    def __init__(self, teacher: Teacher, student: EnvSpec):
        self.teacher = teacher
        self.name = teacher.name
        self.recurrent = teacher.recurrent
        self.multi_discrete = student.multi_discrete
        self.num_logits = sum(student.action_nvec) if student.multi_discrete else student.num_actions
        t_shape = teacher.obs_shape if teacher.obs_shape is not None else student.obs_shape
        self.channels = obs_channels(teacher.name, t_shape, student.obs_shape, padded=student.num_tasks > 1)
        self._probe(t_shape)  # learns a function teacher's number of actions; checks every teacher runs
        self.index, self.inverse = self._actions(teacher, student)

    def _probe(self, obs_shape: tuple[int, ...]) -> None:
        t = self.teacher
        la_shape = (1, len(t.action_nvec)) if t.multi_discrete else (1,)
        try:
            logits, _ = t(torch.zeros((1,) + tuple(obs_shape)), torch.ones(1, dtype=torch.bool),
                          torch.zeros(la_shape, dtype=torch.int64), torch.zeros(1), t.initial_state(1))
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - a user's function can fail in any way
            detail = (str(e).strip().splitlines() or [""])[0][:160]
            raise UserError(f"teacher {t.name!r} fails on observations of shape {tuple(obs_shape)} "
                            f"({type(e).__name__}: {detail})") from None
        t.num_logits = int(logits.shape[1])

    def _actions(self, t: Teacher, s: EnvSpec) -> tuple[Tensor | None, Tensor | None]:
        if s.multi_discrete or t.multi_discrete:
            # A function teacher (action_nvec None) fits a MultiDiscrete student when it returns
            # the student's sum(nvec) per-factor logits and names no actions.
            same = t.action_nvec == tuple(s.action_nvec) if t.multi_discrete else (
                t.action_nvec is None and t.action_meanings is None)
            if not (s.multi_discrete and same and t.num_logits == self.num_logits):
                teacher_space = (f"MultiDiscrete{list(t.action_nvec)}" if t.multi_discrete
                                 else f"{t.num_logits} discrete actions")
                student_space = (f"MultiDiscrete{list(s.action_nvec)}" if s.multi_discrete
                                 else f"Discrete({s.num_actions})")
                raise UserError(f"teacher {t.name!r} acts in {teacher_space} but the student in {student_space}; "
                                f"with MultiDiscrete actions the teacher's action space must be the student's")
            return None, None
        if t.action_meanings is None or not s.action_meanings:
            if t.num_logits != s.num_actions:
                raise UserError(f"teacher {t.name!r} has {t.num_logits} actions and the student {s.num_actions}; "
                                f"without action_meanings the teacher must have the student's actions "
                                f"(give it action_meanings to map them)")
            return None, None
        index = action_mapping(t.name, t.action_meanings, s.action_meanings)
        if index == list(range(s.num_actions)):
            return None, None
        inverse = [nearest_action(m, t.action_meanings) for m in s.action_meanings]
        for i, j in enumerate(index):
            inverse[j] = i
        return torch.tensor(index, dtype=torch.long), torch.tensor(inverse, dtype=torch.long)

    def initial_state(self, batch_size: int) -> State:
        return self.teacher.initial_state(batch_size)

    def to(self, device: torch.device) -> "BoundTeacher":
        """Move the teacher (if :attr:`Teacher.movable`) and its action maps to ``device``."""
        self.teacher.to(device)
        if self.index is not None:
            self.index, self.inverse = self.index.to(device), self.inverse.to(device)
        return self

    def to_student(self, logits: Tensor) -> Tensor:
        """Teacher logits ``[..., A_T]`` -> ``[..., L_student]``: log-probs scattered by the action
        mapping, ``-inf`` for student actions the teacher lacks (MultiDiscrete: as they are)."""
        logits = logits.float()
        if self.multi_discrete:
            return logits
        log_p = log_softmax(logits)
        if self.index is None:
            return log_p
        out = log_p.new_full(log_p.shape[:-1] + (self.num_logits,), -math.inf)
        return out.scatter_(-1, self.index.expand(log_p.shape), log_p)

    def __call__(self, obs: Tensor, first: Tensor, last_action: Tensor, last_reward: Tensor,
                 state: State) -> tuple[Tensor, State]:
        """One step for ``n`` student envs (student observations and last actions)."""
        logits, state = self.unroll(obs[None], first[None], last_action[None], last_reward[None], state)
        return logits[0], state

    def unroll(self, obs: Tensor, first: Tensor, last_action: Tensor, last_reward: Tensor,
               state: State) -> tuple[Tensor, State]:
        """``T`` steps of ``n`` student envs in one teacher call: ``obs [T, n, *obs]``, ``first``,
        ``last_action``, ``last_reward`` ``[T, n]``; logits ``[T, n, L_student]``."""
        if self.channels is not None:
            obs = obs[:, :, :self.channels]
        if self.inverse is not None and self.recurrent:
            last_action = self.inverse[last_action]
        logits, state = self.teacher.unroll(obs, first, last_action, last_reward, state)
        return self.to_student(logits), state


def bind(teacher: Teacher, student: EnvSpec) -> BoundTeacher:
    """Adapt ``teacher`` to the student's env ``student`` (UserError when it cannot be)."""
    return BoundTeacher(teacher, student)


def load_bound_teacher(name: str, cfg: TeacherConfig, student: EnvSpec) -> BoundTeacher:
    return bind(load_teacher(name, cfg), student)
