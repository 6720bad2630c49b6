"""A member's line of descent through a population's lineage, and what moved its hyperparameters.

PBT changes a member's hyperparameters two ways: an exploit replaces them with a donor's (selection), and
an explore step perturbs them. Following a member back through its exploits to the member it descends
from at the start gives one chain of explore steps from a founding value to the final one, so a value's
change splits into the founder selection picked and the sum of the steps along the line. The steps have
a bias of their own: multiplying by 0.8 or 1.2 (the papers' rule) moves a value by ln(0.96)/2 = -0.020 in
log space per step on average, so with little selection pressure a learning rate walks down. Comparing
the steps' sum with that bias tells drift from selection (``kickstart report`` prints it for populations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence


@dataclass
class Drift:
    """One hyperparameter along one member's line of descent (values in the run's units)."""

    member: int
    name: str
    founder: int
    """The member the line starts from (its initial values)."""
    initial: float
    final: float
    steps: int
    """Explore steps along the line that changed this hyperparameter."""
    explored_log: float
    """Sum of the steps' ln(after / before): ln(final / initial) when only explore steps changed it."""
    expected_log: float
    """What ``steps`` unselected multiplicative steps add on average: steps * mean(ln factor)."""


def _explore_base(rec: Mapping) -> Mapping[str, float]:
    """The hyperparameters an explore step started from: the donor's after an exploit, else the member's."""
    return rec["donor_hparams"] if rec.get("donor") is not None else rec["hparams_before"]


def line_of_descent(records: Sequence[Mapping], member: int) -> tuple[int, dict[str, float], list[Mapping]]:
    """(founder, its initial hyperparameters, the ready records along ``member``'s line, oldest first).

    Walking back from ``member``'s last ready record, an exploit continues the line with the donor's
    records from before the report it was copied at: that report's snapshot was written before the
    controller decided on it, so the donor's own exploit or explore step there is not inherited."""
    by_member: dict[int, list[Mapping]] = {}
    starts: dict[int, dict[str, float]] = {}
    for r in sorted(records, key=lambda r: r["time"]):
        if r.get("event") == "ready":
            by_member.setdefault(int(r["member"]), []).append(r)
        elif r.get("event") == "start" and not r.get("resumed") and int(r["member"]) not in starts:
            starts[int(r["member"])] = dict(r["hparams"])
    line: list[Mapping] = []
    cur, before, below = member, math.inf, math.inf
    while True:
        recs = [r for r in by_member.get(cur, []) if r["time"] < before and r["frames"] < below]
        donor = None
        for r in reversed(recs):
            line.append(r)
            if r.get("donor") is not None:
                donor, before, below = int(r["donor"]), r["time"], r["donor_frames"]
                break
        if donor is None:
            break
        cur = donor
    if cur not in starts:
        raise ValueError(f"the lineage has no start record of member {cur}, where member {member}'s line begins")
    return cur, starts[cur], line[::-1]


def drift(records: Sequence[Mapping], member: int, name: str, factors: Sequence[float]) -> Drift:
    """How ``name`` moved along ``member``'s line of descent, against the bias of multiplying by
    ``factors`` (chosen uniformly) alone."""
    founder, initial, line = line_of_descent(records, member)
    steps, total, value = 0, 0.0, initial[name]
    for r in line:
        before, after = _explore_base(r)[name], r["hparams_after"][name]
        value = after
        if after != before:
            steps += 1
            total += math.log(after / before)
    bias = sum(math.log(f) for f in factors) / len(factors)
    return Drift(member, name, founder, initial[name], value, steps, total, steps * bias)
