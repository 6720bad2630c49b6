"""Typed, validated run configuration.

A run is described by one :class:`Config` made of sections (``env``, ``net``, ``learner``,
``runtime``, ``run``). Each section is a dataclass whose fields carry a docstring-like comment and
are checked on construction, with messages that say what is valid. Configs are read from YAML,
updated with dotted ``key=value`` overrides, and written back resolved (``config.yaml`` in every
run directory) so that ``--resume`` rebuilds exactly the same run.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kickstart.errors import ConfigError
from kickstart.method import enabled_methods, hparam_range
from kickstart.precision import PRECISIONS


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _choice(section: str, name: str, value: str, valid: tuple[str, ...]) -> None:
    _check(value in valid, f"{section}.{name}={value!r} is not valid; choose one of: {', '.join(valid)}")


def _positive(section: str, name: str, value: float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, float):
        ok = ok and math.isfinite(value)
    _check(ok, f"{section}.{name}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


def _unit(section: str, name: str, value: float) -> None:
    _check(0.0 <= value <= 1.0, f"{section}.{name}={value!r} must be in [0, 1]")


@dataclass
class EnvConfig:
    """Which environment(s) to train on and how to process them."""

    id: str = "minatar:Breakout"
    """``minatar:<Game>``, ``atari:<Game>``, any registered Gymnasium id, or a suite name
    (``minatar5``, ``atari5``, ``atari57``) for multi-task training."""
    sticky_actions: float | None = None
    """Probability of repeating the previous action; None uses the env's default
    (0.1 for MinAtar, as its authors recommend; 0.0 for Atari, as in IMPALA)."""
    full_action_space: bool = False
    """Atari: use all 18 actions instead of the game's minimal set."""
    episodic_life: bool = False
    """Atari: treat the loss of a life as the end of an episode for learning (returns are still
    reported per game)."""
    noop_max: int = 30
    """Atari: up to this many no-op actions at the start of each episode."""
    frame_stack: int = 4
    """Atari: number of stacked 84x84 grayscale frames."""
    max_episode_frames: int = 108_000
    """Atari: episode cap in emulator frames (108k = 30 minutes of play)."""
    max_episode_steps: int | None = None
    """Gymnasium ids: override the env's time limit (agent steps); None keeps the env's own."""

    def __post_init__(self) -> None:
        s = "env"
        _check(isinstance(self.id, str) and self.id.strip() != "", "env.id must be a non-empty string")
        if self.sticky_actions is not None:
            _unit(s, "sticky_actions", self.sticky_actions)
        _positive(s, "noop_max", self.noop_max, allow_zero=True)
        _positive(s, "frame_stack", self.frame_stack)
        _positive(s, "max_episode_frames", self.max_episode_frames)
        if self.max_episode_steps is not None:
            _positive(s, "max_episode_steps", self.max_episode_steps)


TORSOS = ("auto", "nature", "impala_shallow", "impala_deep", "minatar", "mlp")
CORES = ("ff", "lstm")
POLICY_HEADS = ("categorical", "factorised")


