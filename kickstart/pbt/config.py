"""PBT's config section (``pbt``), and the PBT settings whose ``auto`` depends on the run's methods.

PBT is core: :class:`PBTConfig` is a section of every run (:class:`kickstart.config.CoreConfig`),
``population_size: 1`` meaning off. What a method adds to it (a weight it declares with a range,
what ``pbt.eval: auto`` means for it) is asked of the methods of the config's own class
(``type(cfg).methods``), so the checks and the resolved values do not depend on which method
packages happen to be imported. This module imports only the config engine and the method
interface, so that :mod:`kickstart.config` can hold the section without an import circle (and
:mod:`kickstart.pbt`'s ``__init__`` imports nothing for the same reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from kickstart.configio import check, choice, positive, unit
from kickstart.method import Method, enabled_methods, hparam_range

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
    ``multiply`` for everything else (resolved by :func:`kickstart.config.resolve_config`)."""
    bounded: bool = False
    """Clip ``multiply`` perturbations to [low, high]. The papers' PBT is unbounded, so a greedy
    population can walk a learning rate far below its prior (a short-horizon bias of PBT's
    comparisons); bounding keeps it inside the range the prior says is sensible."""

    def __post_init__(self) -> None:
        choice("pbt.mutable.<name>", "distribution", self.distribution, PRIOR_DISTRIBUTIONS)
        choice("pbt.mutable.<name>", "perturb", self.perturb, PERTURBS)

    def check(self, where: str) -> None:
        """The range checks, with the prior's name in the message (``pbt.mutable.<name>``)."""
        if self.distribution == "fixed":
            if self.value is not None:
                positive(where, "value", self.value, allow_zero=True)
            check(not self.bounded, f"{where}: bounded=true needs a range, and a fixed prior has none; "
                                    f"use a log_uniform or uniform prior with low and high")
            return
        check(math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high,
              f"{where}: low={self.low!r} >= high={self.high!r} is an empty range; a {self.distribution} "
              f"prior needs low < high")
        if self.distribution == "log_uniform":
            check(self.low > 0, f"{where}: a log_uniform prior needs low > 0, got low={self.low!r}")
        else:
            check(self.low >= 0, f"{where}: hyperparameters are >= 0, so a uniform prior needs low >= 0, "
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
    """Episodes per task kept for the comparison (30, the papers'); on a suite the t-test compares as
    many balanced samples as the task with the fewest episodes has."""
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
    """What PBT compares: ``training_returns`` (the returns of the last ``ttest_window`` finished
    training episodes of each task; on a multi-task suite, samples balanced over the tasks whose mean
    is the suite score, each task's mean capped: :mod:`kickstart.pbt.fitness`), or
    ``evaluator`` (at each ready event, ``eval_episodes`` separate evaluation episodes per task of
    the member's current network, e.g. only Mix & Match's target agent); ``auto``: what the run's
    method prefers (``evaluator`` for a Mix & Match multitask agent: its central policy alone is
    scored, M&M Sec. 3.4 and App. B.2), ``training_returns`` otherwise (resolved by
    :func:`kickstart.config.resolve_config`; :func:`pbt_eval` where used)."""
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
        # The checks that need the run's methods (weights with a range) are check_ranges's, run by
        # the whole config with its own methods.
        s = "pbt"
        positive(s, "population_size", self.population_size)
        choice(s, "exploit", self.exploit, EXPLOIT_RULES)
        check(not (self.population_size == 1 and self.exploit not in ("auto", "none")),
              f"pbt.exploit={self.exploit} needs pbt.population_size >= 2 (one member has nobody to copy); "
              f"raise pbt.population_size or set pbt.exploit=none")
        positive(s, "ready_episodes", self.ready_episodes, allow_zero=True)
        positive(s, "ready_frames", self.ready_frames, allow_zero=True)
        check(self.ready_episodes > 0 or self.ready_frames > 0,
              "pbt.ready_episodes and pbt.ready_frames are both 0: set one of them > 0 (when members are ready)")
        check(self.ttest_window >= 2,
              f"pbt.ttest_window={self.ttest_window!r} must be >= 2 (a t-test needs two samples)")
        check(0.0 < self.ttest_pvalue < 1.0, f"pbt.ttest_pvalue={self.ttest_pvalue!r} must be in (0, 1)")
        check(0.0 < self.truncation_fraction <= 0.5,
              f"pbt.truncation_fraction={self.truncation_fraction!r} must be in (0, 0.5]")
        positive(s, "gap", self.gap, allow_zero=True)
        unit(s, "explore_probability", self.explore_probability)
        unit(s, "resample_probability", self.resample_probability)
        check(len(self.perturb_factors) > 0 and all(math.isfinite(f) and f > 0 for f in self.perturb_factors),
              f"pbt.perturb_factors={self.perturb_factors!r} must be a non-empty list of numbers > 0")
        positive(s, "add_step", self.add_step)
        if self.alpha_step is not None:
            positive(s, "alpha_step", self.alpha_step)
            check(self.add_step in (self.alpha_step, ADD_STEP),
                  f"pbt.alpha_step={self.alpha_step!r} and pbt.add_step={self.add_step!r}: alpha_step is the former "
                  f"name of add_step; set add_step alone")
        for name, prior in self.mutable.items():
            check(bool(name), "pbt.mutable has an empty hyperparameter name")
            prior.check(f"pbt.mutable.{name}")
        check(len(self.initial_hparams) <= self.population_size,
              f"pbt.initial_hparams has {len(self.initial_hparams)} entries for pbt.population_size="
              f"{self.population_size}; give at most one per member")
        for i, values in enumerate(self.initial_hparams):
            for k, v in values.items():
                check(math.isfinite(v) and v >= 0, f"pbt.initial_hparams[{i}].{k}={v!r} must be a finite number >= 0")
        choice(s, "eval", self.eval, PBT_EVALS)
        positive(s, "eval_episodes", self.eval_episodes)
        positive(s, "member_restarts", self.member_restarts, allow_zero=True)
        choice(s, "backend", self.backend, PBT_BACKENDS)

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


def check_ranges(pbt: PBTConfig, methods: Sequence[Method]) -> None:
    """The checks of ``pbt`` against the weights ``methods`` declare with a range: such a weight is
    explored by adding, and its prior and initial values stay within its range."""
    for name, prior in pbt.mutable.items():
        r = hparam_range(name, methods)
        if r is None:
            continue
        where, within = f"pbt.mutable.{name}", f"[{r.low:g}, {r.high:g}]"
        check(prior.perturb in ("auto", "add"),
              f"{where}.perturb={prior.perturb}: {name} is a weight in {within}; explore it with perturb: "
              f"add (+-pbt.add_step, clipped to {within})")
        top = prior.value if prior.distribution == "fixed" else prior.high
        check(top is None or top <= r.high,
              f"{where}: a {prior.distribution} prior up to {top!r} leaves {within}, where {name} lives; "
              f"the paper's prior is log_uniform with low 0.001, high 0.01")
    for i, values in enumerate(pbt.initial_hparams):
        for k, v in values.items():
            r = hparam_range(k, methods)
            if r is not None:
                check(r.low <= v <= r.high, f"pbt.initial_hparams[{i}].{k}={v!r} must be in [{r.low:g}, {r.high:g}]")


def pbt_eval(cfg) -> str:
    """``pbt.eval`` with ``auto`` resolved: what the first enabled method of the config that has a
    preference says (:meth:`kickstart.method.Method.pbt_eval`), else ``training_returns``."""
    if cfg.pbt.eval != "auto":
        return cfg.pbt.eval
    for method in enabled_methods(cfg):
        pick = method.pbt_eval(cfg)
        if pick is not None:
            return pick
    return "training_returns"


def perturb_rule(name: str, prior: PriorConfig, methods: Sequence[Method] | None = None) -> str:
    """How PBT explores hyperparameter ``name``: its prior's ``perturb``, with ``auto`` resolved
    (``add`` for a weight one of ``methods`` declares with a range, ``multiply`` otherwise;
    ``methods`` None: the registered ones)."""
    if prior.perturb != "auto":
        return prior.perturb
    return "add" if hparam_range(name, methods) is not None else "multiply"
