"""Multi-task PBT fitness (kickstart/pbt/fitness.py): the suite score, with samples balanced over tasks."""

import numpy as np
import pytest

from kickstart.envs.suites import normalised_score, suite_score
from kickstart.pbt.config import PBTConfig
from kickstart.pbt.decisions import choose_donor, significantly_better
from kickstart.pbt.fitness import TaskWindows, balanced_samples

FREEWAY, BREAKOUT = "minatar:Freeway", "minatar:Breakout"


def _member(rng, freeway, breakout, n_freeway=3, n_breakout=300):
    """Training windows as a pooled window would see them: Freeway's episodes are ~200x longer, so
    few of them finish while Breakout's pour in."""
    w = TaskWindows((FREEWAY, BREAKOUT), size=30)
    w.extend(BREAKOUT, rng.normal(breakout, 1.0, n_breakout))
    w.extend(FREEWAY, rng.normal(freeway, 2.0, n_freeway))
    return w


def test_samples_mean_is_the_suite_score_with_caps_on_task_means():
    windows = {FREEWAY: [50.0, 70.0, 64.0], BREAKOUT: [80.0, 90.0, 100.0, 5.0, 7.0]}   # Breakout far past its reference
    samples = balanced_samples(windows)
    assert len(samples) == 3                                   # as many as the task with fewest episodes
    last3 = {FREEWAY: windows[FREEWAY], BREAKOUT: windows[BREAKOUT][-3:]}
    expected = suite_score({t: float(np.mean(r)) for t, r in last3.items()})
    assert np.mean(samples) == pytest.approx(expected)
    # naive: the cap applies to the task's mean, not to each episode
    fw = [normalised_score(FREEWAY, r) for r in last3[FREEWAY]]
    bo = [normalised_score(BREAKOUT, r) for r in last3[BREAKOUT]]
    assert np.mean(fw) > 100 or np.mean(bo) < 100
    assert samples[0] == pytest.approx((min(1, 100 / np.mean(fw)) * fw[0] + min(1, 100 / np.mean(bo)) * bo[0]) / 2)


def test_no_samples_until_every_task_has_an_episode():
    assert balanced_samples({FREEWAY: [], BREAKOUT: [3.0, 4.0]}) == []
    w = TaskWindows((FREEWAY, BREAKOUT), 5)
    w.extend(BREAKOUT, [1.0, 2.0])
    assert w.samples() == []


def test_single_task_samples_are_the_raw_returns():
    w = TaskWindows((BREAKOUT,), 3)
    w.extend(BREAKOUT, [1.0, 2.0, 3.0, 4.0])
    assert w.samples() == [2.0, 3.0, 4.0]


@pytest.mark.parametrize("seed", range(5))
def test_better_on_the_long_episode_task_wins(seed):
    """A member much better on Freeway (long episodes, few finished) beats one better only on
    Breakout (short episodes, many finished): balanced samples see both tasks alike. A pooled window
    of per-episode capped scores (the old measure) ranks them the other way."""
    rng = np.random.default_rng(seed)
    good_freeway = _member(rng, freeway=40.0, breakout=3.0)
    good_breakout = _member(rng, freeway=5.0, breakout=12.0)
    a, b = good_freeway.samples(), good_breakout.samples()
    assert len(a) == len(b) == 3
    assert np.mean(a) > np.mean(b) + 10          # expected gap: (58.5 - 15.2) / 2 = 21.6 points
    assert significantly_better(a, b, 0.05) and not significantly_better(b, a, 0.05)
    cfg = PBTConfig(population_size=2, exploit="truncation", truncation_fraction=0.5)
    assert choose_donor(1, {0: a, 1: b}, np.random.default_rng(0), cfg) == 0

    def pooled(w):   # the last 30 finished episodes of any task, each capped
        from kickstart.envs.suites import capped_score
        eps = [(BREAKOUT, r) for r in w.windows()[BREAKOUT]][-27:] + [(FREEWAY, r) for r in w.windows()[FREEWAY]]
        return [capped_score(t, r) for t, r in eps]
    assert np.mean(pooled(good_breakout)) > np.mean(pooled(good_freeway))
