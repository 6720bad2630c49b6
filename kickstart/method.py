"""The one seam between the core and a training method (kickstarting, Mix & Match, what comes next).

A method is a :class:`Method`: every hook has a no-op default, so a method overrides only what it
contributes, and the core calls every hook on every method without probing for it. What a method may
contribute, and where the core uses it:

=======================  ===========================================================================
``setup(cfg, spec)``     loss terms, actor hooks and the unroll fields they write, frozen networks
                         the learner runs (split with the actors), PBT's evaluation policy
                         (:class:`MethodSetup`; the trainer and the learner pass them through)
``network(cfg, spec)``   the agent network the run trains, when the method has its own (Mix & Match);
                         None: the core's ``build_net(cfg.net)``
``export(net, cfg)``     the policy ``kickstart export`` writes, as ``(config, weights)``; None: the
                         network as it is
``hparam_ranges``        mutable hyperparameters that are weights in a range: PBT explores them by
                         adding ``+-pbt.add_step`` clipped to the range (every other one by factors)
``pbt_eval(cfg)``        what ``pbt.eval: auto`` resolves to for this method, or None (no preference)
``check(cfg)``           checks across config sections (one-line ``ConfigError``); never mutates
``precisions(cfg)``      other networks the method runs: config key -> precision setting (start-up report)
``section``              the dataclass of its config section ``cfg.<name>`` (the run's config class
                         is built from its methods' sections: :func:`kickstart.config.make_config`)
``report_panels``        its metrics that ``kickstart report`` plots as a figure of their own
                         (:class:`Panel`: e.g. each teacher's lambda, M&M's alpha and KL)
=======================  ===========================================================================

A method also declares its config section (``section``, a dataclass; ``name`` is its key). The
registry :mod:`kickstart.methods` builds the run's config class from its methods
(:func:`kickstart.config.make_config`), and that class carries them (``type(cfg).methods``): the
core asks a config's own methods (:func:`enabled_methods`, :func:`hparam_range` given them), so what
a config means and which checks it runs do not depend on which method packages were imported. Why
not imports: a method builds on the core (config, networks, learner), while the core needs its
answers (which network, which hyperparameters are weights, what ``pbt.eval: auto`` means); the core
importing the methods would close a circle.

Methods also register themselves when their package is imported (:func:`register`, at the end of its
``__init__``): :func:`registered` is the fallback where the core has no config to ask (a checkpoint's
config dict, a helper called without one). This module imports nothing of kickstart, so that any
module may import it. Processes the runtime starts get what they need pickled (the run's config,
whose class lives in :mod:`kickstart.methods`; the registry's :func:`kickstart.methods.build_agent`;
the hook factories), whose unpickling imports the methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping


@dataclass
class MethodSetup:
    """What a method plugs into one run's trainer."""

    terms: list = field(default_factory=list)
    """Loss terms (:class:`kickstart.learner.LossTerm`) added to the IMPALA loss."""
    hook_factory: Any = None
    """A picklable :class:`kickstart.runtime.backend.HookFactory` of actor hooks, or None."""
    extra_fields: dict = field(default_factory=dict)
    """Unroll fields (name -> :class:`kickstart.runtime.unroll.Field`) the hooks or the network write."""
    eval_policy: Callable | None = None
    """Maps the trained network to the policy PBT's evaluator scores (e.g. Mix & Match's target
    agent); None scores the network as it is."""
    split_inference: list = field(default_factory=list)
    """Frozen feed-forward networks whose per-step outputs are unroll fields the learner computes,
    wholly or where the actors left them NaN (:class:`kickstart.runtime.placement.SplitInference`,
    e.g. kickstarting's teachers): the trainer's ``Placement`` runs them on the learner's device
    before the loss terms and balances their share between actors and learner."""


