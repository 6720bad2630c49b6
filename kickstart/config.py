"""The run configuration's core: the sections every run has, and the whole-run class built from them.

A run is described by one config made of sections (``env``, ``net``, ``learner``, ``runtime``,
``run``, ``pbt``, ``ray``, and one per method). Each section is a dataclass whose fields carry a
docstring and are checked on construction, with one-line messages that say what is valid. Who owns
what:

* this module: the core sections, :class:`CoreConfig` (them together, with the checks across
  sections) and :func:`make_config`, which adds the sections of a set of methods;
* :mod:`kickstart.pbt.config`: the ``pbt`` section (core too: ``population_size: 1`` is off);
* each method's own ``config`` module: its section (:mod:`kickstart.kickstarting.config`,
  :mod:`kickstart.mixmatch.config`), which its :class:`~kickstart.method.Method` declares;
* :mod:`kickstart.configio`: the engine (dicts, YAML, dotted overrides, type coercion);
* :mod:`kickstart.methods`, the registry: ``Config = make_config(METHODS)`` and ``load_config``.

Validation checks and never mutates; resolving the settings whose ``auto`` depends on the run's
methods is a step of its own, :func:`resolve_config`, whose result is what ``config.yaml`` in a
run directory records, so that ``--resume`` rebuilds exactly the same run. This module never
imports a method: the methods reach it through the config class's ``methods``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

from kickstart.configio import check, choice, from_dict, positive, to_dict, unit
from kickstart.method import Method, enabled_methods
from kickstart.pbt.config import PBTConfig, check_ranges, pbt_eval, perturb_rule
from kickstart.precision import PRECISIONS


DOOM_ACTIONS = ("small", "large")


@dataclass
class DoomConfig:
    """ViZDoom (``vizdoom:<scenario>`` ids, the ``doom`` suite): actions and screen processing
    (see :mod:`kickstart.envs.doom`)."""

    actions: str = "small"
    """``small``: NOOP and each of the scenario's own buttons pressed alone (a suite: the union of its
    tasks' sets); ``large``: the factorised product move (3) x strafe (3) x turn (3) x attack (2) x
    speed (2) = 108 actions, in DeepMind Lab's style (``net.policy_head=factorised`` for a product head)."""
    buttons: list[str] = field(default_factory=list)
    """``small`` only: these buttons (e.g. ``[MOVE_LEFT, MOVE_RIGHT, ATTACK, TURN_LEFT]``) instead of
    each scenario's own; empty keeps the scenario's."""
    frame_skip: int = 4
    """Action repeat: game tics per agent step (frames are counted as steps x frame_skip)."""
    obs_size: list[int] = field(default_factory=lambda: [84, 84])
    """Observation ``[height, width]`` after an area resize of the smallest ViZDoom resolution that
    covers it (160x120 for the default); a size that is a ViZDoom resolution is rendered as is."""
    color: bool = False
    """RGB frames (3 channels each) instead of grayscale (1)."""

    def __post_init__(self) -> None:
        s = "env.doom"
        choice(s, "actions", self.actions, DOOM_ACTIONS)
        positive(s, "frame_skip", self.frame_skip)
        check(len(self.obs_size) == 2 and all(isinstance(v, int) and v > 0 for v in self.obs_size),
              f"env.doom.obs_size={self.obs_size!r} must be [height, width], two positive integers")
        check(all(isinstance(b, str) for b in self.buttons), f"env.doom.buttons={self.buttons!r} must be button names")
        check(not self.buttons or self.actions == "small",
              "env.doom.buttons replaces the scenarios' own buttons of env.doom.actions=small; "
              "with env.doom.actions=large every button is in the product already")


