"""PBT decisions: pure functions of (population evaluations, random generator), in milliseconds.

The golden values pin the draw order documented in ``kickstart/pbt/decisions.py``: a change that
reorders draws changes every population's history, so it must be deliberate.
"""

import math

import numpy as np
import pytest

from kickstart.errors import ConfigError
from kickstart.methods import load_config
from kickstart.pbt import decisions as d
from kickstart.pbt.config import PBTConfig, PriorConfig
from kickstart.pbt.controller import check_mutable, initial_hparams

# Returns of a member that plays well and of one that plays badly: 30 each, clearly apart.
HIGH = [3.0, 3.5, 4.0, 2.5, 3.2, 3.8] * 5
LOW = [0.0, 0.5, 1.0, 0.2, 0.8, 0.3] * 5

PRIORS = {"learning_rate": PriorConfig("log_uniform", 3e-4, 3e-3),
          "entropy_cost": PriorConfig("log_uniform", 1e-4, 1e-2),
          "mm/alpha": PriorConfig("uniform", 0.0, 1.0, perturb="add")}


def _cfg(**kw) -> PBTConfig:
    kw.setdefault("population_size", 4)
    return PBTConfig(**kw)


def _rng(seed=0) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- readiness ---------------------------------------------------------------------------------

def test_ready_after_episodes_or_frames_whichever_first():
    assert not d.is_ready(299, 10**9, ready_episodes=300, ready_frames=0)      # 0 = unused
    assert d.is_ready(300, 0, ready_episodes=300, ready_frames=0)
    assert d.is_ready(5, 50_000, ready_episodes=300, ready_frames=50_000)
    assert not d.is_ready(5, 49_999, ready_episodes=300, ready_frames=50_000)
    assert not d.is_ready(10**6, 49_999, ready_episodes=0, ready_frames=50_000)


# -- exploit: t-test ---------------------------------------------------------------------------

def test_ttest_copies_a_clearly_better_member():
    assert d.choose_donor(0, {0: LOW, 1: HIGH}, _rng(), _cfg(exploit="ttest")) == 1


def test_ttest_overlapping_returns_copy_nobody():
    rng = np.random.default_rng(123)
    a, b = list(rng.normal(1.0, 1.0, 30)), list(rng.normal(1.1, 1.0, 30))
    assert d.choose_donor(0, {0: a, 1: b}, _rng(), _cfg(exploit="ttest")) is None
    assert d.choose_donor(1, {0: a, 1: b}, _rng(), _cfg(exploit="ttest")) is None


def test_ttest_is_one_sided_a_worse_member_is_never_copied():
    for seed in range(20):
        assert d.choose_donor(1, {0: LOW, 1: HIGH}, _rng(seed), _cfg(exploit="ttest")) is None


def test_ttest_threshold_is_the_configured_pvalue():
    from scipy import stats

    a = [1.0, 2.0, 3.0, 2.0, 1.5, 2.5] * 5
    b = [x + 0.3 for x in a]
    p = stats.ttest_ind(b, a, equal_var=False, alternative="greater").pvalue
    assert 0.01 < p < 0.05                                     # the case sits between the two levels
    assert d.choose_donor(0, {0: a, 1: b}, _rng(), _cfg(exploit="ttest", ttest_pvalue=0.05)) == 1
    assert d.choose_donor(0, {0: a, 1: b}, _rng(), _cfg(exploit="ttest", ttest_pvalue=0.01)) is None


def test_ttest_picks_a_random_other_member_golden():
    pop = {0: LOW, 1: HIGH, 2: HIGH, 3: HIGH}
    rng = _rng(0)
    picks = [d.choose_donor(0, pop, rng, _cfg(exploit="ttest")) for _ in range(8)]
    assert picks == [3, 2, 2, 1, 1, 1, 1, 1]


def test_ttest_candidate_is_uniform_over_the_others_and_never_itself():
    pop = {0: LOW, 1: HIGH, 2: LOW, 3: HIGH}     # the draw may land on 2: not better, no copy
    rng = _rng(7)
    picks = [d.choose_donor(0, pop, rng, _cfg(exploit="ttest")) for _ in range(600)]
    counts = {k: picks.count(k) for k in (None, 1, 3)}
    assert set(picks) == {None, 1, 3}
    assert all(abs(c / 600 - 1 / 3) < 0.06 for c in counts.values()), counts


