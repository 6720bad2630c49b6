"""Schedules of the distillation weight lambda_k over env frames (Schmitt et al. 2018, Sec. 5.1.1).

The paper compares constant weights, linear decays to 0 (the best: "it is important to reduce this
weight quickly") and PBT. The schedule here is the shared factor; the effective weight of teacher i
is ``schedule_value(cfg, frames) * alpha * rho_i`` (Sec. 4.2), with ``alpha`` and ``rho_i`` left to
PBT or at 1.
"""

from __future__ import annotations

from kickstart.kickstarting.config import KickstartConfig
from kickstart.schedules import piecewise_linear


def schedule_value(cfg: KickstartConfig, frames: int) -> float:
    """The scheduled lambda after ``frames`` env frames.

    * ``constant``: ``lambda_0``.
    * ``linear``: ``lambda_0 * (1 - frames / lambda_end_frames)``, and 0 from ``lambda_end_frames`` on.
    * ``piecewise``: linear interpolation between the ``[frame, lambda]`` points; the first
      point's value before it, the last point's value after it.
    """
    frames = max(0, int(frames))
    if cfg.schedule == "constant":
        return float(cfg.lambda_0)
    if cfg.schedule == "linear":
        return float(cfg.lambda_0) * max(0.0, 1.0 - frames / cfg.lambda_end_frames)
    if cfg.schedule == "piecewise":
        return piecewise_linear([(float(f), float(v)) for f, v in cfg.piecewise], float(frames))
    raise ValueError(f"unknown kickstart.schedule {cfg.schedule!r}")  # KickstartConfig rejects it first

