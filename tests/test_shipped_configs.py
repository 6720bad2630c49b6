"""Every shipped config loads, and builds (env, network, teachers) when its teachers are shipped."""

from pathlib import Path

import pytest

from kickstart.methods import load_config
from kickstart.train import validate

CONFIGS = sorted(str(p) for p in Path("configs").rglob("*.yaml"))


def test_there_are_configs():
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS)
def test_config_loads_and_builds(path):
    cfg = load_config(path)
    missing = [t.path for t in cfg.kickstart.teachers.values() if t.path and not Path(t.path).exists()]
    if missing:
        pytest.skip(f"teachers not shipped yet: {missing}")
    validate(cfg)


def _replication_runs(kind):
    """(name, config, overrides) of each `seeded` or `population` line of scripts/run_replication.sh."""
    import re
    import shlex

    script = Path("scripts/run_replication.sh").read_text()
    runs = []
    for line in script.splitlines():
        if not line.strip().startswith(kind + " "):
            continue
        # the linear rows' horizons are shell expressions: any fixed value stands in for them
        line = re.sub(r"\$\(\([^)]*\)\)|\$H1\b", "2000000", line.split("#")[0])
        words = shlex.split(line.replace("$E/", "configs/experiments/"))
        runs.append((words[1], words[2], words[3:]))
    return runs


def test_replication_fixed_lambda_rows_differ_from_scratch_in_lambda_alone():
    """scripts/run_replication.sh runs each fixed-lambda row as single runs over seeds: its network,
    learner and actors must be the from-scratch runs' own (the distillation row drops the RL loss, what it
    is), so that the rows of Tables 1 and 2 and Fig. 5 compare what the student learns from, and nothing
    else."""
    import dataclasses

    seeded = _replication_runs("seeded")
    names = {name for name, _, _ in seeded}
    assert {"scratch", "small-const1", "small-const2", "small-lin1-h$h", "small-lin2-h$h",
            "experts-const", "distill"} <= names, names
    scratch = next(load_config(c, o) for n, c, o in seeded if n == "scratch")
    for name, config, overrides in seeded:
        cfg = load_config(config, overrides)
        assert cfg.pbt.population_size == 1, name
        for section in ("env", "net", "runtime", "run"):
            assert getattr(cfg, section) == getattr(scratch, section), (name, section)
        learner = dataclasses.replace(cfg.learner, rl_loss=scratch.learner.rl_loss)
        assert learner == scratch.learner, name
        assert cfg.learner.rl_loss == (name != "distill"), name
        assert (name == "scratch") == (not cfg.kickstart.teachers), name


def test_replication_populations_tune_the_same_ranges():
    """Every population of the replication lets PBT tune the learning rate and entropy cost over the same
    priors (and, for a kickstarting population, lambda too): otherwise its rows would compare tuning budgets."""
    populations = _replication_runs("population")
    assert {"scratch-pbt", "small-pbt", "experts-rho-pbt", "experts-shared-pbt"} <= {n for n, _, _ in populations}
    tuned = {"learning_rate", "entropy_cost"}
    priors = set()
    for name, config, overrides in populations:
        cfg = load_config(config, overrides + ["pbt.population_size=8"])
        assert tuned <= set(cfg.pbt.mutable), name
        priors.add(repr([cfg.pbt.mutable[k] for k in sorted(tuned)]))
        assert all(k in tuned or k.startswith("kickstart/") for k in cfg.pbt.mutable), (name, cfg.pbt.mutable)
    assert len(priors) == 1, priors
