"""The methods a config asks for, as the loss terms, actor hooks and unroll fields they add.

The runtime and the learner stay method-agnostic: they receive a :class:`MethodSetup` and pass its
pieces through. Kickstarting and Mix & Match add their pieces here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from kickstart.config import Config
from kickstart.runtime.backend import HookFactory
from kickstart.runtime.unroll import Field
from kickstart.specs import EnvSpec


@dataclass
class MethodSetup:
    terms: list = field(default_factory=list)
    hook_factory: HookFactory | None = None
    extra_fields: dict[str, Field] = field(default_factory=dict)
    eval_policy: Callable | None = None
    """Maps the trained network to the policy PBT's evaluator scores (e.g. Mix & Match's target
    agent); None scores the network as it is."""


def _all_hooks(cfg, spec, factories: Sequence[HookFactory]):
    return [h for f in factories for h in f(cfg, spec)]


def combine(setups: Sequence) -> MethodSetup:
    """One setup from several: terms and fields concatenated, hook factories chained."""
    out = MethodSetup()
    factories = []
    for s in setups:
        out.terms.extend(s.terms)
        for k, v in s.extra_fields.items():
            if k in out.extra_fields:
                raise ValueError(f"two methods write the unroll field {k!r}")
            out.extra_fields[k] = v
        if s.hook_factory is not None:
            factories.append(s.hook_factory)
        if getattr(s, "eval_policy", None) is not None:
            out.eval_policy = s.eval_policy
    if len(factories) == 1:
        out.hook_factory = factories[0]
    elif factories:
        out.hook_factory = HookFactory(_all_hooks, (tuple(factories),))
    return out


def build_methods(cfg: Config, spec: EnvSpec) -> MethodSetup:
    """Everything the methods in ``cfg`` add (nothing for plain IMPALA). Loads teachers, so a bad
    teacher is a one-line UserError here, before any run directory or actor exists."""
    setups = []
    if cfg.kickstart.enabled:
        from kickstart import kickstarting

        setups.append(kickstarting.build(cfg, spec))
    if cfg.mixmatch.enabled:
        from kickstart import mixmatch

        setups.append(mixmatch.build(cfg, spec))
    return combine(setups)
