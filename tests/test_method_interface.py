"""The method interface (:mod:`kickstart.method`): what a method contributes reaches the core through
it alone, validation only checks, and resolving ``auto`` is a step of its own."""

import dataclasses

import numpy as np
import pytest
import torch
import yaml

from kickstart import method as method_module
from kickstart.config import make_config, resolve_config
from kickstart.configio import from_dict, load, to_dict
from kickstart.envs import env_spec
from kickstart.errors import ConfigError
from kickstart.learner import Learner, LossTerm
from kickstart.method import Method, MethodSetup, Range, hparam_range
from kickstart.methods import METHODS, Config, build_methods, load_config
from kickstart.nets import AgentNet, build_agent, build_net
from kickstart.pbt.config import PBTConfig, PriorConfig, pbt_eval

MULTITASK_MM = {"env": {"id": "minatar5"},
                "mixmatch": {"components": [{"core": "lstm", "per_task": True}, {"core": "lstm"}]},
                "pbt": {"population_size": 2, "mutable": {"mixmatch/alpha": {"low": 0.001, "high": 0.01},
                                                           "learning_rate": {"low": 1e-4, "high": 1e-3}}}}


def test_validation_checks_and_resolving_is_a_separate_step():
    cfg = from_dict(Config, MULTITASK_MM)
    assert cfg.pbt.eval == "auto" and cfg.pbt.mutable["mixmatch/alpha"].perturb == "auto"   # checked, not changed
    before = to_dict(cfg)
    resolved = resolve_config(cfg)
    assert to_dict(cfg) == before                                                             # resolving copies
    assert resolved.pbt.eval == "evaluator" == pbt_eval(cfg)                                  # the same where used
    assert resolved.pbt.mutable["mixmatch/alpha"].perturb == "add"
    assert resolved.pbt.mutable["learning_rate"].perturb == "multiply"
    assert to_dict(resolve_config(resolved)) == to_dict(resolved)
    single = dict(MULTITASK_MM, env={"id": "minatar:Breakout"}, mixmatch={"components": [{}, {}]})
    assert resolve_config(from_dict(Config, single)).pbt.eval == "training_returns"
    assert to_dict(resolve_config(Config())) == to_dict(Config())             # nothing to resolve in the defaults


def test_alpha_step_is_the_former_name_of_add_step():
    assert PBTConfig(alpha_step=0.3).step == 0.3 and PBTConfig().step == 0.05 == PBTConfig().add_step
    cfg = load_config(None, ["pbt.population_size=2", "pbt.alpha_step=0.2"])          # an existing config
    assert cfg.pbt.add_step == 0.2 and cfg.pbt.alpha_step is None                    # recorded by its new name
    assert load_config(None, ["pbt.population_size=2", "pbt.add_step=0.1"]).pbt.step == 0.1
    with pytest.raises(ConfigError, match="former name of add_step"):
        load_config(None, ["pbt.population_size=2", "pbt.alpha_step=0.2", "pbt.add_step=0.1"])


def test_plain_impala_gets_nothing_from_the_methods():
    cfg = load_config(None, ["env.id=CartPole-v1"])
    setup = build_methods(cfg, env_spec(cfg.env))
    assert setup == MethodSetup() and type(build_agent(cfg, env_spec(cfg.env))) is AgentNet
    assert [m.name for m in METHODS] == ["kickstart", "mixmatch"]


def test_rl_loss_false_needs_a_method_that_adds_a_loss():
    from kickstart.train import validate

    with pytest.raises(ConfigError, match="leaves no loss to train"):
        validate(load_config(None, ["env.id=CartPole-v1", "learner.rl_loss=false"]))


def test_the_run_directory_records_the_resolved_config(out_dir):
    from kickstart.train import train

    cfg = from_dict(Config, {"env": {"id": "CartPole-v1"}, "net": {"torso": "mlp", "hidden_size": 8},
                             "learner": {"unroll_length": 4, "batch_size": 4},
                             "runtime": {"backend": "serial", "num_actors": 1, "envs_per_actor": 4},
                             "pbt": {"alpha_step": 0.2},
                             "run": {"total_frames": 32, "out_dir": str(out_dir), "name": "r", "progress": False,
                                     "tensorboard": False}})
    train(cfg)
    assert cfg.pbt.alpha_step == 0.2                                                 # the caller's is untouched
    saved = yaml.safe_load((out_dir / "r" / "config.yaml").read_text())
    assert saved["pbt"]["add_step"] == 0.2 and saved["pbt"]["alpha_step"] is None
    assert saved["pbt"]["eval"] == "auto"               # a single run: PBT settings it does not use stay as given
    assert to_dict(resolve_config(cfg)) == to_dict(from_dict(Config, saved))


# -- a method written against the interface alone ------------------------------------------------------

class WeightTerm(LossTerm):
    """Implements only ``__call__``: the other hooks are the base class's no-ops."""

    name = "toy"

    def __init__(self):
        self.hparams = {"toy/w": 0.25}

    def __call__(self, ctx):
        return ctx.out.baseline.sum() * 0.0, {"toy/w": ctx.hparams["toy/w"]}


