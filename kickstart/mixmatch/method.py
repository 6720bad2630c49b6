"""Mix & Match as a :class:`~kickstart.method.Method`: what it plugs into a run."""

from __future__ import annotations

import torch

from kickstart.config import CoreConfig
from kickstart.configio import to_dict
from kickstart.errors import ConfigError
from kickstart.method import Method, MethodSetup, Panel, Range
from kickstart.mixmatch.config import MixMatchConfig
from kickstart.mixmatch.net import SELECTOR, MixMatchNet, target_policy
from kickstart.mixmatch.term import ALPHA, MixMatchTerm, default_lambda
from kickstart.runtime.unroll import Field
from kickstart.specs import EnvSpec


def _multitask(cfg: CoreConfig) -> bool:
    return any(c.per_task for c in cfg.mixmatch.components)


class MixMatch(Method):
    name = "mixmatch"
    section = MixMatchConfig
    hparam_ranges = {ALPHA: Range(0.0, 1.0)}
    # alpha, KL, collision entropy and the marginal action distribution over training (M&M Fig. 5)
    report_panels = (Panel("mixmatch/", "mixmatch.png", exclude=("mixmatch/weight/", "mixmatch/lambda")),)
    """alpha is a weight in [0, 1], explored by +-pbt.add_step (the paper's)."""

    def enabled(self, cfg: CoreConfig) -> bool:
        return cfg.mixmatch.enabled

    def check(self, cfg: CoreConfig) -> None:
        mutable = cfg.pbt.mutable if cfg.pbt.enabled else {}
        if ALPHA in mutable and cfg.mixmatch.alpha_schedule != "constant":
            raise ConfigError(f"pbt.mutable.{ALPHA} with mixmatch.alpha_schedule={cfg.mixmatch.alpha_schedule}: PBT "
                              f"evolves alpha itself; set mixmatch.alpha_schedule=constant or drop it from pbt.mutable")

    def setup(self, cfg: CoreConfig, spec: EnvSpec) -> MethodSetup:
        """Its loss term, the selector's unroll field (``mixing=sampled``) and (multitask) PBT's
        evaluation policy. Builds the network once so that a bad component (an action with no image
        in the env's action space, modules that cannot be shared) is a one-line error before any run
        directory exists."""
        MixMatchNet(cfg, spec)
        term = MixMatchTerm(cfg.mixmatch, default_lambda(cfg), spec.action_meanings)
        fields = {SELECTOR: Field((), torch.int64)} if cfg.mixmatch.mixing == "sampled" else {}
        return MethodSetup(terms=[term], extra_fields=fields, eval_policy=target_policy if _multitask(cfg) else None)

    def network(self, cfg: CoreConfig, spec: EnvSpec):
        return MixMatchNet(cfg, spec)

    def export(self, net, cfg: CoreConfig) -> tuple[dict, dict]:
        """The target agent pi_K alone, as a plain network: ``(config, weights)``, the config being
        ``cfg`` with ``net`` set to the target's and Mix & Match off."""
        target = net.export_target()
        config = to_dict(cfg)
        config["net"] = to_dict(net.target_config())
        config["mixmatch"] = to_dict(MixMatchConfig())
        return config, {k: v.detach().clone() for k, v in target.state_dict().items()}

    def pbt_eval(self, cfg: CoreConfig) -> str | None:
        """A multitask agent (per-task specialists) is scored on its central policy alone (M&M Sec.
        3.4, App. B.2); a single-task one on pi_mm's training returns."""
        return "evaluator" if _multitask(cfg) else None
