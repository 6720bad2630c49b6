"""bench/learning's report: seeds kept in OUT add up, and a suite's score gets its own row."""

import importlib.machinery
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from kickstart.envs.suites import suite_score

ROOT = Path(__file__).resolve().parents[1]
GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")


@pytest.fixture(scope="module")
def bench():
    loader = importlib.machinery.SourceFileLoader("bench_learning", str(ROOT / "bench" / "learning"))
    spec = importlib.util.spec_from_loader("bench_learning", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module           # dataclasses look their module up while it executes
    loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _keep_seed(dest: Path, seed: int, frames: int, returns: dict[str, float], suite: float) -> None:
    """A seed as an earlier machine left it in OUT: its curve and its final evaluation."""
    rows = ["frames,time,name,value"]
    for f in (frames // 2, frames):
        rows += [f"{f},0,episode/return/{t},{r * f / frames}" for t, r in returns.items()]
        rows.append(f"{f},0,episode/suite_score,{suite * f / frames}")
    (dest / f"s{seed}.metrics.csv").write_text("\n".join(rows) + "\n")
    (dest / f"s{seed}.eval.json").write_text(json.dumps({"episodes": 100, "returns": returns}))


def test_suite_score_row_from_kept_seeds(bench, tmp_path):
    dest = tmp_path / "minatar5"
    dest.mkdir()
    evals = {0: dict(zip((f"minatar:{g}" for g in GAMES), (20.0, 6.0, 40.0, 3.0, 160.0))),
             2: dict(zip((f"minatar:{g}" for g in GAMES), (15.0, 15.0, 20.0, 3.0, 170.0)))}
    for seed, returns in evals.items():
        _keep_seed(dest, seed, 10_000_000, returns, suite=40.0 + seed)
    assert bench.main(["--report-only", "--setup", "minatar5", "--runs", str(tmp_path / "none"),
                       "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "results.json").read_text())["summaries"]
    rows = {r["task"]: r for r in summary[0]["rows"]}
    assert list(rows)[-1] == bench.SUITE                   # after the five games
    assert summary[0]["seeds"] == [0, 2] and summary[0]["unfinished"] == {}
    suite = rows[bench.SUITE]
    for seed, returns in evals.items():
        assert suite["eval"][str(seed)] == pytest.approx(suite_score(returns))
    assert suite["budgets"][str(10_000_000)] == {"0": pytest.approx(40.0), "2": pytest.approx(42.0)}
    assert rows["minatar:SpaceInvaders"]["eval"] == {"0": 160.0, "2": 170.0}
    table = (tmp_path / "table.md").read_text()
    assert "| suite score |" in table and (tmp_path / "minatar5.png").is_file()


def test_single_task_setup_has_no_suite_row(bench, tmp_path):
    dest = tmp_path / "minatar-breakout"
    dest.mkdir()
    _keep_seed(dest, 0, 10_000_000, {"minatar:Breakout": 30.0}, suite=0.0)
    (dest / "s0.metrics.csv").write_text("frames,time,name,value\n10000000,0,episode/return/minatar:Breakout,30\n")
    bench.main(["--report-only", "--runs", str(tmp_path / "none"), "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "results.json").read_text())["summaries"][0]["rows"]
    assert [r["task"] for r in rows] == ["minatar:Breakout"]
