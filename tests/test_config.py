"""Config loading, overrides and validation: every mistake is a one-line ConfigError."""

import pytest

from kickstart.configio import apply_overrides, from_dict, save_config, to_dict
from kickstart.errors import ConfigError
from kickstart.methods import Config, load_config


def test_defaults_build_and_round_trip(tmp_path):
    cfg = Config()
    p = tmp_path / "c.yaml"
    save_config(cfg, p)
    assert to_dict(load_config(p)) == to_dict(cfg)


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("env:\n  id: minatar:Freeway\nlearner:\n  learning_rate: 0.001\n")
    cfg = load_config(p, ["learner.entropy_cost=0.02", "net.core=lstm", "net.mlp_sizes=[32, 16]",
                          "runtime.num_actors=3", "env.sticky_actions=null"])
    assert cfg.env.id == "minatar:Freeway"
    assert cfg.learner.learning_rate == 0.001 and cfg.learner.entropy_cost == 0.02
    assert cfg.net.core == "lstm" and cfg.net.mlp_sizes == [32, 16]
    assert cfg.runtime.num_actors == 3 and cfg.env.sticky_actions is None


def test_int_given_for_float_is_accepted_and_float_for_int_is_not():
    cfg = from_dict(Config, {"learner": {"learning_rate": 1}})
    assert isinstance(cfg.learner.learning_rate, float)
    with pytest.raises(ConfigError, match="learner.unroll_length=2.5 must be an integer"):
        from_dict(Config, {"learner": {"unroll_length": 2.5}})


@pytest.mark.parametrize("override, pattern", [
    ("learner.lerning_rate=1", r"unknown config key 'learner.lerning_rate' \(did you mean 'learning_rate'\?\)"),
    ("lerner.learning_rate=1", r"unknown config key 'lerner' \(did you mean 'learner'\?\)"),
    ("learner.learning_rate=-1", r"learner.learning_rate=-1.0 must be > 0"),
    ("learner.discount=1.5", r"learner.discount=1.5 must be in \[0, 1\]"),
    ("learner.optimizer=sgd", r"learner.optimizer='sgd' is not valid; choose one of: rmsprop, adam"),
    ("net.torso=resnet", r"net.torso='resnet' is not valid; choose one of: auto, nature"),
    ("net.core=gru", r"choose one of: ff, lstm"),
    ("runtime.backend=ray2", r"runtime.backend='ray2' is not valid"),
    ("run.total_frames=0", r"run.total_frames=0 must be > 0"),
    ("run.progress=maybe", r"run.progress='maybe' must be true or false"),
    ("learner.batch_size=20", r"learner.batch_size=20 must be a multiple of runtime.envs_per_actor=16"),
    ("env.sticky_actions=2", r"env.sticky_actions=2.0 must be in \[0, 1\]"),
    ("learner=3", r"learner is not a section|learner must be a mapping"),
    ("learner.learning_rate", r"must look like section.key=value"),
])
def test_bad_values_are_one_line_errors(override, pattern):
    with pytest.raises(ConfigError, match=pattern) as e:
        load_config(None, [override])
    assert "\n" not in str(e.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(lst)


def test_apply_overrides_creates_sections():
    d = apply_overrides({}, ["run.name=x"], Config)
    assert d == {"run": {"name": "x"}}


def test_overrides_reach_into_mappings_of_sections():
    cfg = load_config(None, ["kickstart.teachers.t.path=x.pt", "kickstart.teachers.t.rho=0.5",
                             "kickstart.teachers.t.tasks=[minatar:Breakout]"])
    assert cfg.kickstart.teachers["t"].rho == 0.5 and cfg.kickstart.teachers["t"].path == "x.pt"
    assert cfg.kickstart.teachers["t"].tasks == ["minatar:Breakout"]
    with pytest.raises(ConfigError, match=r"unknown config key 'kickstart.teachers.t.rhoo' \(did you mean 'rho'\?\)"):
        load_config(None, ["kickstart.teachers.t.path=x.pt", "kickstart.teachers.t.rhoo=1"])


def test_exponent_without_a_dot_is_a_number(tmp_path):
    # YAML 1.1 reads 3e-4 as a string; a learning rate written that way must still work.
    p = tmp_path / "c.yaml"
    p.write_text("learner:\n  learning_rate: 3e-4\n")
    assert load_config(p, ["learner.entropy_cost=1e-3"]).learner.learning_rate == 3e-4
    assert load_config(p, ["learner.entropy_cost=1e-3"]).learner.entropy_cost == 1e-3
