"""The run's config class is built from its methods (:func:`kickstart.config.make_config`): it holds
exactly their sections, and its checks ask its own methods, whichever method packages are imported."""

import dataclasses
import pickle

import pytest

from kickstart.config import CoreConfig, make_config, resolve_config
from kickstart.configio import from_dict, load, to_dict
from kickstart.errors import ConfigError
from kickstart.kickstarting.config import KickstartConfig
from kickstart.method import Method, Range, enabled_methods, hparam_range, methods_of
from kickstart.methods import METHODS, Config
from kickstart.mixmatch.config import MixMatchConfig

CORE = ["env", "net", "learner", "runtime", "run", "pbt", "ray"]
ALPHA_OUT_OF_RANGE = {"pbt": {"population_size": 2,
                              "mutable": {"mixmatch/alpha": {"distribution": "uniform", "low": 0.1, "high": 2.0}}}}


@dataclasses.dataclass
class ToySection:
    weight: float = 0.5


class Toy(Method):
    name = "toy"
    section = ToySection

    def enabled(self, cfg):
        return cfg.toy.weight > 0

    def check(self, cfg):
        if cfg.toy.weight > 1:
            raise ConfigError(f"toy.weight={cfg.toy.weight} must be <= 1")


class Bare(Method):
    """A method without settings: no section."""

    name = "bare"
    hparam_ranges = {"bare/w": Range(0.0, 0.5)}


def names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_make_config_adds_exactly_the_sections_of_its_methods():
    assert names(make_config(())) == names(CoreConfig) == CORE
    assert names(make_config((Bare(),))) == CORE
    toy = make_config((Toy(), Bare()))
    assert names(toy) == CORE + ["toy"] and isinstance(toy().toy, ToySection)
    assert [m.name for m in toy.methods] == ["toy", "bare"] and issubclass(toy, CoreConfig)
    assert names(Config) == CORE + ["kickstart", "mixmatch"] and Config.methods == METHODS
    assert isinstance(Config().kickstart, KickstartConfig) and isinstance(Config().mixmatch, MixMatchConfig)
    assert [m.section for m in METHODS] == [KickstartConfig, MixMatchConfig]
    with pytest.raises(ValueError, match="'toy' is already a section"):
        make_config((Toy(), Toy()))
    clash = type("Clash", (Toy,), {"name": "pbt"})
    with pytest.raises(ValueError, match="'pbt' is already a section"):
        make_config((clash(),))


def test_the_registry_config_pickles_by_reference():
    cfg = Config()
    assert type(cfg).__module__ == "kickstart.methods" and type(pickle.loads(pickle.dumps(cfg))) is Config


def test_a_config_without_a_method_names_its_valid_sections():
    core = make_config(())
    with pytest.raises(ConfigError) as e:
        from_dict(core, {"kickstart": {"teachers": {"t": {"path": "t.pt"}}}})
    assert str(e.value) == f"unknown config key 'kickstart'; valid keys: {', '.join(CORE)}"
    with pytest.raises(ConfigError, match="unknown config key 'mixmatch'"):
        load(core, None, ["mixmatch.alpha=0.5"])


def test_checks_ask_the_config_class_methods_not_what_was_imported():
    """The same data: checked against Mix & Match's range by the registry's class, not by a class
    without methods; the toy's check runs only in a class that has the toy, though it is never
    registered."""
    with pytest.raises(ConfigError, match=r"leaves \[0, 1\], where mixmatch/alpha lives"):
        from_dict(Config, ALPHA_OUT_OF_RANGE)
    plain = from_dict(make_config(()), ALPHA_OUT_OF_RANGE)
    assert resolve_config(plain).pbt.mutable["mixmatch/alpha"].perturb == "multiply"    # no method: a factor
    assert resolve_config(from_dict(Config, {"pbt": {"population_size": 2, "mutable": {"mixmatch/alpha": {
        "distribution": "uniform", "low": 0.1, "high": 0.9}}}})).pbt.mutable["mixmatch/alpha"].perturb == "add"

    toy = make_config((Toy(),))
    with pytest.raises(ConfigError, match="toy.weight=2.0 must be <= 1"):
        from_dict(toy, {"toy": {"weight": 2}})
    cfg = from_dict(toy, {"toy": {"weight": 0.5}})
    assert [m.name for m in enabled_methods(cfg)] == ["toy"] and methods_of(cfg) == toy.methods
    assert "toy" not in [m.name for m in methods_of(object())]                 # the fallback: the registry
    assert hparam_range("bare/w", make_config((Bare(),))()) == Range(0.0, 0.5)
    assert hparam_range("bare/w", Config()) is None and hparam_range("bare/w") is None


def test_resolving_keeps_the_config_class():
    toy = make_config((Toy(),))
    cfg = from_dict(toy, {"toy": {"weight": 0.25}, "pbt": {"alpha_step": 0.2}})
    out = resolve_config(cfg)
    assert type(out) is toy and out.toy.weight == 0.25 and out.pbt.add_step == 0.2
    assert to_dict(cfg)["pbt"]["alpha_step"] == 0.2                                   # the input is untouched


def test_a_checkpoint_config_is_read_with_the_class_given_or_the_registered_methods():
    """``kickstart eval`` reads with the registry's class (strict); a teacher loaded below the
    registry, with the registered methods', leaving out a section of a method not imported here."""
    from kickstart.policy import read_config

    data = dict(to_dict(Config()), other={"x": 1})
    with pytest.raises(ConfigError, match="unknown config key 'other'"):
        read_config(data, Config)
    cfg = read_config(data)
    assert {m.name for m in type(cfg).methods} >= {"kickstart", "mixmatch"} and not hasattr(cfg, "other")
    assert to_dict(cfg) == to_dict(Config())
