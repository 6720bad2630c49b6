"""The learner side of Mix & Match: the distillation term, alpha, and the M&M diagnostics."""

from __future__ import annotations

import torch

from kickstart.config import CoreConfig
from kickstart.learner import LossContext, LossTerm
from kickstart.losses import mixmatch as mmloss
from kickstart.losses.impala import reduce
from kickstart.mixmatch.config import MixMatchConfig
from kickstart.mixmatch.net import SELECTOR, component_net_config
from kickstart.schedules import piecewise_linear

ALPHA = "mixmatch/alpha"
LAMBDA = "mixmatch/lambda"


def default_lambda(cfg: CoreConfig) -> float:
    """The paper's lambda (App. C): 1.0 for action-space curricula, 100.0 for core and multitask ones."""
    mm = cfg.mixmatch
    if mm.lambda_mm is not None:
        return float(mm.lambda_mm)
    cores = {(c.core, c.lstm_size) for c in (component_net_config(cfg.net, comp) for comp in mm.components)}
    if len(cores) > 1 or any(c.per_task for c in mm.components):
        return 100.0
    return 1.0


def alpha_value(cfg: MixMatchConfig, base: float, frames: int) -> float:
    """alpha after ``frames`` env frames: ``base`` (the configured or PBT-evolved value) for a
    ``constant`` schedule; ``base -> 1`` linearly at ``alpha_end_frames`` for ``linear``; the
    ``alpha_piecewise`` points for ``piecewise``."""
    frames = max(0, int(frames))
    if cfg.alpha_schedule == "linear":
        return min(1.0, base + (1.0 - base) * frames / cfg.alpha_end_frames)
    if cfg.alpha_schedule == "piecewise":
        return piecewise_linear([(float(f), float(v)) for f, v in cfg.alpha_piecewise], float(frames))
    return min(1.0, max(0.0, base))


class MixMatchTerm(LossTerm):
    """``lambda (1 - alpha) KL(pi_1 || pi_2)`` on the control policy's trajectories (K > 2:
    ``lambda sum_i c_i KL(pi_i || pi_{i+1})``, :func:`kickstart.losses.mixmatch.pair_weights`).

    Declares the mutable hyperparameters ``mixmatch/alpha`` and ``mixmatch/lambda``; before each
    update (:meth:`prepare`) it writes the current alpha into the network, whose mixture then uses
    it in the learner and, once published, in the actors.
    """

    name = "mixmatch"

    def __init__(self, cfg: MixMatchConfig, lambda_mm: float, action_meanings: tuple[str, ...]):
        self.cfg = cfg
        self.hparams = {ALPHA: float(cfg.alpha), LAMBDA: float(lambda_mm)}
        self.action_meanings = action_meanings

    def alpha(self, hparams: dict[str, float], frames: int) -> float:
        return alpha_value(self.cfg, hparams[ALPHA], frames)

    def prepare(self, net: torch.nn.Module, hparams: dict[str, float], frames: int) -> None:
        with torch.no_grad():
            net.alpha.fill_(self.alpha(hparams, frames))

    def actor_hparams(self, hparams: dict[str, float], frames: int) -> dict[str, float]:
        return {}

    def __call__(self, ctx: LossContext) -> tuple[torch.Tensor, dict[str, float]]:
        net_lp = ctx.out.extras["mm_log_probs"]
        alpha = self.alpha(ctx.hparams, ctx.frames)
        lam = ctx.hparams[LAMBDA]
        log_probs = [lp[:-1] for lp in net_lp]
        supports = ctx.out.extras.get("mm_supports")
        kls = mmloss.pair_kls(log_probs, supports, masked=self.cfg.kl == "masked",
                              stop_simple=self.cfg.kl_grad == "target")
        pair_w = mmloss.pair_weights(alpha, len(log_probs))
        if lam > 0 and any(c > 0 for c in pair_w):
            loss = lam * reduce(sum(c * kl for c, kl in zip(pair_w, kls) if c > 0), ctx.reduction)
        else:
            loss = kls[0].new_zeros(())
        with torch.no_grad():
            mixed = ctx.out.extras["mm_mixture"][:-1]      # pi_mm, whichever policy acted (mixing)
            actions = ctx.batch["action"][:-1].reshape(-1)
            freq = torch.bincount(actions, minlength=len(self.action_meanings)).float() / max(1, actions.numel())
            metrics = {
                "mixmatch/alpha": alpha,
                "mixmatch/lambda": lam,
                "mixmatch/loss": float(loss),
                "mixmatch/kl": float(sum(kl.detach().mean() for kl in kls)),
                "mixmatch/collision_entropy": float(mmloss.collision_entropy(mixed).mean()),
            }
            for i, w in enumerate(ctx.out.extras["mm_weights"]):
                metrics[f"mixmatch/weight/{i + 1}"] = float(w)
            selector = ctx.out.extras.get("record", {}).get(SELECTOR)
            if selector is not None:      # mixing=sampled: how often each component acted
                counts = torch.bincount(selector[:-1].reshape(-1), minlength=len(net_lp)).float()
                for i, n in enumerate((counts / max(1, selector[:-1].numel())).tolist()):
                    metrics[f"mixmatch/selected/{i + 1}"] = n
            for name, f in zip(self.action_meanings, freq.tolist()):
                metrics[f"mixmatch/action_freq/{name}"] = f
        return loss, metrics