def test_ttest_needs_two_samples_on_each_side():
    assert d.choose_donor(0, {0: [0.0], 1: HIGH}, _rng(), _cfg(exploit="ttest")) is None
    assert d.choose_donor(0, {0: LOW, 1: [9.0]}, _rng(), _cfg(exploit="ttest")) is None
    assert d.choose_donor(0, {0: LOW, 1: []}, _rng(), _cfg(exploit="ttest")) is None
    assert d.choose_donor(0, {1: HIGH}, _rng(), _cfg(exploit="ttest")) is None   # no report yet


def test_ttest_constant_samples():
    # Zero variance on both sides: no t statistic; the higher constant counts as better.
    assert d.significantly_better([2.0] * 30, [1.0] * 30, 0.05)
    assert not d.significantly_better([1.0] * 30, [1.0] * 30, 0.05)
    assert not d.significantly_better([0.0] * 30, [1.0] * 30, 0.05)


# -- exploit: truncation, absolute gap, none -----------------------------------------------------

def test_truncation_bottom_copies_top():
    pop = {i: [float(i), float(i) + 0.5] for i in range(5)}          # member i has mean i + 0.25
    cfg = _cfg(population_size=5, exploit="truncation", truncation_fraction=0.2)
    assert d.choose_donor(0, pop, _rng(), cfg) == 4                  # bottom 1 copies top 1
    assert all(d.choose_donor(i, pop, _rng(), cfg) is None for i in (1, 2, 3, 4))
    cfg = _cfg(population_size=5, exploit="truncation", truncation_fraction=0.4)
    rng = _rng(3)
    picks = {d.choose_donor(i, pop, rng, cfg) for i in (0, 1) for _ in range(50)}
    assert picks == {3, 4}                                           # bottom 2 copy one of the top 2
    assert d.choose_donor(2, pop, rng, cfg) is None


def test_truncation_ignores_members_without_evaluations():
    pop = {0: [0.0], 1: [5.0], 2: []}
    cfg = _cfg(population_size=3, exploit="truncation", truncation_fraction=0.5)
    assert d.choose_donor(0, pop, _rng(), cfg) == 1
    assert d.choose_donor(2, pop, _rng(), cfg) is None


def test_absolute_gap():
    pop = {0: [0.0, 0.0], 1: [0.5, 0.5], 2: [2.0, 2.0]}
    cfg = _cfg(population_size=3, exploit="absolute_gap", gap=1.0)
    assert d.choose_donor(0, pop, _rng(), cfg) == 2                  # 0.5 is not more than 1.0 better
    assert d.choose_donor(1, pop, _rng(), cfg) == 2
    assert d.choose_donor(2, pop, _rng(), cfg) is None
    cfg = _cfg(population_size=3, exploit="absolute_gap", gap=0.0)
    assert {d.choose_donor(0, pop, _rng(s), cfg) for s in range(30)} == {1, 2}


def test_none_and_auto():
    assert d.choose_donor(0, {0: LOW, 1: HIGH}, _rng(), _cfg(exploit="none")) is None
    assert _cfg(exploit="auto").exploit_rule == "ttest"
    assert PBTConfig().exploit_rule == "none"                        # population of 1: PBT off


def test_best_member():
    assert d.best_member({0: [1.0], 1: [3.0], 2: [3.0], 3: []}) == 1
    assert d.best_member({0: []}) is None


# -- explore -----------------------------------------------------------------------------------

HP = {"learning_rate": 1e-3, "entropy_cost": 1e-3, "mm/alpha": 0.5, "other": 7.0}


def test_explore_golden():
    rng, h, seen = _rng(2), dict(HP), []
    for _ in range(3):
        h = d.explore(h, PRIORS, rng, _cfg(explore_probability=1.0))
        seen.append(h)
    assert seen[0] == pytest.approx({"learning_rate": 8e-4, "entropy_cost": 8e-4, "mm/alpha": 0.45, "other": 7.0})
    assert seen[1] == pytest.approx({"learning_rate": 6.4e-4, "entropy_cost": 9.6e-4, "mm/alpha": 0.5, "other": 7.0})
    assert seen[2] == pytest.approx({"learning_rate": 5.12e-4, "entropy_cost": 1.152e-3, "mm/alpha": 0.55,
                                     "other": 7.0})


def test_explore_multiply_and_add_steps():
    rng = _rng(5)
    for _ in range(200):
        out = d.explore(HP, PRIORS, rng, _cfg(explore_probability=1.0))
        assert out["learning_rate"] in (pytest.approx(8e-4), pytest.approx(1.2e-3))
        assert out["entropy_cost"] in (pytest.approx(8e-4), pytest.approx(1.2e-3))
        assert out["mm/alpha"] in (pytest.approx(0.45), pytest.approx(0.55))
        assert out["other"] == 7.0                                   # no prior: never touched
    assert HP == {"learning_rate": 1e-3, "entropy_cost": 1e-3, "mm/alpha": 0.5, "other": 7.0}  # not mutated


