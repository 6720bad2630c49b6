"""Loss math: pure functions of tensors and keyword options, one topic per module.

``vtrace`` (IMPALA's off-policy targets) and ``impala`` (the actor-critic loss terms).
"""

from kickstart.losses import impala, vtrace

__all__ = ["impala", "vtrace"]
