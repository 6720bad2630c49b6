"""PBT decisions as pure functions of (population metrics, random generator).

Jaderberg et al. (2017) as the kickstarting paper (Sec. 2.3, 4.2) and Mix & Match (Sec. 3.4,
App. B) use it: a member is *ready* every 300 episodes; it then picks another member at random and,
if that member's last 30 evaluations are significantly better (Welch's t-test, p < 0.05), copies its
weights, optimiser state and hyperparameters (*exploit*); independently, with probability 0.25, it
multiplies each of the learning rate and entropy cost by 0.8 or 1.2, and adds +-0.05 to the weights
a method declares with a range (M&M's alpha), clipped to it (*explore*).

Nothing here does I/O or touches torch: every function takes plain values, the ``PBTConfig``
options and a :class:`numpy.random.Generator`, so each decision is reproducible from its inputs and
tested in milliseconds. The controller (:mod:`kickstart.pbt.controller`) only moves checkpoints and
sets hyperparameters as these functions say.

Random draws, in order (the golden tests pin them):

* ``choose_donor``: ``ttest`` one ``rng.integers`` over the other eligible members; ``truncation``
  and ``absolute_gap`` one ``rng.integers`` over the candidates, only when there is one.
* ``explore``: one ``rng.random()`` (explore or not); if exploring, per hyperparameter in sorted
  name order: one ``rng.random()`` when ``resample_probability > 0``, then either the prior's draw
  or one ``rng.integers`` (the factor, or the sign of the step).
* ``sample_initial``: per hyperparameter in sorted name order, one ``rng.uniform`` (none for fixed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from kickstart.method import Method, Range, hparam_range
from kickstart.pbt.config import PBTConfig, PriorConfig, perturb_rule

# Population metrics: member index -> its evaluation samples (most recent last). A member with no
# finished evaluation yet may be missing or have an empty sequence.
Population = Mapping[int, Sequence[float]]


def is_ready(episodes_since: int, frames_since: int, *, ready_episodes: int, ready_frames: int) -> bool:
    """Whether a member is ready for exploit/explore: ``ready_episodes`` finished episodes or
    ``ready_frames`` env frames since its last ready event (a 0 option is unused)."""
    return (ready_episodes > 0 and episodes_since >= ready_episodes) or \
           (ready_frames > 0 and frames_since >= ready_frames)


def _mean(samples: Sequence[float]) -> float:
    return float(np.mean(np.asarray(samples, dtype=np.float64)))


def significantly_better(candidate: Sequence[float], mine: Sequence[float], pvalue: float) -> bool:
    """One-sided Welch t-test: is the mean of ``candidate`` greater than that of ``mine`` at ``pvalue``?

    Needs two samples on each side. Two constant sample sets (zero variance on both sides) have no
    t statistic; they count as better only if the candidate's constant is higher.
    """
    from scipy import stats

    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(mine, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        return False
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return bool(a[0] > b[0])
    p = stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
    return bool(np.isfinite(p) and p < pvalue)


def _ranked(population: Population, min_samples: int) -> list[tuple[float, int]]:
    """(mean, index) of the members with at least ``min_samples`` evaluations, lowest mean first
    (ties by index, so the order never depends on dict order)."""
    return sorted((_mean(s), j) for j, s in population.items() if len(s) >= max(1, min_samples))


def choose_donor(me: int, population: Population, rng: np.random.Generator, cfg: PBTConfig) -> int | None:
    """The member ``me`` should copy (weights, optimiser state, hyperparameters), or None.

    Args:
      me: index of the ready member.
      population: member index -> evaluation samples, most recent last (``cfg.ttest_window`` of them
        for the t-test). Members without enough samples are never donors; a ready member without
        enough samples itself copies nobody.
      rng: the controller's generator.
      cfg: ``exploit_rule`` and its options (``ttest_pvalue``, ``truncation_fraction``, ``gap``).
    """
    rule = cfg.exploit_rule
    if rule == "none":
        return None
    if rule == "ttest":
        mine = population.get(me, ())
        others = sorted(j for j, s in population.items() if j != me and len(s) >= 2)
        if len(mine) < 2 or not others:
            return None
        j = others[int(rng.integers(len(others)))]
        return j if significantly_better(population[j], mine, cfg.ttest_pvalue) else None
    ranked = _ranked(population, 1)
    if me not in {j for _, j in ranked}:
        return None
    if rule == "truncation":
        n = len(ranked)
        k = min(max(1, int(cfg.truncation_fraction * n)), n // 2)
        if k == 0:
            return None
        bottom = {j for _, j in ranked[:k]}
        top = [j for _, j in ranked[-k:]]
        if me not in bottom:
            return None
        return top[int(rng.integers(len(top)))]
    if rule == "absolute_gap":
        own = _mean(population[me])
        better = sorted(j for m, j in ranked if j != me and m > own + cfg.gap)
        if not better:
            return None
        return better[int(rng.integers(len(better)))]
    raise ValueError(f"unknown exploit rule {rule!r}")


def sample_prior(prior: PriorConfig, rng: np.random.Generator, current: float | None = None) -> float:
    """One draw from ``prior`` (``fixed``: its value, or ``current`` when it has none)."""
    if prior.distribution == "log_uniform":
        return float(math.exp(rng.uniform(math.log(prior.low), math.log(prior.high))))
    if prior.distribution == "uniform":
        return float(rng.uniform(prior.low, prior.high))
    if prior.value is not None:
        return float(prior.value)
    if current is None:
        raise ValueError("a fixed prior without a value needs the current value")
    return float(current)


def sample_initial(priors: Mapping[str, PriorConfig], rng: np.random.Generator,
                   current: Mapping[str, float] | None = None) -> dict[str, float]:
    """Initial values of the mutable hyperparameters for one member, drawn from their priors.

    ``current`` holds the run's configured values, used by ``fixed`` priors without a value.
    """
    current = current or {}
    return {name: sample_prior(priors[name], rng, current.get(name)) for name in sorted(priors)}


def perturb(value: float, prior: PriorConfig, rng: np.random.Generator, *, factors: Sequence[float],
            step: float, name: str = "", methods: Sequence[Method] | None = None) -> float:
    """One explore step: ``multiply`` by a random factor (clipped to the prior's [low, high] when it is
    ``bounded``), or ``add`` +-``step`` clipped to the range one of ``methods`` (the run's; None: the
    registered ones) declares for ``name`` ([0, 1] where none does); ``auto``: ``add`` for such a
    weight, by ``name`` (:func:`kickstart.pbt.config.perturb_rule`)."""
    if perturb_rule(name, prior, methods) == "multiply":
        out = value * factors[int(rng.integers(len(factors)))]
        if prior.bounded:
            out = min(prior.high, max(prior.low, out))
        return float(out)
    sign = 1.0 if int(rng.integers(2)) else -1.0
    r = hparam_range(name, methods) or Range(0.0, 1.0)
    return float(min(r.high, max(r.low, value + sign * step)))


def explore(hparams: Mapping[str, float], priors: Mapping[str, PriorConfig], rng: np.random.Generator,
            cfg: PBTConfig, methods: Sequence[Method] | None = None) -> dict[str, float]:
    """The hyperparameters after a ready event's explore step (a new dict; ``hparams`` is untouched).
    ``methods``: the run's (``type(run_cfg).methods``), which say which hyperparameters are weights.

    With probability ``cfg.explore_probability`` every hyperparameter named in ``priors`` is
    perturbed (``perturb``), or with ``cfg.resample_probability`` drawn afresh from its prior;
    otherwise nothing changes. Hyperparameters without a prior are copied as they are.
    """
    out = dict(hparams)
    if rng.random() >= cfg.explore_probability:
        return out
    for name in sorted(priors):
        prior = priors[name]
        if cfg.resample_probability > 0 and rng.random() < cfg.resample_probability:
            out[name] = sample_prior(prior, rng, out.get(name))
        else:
            out[name] = perturb(out[name], prior, rng, factors=cfg.perturb_factors, step=cfg.step, name=name,
                                methods=methods)
    return out


def changed_keys(before: Mapping[str, float], after: Mapping[str, float]) -> list[str]:
    """Names whose value differs between two hyperparameter dicts (sorted)."""
    return sorted(k for k in after if before.get(k) != after[k])


def best_member(population: Population) -> int | None:
    """The member with the highest mean evaluation (lowest index on ties), or None."""
    ranked = _ranked(population, 1)
    if not ranked:
        return None
    top = ranked[-1][0]
    return min(j for m, j in ranked if m == top)
