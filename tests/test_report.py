"""kickstart report: tables computed from synthetic metrics with known answers."""

import pytest

from kickstart.errors import UserError
from kickstart.metrics import CSVLogger
from kickstart.report import report


def _run(path, slope, frames=(0, 1_000_000, 2_000_000, 3_000_000, 4_000_000), extra=None):
    path.mkdir(parents=True)
    log = CSVLogger(path / "metrics.csv")
    for f in frames:
        log.write(f, {"episode/return/minatar:Breakout": slope * f / 1e6, **(extra or {})})
    log.close()
    return path


def test_scores_frames_to_reach_and_improvement(tmp_path):
    scratch = [_run(tmp_path / f"scratch-s{i}", 1.0 + 0.5 * i) for i in range(2)]   # slopes 1.0, 1.5
    kick = [_run(tmp_path / f"kick-s{i}", 4.0) for i in range(2)]                     # slope 4
    md, pngs = report([str(p) for p in scratch + kick], budgets=[2e6], targets=[2.0], smooth=1,
                      out=tmp_path / "rep", baseline="scratch")
    text = md.read_text()
    # scratch at 2M: mean(2.0, 3.0) = 2.5; kick: 8.0 -> +220.0%
    assert "| scratch | 2 | 2.50 |" in text
    assert "| kick | 2 | 8.00 |" in text
    assert "+220.0%" in text
    # frames to 2.0: scratch mean(2M, 1.33M by the logged points -> first logged >= 2 is 2M) = 2M; kick 1M -> 2.00x
    assert "2.00x" in text
    # scratch's final score: mean(4.0, 6.0) = 5.0 at 4M; kick (4 per 1M) stays >= 5 from its 2M point on
    assert ("- kick against scratch's final score (5.00): reaches it at 2.00M frames, 2.00x fewer than the 4.00M "
            "scratch trained for; it ends at 16.00 (+220.0%).") in text
    assert {p.name for p in pngs} >= {"score.png", "tasks.png"}


def test_a_group_that_never_reaches_a_score_shows_a_dash(tmp_path):
    a = _run(tmp_path / "a-s0", 0.1)
    md, _ = report([str(a)], budgets=[1e6], targets=[100.0], smooth=1, out=tmp_path / "rep")
    assert "| a | 1 | 0.10 | - |" in md.read_text()


def test_bad_input(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        report([str(tmp_path / "nope")], out=tmp_path / "rep")
    with pytest.raises(UserError, match="is not a group"):
        report([str(_run(tmp_path / "x-s0", 1.0))], baseline="y", out=tmp_path / "rep")


def test_a_pbt_run_is_its_top3_members_and_plots_the_best_members_hparams(tmp_path):
    pbt = tmp_path / "pop"
    for i, slope in enumerate([1.0, 4.0, 2.0, 3.0]):
        _run(pbt / "members" / str(i), slope, extra={"hparams/kickstart/alpha": 1.0 / (i + 1),
                                                      "hparams/learning_rate": 1e-3})
    scratch = _run(tmp_path / "scratch-s0", 1.0)
    md, pngs = report([str(pbt), str(scratch)], budgets=[4e6], smooth=1, out=tmp_path / "rep", baseline="scratch")
    text = md.read_text()
    # top-3 members by final score: slopes 4, 3, 2 -> mean score at 4M = 4 * 3 = 12
    assert "| pop | 3 | 12.00 |" in text
    assert "members/1" in text and "members/0" not in text
    assert "pbt_hparams.png" in {p.name for p in pngs}


def test_improvement_over_a_baseline_at_or_below_zero_is_a_difference_not_a_percentage(tmp_path):
    # Pong-like: the baseline ends at -20, the other group at +16; "+180%" would mean nothing.
    scratch = _run(tmp_path / "scratch-s0", -5.0)            # 0 .. -20 at 4M
    kick = _run(tmp_path / "kick-s0", 4.0)                   # 0 .. +16 at 4M
    md, _ = report([str(scratch), str(kick)], budgets=[2e6], smooth=1, out=tmp_path / "rep", baseline="scratch")
    text = md.read_text()
    assert "%" not in text.split("Runs:")[0].replace("Metric", "")
    assert "+36.00 points" in text                     # final: 16 - (-20)
    assert "+18.00 points" in text                     # at 2M: 8 - (-10)
    assert "- kick against scratch's final score (-20.00): is at or above it from its first logged point" in text


def test_improvement_helper():
    from kickstart.report import improvement
    assert improvement(3.0, 2.0) == "+50.0%"
    assert improvement(1.0, 2.0) == "-50.0%"
    assert improvement(1.0, 0.0) == "+1.00 points"
    assert improvement(None, 2.0) == "-" and improvement(1.0, None) == "-"


def test_a_pbt_run_ranks_its_members_on_the_smoothed_final_score(tmp_path):
    """A member whose last logged point is a lucky spike is not picked over steadier ones: the ranking
    uses the same smoothing as the final column."""
    pbt = tmp_path / "pop"
    frames = [i * 1_000_000 for i in range(6)]
    for i, values in enumerate([[0, 1, 1, 1, 1, 9],            # mean of the last 3 points: 3.67
                                [0, 5, 5, 5, 5, 5],            # 5
                                [0, 6, 6, 6, 6, 6],            # 6
                                [0, 4, 4, 4, 4, 4]]):          # 4
        (pbt / "members" / str(i)).mkdir(parents=True)
        log = CSVLogger(pbt / "members" / str(i) / "metrics.csv")
        for f, v in zip(frames, values):
            log.write(f, {"episode/return/minatar:Breakout": float(v)})
        log.close()
    md, _ = report([str(pbt)], budgets=[5e6], smooth=3, out=tmp_path / "rep")
    text = md.read_text()
    assert "members/0" not in text and all(f"members/{i}" in text for i in (1, 2, 3))
    md, _ = report([str(pbt)], budgets=[5e6], smooth=1, out=tmp_path / "rep1")
    assert "members/0" in md.read_text()                       # unsmoothed, the spike wins
