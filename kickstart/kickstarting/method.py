"""Kickstarting as a :class:`~kickstart.method.Method`: what it plugs into a run."""

from __future__ import annotations

import torch

from kickstart.config import Config
from kickstart.kickstarting.hooks import coverage, field_name, make_hooks
from kickstart.kickstarting.teachers import check_name, load_bound_teacher, placement
from kickstart.kickstarting.term import KickstartTerm
from kickstart.method import Method, MethodSetup
from kickstart.runtime.backend import HookFactory
from kickstart.runtime.unroll import Field
from kickstart.specs import EnvSpec


class Kickstarting(Method):
    name = "kickstart"
    # kickstart/alpha and kickstart/rho/<teacher> are factors >= 0: PBT explores them by multiplying.

    def enabled(self, cfg: Config) -> bool:
        return cfg.kickstart.enabled

    def setup(self, cfg: Config, spec: EnvSpec) -> MethodSetup:
        """The distillation term, the teachers' actor hooks and the unroll fields they write.

        Every teacher is loaded once here, so that a missing file, an observation shape or actions
        that do not fit, or an unknown task is a one-line :class:`~kickstart.errors.UserError` before
        any actor starts. The actors load their own copies (``make_hooks``).
        """
        ks = cfg.kickstart
        if not ks.enabled:
            return MethodSetup()
        fields, in_learner, split = {}, {}, set()
        for name in ks.teachers:
            check_name(name)
        covered = coverage(ks, spec)
        for name, tc in ks.teachers.items():
            teacher = load_bound_teacher(name, tc, spec)
            where = placement(name, ks.placement, teacher)
            if where in ("learner", "split"):
                in_learner[name] = teacher
            if where == "split":
                split.add(name)
            if where in ("actor", "split"):
                fields[field_name(name)] = Field((teacher.num_logits,), torch.float32)
        term = KickstartTerm(ks, covered, spec.num_tasks, in_learner, split)
        return MethodSetup([term], HookFactory(make_hooks) if fields else None, fields)

    def precisions(self, cfg: Config) -> dict[str, str]:
        """Each teacher's precision setting (the start-up report and ``meta.json``)."""
        return {name: t.precision for name, t in cfg.kickstart.teachers.items()}