def test_explore_add_clips_to_unit_interval():
    rng = _rng(0)
    cfg = _cfg(explore_probability=1.0, alpha_step=0.3)
    ups = {round(d.explore({**HP, "mm/alpha": 0.9}, PRIORS, rng, cfg)["mm/alpha"], 12) for _ in range(50)}
    downs = {round(d.explore({**HP, "mm/alpha": 0.1}, PRIORS, rng, cfg)["mm/alpha"], 12) for _ in range(50)}
    assert ups == {0.6, 1.0}
    assert downs == {0.0, 0.4}


def test_explore_bounded_multiply_clips_to_the_prior_and_unbounded_walks_out():
    bounded = {"learning_rate": PriorConfig("log_uniform", 3e-4, 3e-3, bounded=True)}
    free = {"learning_rate": PriorConfig("log_uniform", 3e-4, 3e-3)}
    rng, cfg = _rng(3), _cfg(explore_probability=1.0)
    near_low = {round(d.explore({"learning_rate": 3.3e-4}, bounded, rng, cfg)["learning_rate"], 12)
                for _ in range(50)}
    near_high = {round(d.explore({"learning_rate": 2.8e-3}, bounded, rng, cfg)["learning_rate"], 12)
                 for _ in range(50)}
    assert near_low == {3e-4, round(3.3e-4 * 1.2, 12)}
    assert near_high == {round(2.8e-3 * 0.8, 12), 3e-3}
    # a long walk: bounded stays in the prior, the papers' unbounded rule leaves it
    hb, hf = {"learning_rate": 1e-3}, {"learning_rate": 1e-3}
    lows_b, lows_f = [], []
    for _ in range(400):
        hb, hf = d.explore(hb, bounded, rng, cfg), d.explore(hf, free, rng, cfg)
        lows_b.append(hb["learning_rate"]), lows_f.append(hf["learning_rate"])
    assert 3e-4 <= min(lows_b) and max(lows_b) <= 3e-3
    assert min(lows_f) < 3e-4 or max(lows_f) > 3e-3


def test_explore_happens_with_its_probability():
    rng = _rng(11)
    n = 4000
    changed = sum(d.explore(HP, PRIORS, rng, _cfg()) != HP for _ in range(n))
    assert abs(changed / n - 0.25) < 0.03
    assert d.explore(HP, PRIORS, _rng(), _cfg(explore_probability=0.0)) == HP


def test_explore_resamples_from_the_prior():
    rng = _rng(4)
    cfg = _cfg(explore_probability=1.0, resample_probability=1.0)
    for _ in range(100):
        out = d.explore(HP, PRIORS, rng, cfg)
        assert 3e-4 <= out["learning_rate"] <= 3e-3 and 1e-4 <= out["entropy_cost"] <= 1e-2
        assert 0.0 <= out["mm/alpha"] <= 1.0
        # a resampled value is (almost surely) neither the old one nor a perturbation of it
        assert out["learning_rate"] not in (1e-3, 8e-4, 1.2e-3)
    cfg = _cfg(explore_probability=1.0, resample_probability=0.5)
    outs = [d.explore(HP, PRIORS, rng, cfg)["learning_rate"] for _ in range(400)]
    perturbed = sum(v in (pytest.approx(8e-4), pytest.approx(1.2e-3)) for v in outs)
    assert abs(perturbed / 400 - 0.5) < 0.08


# -- initial values --------------------------------------------------------------------------------

def test_sample_initial_golden_and_ranges():
    out = d.sample_initial(PRIORS, _rng(1))
    assert out == pytest.approx({"entropy_cost": 0.0010559497443981645, "learning_rate": 0.0026766091055036756,
                                 "mm/alpha": 0.14415961271963373})
    rng = _rng(9)
    lrs = np.array([d.sample_initial(PRIORS, rng)["learning_rate"] for _ in range(2000)])
    assert lrs.min() >= 3e-4 and lrs.max() <= 3e-3
    # log-uniform: half the draws below the geometric midpoint, not the arithmetic one
    assert abs(np.mean(lrs < math.sqrt(3e-4 * 3e-3)) - 0.5) < 0.04


def test_sample_initial_fixed():
    priors = {"learning_rate": PriorConfig("fixed", value=5e-4), "entropy_cost": PriorConfig("fixed")}
    out = d.sample_initial(priors, _rng(), {"learning_rate": 1.0, "entropy_cost": 0.02})
    assert out == {"learning_rate": 5e-4, "entropy_cost": 0.02}