@dataclass
class EnvConfig:
    """Which environment(s) to train on and how to process them."""

    id: str = "minatar:Breakout"
    """``minatar:<Game>``, ``atari:<Game>``, ``vizdoom:<scenario>``, any registered Gymnasium id, or a
    suite name (``minatar5``, ``atari5``, ``atari57``, ``doom``) for multi-task training."""
    sticky_actions: float | None = None
    """Probability of repeating the previous action; None uses the env's default
    (0.1 for MinAtar, as its authors recommend; 0.0 for Atari, as in IMPALA, and ViZDoom)."""
    full_action_space: bool = False
    """Atari: use all 18 actions instead of the game's minimal set."""
    episodic_life: bool = False
    """Atari: treat the loss of a life as the end of an episode for learning (returns are still
    reported per game)."""
    noop_max: int = 30
    """Atari: up to this many no-op actions at the start of each episode."""
    frame_stack: int = 4
    """Atari and ViZDoom: number of stacked frames (84x84 grayscale on Atari)."""
    max_episode_frames: int = 108_000
    """Atari: episode cap in emulator frames (108k = 30 minutes of play); ViZDoom: in game tics, on
    top of each scenario's own timeout."""
    max_episode_steps: int | None = None
    """Gymnasium ids: override the env's time limit (agent steps); None keeps the env's own. MinAtar,
    Atari and ViZDoom: an extra limit in agent steps."""
    doom: DoomConfig = field(default_factory=DoomConfig)
    """ViZDoom: action set and screen processing."""

    def __post_init__(self) -> None:
        s = "env"
        check(isinstance(self.id, str) and self.id.strip() != "", "env.id must be a non-empty string")
        if self.sticky_actions is not None:
            unit(s, "sticky_actions", self.sticky_actions)
        positive(s, "noop_max", self.noop_max, allow_zero=True)
        positive(s, "frame_stack", self.frame_stack)
        positive(s, "max_episode_frames", self.max_episode_frames)
        if self.max_episode_steps is not None:
            positive(s, "max_episode_steps", self.max_episode_steps)
        check(isinstance(self.doom, DoomConfig), "env.doom must be a section (env.doom.actions=..., ...)")


TORSOS = ("auto", "nature", "impala_shallow", "impala_deep", "minatar", "mlp")
CORES = ("ff", "lstm")
POLICY_HEADS = ("categorical", "factorised")


