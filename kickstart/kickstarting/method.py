"""Kickstarting as a :class:`~kickstart.method.Method`: what it plugs into a run."""

from __future__ import annotations

import torch

from kickstart.config import CoreConfig
from kickstart.kickstarting.adapt import load_bound_teacher
from kickstart.kickstarting.config import KickstartConfig
from kickstart.kickstarting.hooks import make_hooks
from kickstart.kickstarting.names import check_name, field_name
from kickstart.kickstarting.plan import coverage, learner_inference, placement
from kickstart.kickstarting.term import KickstartTerm
from kickstart.method import Method, MethodSetup, Panel
from kickstart.runtime.actor import HookFactory
from kickstart.runtime.unroll import Field
from kickstart.specs import EnvSpec


class Kickstarting(Method):
    name = "kickstart"
    report_panels = (Panel("kickstart/", "lambda.png", suffix="/lambda"),)   # each teacher's weight (Fig. 2, 4)
    section = KickstartConfig
    # kickstart/alpha and kickstart/rho/<teacher> are factors >= 0: PBT explores them by multiplying.

    def enabled(self, cfg: CoreConfig) -> bool:
        return cfg.kickstart.enabled

    def setup(self, cfg: CoreConfig, spec: EnvSpec) -> MethodSetup:
        """The distillation term, the teachers' actor hooks and the unroll fields they write, and the
        teachers the learner runs (``split_inference``: the trainer's
        :class:`~kickstart.runtime.placement.Placement` runs them and balances the split ones).

        Every teacher is loaded once here, so that a missing file, an observation shape or actions
        that do not fit, or an unknown task is a one-line :class:`~kickstart.errors.UserError` before
        any actor starts. The actors load their own copies (``make_hooks``).
        """
        ks = cfg.kickstart
        if not ks.enabled:
            return MethodSetup()
        fields, in_learner = {}, []
        for name in ks.teachers:
            check_name(name)
        covered = coverage(ks, spec)
        for name, tc in ks.teachers.items():
            teacher = load_bound_teacher(name, tc, spec)
            where = placement(name, ks.placement, teacher)
            if where in ("learner", "split"):
                in_learner.append(learner_inference(name, teacher, covered[name], spec.num_tasks, where == "split"))
            if where in ("actor", "split"):
                fields[field_name(name)] = Field((teacher.num_logits,), torch.float32)
        term = KickstartTerm(ks, covered, spec.num_tasks, filled={i.name for i in in_learner})
        return MethodSetup([term], HookFactory(make_hooks) if fields else None, fields,
                           split_inference=in_learner)

    def precisions(self, cfg: CoreConfig) -> dict[str, str]:
        """Each teacher's precision setting (the start-up report and ``meta.json``)."""
        return {f"{self.name}.teachers.{name}.precision": t.precision for name, t in cfg.kickstart.teachers.items()}
