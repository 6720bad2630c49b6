"""Mix & Match's config section (``mixmatch``): its components, what they share, alpha and the KL.

Beside its method: :class:`~kickstart.mixmatch.method.MixMatch` declares it (``Method.section``) and
the registry's config class holds it as ``cfg.mixmatch``. It imports only the config engine and the
core sections (a component's unset fields take the run's ``net`` values, so it checks against the
same choices).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kickstart.config import CORES, POLICY_HEADS
from kickstart.configio import check, choice, positive

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
            choice(s, "core", self.core, CORES)
        if self.policy_head:
            choice(s, "policy_head", self.policy_head, POLICY_HEADS)
        positive(s, "lstm_size", self.lstm_size, allow_zero=True)
        choice(s, "action_set", self.action_set, ACTION_SETS)


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
        check(len(self.components) >= 2,
               f"mixmatch.components has {len(self.components)} component; Mix & Match needs K >= 2 "
               f"(a simple policy and the target), or none to turn it off")
        check(not self.components[-1].per_task,
               "mixmatch.components[-1].per_task=true: the last component is the target agent and must be "
               "one central policy; put the per-task specialists first")
        for name in self.share:
            choice(s, "share", name, SHAREABLE)
        check(0.0 <= self.alpha <= 1.0, f"mixmatch.alpha={self.alpha!r} must be in [0, 1]")
        choice(s, "alpha_schedule", self.alpha_schedule, ALPHA_SCHEDULES)
        positive(s, "alpha_end_frames", self.alpha_end_frames, allow_zero=True)
        if self.alpha_schedule == "linear":
            check(self.alpha_end_frames > 0, "mixmatch.alpha_schedule=linear needs mixmatch.alpha_end_frames > 0")
        if self.alpha_schedule == "piecewise":
            pts = self.alpha_piecewise
            check(len(pts) >= 1 and all(len(p) == 2 and 0.0 <= p[1] <= 1.0 for p in pts),
                   "mixmatch.alpha_piecewise must be a non-empty list of [frame, alpha] pairs with alpha in [0, 1]")
            frames = [p[0] for p in pts]
            check(all(a < b for a, b in zip(frames, frames[1:])) and frames[0] >= 0,
                   f"mixmatch.alpha_piecewise frames must be >= 0 and increasing, got {frames}")
        if self.lambda_mm is not None:
            positive(s, "lambda_mm", self.lambda_mm, allow_zero=True)
        choice(s, "kl", self.kl, KL_KINDS)
        choice(s, "kl_grad", self.kl_grad, KL_GRADS)
        choice(s, "mixing", self.mixing, MIXINGS)
        check(not (self.shared_head and self.kl == "masked"),
               "mixmatch.shared_head=true with mixmatch.kl=masked: with a shared head pi_i is pi_{i+1} renormalised on "
               "pi_i's actions, so the masked KL is always 0 and the M&M term does nothing; use mixmatch.kl=full")

    @property
    def enabled(self) -> bool:
        return len(self.components) >= 2