@dataclass(frozen=True)
class Panel:
    """A figure of ``kickstart report``: every metric whose name starts with ``prefix`` (and ends
    with ``suffix``, and starts with none of ``exclude``), one subplot each, written to ``filename``."""

    prefix: str
    filename: str
    suffix: str = ""
    exclude: tuple[str, ...] = ()

    def shows(self, metric: str) -> bool:
        return metric.startswith(self.prefix) and metric.endswith(self.suffix) and not metric.startswith(self.exclude)


@dataclass(frozen=True)
class Range:
    """A mutable hyperparameter that is a weight in ``[low, high]``."""

    low: float = 0.0
    high: float = 1.0


class Method:
    """A training method: override the hooks it contributes (see the module docstring)."""

    name: str = ""
    """The config section it owns (``kickstart``, ``mixmatch``); also its name in the registry."""
    section: type | None = None
    """The dataclass of its config section (``cfg.<name>``), or None for a method without settings."""
    hparam_ranges: Mapping[str, Range] = MappingProxyType({})
    """Mutable hyperparameters (learner names) that are weights in a range, e.g. ``mixmatch/alpha``."""
    report_panels: tuple[Panel, ...] = ()
    """Figures of its own metrics in ``kickstart report``."""

    def enabled(self, cfg) -> bool:
        """Whether run ``cfg`` uses this method (its other hooks are only called when it does)."""
        return False

    def check(self, cfg) -> None:
        """Raise a one-line ``ConfigError`` on settings that do not fit together across sections."""

    def setup(self, cfg, spec) -> MethodSetup:
        """Loss terms, actor hooks, unroll fields and evaluation policy for run ``cfg`` on env ``spec``.
        A bad setting (a teacher that does not fit, say) is a one-line ``UserError`` here."""
        return MethodSetup()

    def network(self, cfg, spec):
        """The agent network run ``cfg`` trains, or None for the core's plain network."""
        return None

    def export(self, net, cfg) -> tuple[dict, dict] | None:
        """``(config dict, weights)`` of the policy to export from trained ``net``; None: ``net`` itself."""
        return None

    def pbt_eval(self, cfg) -> str | None:
        """What ``pbt.eval: auto`` means for this method (``evaluator``, ...); None: no preference."""
        return None

    def precisions(self, cfg) -> dict[str, str]:
        """Other networks the method runs beside the agent: the config key of each one's precision
        setting (e.g. ``kickstart.teachers.expert.precision``) -> the setting."""
        return {}


_REGISTERED: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Make ``method`` known to the core (call it once, at the end of the method package's
    ``__init__``). A second registration of the same class under its name replaces the first (a
    reloaded module); another class under a taken name is an error."""
    if not method.name:
        raise ValueError(f"{type(method).__name__} has no name; set Method.name to its config section")
    old = _REGISTERED.get(method.name)
    if old is not None and type(old).__qualname__ != type(method).__qualname__:
        raise ValueError(f"two methods are named {method.name!r}: {type(old).__name__} and {type(method).__name__}")
    _REGISTERED[method.name] = method
    return method


def registered() -> tuple[Method, ...]:
    """The methods registered so far, in registration order."""
    return tuple(_REGISTERED.values())


def methods_of(cfg) -> tuple[Method, ...]:
    """The methods config ``cfg`` was built with (``type(cfg).methods``, see
    :func:`kickstart.config.make_config`); the registered ones for an object without them."""
    own = getattr(type(cfg), "methods", None)
    return registered() if own is None else tuple(own)


def enabled_methods(cfg, methods: tuple[Method, ...] | None = None) -> list[Method]:
    """The methods (``methods``, or the config's own: :func:`methods_of`) that run ``cfg`` uses."""
    return [m for m in (methods_of(cfg) if methods is None else methods) if m.enabled(cfg)]


def hparam_range(name: str, methods=None) -> Range | None:
    """The range of mutable hyperparameter ``name`` if one of ``methods`` declares one. ``methods``:
    a sequence of methods, or a config (its own methods); None: the registered ones."""
    if methods is None:
        methods = registered()
    elif not isinstance(methods, (tuple, list)):
        methods = methods_of(methods)
    for m in methods:
        if name in m.hparam_ranges:
            return m.hparam_ranges[name]
    return None