def test_initial_hparams_per_member_override():
    pbt = _cfg(population_size=3, initial_hparams=[{}, {}, {"learning_rate": 1e-7}],
               mutable={"learning_rate": PriorConfig("log_uniform", 1e-3, 2e-3)})
    hps = initial_hparams(pbt, {"learning_rate": 6e-4, "entropy_cost": 0.01}, _rng())
    assert hps[2] == {"learning_rate": 1e-7}
    assert all(1e-3 <= h["learning_rate"] <= 2e-3 for h in hps[:2]) and hps[0] != hps[1]


# -- bad input: one-line ConfigErrors ---------------------------------------------------------------

LEARNER_HP = {"learning_rate": 6e-4, "entropy_cost": 0.01, "kickstart/alpha": 1.0}


@pytest.mark.parametrize("overrides, match", [
    (["pbt.population_size=1", "pbt.exploit=ttest"], r"pbt.exploit=ttest needs pbt.population_size >= 2"),
    (["pbt.population_size=4", "pbt.mutable={learning_rate: {low: 1.0e-3, high: 1.0e-4}}"],
     r"pbt.mutable.learning_rate: low=0.001 >= high=0.0001 is an empty range"),
    (["pbt.population_size=4", "pbt.mutable={learning_rate: {low: 0, high: 1.0e-3}}"],
     r"pbt.mutable.learning_rate: a log_uniform prior needs low > 0"),
    (["pbt.population_size=4", "pbt.mutable={x: {distribution: gaussian}}"],
     r"distribution='gaussian' is not valid; choose one of: log_uniform, uniform, fixed"),
    (["pbt.population_size=4", "pbt.mutable={x: {perturb: swap}}"], r"perturb='swap' is not valid"),
    (["pbt.population_size=4", "pbt.mutable={learning_rate: {distribution: fixed, bounded: true}}"],
     r"pbt.mutable.learning_rate: bounded=true needs a range, and a fixed prior has none"),
    (["pbt.population_size=4", "pbt.ready_episodes=0"], r"pbt.ready_episodes and pbt.ready_frames are both 0"),
    (["pbt.population_size=2", "pbt.initial_hparams=[{}, {}, {}]"], r"pbt.initial_hparams has 3 entries"),
    (["pbt.population_size=4", "pbt.exploit=best"], r"pbt.exploit='best' is not valid; choose one of: auto, ttest"),
    (["pbt.population_size=4", "pbt.ttest_window=1"], r"pbt.ttest_window=1 must be >= 2"),
    (["pbt.population_size=4", "pbt.perturb_factors=[]"], r"pbt.perturb_factors=\[\] must be a non-empty list"),
    (["pbt.population_size=4", "pbt.truncation_fraction=0.7"], r"pbt.truncation_fraction=0.7 must be in"),
    (["pbt.population_size=4", "pbt.eval=holdout"], r"pbt.eval='holdout' is not valid"),
])
def test_bad_config_is_one_line_config_error(overrides, match):
    with pytest.raises(ConfigError, match=match) as e:
        load_config(None, overrides)
    assert "\n" not in str(e.value)


def test_unknown_mutable_hyperparameter_names_the_valid_ones():
    pbt = load_config(None, ["pbt.population_size=4", "pbt.mutable={lr: {low: 1.0e-4, high: 1.0e-3}}"]).pbt
    with pytest.raises(ConfigError) as e:
        check_mutable(pbt, LEARNER_HP)
    msg = str(e.value)
    assert msg == ("pbt.mutable: unknown hyperparameter 'lr'; mutable ones: entropy_cost, kickstart/alpha, "
                   "learning_rate")
    pbt = _cfg(initial_hparams=[{"learning_rat": 1e-3}])
    with pytest.raises(ConfigError, match=r"pbt.initial_hparams\[0\]: unknown hyperparameter 'learning_rat' "
                                          r"\(did you mean 'learning_rate'\?\)"):
        check_mutable(pbt, LEARNER_HP)
    check_mutable(_cfg(mutable={"kickstart/alpha": PriorConfig("uniform", 0, 1, perturb="add")}), LEARNER_HP)


def test_defaults_are_valid_and_pbt_is_off():
    cfg = load_config(None)
    assert not cfg.pbt.enabled and cfg.pbt.ready_episodes == 300 and cfg.pbt.ttest_window == 30
    cfg = load_config("configs/pbt_minatar_breakout.yaml")
    assert cfg.pbt.enabled and sorted(cfg.pbt.mutable) == ["entropy_cost", "learning_rate"]
