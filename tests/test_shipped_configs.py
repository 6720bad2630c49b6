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


def test_replication_tunes_fixed_lambda_rows_as_their_pbt_rivals():
    """scripts/run_replication.sh runs each fixed-lambda row as a population whose PBT tunes the
    learning rate and entropy cost over the ranges the *_pbt experiment configs give them: otherwise
    the comparison of lambda schedules would be one of tuning budgets."""
    import re

    import yaml

    script = Path("scripts/run_replication.sh").read_text()
    tuned = yaml.safe_load(re.search(r"^TUNE_HPARAMS='(.*)'$", script, re.M).group(1))
    pbt_configs = sorted(Path("configs/experiments").glob("minatar5_*_pbt.yaml"))
    assert len(pbt_configs) >= 3
    for path in pbt_configs:
        mutable = yaml.safe_load(path.read_text())["pbt"]["mutable"]
        assert {k: mutable[k] for k in tuned} == tuned, path
    cfg = load_config("configs/experiments/minatar5_small_constant1.yaml",
                      ["pbt.population_size=8", f"pbt.mutable={yaml.safe_dump(tuned, default_flow_style=True).strip()}"])
    assert set(cfg.pbt.mutable) == set(tuned)
    # the distillation row, which has no entropy term, tunes the learning rate over the same range
    lr_only = yaml.safe_load(re.search(r"^TUNE_LR='(.*)'$", script, re.M).group(1))
    assert lr_only == {"learning_rate": tuned["learning_rate"]}
    assert re.search(r"^\s*MUTABLE=\$TUNE_LR tuned distill .*minatar5_distillation\.yaml", script, re.M)