class Toy(Method):
    name = "toy"
    hparam_ranges = {"toy/w": Range(0.0, 0.5)}

    def enabled(self, cfg):
        return cfg.run.name.startswith("toy")

    def check(self, cfg):
        if cfg.run.name == "toy-bad":
            raise ConfigError("run.name=toy-bad: the toy method refuses it")

    def setup(self, cfg, spec):
        return MethodSetup(terms=[WeightTerm()])

    def network(self, cfg, spec):
        return build_net(dataclasses.replace(cfg.net, hidden_size=7), spec)

    def pbt_eval(self, cfg):
        return "evaluator"


ToyConfig = make_config(METHODS + (Toy(),), "ToyConfig")
"""Runs with the built-in methods and the toy one: the toy is not registered, its config class carries it."""


def load_toy(overrides):
    return resolve_config(load(ToyConfig, None, overrides))


@pytest.fixture
def toy():
    """The toy method, through its config class alone (the registry stays as it is)."""
    return Toy


def test_a_method_reaches_the_core_through_the_interface(toy):
    from kickstart.pbt.decisions import perturb

    base = ["env.id=CartPole-v1", "net.torso=mlp", "pbt.population_size=2"]
    prior = "pbt.mutable={toy/w: {distribution: uniform, low: 0.1, high: %s}}"
    cfg = load_toy(base + ["run.name=toy-1", prior % 0.4])
    assert cfg.pbt.eval == "evaluator" and cfg.pbt.mutable["toy/w"].perturb == "add"     # its preferences
    assert hparam_range("toy/w", cfg) == Range(0.0, 0.5)
    assert hparam_range("toy/w") is None                                  # not registered: the config says it
    rng = np.random.default_rng(0)
    steps = {perturb(0.45, PriorConfig(), rng, factors=[2.0], step=0.1, name="toy/w", methods=type(cfg).methods)
             for _ in range(20)}
    assert sorted(steps) == pytest.approx([0.35, 0.5])                                   # clipped to its range
    spec = env_spec(cfg.env)
    net = build_agent(cfg, spec)                                                          # its network
    assert net.torso.out_size == 7
    learner = Learner(net, cfg.learner, 1000, [WeightTerm()], device=torch.device("cpu"))
    learner.prepare(0)
    assert learner.hparams["toy/w"] == 0.25 and learner.published_hparams(0)["toy/w"] == 0.25
    with pytest.raises(ConfigError, match="toy method refuses"):                          # its check
        load_toy(base + ["run.name=toy-bad"])
    with pytest.raises(ConfigError, match=r"up to 0.9 leaves \[0, 0.5\]"):                # its range
        load_toy(base + ["run.name=toy-1", prior % 0.9])
    with pytest.raises(ConfigError, match=r"toy/w=0.7 must be in \[0, 0.5\]"):
        load_toy(base + ["run.name=toy-1", "pbt.initial_hparams=[{toy/w: 0.7}]"])
    load_config(None, base + ["run.name=toy-bad", prior % 0.9])       # runs without the toy: none of its checks


def test_two_methods_that_build_the_agent_are_an_error(toy):
    cfg = load_config(None, ["env.id=CartPole-v1", "net.torso=mlp", "run.name=toy-1"])
    with pytest.raises(ConfigError, match="toy and toy each build the agent network"):
        build_agent(cfg, env_spec(cfg.env), (Toy(), Toy()))


def test_the_base_class_contributes_nothing():
    m, term = Method(), LossTerm()
    cfg = load_config(None, [])
    assert not m.enabled(cfg) and m.setup(cfg, None) == MethodSetup() and m.network(cfg, None) is None
    assert m.export(None, cfg) is None and m.pbt_eval(cfg) is None and m.precisions(cfg) == {}
    assert m.check(cfg) is None and dict(m.hparam_ranges) == {}
    assert term.actor_hparams({}, 0) == {} and dict(term.hparams) == {}
    with pytest.raises(NotImplementedError):
        term(None)
    with pytest.raises(ValueError, match="no name"):
        method_module.register(Method())


def test_report_panels_select_the_methods_metrics():
    """``kickstart report`` draws each method's figures from what the method declares."""
    from kickstart.method import Panel
    from kickstart.methods import METHODS

    panels = {p.filename: p for m in METHODS for p in m.report_panels}
    assert panels["lambda.png"].shows("kickstart/expert/lambda") and not panels["lambda.png"].shows("kickstart/alpha")
    mm = panels["mixmatch.png"]
    assert mm.shows("mixmatch/alpha") and mm.shows("mixmatch/kl")
    assert not mm.shows("mixmatch/weight/0") and not mm.shows("mixmatch/lambda") and not mm.shows("loss/total")
    assert Panel("a/", "a.png", suffix="/x", exclude=("a/b",)).shows("a/c/x") and not Panel("a/", "a.png").shows("b/a/")