INITS = ("default", "orthogonal")


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
    on each device where it pays: CUDA devices with native bf16, CPUs with AMX; fp32 elsewhere,
    CPUs with AVX512-BF16 alone included; see :mod:`kickstart.precision`), ``fp32``, or ``bf16`` (autocast:
    convolutions and matrix products in bfloat16, parameters, outputs and losses in float32;
    emulated, and several times slower than fp32, where bf16 is not native)."""
    init: str = "default"
    """Initialisation of the torso and the value head: ``default`` (PyTorch's layer defaults) or
    ``orthogonal`` (orthogonal weights, gain sqrt(2) in the ReLU torso and 1 in the value head, zero
    biases: what PPO implementations use). The policy head is always orthogonal with gain 0.01."""
    popart: bool = False
    """PopArt value head (Hessel et al. 2019; :mod:`kickstart.nets.popart`): one normalised value per
    task, trained on per-task normalised targets, with the policy-gradient advantage divided by the
    task's scale, so that tasks whose returns differ by orders of magnitude weigh alike in a
    multi-task run. Outputs are preserved when the statistics move."""
    popart_beta: float = 3e-4
    """Step size of PopArt's running moments per learner update (the paper's 3e-4)."""

    def __post_init__(self) -> None:
        s = "net"
        choice(s, "torso", self.torso, TORSOS)
        choice(s, "core", self.core, CORES)
        choice(s, "policy_head", self.policy_head, POLICY_HEADS)
        choice(s, "precision", self.precision, PRECISIONS)
        choice(s, "init", self.init, INITS)
        positive(s, "hidden_size", self.hidden_size)
        positive(s, "lstm_size", self.lstm_size)
        check(0.0 < self.popart_beta <= 1.0, f"net.popart_beta={self.popart_beta} must be in (0, 1]")
        check(len(self.mlp_sizes) > 0 and all(isinstance(v, int) and v > 0 for v in self.mlp_sizes),
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
    advantage_norm: bool = False
    """Normalise the policy-gradient advantages (zero mean, unit standard deviation) over each
    minibatch (``learner.minibatches``; the whole batch when it is 1), as PPO implementations do: the
    policy's step, and the entropy bonus's weight relative to it, then no longer depend on the scale
    of the returns."""
    vtrace_lambda: float = 1.0
    """V-trace's lambda (IMPALA, Remark 2): 1 is the paper's V-trace; below 1 the value targets
    and advantages weigh later rewards less and the critic more (the lambda-returns on-policy)."""
    pg_clip: float = 0.0
    """PPO's clipped surrogate on V-trace advantages (``kickstart.losses.impala.clipped_surrogate_loss``)
    with this clipping range, e.g. 0.2; 0 (the default) is IMPALA's policy gradient. It bounds how far
    the steps on one batch move the policy from the one that acted (``learner.epochs`` > 1)."""
    epochs: int = 1
    """Passes over each batch of unrolls: 1 is IMPALA's one update per batch. More passes reuse the
    experience (as PPO's epochs do): from the second pass on, the policy being trained is no longer
    the one that acted, and V-trace's clipped importance weights correct for it."""
    minibatches: int = 1
    """Optimiser steps per pass: the batch's unrolls are split at random into this many groups of
    whole unrolls (V-trace and a recurrent core see complete sequences); must divide batch_size."""
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
        choice(s, "optimizer", self.optimizer, OPTIMIZERS)
        choice(s, "lr_schedule", self.lr_schedule, LR_SCHEDULES)
        choice(s, "loss_reduction", self.loss_reduction, REDUCTIONS)
        choice(s, "device", self.device, DEVICES)
        positive(s, "learning_rate", self.learning_rate)
        unit(s, "rmsprop_decay", self.rmsprop_decay)
        positive(s, "rmsprop_eps", self.rmsprop_eps)
        positive(s, "rmsprop_momentum", self.rmsprop_momentum, allow_zero=True)
        check(0.0 <= self.adam_beta1 < 1.0 and 0.0 <= self.adam_beta2 < 1.0,
               "learner.adam_beta1 and learner.adam_beta2 must be in [0, 1)")
        positive(s, "adam_eps", self.adam_eps)
        unit(s, "discount", self.discount)
        positive(s, "baseline_cost", self.baseline_cost, allow_zero=True)
        positive(s, "entropy_cost", self.entropy_cost, allow_zero=True)
        positive(s, "max_grad_norm", self.max_grad_norm, allow_zero=True)
        positive(s, "reward_clip", self.reward_clip, allow_zero=True)
        positive(s, "clip_rho_threshold", self.clip_rho_threshold)
        positive(s, "clip_pg_rho_threshold", self.clip_pg_rho_threshold)
        unit(s, "vtrace_lambda", self.vtrace_lambda)
        positive(s, "unroll_length", self.unroll_length)
        positive(s, "batch_size", self.batch_size)
        positive(s, "pg_clip", self.pg_clip, allow_zero=True)
        check(self.pg_clip < 1.0, f"learner.pg_clip={self.pg_clip!r} must be in [0, 1): the ratio is clipped to "
              f"[1 - pg_clip, 1 + pg_clip]")
        positive(s, "epochs", self.epochs)
        positive(s, "minibatches", self.minibatches)
        check(self.batch_size % self.minibatches == 0,
              f"learner.minibatches={self.minibatches} must divide learner.batch_size={self.batch_size}")


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
        choice(s, "backend", self.backend, BACKENDS)
        positive(s, "num_actors", self.num_actors, allow_zero=True)
        positive(s, "envs_per_actor", self.envs_per_actor)
        positive(s, "num_buffers", self.num_buffers, allow_zero=True)
        positive(s, "torch_threads", self.torch_threads)
        positive(s, "learner_threads", self.learner_threads, allow_zero=True)
        positive(s, "seed", self.seed, allow_zero=True)
        positive(s, "actor_restarts", self.actor_restarts, allow_zero=True)


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
        positive(s, "total_frames", self.total_frames)
        positive(s, "checkpoint_every_s", self.checkpoint_every_s)
        positive(s, "log_every_s", self.log_every_s)


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
        check(isinstance(self.address, str), "ray.address must be a string: '', 'auto' or host:port")
        if self.address not in ("", "auto"):
            host, sep, port = self.address.rpartition(":")
            check(bool(sep) and bool(host) and "/" not in self.address and port.isdigit()
                   and 0 < int(port) < 65536,
                   f"ray.address={self.address!r} is not valid; use '' (a private local instance), 'auto' "
                   f"(the cluster started on this machine) or host:port, e.g. 127.0.0.1:6379")
        check(self.host.strip() != "" and self.host.count(":") != 1,   # IPv6 has >= 2 colons, host:port one
               f"ray.host={self.host!r} must be an IP address without a port, e.g. 127.0.0.1")
        positive(s, "num_cpus", self.num_cpus, allow_zero=True)
        positive(s, "cpus_per_actor", self.cpus_per_actor, allow_zero=True)
        positive(s, "cpus_per_member", self.cpus_per_member, allow_zero=True)


@dataclass
class CoreConfig:
    """A whole run without any method: the core sections. The class a run uses adds its methods'
    sections (:func:`make_config`); ``methods`` are the methods it was built with, which its checks
    (and the core, through :func:`kickstart.method.enabled_methods`) ask."""

    methods: ClassVar[tuple] = ()
    """The methods whose sections this class holds (:class:`kickstart.method.Method`)."""

    env: EnvConfig = field(default_factory=EnvConfig)
    net: NetConfig = field(default_factory=NetConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    run: RunConfig = field(default_factory=RunConfig)
    pbt: PBTConfig = field(default_factory=PBTConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        # Checks only: resolving ``auto`` is resolve_config's. The methods are the class's own, so
        # the same config is checked the same way whichever method packages are imported.
        methods = type(self).methods
        check_ranges(self.pbt, methods)
        for method in enabled_methods(self, methods):
            method.check(self)
        check(not (pbt_eval(self) == "evaluator" and self.pbt.exploit_rule == "ttest" and self.pbt.eval_episodes < 2),
              f"pbt.eval_episodes={self.pbt.eval_episodes} gives the t-test one sample per task; set it >= 2")
        b, n = self.learner.batch_size, self.runtime.envs_per_actor
        check(b % n == 0,
              f"learner.batch_size={b} must be a multiple of runtime.envs_per_actor={n} "
              f"(a batch is made of whole actor unrolls); e.g. learner.batch_size={max(n, (b // n) * n)}")


def make_config(methods: Sequence[Method], name: str = "Config", module: str | None = None) -> type:
    """The config class of runs with ``methods``: :class:`CoreConfig` plus one section per method that
    declares one (``cfg.<method.name>``, of type ``method.section``), with ``methods`` as its
    ``methods``. ``name`` and ``module`` (default: the caller's) say where the class lives, so that
    its instances pickle by reference when it is bound to that name there (as
    :mod:`kickstart.methods` binds ``Config``)."""
    methods = tuple(methods)
    core = {f.name for f in dataclasses.fields(CoreConfig)}
    fields, seen = [], set()
    for m in methods:
        if m.section is None:
            continue
        if m.name in core or m.name in seen:
            raise ValueError(f"method {type(m).__name__}'s section {m.name!r} is already a section of the config")
        seen.add(m.name)
        fields.append((m.name, m.section, field(default_factory=m.section)))
    doc = f"A whole run: the core sections and those of {', '.join(m.name for m in methods) or 'no method'}."
    cls = dataclasses.make_dataclass(name, fields, bases=(CoreConfig,), namespace={"methods": methods, "__doc__": doc})
    cls.__module__ = module or sys._getframe(1).f_globals.get("__name__", __name__)
    cls.__qualname__ = name
    return cls


def resolve_config(cfg: CoreConfig) -> CoreConfig:
    """A new config (of ``cfg``'s class) with the settings whose ``auto`` depends on the run's methods
    resolved: for a population (the only runs that use them), ``pbt.eval`` and each ``pbt.mutable``
    prior's ``perturb``; and ``pbt.alpha_step`` folded into ``pbt.add_step``. This is what
    ``config.yaml`` in a run directory records; machine-dependent ``auto`` settings
    (``net.precision``, ``runtime.num_actors``, ...) stay unresolved, so that a run resumed elsewhere
    fits that machine. ``cfg`` is not changed; the result is checked again."""
    data = to_dict(cfg)
    pbt = data["pbt"]
    if cfg.pbt.enabled:
        pbt["eval"] = pbt_eval(cfg)
        for name, prior in cfg.pbt.mutable.items():
            pbt["mutable"][name]["perturb"] = perturb_rule(name, prior, type(cfg).methods)
    pbt["add_step"], pbt["alpha_step"] = cfg.pbt.step, None
    return from_dict(type(cfg), data)
