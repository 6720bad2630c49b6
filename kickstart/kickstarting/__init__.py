"""Kickstarting (Schmitt et al. 2018): train a student with the help of frozen teachers.

The student minimises its IMPALA loss plus, for each teacher i,
``lambda_i * H(pi_Ti(a|x_t) || pi_S(a|x_t))`` on the trajectories the *student* generates, where
``lambda_i = schedule(frames) * alpha * rho_i`` (Eq. 2-3 and Sec. 4.2). A teacher may cover only some
tasks of a multi-task run (expert teachers, Sec. 5.2); a task covered by two teachers gets both terms.
``learner.rl_loss=false`` leaves only the distillation terms (the paper's policy-distillation baseline).

Design: where teacher logits are computed is ``kickstart.placement`` (default ``auto``):

* **split between actors and learner** (``auto`` for feed-forward teachers that are torch modules:
  kickstart checkpoints, exported policies, TorchScript files). The actors run the teacher on the
  first ``share`` of the env columns it covers and store the logits with the unroll; the learner
  runs it on the rest of the batch, where the stored logits are NaN, on its own device, before the
  loss term reads them. That is a service of the runtime, not of this package
  (:class:`kickstart.runtime.placement.SplitInference`, one per teacher, declared by the method's
  setup as ``split_inference``; the trainer owns their ``Placement``): every 2 s the trainer reports
  how much of the time the learner waited for batches, and the placement moves ``share``
  (``kickstart/actor_share``, published with the parameters) towards the side with slack. Why: a
  teacher's forward pass costs about a quarter of a learner step here, and which side has room for
  it depends on the machine.
  With the learner on a GPU the teacher is nearly free there and the share stays 0; on 2 CPU cores
  running MinAtar-5, actor and learner are both saturated, and the whole teacher in either place
  cost 19-28% of from-scratch frames/s, against a median 12.9% (1 teacher) and 17.4% (5 experts)
  split (``bench/throughput``, 3 runs; the floor is 10.6% there, see the README). A
  feed-forward teacher's logits at a step depend on that step's observation alone, so either side
  computes exactly the same numbers (tested);
* **in the actors** (``auto`` for recurrent teachers and plain Python callables; ``actor`` for all):
  an actor hook per teacher (:class:`~kickstart.kickstarting.hooks.TeacherHook`) runs it once per
  unroll and stores its logits with the unroll as ``teacher_logits/<name>`` (``[T+1, N, L_student]``
  float32), which the term reads. A recurrent teacher must run there: it keeps its own core state
  along each env's stream (carried across unroll boundaries, reset at ``first``), so its logits are
  exactly what it would output had it watched the same stream, which a learner seeing batches of
  unrolls from many actors cannot reproduce. Teacher inference then scales with the actors;
* **in the learner** (``learner``): the trainer's placement runs it on each batch, over the
  columns whose task it covers (a ``SplitInference`` without a share); nothing extra travels with
  the unrolls.

A teacher whose current lambda is 0 skips its forward pass in both places (the learner publishes
``kickstart/lambda/<name>`` with its parameters; an actor hook reads it in ``set_hparams`` and stores
NaN, which the loss ignores).

Modules: :mod:`.names` (every hyperparameter and unroll field name), :mod:`.teachers` (loading
frozen teachers of any architecture), :mod:`.adapt` (adapting their observations and actions to the
student's), :mod:`.plan` (the tasks each teacher covers, where it runs, what the learner runs),
:mod:`.hooks` (the actor side), :mod:`.term` (the loss: weights, distillation, metrics),
:mod:`.schedules` (lambda schedules), :mod:`.config` (the config section); the math is in
:mod:`kickstart.losses.kickstart`.

It plugs into a run through :class:`.method.Kickstarting` (a :class:`kickstart.method.Method`,
registered below). By hand (what ``train`` does with a config that has ``kickstart.teachers``)::

    setup = kickstarting.build(cfg, spec)
    train(cfg, terms=setup.terms, hook_factory=setup.hook_factory, extra_fields=setup.extra_fields,
          split_inference=setup.split_inference)
"""

from __future__ import annotations

from kickstart.kickstarting.hooks import TeacherHook, make_hooks
from kickstart.kickstarting.method import Kickstarting
from kickstart.kickstarting.schedules import schedule_value
from kickstart.kickstarting.teachers import register_teacher
from kickstart.kickstarting.term import KickstartTerm
from kickstart.method import register

__all__ = ["METHOD", "KickstartTerm", "Kickstarting", "TeacherHook", "build", "make_hooks", "register_teacher",
           "schedule_value"]

METHOD = register(Kickstarting())


def build(cfg, spec):
    """The kickstarting pieces of run ``cfg`` on env ``spec`` (:meth:`Kickstarting.setup`; empty when
    there are no teachers)."""
    return METHOD.setup(cfg, spec)
