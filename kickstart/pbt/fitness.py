"""A member's fitness on a multi-task suite: the suite score, and samples balanced over its tasks.

Why not one pooled window of the last episodes: games with short episodes fill it (with random
play on MinAtar-5, Breakout's share is about 57% and Freeway's 0.25%), so PBT would judge a member
by the short games and hardly ever see the long ones; and capping each *episode* before averaging
is not the paper's measure, which caps each *task's mean* (Kickstarting, Sec. 5.2).

Here each task keeps its own window of recent returns (:class:`TaskWindows`); the fitness is the
suite score of their means (per task the normalised score of the window's mean, capped at 100,
averaged over tasks: :func:`kickstart.envs.suites.suite_score`); and the samples handed to the
exploit rules (:mod:`kickstart.pbt.decisions`: a t-test, a ranking by mean) are
:func:`balanced_samples`: sample ``i`` averages the ``i``-th most recent episode of *every* task,
each task's normalised scores scaled so that its mean is its capped mean. So every task weighs
alike in every sample, and the samples' mean is exactly the suite score.
"""

from __future__ import annotations

import collections
from typing import Iterable, Mapping, Sequence

import numpy as np

from kickstart.envs.suites import has_normalisation, normalised_score


class TaskWindows:
    """The last ``size`` returns of each task (raw returns, most recent last)."""

    def __init__(self, tasks: Sequence[str], size: int):
        self.tasks = tuple(tasks)
        self._win = {t: collections.deque(maxlen=size) for t in self.tasks}

    def extend(self, task: str, returns: Iterable[float]) -> None:
        self._win[task].extend(float(r) for r in returns)

    def clear(self) -> None:
        for w in self._win.values():
            w.clear()

    def windows(self) -> dict[str, list[float]]:
        return {t: list(w) for t, w in self._win.items()}

    def state_dict(self) -> dict[str, list[float]]:
        return self.windows()

    def load_state_dict(self, state: Mapping[str, Sequence[float]]) -> None:
        """Windows saved by :meth:`state_dict`; a task this suite does not have is an error."""
        unknown = sorted(set(state) - set(self.tasks))
        if unknown:
            raise ValueError(f"saved windows of unknown tasks {unknown}; this suite's: {', '.join(self.tasks)}")
        self.clear()
        for task, returns in state.items():
            self.extend(task, returns)

    def samples(self) -> list[float]:
        """The exploit rules' samples: the window itself on one task, :func:`balanced_samples` on several."""
        if len(self.tasks) == 1:
            return list(self._win[self.tasks[0]])
        return balanced_samples(self.windows())


def _capped_scale(task: str, scores: np.ndarray) -> np.ndarray:
    """Normalised scores of one task, scaled down so that their mean is at most 100 (the cap on a
    task's mean score); a task without a normalisation keeps its raw returns."""
    if not has_normalisation(task):
        return scores
    mean = float(scores.mean())
    return scores * (100.0 / mean) if mean > 100.0 else scores


def balanced_samples(windows: Mapping[str, Sequence[float]]) -> list[float]:
    """Samples balanced over tasks whose mean is the suite score of the windows' means.

    With ``n`` the shortest window, sample ``i`` (``i < n``) is the mean over tasks of each task's
    ``i``-th most recent normalised episode score, scaled as the cap on the task's mean asks
    (:func:`_capped_scale`, over that task's last ``n`` episodes). Empty until every task has an
    episode: a suite score of the easy tasks alone is not the member's fitness. Oldest first, like
    a window.
    """
    if not windows or any(len(w) == 0 for w in windows.values()):
        return []
    n = min(len(w) for w in windows.values())
    per_task = []
    for task, w in windows.items():
        scores = np.array([normalised_score(task, r) for r in list(w)[-n:]], dtype=np.float64)
        per_task.append(_capped_scale(task, scores))
    return np.mean(np.stack(per_task), axis=0).tolist()