@dataclass
class NetConfig:
    """The agent's network: torso -> core -> heads."""

    torso: str = "auto"
    """``nature`` (DQN CNN), ``impala_shallow`` (2 conv), ``impala_deep`` (15 conv, residual),
    ``minatar`` (one 3x3 conv), ``mlp`` (vector observations), or ``auto`` (mlp for vectors,
    minatar for images up to 16 px, nature otherwise)."""
    core: str = "ff"
    """``ff`` (feed-forward) or ``lstm`` (LSTM over torso output + one-hot last action + clipped
    last reward, state reset at episode starts)."""
    hidden_size: int = 256
    """Width of the torso's final fully connected layer."""
    lstm_size: int = 256
    """Hidden units of the LSTM core."""
    mlp_sizes: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer widths of the ``mlp`` torso (before the final ``hidden_size`` layer)."""
    policy_head: str = "categorical"
    """``categorical`` (one softmax over actions) or ``factorised`` (product of independent
    categoricals: over a MultiDiscrete space, or over the factors an env declares, e.g. Atari's
    full 18 actions = joystick (9) x fire (2))."""
    precision: str = "auto"
    """Compute precision of the network's forward passes, in actors and learner: ``auto`` (bf16
    on each device that has native bf16 arithmetic: CUDA devices with bf16, CPUs with AVX512-BF16
    or AMX; fp32 elsewhere; see :mod:`kickstart.precision`), ``fp32``, or ``bf16`` (autocast:
    convolutions and matrix products in bfloat16, parameters, outputs and losses in float32;
    emulated, and several times slower than fp32, where bf16 is not native)."""

    def __post_init__(self) -> None:
        s = "net"
        _choice(s, "torso", self.torso, TORSOS)
        _choice(s, "core", self.core, CORES)
        _choice(s, "policy_head", self.policy_head, POLICY_HEADS)
        _choice(s, "precision", self.precision, PRECISIONS)
        _positive(s, "hidden_size", self.hidden_size)
        _positive(s, "lstm_size", self.lstm_size)
        _check(len(self.mlp_sizes) > 0 and all(isinstance(v, int) and v > 0 for v in self.mlp_sizes),
               f"net.mlp_sizes={self.mlp_sizes!r} must be a non-empty list of positive integers")


OPTIMIZERS = ("rmsprop", "adam")
LR_SCHEDULES = ("constant", "linear")
REDUCTIONS = ("sum", "mean")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class LearnerConfig:
    """The IMPALA learner: V-trace actor-critic with its optimiser."""

    optimizer: str = "rmsprop"
    """``rmsprop`` (the papers' choice) or ``adam``."""
    learning_rate: float = 6e-4
    """Initial learning rate (mutable by PBT)."""
    lr_schedule: str = "linear"
    """``linear`` anneals the learning rate to 0 at ``run.total_frames`` (as IMPALA); ``constant``."""
    rmsprop_decay: float = 0.99
    rmsprop_eps: float = 0.1
    """RMSProp epsilon: 0.1 as in both papers. It assumes losses summed over time and batch."""
    rmsprop_momentum: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    discount: float = 0.99
    baseline_cost: float = 0.5
    entropy_cost: float = 0.01
    """Weight of the entropy bonus (mutable by PBT)."""
    max_grad_norm: float = 40.0
    """Global gradient-norm clip; 0 disables it."""
    reward_clip: float = 1.0
    """Rewards are clipped to [-reward_clip, reward_clip] for learning; 0 disables clipping."""
    clip_rho_threshold: float = 1.0
    """V-trace rho-bar (clips the importance weights of the value targets)."""
    clip_pg_rho_threshold: float = 1.0
    """V-trace clip of the importance weights in the policy-gradient advantage."""
    loss_reduction: str = "sum"
    """``sum`` over time and batch (IMPALA, TorchBeast; what RMSProp eps=0.1 and the papers'
    learning rates assume), or ``mean``. Every loss term, including the kickstarting and M&M terms,
    uses the same reduction, so their weights keep the papers' meaning."""
    unroll_length: int = 20
    """Agent steps per unroll (T); each unroll stores T+1 entries, the last overlapping the next."""
    batch_size: int = 32
    """Unrolls (env trajectories, B) per learner step; a multiple of runtime.envs_per_actor."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    rl_loss: bool = True
    """Include the V-trace policy-gradient, baseline and entropy terms. False leaves only method
    terms: with kickstarting teachers this is pure policy distillation on the student's own
    trajectories (the paper's baseline)."""

    def __post_init__(self) -> None:
        s = "learner"
        _choice(s, "optimizer", self.optimizer, OPTIMIZERS)
        _choice(s, "lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice(s, "loss_reduction", self.loss_reduction, REDUCTIONS)
        _choice(s, "device", self.device, DEVICES)
        _positive(s, "learning_rate", self.learning_rate)
        _unit(s, "rmsprop_decay", self.rmsprop_decay)
        _positive(s, "rmsprop_eps", self.rmsprop_eps)
        _positive(s, "rmsprop_momentum", self.rmsprop_momentum, allow_zero=True)
        _check(0.0 <= self.adam_beta1 < 1.0 and 0.0 <= self.adam_beta2 < 1.0,
               "learner.adam_beta1 and learner.adam_beta2 must be in [0, 1)")
        _positive(s, "adam_eps", self.adam_eps)
        _unit(s, "discount", self.discount)
        _positive(s, "baseline_cost", self.baseline_cost, allow_zero=True)
        _positive(s, "entropy_cost", self.entropy_cost, allow_zero=True)
        _positive(s, "max_grad_norm", self.max_grad_norm, allow_zero=True)
        _positive(s, "reward_clip", self.reward_clip, allow_zero=True)
        _positive(s, "clip_rho_threshold", self.clip_rho_threshold)
        _positive(s, "clip_pg_rho_threshold", self.clip_pg_rho_threshold)
        _positive(s, "unroll_length", self.unroll_length)
        _positive(s, "batch_size", self.batch_size)


BACKENDS = ("local", "serial", "ray")


@dataclass
class RuntimeConfig:
    """How actors and the learner are run."""

    backend: str = "local"
    """``local``: actor processes + learner on this machine (default); ``serial``: everything in
    one process, for tests and debugging; ``ray``: actors as Ray actors spread over the nodes of a
    Ray cluster (see the ``ray`` section; needs ``pip install -e '.[ray]'``)."""
    num_actors: int = 0
    """Actor processes (each steps ``envs_per_actor`` envs with batched inference); 0 (the
    default): one per core less one for the learner, at least 2, shared out among the members of a
    PBT population (see :mod:`kickstart.runtime.resources`)."""
    envs_per_actor: int = 16
    """Environments stepped together by one actor; one unroll holds all of them."""
    num_buffers: int = 0
    """Shared-memory unroll slots; 0 chooses enough for every actor to keep writing while the
    learner holds two batches."""
    torch_threads: int = 1
    """torch threads per actor process. Keep 1: scale with processes, not threads."""
    learner_threads: int = 0
    """torch threads of the learner process; 0 (the default): measured in each session, from 1 up
    to the cores while each extra thread is a clear gain in frames/s (it pays when the learner is
    the bottleneck and the actors leave core time, e.g. a conv net on Atari; see
    :mod:`kickstart.runtime.threads`). 1 for a PBT member or a learner on a GPU."""
    seed: int = 0
    """Seed of network initialisation, env resets and action sampling."""
    actor_restarts: int = 10
    """How many times a dead actor process is restarted before the run stops."""

    def __post_init__(self) -> None:
        s = "runtime"
        _choice(s, "backend", self.backend, BACKENDS)
        _positive(s, "num_actors", self.num_actors, allow_zero=True)
        _positive(s, "envs_per_actor", self.envs_per_actor)
        _positive(s, "num_buffers", self.num_buffers, allow_zero=True)
        _positive(s, "torch_threads", self.torch_threads)
        _positive(s, "learner_threads", self.learner_threads, allow_zero=True)
        _positive(s, "seed", self.seed, allow_zero=True)
        _positive(s, "actor_restarts", self.actor_restarts, allow_zero=True)


@dataclass
class RunConfig:
    """Budget, output and logging of one run."""

    total_frames: int = 2_000_000
    """Stop after this many environment frames (agent steps x action repeat, as the papers count)."""
    out_dir: str = "runs"
    """Parent directory of run directories."""
    name: str = ""
    """Run directory name; empty picks ``<env>-<timestamp>``."""
    checkpoint_every_s: float = 300.0
    """Seconds between periodic checkpoints (one is also written at the end and on SIGINT/SIGTERM)."""
    log_every_s: float = 5.0
    """Seconds between metric writes."""
    progress: bool = True
    """Show a rich progress bar."""
    tensorboard: bool = True
    """Write TensorBoard event files (CSV is always written)."""

    def __post_init__(self) -> None:
        s = "run"
        _positive(s, "total_frames", self.total_frames)
        _positive(s, "checkpoint_every_s", self.checkpoint_every_s)
        _positive(s, "log_every_s", self.log_every_s)


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
    """Checkpoint teachers: ``auto`` (bf16 where the CPU has native bf16, else fp32), ``fp32``, or
    ``bf16`` (weights and activations in bfloat16, logits in float32): about 1.7x faster on CPUs
    with bf16 instructions, at the cost of targets rounded to ~3 significant digits
    (log-probabilities within ~0.15 of fp32's on the shipped MinAtar teachers). Other teacher
    kinds run as they are (``auto`` or ``fp32``)."""

    def __post_init__(self) -> None:
        _choice("kickstart.teachers.<name>", "kind", self.kind, TEACHER_KINDS)
        _choice("kickstart.teachers.<name>", "precision", self.precision, PRECISIONS)
        _check(bool(self.path) or bool(self.callable),
               "each kickstart teacher needs a path (checkpoint or TorchScript file) or a callable")
        _positive("kickstart.teachers.<name>", "rho", self.rho, allow_zero=True)


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
                _check(name in self.teachers,
                       f"kickstart.task_teachers maps task {task!r} to an unknown teacher {name!r}; teachers: {valid}")
            both = [n for n, tc in self.teachers.items() if tc.tasks]
            _check(not both, f"kickstart.teachers.{both[0] if both else ''}.tasks and kickstart.task_teachers both "
                             f"say which tasks a teacher covers; use one of them")
            unused = [n for n in self.teachers if n not in self.task_teachers.values()]
            _check(not unused, f"kickstart.teachers.{unused[0] if unused else ''} covers no task of "
                               f"kickstart.task_teachers; map a task to it or remove it")
        _choice(s, "schedule", self.schedule, SCHEDULES)
        _choice(s, "placement", self.placement, PLACEMENTS)
        _positive(s, "lambda_0", self.lambda_0, allow_zero=True)
        _positive(s, "alpha", self.alpha, allow_zero=True)
        _positive(s, "lambda_end_frames", self.lambda_end_frames, allow_zero=True)
        if self.schedule == "linear":
            _check(self.lambda_end_frames > 0, "kickstart.schedule=linear needs kickstart.lambda_end_frames > 0")
        if self.schedule == "piecewise":
            pts = self.piecewise
            _check(len(pts) >= 1 and all(len(p) == 2 and p[1] >= 0 for p in pts),
                   "kickstart.piecewise must be a non-empty list of [frame, lambda] pairs with lambda >= 0")
            frames = [p[0] for p in pts]
            _check(all(a < b for a, b in zip(frames, frames[1:])) and frames[0] >= 0,
                   f"kickstart.piecewise frames must be >= 0 and increasing, got {frames}")

    @property
    def enabled(self) -> bool:
        return bool(self.teachers)


ACTION_SETS = ("full", "minimal")
SHAREABLE = ("torso", "core", "policy_head")
KL_KINDS = ("full", "masked")
KL_GRADS = ("both", "target")
MIXINGS = ("explicit", "sampled")
ALPHA_SCHEDULES = ("constant", "linear", "piecewise")


@dataclass
class ComponentConfig:
    """One policy pi_i of a Mix & Match agent. Unset fields take the run's ``net`` values."""

    core: str = ""
    """``ff`` or ``lstm``; empty: ``net.core``."""
    lstm_size: int = 0
    """LSTM units; 0: ``net.lstm_size``."""
    policy_head: str = ""
    """``categorical`` or ``factorised``; empty: ``net.policy_head``."""
    action_set: str = "full"
    """``full`` (the env's action space) or ``minimal`` (the game's minimal action set, mapped into
    the full space by action meaning; MinAtar and Atari games)."""
    actions: list[str] = field(default_factory=list)
    """Explicit action subset by meaning (e.g. ``[NOOP, FIRE, RIGHT, LEFT]``), mapped into the full
    space; overrides ``action_set``."""
    per_task: bool = False
    """Multitask curriculum: one copy of this component per task (a specialist), each env acting
    with its task's specialist. Not allowed for the last (target) component."""

    def __post_init__(self) -> None:
        s = "mixmatch.components[i]"
        if self.core:
            _choice(s, "core", self.core, CORES)
        if self.policy_head:
            _choice(s, "policy_head", self.policy_head, POLICY_HEADS)
        _positive(s, "lstm_size", self.lstm_size, allow_zero=True)
        _choice(s, "action_set", self.action_set, ACTION_SETS)


@dataclass
class MixMatchConfig:
    """Mix & Match (Czarnecki et al. 2018): K policies pi_1 (simple) .. pi_K (the target) act with
    pi_mm = sum_i w_i pi_i; loss = RL(pi_mm) + lambda (1 - alpha) sum_i KL(pi_i || pi_{i+1}).
    Fewer than two components: off."""

    components: list[ComponentConfig] = field(default_factory=list)
    """The policies, simplest first; the last is the target agent (exported, scored)."""
    share: list[str] = field(default_factory=lambda: ["torso"])
    """Modules the components share: ``torso`` (conv stack), ``core`` (needs identical cores),
    ``policy_head`` (the cores' policy projection; needs identical action sets). Unshared modules
    are built per component with the same ``net`` settings."""
    alpha: float = 0.0
    """Initial alpha in [0, 1]: the weight of the target (K=2: pi_mm = (1-alpha) pi_1 + alpha pi_2;
    K>2: alpha walks the chain, see the docs). Mutable by PBT as ``mixmatch/alpha`` (explore:
    ``perturb: add``; the paper's prior is log-uniform in [1e-3, 1e-2])."""
    alpha_schedule: str = "constant"
    """``constant`` (alpha, or PBT's), ``linear`` (from alpha to 1 at ``alpha_end_frames``), or
    ``piecewise`` (the ``alpha_piecewise`` points)."""
    alpha_end_frames: int = 0
    """``linear``: the frame at which alpha reaches 1."""
    alpha_piecewise: list[list[float]] = field(default_factory=list)
    """``piecewise``: ``[[frame, alpha], ...]`` with increasing frames, alpha in [0, 1]."""
    lambda_mm: float | None = None
    """Weight lambda of the M&M distillation term; None: the paper's, 1.0 for action-space
    curricula and 100.0 when components differ in core or are per-task specialists. Mutable as
    ``mixmatch/lambda``."""
    kl: str = "full"
    """``full``: KL(pi_i || pi_{i+1}) over all actions; ``masked``: only over pi_i's support, with
    pi_{i+1} renormalised there (pi_{i+1} is not penalised for actions pi_i cannot take)."""
    kl_grad: str = "both"
    """``both`` (the paper's: the simple policy is also pulled toward the complex one) or
    ``target`` (stop the gradient into pi_i: only pi_{i+1} is distilled)."""
    shared_head: bool = False
    """The paper's "shared head" variant: a small-action component has no policy head of its own;
    it is the next component's policy restricted to its actions and renormalised (needs a shared
    core)."""
    mixing: str = "explicit"
    """``explicit``: the agent acts with pi_mm, mixing probabilities (the paper's choice, lower
    variance); ``sampled``: at each step each env draws a selector c ~ w and acts with pi_c alone.
    Same behaviour and same expected policy gradient; the learner replays the recorded c and trains
    pi_c on that step (an unbiased Monte Carlo estimate of the explicit gradient, M&M Sec. 3.1)."""

    def __post_init__(self) -> None:
        s = "mixmatch"
        if not self.components:
            return
        _check(len(self.components) >= 2,
               f"mixmatch.components has {len(self.components)} component; Mix & Match needs K >= 2 "
               f"(a simple policy and the target), or none to turn it off")
        _check(not self.components[-1].per_task,
               "mixmatch.components[-1].per_task=true: the last component is the target agent and must be "
               "one central policy; put the per-task specialists first")
        for name in self.share:
            _choice(s, "share", name, SHAREABLE)
        _check(0.0 <= self.alpha <= 1.0, f"mixmatch.alpha={self.alpha!r} must be in [0, 1]")
        _choice(s, "alpha_schedule", self.alpha_schedule, ALPHA_SCHEDULES)
        _positive(s, "alpha_end_frames", self.alpha_end_frames, allow_zero=True)
        if self.alpha_schedule == "linear":
            _check(self.alpha_end_frames > 0, "mixmatch.alpha_schedule=linear needs mixmatch.alpha_end_frames > 0")
        if self.alpha_schedule == "piecewise":
            pts = self.alpha_piecewise
            _check(len(pts) >= 1 and all(len(p) == 2 and 0.0 <= p[1] <= 1.0 for p in pts),
                   "mixmatch.alpha_piecewise must be a non-empty list of [frame, alpha] pairs with alpha in [0, 1]")
            frames = [p[0] for p in pts]
            _check(all(a < b for a, b in zip(frames, frames[1:])) and frames[0] >= 0,
                   f"mixmatch.alpha_piecewise frames must be >= 0 and increasing, got {frames}")
        if self.lambda_mm is not None:
            _positive(s, "lambda_mm", self.lambda_mm, allow_zero=True)
        _choice(s, "kl", self.kl, KL_KINDS)
        _choice(s, "kl_grad", self.kl_grad, KL_GRADS)
        _choice(s, "mixing", self.mixing, MIXINGS)
        _check(not (self.shared_head and self.kl == "masked"),
               "mixmatch.shared_head=true with mixmatch.kl=masked: with a shared head pi_i is pi_{i+1} renormalised on "
               "pi_i's actions, so the masked KL is always 0 and the M&M term does nothing; use mixmatch.kl=full")

    @property
    def enabled(self) -> bool:
        return len(self.components) >= 2


PRIOR_DISTRIBUTIONS = ("log_uniform", "uniform", "fixed")
PERTURBS = ("auto", "multiply", "add")
EXPLOIT_RULES = ("auto", "ttest", "truncation", "absolute_gap", "none")
PBT_EVALS = ("auto", "training_returns", "evaluator")
PBT_BACKENDS = ("local", "serial", "ray")
ADD_STEP = 0.05
"""The default ``pbt.add_step`` (the M&M paper's +-0.05 on alpha)."""


@dataclass
class PriorConfig:
    """How PBT draws one mutable hyperparameter's initial value and how it perturbs it."""

    distribution: str = "log_uniform"
    """Initial value per member: ``log_uniform`` (exp of uniform in [log low, log high]), ``uniform``
    in [low, high], or ``fixed`` (``value``, the same for every member)."""
    low: float = 0.0
    """Lower end of the range (``log_uniform``: > 0)."""
    high: float = 1.0
    """Upper end of the range (> low)."""
    value: float | None = None
    """``fixed``: the initial value; None keeps the run's configured one (e.g. learner.learning_rate)."""
    perturb: str = "auto"
    """Explore step: ``multiply`` by a random one of ``pbt.perturb_factors`` (learning rate, entropy
    cost, kickstarting alpha/rho), or ``add`` +-``pbt.add_step`` clipped to the hyperparameter's range
    ([0, 1] unless its method declares another; weights such as the Mix & Match alpha); ``auto``:
    ``add`` for the weights a method declares with a range (``mixmatch/alpha``, the paper's),
    ``multiply`` for everything else (resolved by :func:`resolve_config`)."""

    def __post_init__(self) -> None:
        _choice("pbt.mutable.<name>", "distribution", self.distribution, PRIOR_DISTRIBUTIONS)
        _choice("pbt.mutable.<name>", "perturb", self.perturb, PERTURBS)

    def check(self, where: str) -> None:
        """The range checks, with the prior's name in the message (``pbt.mutable.<name>``)."""
        if self.distribution == "fixed":
            if self.value is not None:
                _positive(where, "value", self.value, allow_zero=True)
            return
        _check(math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high,
               f"{where}: low={self.low!r} >= high={self.high!r} is an empty range; a {self.distribution} "
               f"prior needs low < high")
        if self.distribution == "log_uniform":
            _check(self.low > 0, f"{where}: a log_uniform prior needs low > 0, got low={self.low!r}")
        else:
            _check(self.low >= 0, f"{where}: hyperparameters are >= 0, so a uniform prior needs low >= 0, "
                                  f"got low={self.low!r}")


def _default_mutable() -> dict[str, PriorConfig]:
    # Ranges for the Adam, mean-reduced MinAtar configs; the papers' RMSProp/sum ranges are lower
    # (learning rate loguniform(1e-5, 1e-3), entropy cost loguniform(1e-4, 1e-2) in M&M).
    return {"learning_rate": PriorConfig("log_uniform", 3e-4, 3e-3),
            "entropy_cost": PriorConfig("log_uniform", 1e-4, 1e-2)}


@dataclass
class PBTConfig:
    """Population Based Training (Jaderberg et al. 2017) as in kickstarting (Sec. 2.3, 4.2) and Mix &
    Match (Sec. 3.4, App. B). ``population_size`` 1: off (a single run)."""

    population_size: int = 1
    """Members trained side by side; each has its own run directory ``RUN_DIR/members/<i>``."""
    ready_episodes: int = 300
    """A member is ready (exploit/explore) after this many finished episodes since its last ready
    event (300, the papers'); 0: unused."""
    ready_frames: int = 0
    """... or after this many env frames since its last ready event, whichever comes first; 0: unused."""
    exploit: str = "auto"
    """``ttest`` (the papers': a random other member whose last ``ttest_window`` evaluations are
    better by a one-sided Welch t-test, p < ``ttest_pvalue``, is copied: weights, optimiser state,
    hyperparameters), ``truncation`` (members in the bottom ``truncation_fraction`` copy a random
    member of the top one), ``absolute_gap`` (copy a random member whose mean evaluation exceeds
    ours by more than ``gap``), ``none`` (explore only), or ``auto`` (ttest for a population, none
    for a single run)."""
    ttest_window: int = 30
    """Evaluations (episodes) per member compared by the t-test (30, the papers')."""
    ttest_pvalue: float = 0.05
    """Significance level of the t-test."""
    truncation_fraction: float = 0.2
    """``truncation``: the bottom and top fractions of the population (in (0, 0.5])."""
    gap: float = 0.0
    """``absolute_gap``: how much higher (in the evaluation's units) a donor's mean must be."""
    explore_probability: float = 0.25
    """Probability per ready event (exploited or not) of perturbing every mutable hyperparameter."""
    perturb_factors: list[float] = field(default_factory=lambda: [0.8, 1.2])
    """``multiply`` perturbations multiply by one of these, chosen uniformly."""
    add_step: float = ADD_STEP
    """``add`` perturbations add or subtract this, then clip to the hyperparameter's range."""
    alpha_step: float | None = None
    """The former name of ``add_step`` (existing configs keep working); None: unused."""
    resample_probability: float = 0.0
    """When exploring, probability per hyperparameter of drawing it afresh from its prior instead of
    perturbing it."""
    mutable: dict[str, PriorConfig] = field(default_factory=_default_mutable)
    """Hyperparameters PBT evolves, by learner name (``learning_rate``, ``entropy_cost``,
    ``kickstart/alpha``, ``kickstart/rho/<teacher>``, ...) -> prior. A mapping given in the config
    replaces the default one (learning rate and entropy cost)."""
    initial_hparams: list[dict[str, float]] = field(default_factory=list)
    """Optional fixed initial values: entry i overrides the values drawn for member i (tests,
    warm starts)."""
    eval: str = "auto"
    """What PBT compares: ``training_returns`` (per finished training episode its raw return, or on a
    multi-task suite its capped normalised score; the last ``ttest_window`` episodes), or
    ``evaluator`` (at each ready event, ``eval_episodes`` separate evaluation episodes per task of
    the member's current network, e.g. only Mix & Match's target agent); ``auto``: what the run's
    method prefers (``evaluator`` for a Mix & Match multitask agent: its central policy alone is
    scored, M&M Sec. 3.4 and App. B.2), ``training_returns`` otherwise (resolved by
    :func:`resolve_config`; :func:`pbt_eval` where used)."""
    eval_episodes: int = 30
    """``evaluator``: episodes per task at each ready event."""
    eval_greedy: bool = False
    """``evaluator``: act greedily instead of sampling."""
    member_restarts: int = 3
    """How many times a member process that died is restarted (from its last checkpoint)."""
    backend: str = "local"
    """``local``: one process per member on this machine, trained concurrently; ``serial``: every
    member in this process, taking turns (tests, debugging); ``ray``: one Ray actor per member,
    spread over the nodes of a Ray cluster, checkpoints exchanged through Ray's object store (see
    the ``ray`` section)."""

    def __post_init__(self) -> None:
        s = "pbt"
        _positive(s, "population_size", self.population_size)
        _choice(s, "exploit", self.exploit, EXPLOIT_RULES)
        _check(not (self.population_size == 1 and self.exploit not in ("auto", "none")),
               f"pbt.exploit={self.exploit} needs pbt.population_size >= 2 (one member has nobody to copy); "
               f"raise pbt.population_size or set pbt.exploit=none")
        _positive(s, "ready_episodes", self.ready_episodes, allow_zero=True)
        _positive(s, "ready_frames", self.ready_frames, allow_zero=True)
        _check(self.ready_episodes > 0 or self.ready_frames > 0,
               "pbt.ready_episodes and pbt.ready_frames are both 0: set one of them > 0 (when members are ready)")
        _check(self.ttest_window >= 2,
               f"pbt.ttest_window={self.ttest_window!r} must be >= 2 (a t-test needs two samples)")
        _check(0.0 < self.ttest_pvalue < 1.0, f"pbt.ttest_pvalue={self.ttest_pvalue!r} must be in (0, 1)")
        _check(0.0 < self.truncation_fraction <= 0.5,
               f"pbt.truncation_fraction={self.truncation_fraction!r} must be in (0, 0.5]")
        _positive(s, "gap", self.gap, allow_zero=True)
        _unit(s, "explore_probability", self.explore_probability)
        _unit(s, "resample_probability", self.resample_probability)
        _check(len(self.perturb_factors) > 0 and all(math.isfinite(f) and f > 0 for f in self.perturb_factors),
               f"pbt.perturb_factors={self.perturb_factors!r} must be a non-empty list of numbers > 0")
        _positive(s, "add_step", self.add_step)
        if self.alpha_step is not None:
            _positive(s, "alpha_step", self.alpha_step)
            _check(self.add_step in (self.alpha_step, ADD_STEP),
                   f"pbt.alpha_step={self.alpha_step!r} and pbt.add_step={self.add_step!r}: alpha_step is the former "
                   f"name of add_step; set add_step alone")
        for name, prior in self.mutable.items():
            _check(bool(name), "pbt.mutable has an empty hyperparameter name")
            prior.check(f"pbt.mutable.{name}")
            r = hparam_range(name)     # a weight a method declares: explored by adding, within its range
            if r is not None:
                where, within = f"pbt.mutable.{name}", f"[{r.low:g}, {r.high:g}]"
                _check(prior.perturb in ("auto", "add"),
                       f"{where}.perturb={prior.perturb}: {name} is a weight in {within}; explore it with perturb: "
                       f"add (+-pbt.add_step, clipped to {within})")
                top = prior.value if prior.distribution == "fixed" else prior.high
                _check(top is None or top <= r.high,
                       f"{where}: a {prior.distribution} prior up to {top!r} leaves {within}, where {name} lives; "
                       f"the paper's prior is log_uniform with low 0.001, high 0.01")
        _check(len(self.initial_hparams) <= self.population_size,
               f"pbt.initial_hparams has {len(self.initial_hparams)} entries for pbt.population_size="
               f"{self.population_size}; give at most one per member")
        for i, values in enumerate(self.initial_hparams):
            for k, v in values.items():
                _check(math.isfinite(v) and v >= 0,
                       f"pbt.initial_hparams[{i}].{k}={v!r} must be a finite number >= 0")
                r = hparam_range(k)
                if r is not None:
                    _check(r.low <= v <= r.high,
                           f"pbt.initial_hparams[{i}].{k}={v!r} must be in [{r.low:g}, {r.high:g}]")
        _choice(s, "eval", self.eval, PBT_EVALS)
        _positive(s, "eval_episodes", self.eval_episodes)
        _positive(s, "member_restarts", self.member_restarts, allow_zero=True)
        _choice(s, "backend", self.backend, PBT_BACKENDS)

    @property
    def enabled(self) -> bool:
        return self.population_size > 1

    @property
    def step(self) -> float:
        """The ``add`` step: ``add_step``, or ``alpha_step`` where a config still gives the former name."""
        return self.add_step if self.alpha_step is None else self.alpha_step

    @property
    def exploit_rule(self) -> str:
        """``exploit`` with ``auto`` resolved (ttest for a population, none for one member)."""
        if self.exploit == "auto":
            return "ttest" if self.population_size > 1 else "none"
        return self.exploit


@dataclass
class RayConfig:
    """Where ``runtime.backend=ray`` and ``pbt.backend=ray`` run: a Ray cluster.

    Unrolls and parameters travel through Ray's object store. PBT checkpoints do too: a member
    returns its checkpoint's bytes with every report that carries one, the controller keeps the
    latest ones, and hands them to the member that copies a donor and to a member restarted on
    another node, so no shared filesystem is needed. Each member still writes its logs and periodic
    checkpoints under ``run.out_dir`` on the node it runs on: point it at a shared path (NFS) to
    find every member's files in one place.
    """

    address: str = ""
    """``""``: start a private Ray instance on this machine for the run (stopped at its end);
    ``auto``: the cluster ``ray start`` started on this machine (or ``RAY_ADDRESS``); ``host:port``:
    the head node's address (what ``ray start --head`` printed)."""
    host: str = "127.0.0.1"
    """The IP address this machine's Ray node listens on and is reached at (``ray start
    --node-ip-address``). Loopback by default: nothing outside this machine can reach Ray, which has
    no authentication beyond a local token. On a multi-machine cluster, this machine's address on the
    cluster's private network."""
    dashboard: bool = False
    """Start Ray's dashboard with a private instance (on ``host``); off by default."""
    num_cpus: int = 0
    """CPUs a private instance offers; 0: Ray's default (every core of this machine)."""
    cpus_per_actor: float = 1.0
    """CPUs Ray reserves for each actor (``runtime.backend=ray``); each runs one torch thread."""
    cpus_per_member: float = 1.0
    """CPUs Ray reserves for each PBT member's learner (``pbt.backend=ray``)."""

    def __post_init__(self) -> None:
        s = "ray"
        _check(isinstance(self.address, str), "ray.address must be a string: '', 'auto' or host:port")
        if self.address not in ("", "auto"):
            host, sep, port = self.address.rpartition(":")
            _check(bool(sep) and bool(host) and "/" not in self.address and port.isdigit()
                   and 0 < int(port) < 65536,
                   f"ray.address={self.address!r} is not valid; use '' (a private local instance), 'auto' "
                   f"(the cluster started on this machine) or host:port, e.g. 127.0.0.1:6379")
        _check(self.host.strip() != "" and self.host.count(":") != 1,   # IPv6 has >= 2 colons, host:port one
               f"ray.host={self.host!r} must be an IP address without a port, e.g. 127.0.0.1")
        _positive(s, "num_cpus", self.num_cpus, allow_zero=True)
        _positive(s, "cpus_per_actor", self.cpus_per_actor, allow_zero=True)
        _positive(s, "cpus_per_member", self.cpus_per_member, allow_zero=True)


@dataclass
class Config:
    """A whole run."""

    env: EnvConfig = field(default_factory=EnvConfig)
    net: NetConfig = field(default_factory=NetConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    run: RunConfig = field(default_factory=RunConfig)
    kickstart: KickstartConfig = field(default_factory=KickstartConfig)
    pbt: PBTConfig = field(default_factory=PBTConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    mixmatch: MixMatchConfig = field(default_factory=MixMatchConfig)

    def __post_init__(self) -> None:
        # Checks only: resolving ``auto`` is resolve_config's. The methods check their own settings
        # against the rest (those registered so far; train and PBT check again with all of them).
        for method in enabled_methods(self):
            method.check(self)
        _check(not (pbt_eval(self) == "evaluator" and self.pbt.exploit_rule == "ttest" and self.pbt.eval_episodes < 2),
               f"pbt.eval_episodes={self.pbt.eval_episodes} gives the t-test one sample per task; set it >= 2")
        b, n = self.learner.batch_size, self.runtime.envs_per_actor
        _check(b % n == 0,
               f"learner.batch_size={b} must be a multiple of runtime.envs_per_actor={n} "
               f"(a batch is made of whole actor unrolls); e.g. learner.batch_size={max(n, (b // n) * n)}")


# ----------------------------------------------------------------------------------------------
# Resolving the settings whose ``auto`` depends on the methods.

def pbt_eval(cfg: Config) -> str:
    """``pbt.eval`` with ``auto`` resolved: what the first enabled method that has a preference
    says (:meth:`kickstart.method.Method.pbt_eval`), else ``training_returns``."""
    if cfg.pbt.eval != "auto":
        return cfg.pbt.eval
    for method in enabled_methods(cfg):
        choice = method.pbt_eval(cfg)
        if choice is not None:
            return choice
    return "training_returns"


def perturb_rule(name: str, prior: PriorConfig) -> str:
    """How PBT explores hyperparameter ``name``: its prior's ``perturb``, with ``auto`` resolved
    (``add`` for a weight a registered method declares with a range, ``multiply`` otherwise)."""
    if prior.perturb != "auto":
        return prior.perturb
    return "add" if hparam_range(name) is not None else "multiply"


def resolve_config(cfg: Config) -> Config:
    """A new config with the settings whose ``auto`` depends on the run's methods resolved: for a
    population (the only runs that use them), ``pbt.eval`` and each ``pbt.mutable`` prior's
    ``perturb``; and ``pbt.alpha_step`` folded into ``pbt.add_step``. This is what ``config.yaml`` in
    a run directory records; machine-dependent ``auto`` settings (``net.precision``,
    ``runtime.num_actors``, ...) stay unresolved, so that a run resumed elsewhere fits that machine.
    ``cfg`` is not changed; the result is checked again."""
    data = to_dict(cfg)
    pbt = data["pbt"]
    if cfg.pbt.enabled:
        pbt["eval"] = pbt_eval(cfg)
        for name, prior in cfg.pbt.mutable.items():
            pbt["mutable"][name]["perturb"] = perturb_rule(name, prior)
    pbt["add_step"], pbt["alpha_step"] = cfg.pbt.step, None
    return from_dict(Config, data)


# ----------------------------------------------------------------------------------------------
# Building configs from nested dicts, YAML files and dotted overrides.

def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(path: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp`` (after ``from __future__`` resolution)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(path, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{path} has an invalid value {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}={value!r} must be a list")
        return [_coerce(f"{path}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}={value!r} must be a mapping")
        k_tp, v_tp = typing.get_args(tp)
        return {_coerce(f"{path}.<key>", k, k_tp): _coerce(f"{path}.{k}", v, v_tp) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}={value!r} must be true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{path}={value!r} must be an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}={value!r} must be a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}={value!r} must be a string")
    if tp is Any:
        return value
    raise ConfigError(f"{path}: unsupported type {_type_name(tp)}")


def _unknown_key(path: str, key: str, valid: list[str]) -> ConfigError:
    where = f"{path}.{key}" if path else key
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown config key {where!r}{hint}; valid keys{' in ' + path if path else ''}: "
                       f"{', '.join(valid)}")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown_key(path, str(key), names)
        kwargs[key] = _coerce(f"{path}.{key}" if path else key, value, hints[key])
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - guarded by the key check above
        raise ConfigError(f"{path or 'config'}: {e}") from None


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict, overrides: list[str], cls: type = None) -> dict:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to a nested dict, in place.

    Paths may go through mappings of sections, e.g. ``kickstart.teachers.breakout.rho=0.5`` or
    ``pbt.mutable.learning_rate.low=1e-4``.
    """
    cls = cls or Config
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value, e.g. learner.learning_rate=3e-4")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        try:
            value = yaml.safe_load(raw) if raw.strip() != "" else ""
        except yaml.YAMLError:
            value = raw
        node, node_cls, path = data, cls, ""
        i = 0
        while i < len(parts):
            part = parts[i]
            names = [f.name for f in dataclasses.fields(node_cls)]
            if part not in names:
                raise _unknown_key(path, part, names)
            path = f"{path}.{part}" if path else part
            if i == len(parts) - 1:
                node[part] = value
                break
            tp = typing.get_type_hints(node_cls)[part]
            if typing.get_origin(tp) is dict and dataclasses.is_dataclass(typing.get_args(tp)[1]):
                # a mapping of sections: the next part is an entry's name
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
                entry = parts[i + 1]
                path = f"{path}.{entry}"
                if i + 1 == len(parts) - 1:
                    node[entry] = value
                    break
                if not isinstance(node.get(entry), dict):
                    node[entry] = {}
                node, node_cls = node[entry], typing.get_args(tp)[1]
                i += 2
                continue
            if not dataclasses.is_dataclass(tp):
                raise ConfigError(f"{path} is not a section; set it as {path}=value")
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node, node_cls = node[part], tp
            i += 1
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply dotted overrides."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if p.is_dir():
            hint = (f" (to continue the run in it: kickstart train --resume {p})"
                    if (p / "config.yaml").is_file() else "")
            raise ConfigError(f"config file {str(p)!r} is a directory; pass a YAML file such as "
                              f"configs/minatar_breakout.yaml{hint}")
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist; pass a YAML file such as configs/minatar_breakout.yaml")
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise ConfigError(f"config file {str(p)!r} cannot be read ({e.strerror or e}); "
                              f"pass a readable YAML file such as configs/minatar_breakout.yaml") from None
        expected = "expected a YAML text file (UTF-8) such as configs/minatar_breakout.yaml"
        nul = raw.find(b"\0")
        if nul >= 0:
            raise ConfigError(f"config file {str(p)!r} is binary, not text (a NUL byte at offset {nul}); {expected}")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {str(p)!r} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
                              f"{e.start}); {expected}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            first = str(e).strip().splitlines()[0]
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {first}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping of sections (env, net, learner, runtime, run)")
    apply_overrides(data, list(overrides or []))
    return resolve_config(from_dict(Config, data))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
