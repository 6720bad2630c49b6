"""How many actor processes and learner threads a run uses when its config leaves them to the
machine (``runtime.num_actors=0``, ``runtime.learner_threads=0``).

The rule follows the project's: one torch thread per process, scale with processes. A run gets one
actor per core it may use, less one core for the learner, and at least two actors, so that one
actor always steps its envs while the other waits for a free slot (on 2 cores this is the layout
measured fastest: 2 actors and the learner). A population of P members shares the cores: each
member gets ``cores // P - 1`` actors, at least one. The config keeps ``0`` (a run resumed on
another machine resolves it again); ``meta.json`` records what each session used.
"""

from __future__ import annotations

import dataclasses
import os


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def auto_actors(cores: int, members: int = 1) -> int:
    """Actor processes per learner for ``members`` learners sharing ``cores`` cores."""
    if members <= 1:
        return max(2, cores - 1)
    return max(1, cores // members - 1)


def resolve_runtime(cfg, members: int = 1, cores: int | None = None):
    """``cfg`` with ``runtime.num_actors=0`` replaced by :func:`auto_actors` (``cfg`` itself when
    there is nothing to resolve)."""
    if cfg.runtime.num_actors != 0:
        return cfg
    n = auto_actors(available_cores() if cores is None else cores, members)
    return dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, num_actors=n))
