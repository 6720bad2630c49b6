"""The registry: every built-in method, one line each, and what a run gets from them.

A method is a package that implements :class:`kickstart.method.Method` and registers it
(:func:`kickstart.method.register`) when imported. Importing this module imports every built-in
method, so the entry points (``train``, PBT, the CLI, ``evaluate``) import it and see them all; the
core below them never imports a method: it asks the methods a config was built with
(``type(cfg).methods``). Here too the run's config class (:data:`Config`, from the methods' sections)
and :func:`load_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from kickstart import kickstarting, mixmatch, nets
from kickstart.config import make_config, resolve_config
from kickstart.configio import load
from kickstart.method import Method, MethodSetup, enabled_methods
from kickstart.runtime.actor import HookFactory
from kickstart.specs import EnvSpec

METHODS: tuple[Method, ...] = (
    kickstarting.METHOD,
    mixmatch.METHOD,
)
"""The built-in methods, in the order their loss terms are added. A new method: its package, and a line here."""

Config = make_config(METHODS, "Config", __name__)
"""The config class of a run: the core sections and every built-in method's (``cfg.kickstart``,
``cfg.mixmatch``). Bound here by name so that configs pickle by reference: an actor process that
unpickles one imports this module, and so every method."""


def load_config(path: str | Path | None = None, overrides: Sequence[str] | None = None) -> Config:
    """A run's config from a YAML file (the defaults when ``path`` is None) and dotted overrides,
    checked and resolved (:func:`kickstart.config.resolve_config`): what ``config.yaml`` records."""
    return resolve_config(load(Config, path, list(overrides or [])))


def _all_hooks(cfg, spec, factories: Sequence[HookFactory]):
    return [h for f in factories for h in f(cfg, spec)]


def combine(setups: Sequence[MethodSetup]) -> MethodSetup:
    """One setup from several: terms, fields and learner-side networks concatenated, hook factories
    chained."""
    out = MethodSetup()
    factories = []
    for s in setups:
        out.terms.extend(s.terms)
        out.split_inference.extend(s.split_inference)
        for k, v in s.extra_fields.items():
            if k in out.extra_fields:
                raise ValueError(f"two methods write the unroll field {k!r}")
            out.extra_fields[k] = v
        if s.hook_factory is not None:
            factories.append(s.hook_factory)
        if s.eval_policy is not None:
            out.eval_policy = s.eval_policy
    if len(factories) == 1:
        out.hook_factory = factories[0]
    elif factories:
        out.hook_factory = HookFactory(_all_hooks, (tuple(factories),))
    return out


def build_methods(cfg: Config, spec: EnvSpec) -> MethodSetup:
    """Everything the methods in ``cfg`` add (nothing for plain IMPALA). Loads teachers, so a bad
    teacher is a one-line UserError here, before any run directory or actor exists."""
    return combine([m.setup(cfg, spec) for m in enabled_methods(cfg, METHODS)])


def build_agent(cfg: Config, spec: EnvSpec):
    """The network run ``cfg`` trains (:func:`kickstart.nets.build_agent` over the built-in methods).
    Handed to the runtime as the actors' network factory: pickled by reference, it imports this
    module, and so registers every method, in each actor process."""
    return nets.build_agent(cfg, spec, METHODS)


def export(net, cfg: Config) -> tuple[dict, dict] | None:
    """``(config, weights)`` of the policy a method exports from trained ``net``; None: ``net`` itself."""
    for m in enabled_methods(cfg, METHODS):
        out = m.export(net, cfg)
        if out is not None:
            return out
    return None
