"""Kickstarting's config section (``kickstart``): its teachers, their weights and where they run.

Beside its method: :class:`~kickstart.kickstarting.method.Kickstarting` declares it
(``Method.section``) and the registry's config class holds it as ``cfg.kickstart``. It imports only
the config engine and core modules (no module of this package), so that the section can be read
without loading teachers or torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kickstart.configio import check, choice, positive
from kickstart.precision import PRECISIONS

TEACHER_KINDS = ("auto", "checkpoint", "torchscript", "callable")
SCHEDULES = ("constant", "linear", "piecewise")
PLACEMENTS = ("auto", "actor", "learner")


@dataclass
class TeacherConfig:
    """One frozen teacher policy."""

    path: str = ""
    """A kickstart checkpoint file or run directory, or a TorchScript file."""
    kind: str = "auto"
    """``checkpoint``, ``torchscript``, ``callable``, or ``auto`` (callable if ``callable`` is set,
    else TorchScript if the file is a TorchScript archive, else a kickstart checkpoint)."""
    callable: str = ""
    """``package.module:function`` (or a name registered with ``register_teacher`` after importing
    ``package.module``) mapping a float observation batch ``[B, *obs]`` to logits ``[B, A]``."""
    tasks: list[str] = field(default_factory=list)
    """Tasks this teacher covers (task names such as ``minatar:Breakout``); empty: every task (or
    those ``kickstart.task_teachers`` maps to it, when that is given)."""
    rho: float = 1.0
    """Initial per-teacher factor rho^i of lambda^i = schedule * alpha * rho^i (mutable by PBT)."""
    precision: str = "auto"
    """Checkpoint teachers: ``auto`` (bf16 where it pays, on CPUs with AMX; else fp32), ``fp32``, or
    ``bf16`` (weights and activations in bfloat16, logits in float32): about 1.7x faster on CPUs
    with AMX (on AVX512-BF16 alone no faster than fp32), at the cost of targets rounded to ~3
    significant digits (on the shipped MinAtar experts KL(fp32 || bf16) stays under 0.01 nats a state, while the
    log-probability of an unlikely action can move by a few tenths). Other teacher
    kinds run as they are (``auto`` or ``fp32``)."""

    def __post_init__(self) -> None:
        choice("kickstart.teachers.<name>", "kind", self.kind, TEACHER_KINDS)
        choice("kickstart.teachers.<name>", "precision", self.precision, PRECISIONS)
        check(bool(self.path) or bool(self.callable),
               "each kickstart teacher needs a path (checkpoint or TorchScript file) or a callable")
        positive("kickstart.teachers.<name>", "rho", self.rho, allow_zero=True)


@dataclass
class KickstartConfig:
    """Kickstarting (Schmitt et al. 2018): lambda^i * H(pi_teacher_i || pi_student) on student
    trajectories, lambda^i = schedule(frames) * alpha * rho^i. No teachers: off."""

    teachers: dict[str, TeacherConfig] = field(default_factory=dict)
    """Teachers by name."""
    task_teachers: dict[str, str] = field(default_factory=dict)
    """Task -> teacher map (``{minatar:Breakout: breakout, minatar:Asterix: generalist}``), the other
    way to say what each teacher covers: one teacher may cover several tasks, and a task not in the
    map gets no distillation term. Empty: each teacher's ``tasks`` list says it."""
    schedule: str = "constant"
    """``constant`` (lambda_0), ``linear`` (lambda_0 -> 0 at ``lambda_end_frames``, then 0), or
    ``piecewise`` (linear between the ``piecewise`` points, constant after the last)."""
    lambda_0: float = 1.0
    """Initial weight of the distillation term."""
    lambda_end_frames: int = 0
    """``linear``: the frame at which lambda reaches 0."""
    piecewise: list[list[float]] = field(default_factory=list)
    """``piecewise``: ``[[frame, lambda], ...]`` with increasing frames."""
    alpha: float = 1.0
    """Initial shared factor alpha (mutable by PBT: ``kickstart/alpha``)."""
    placement: str = "auto"
    """Where teacher logits are computed: ``actor`` (each actor runs its teachers once per unroll
    and stores their logits with it), ``learner`` (the learner runs them on each batch, on its
    device), or ``auto``: feed-forward teachers that are torch modules are split, the actors
    running them on a share of the columns and the learner on the rest, the share following
    whichever side has slack (``kickstart/actor_share``); recurrent teachers (their core state must
    follow each env's stream) and plain Python callables run in the actors. See
    :mod:`kickstart.kickstarting`."""

    def __post_init__(self) -> None:
        s = "kickstart"
        if self.task_teachers:
            valid = ", ".join(self.teachers) or "none: add kickstart.teachers"
            for task, name in self.task_teachers.items():
                check(name in self.teachers,
                       f"kickstart.task_teachers maps task {task!r} to an unknown teacher {name!r}; teachers: {valid}")
            both = [n for n, tc in self.teachers.items() if tc.tasks]
            check(not both, f"kickstart.teachers.{both[0] if both else ''}.tasks and kickstart.task_teachers both "
                             f"say which tasks a teacher covers; use one of them")
            unused = [n for n in self.teachers if n not in self.task_teachers.values()]
            check(not unused, f"kickstart.teachers.{unused[0] if unused else ''} covers no task of "
                               f"kickstart.task_teachers; map a task to it or remove it")
        choice(s, "schedule", self.schedule, SCHEDULES)
        choice(s, "placement", self.placement, PLACEMENTS)
        positive(s, "lambda_0", self.lambda_0, allow_zero=True)
        positive(s, "alpha", self.alpha, allow_zero=True)
        positive(s, "lambda_end_frames", self.lambda_end_frames, allow_zero=True)
        if self.schedule == "linear":
            check(self.lambda_end_frames > 0, "kickstart.schedule=linear needs kickstart.lambda_end_frames > 0")
        if self.schedule == "piecewise":
            pts = self.piecewise
            check(len(pts) >= 1 and all(len(p) == 2 and p[1] >= 0 for p in pts),
                   "kickstart.piecewise must be a non-empty list of [frame, lambda] pairs with lambda >= 0")
            frames = [p[0] for p in pts]
            check(all(a < b for a, b in zip(frames, frames[1:])) and frames[0] >= 0,
                   f"kickstart.piecewise frames must be >= 0 and increasing, got {frames}")

    @property
    def enabled(self) -> bool:
        return bool(self.teachers)
