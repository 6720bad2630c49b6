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
