"""Metrics: one two-method logger interface, CSV and TensorBoard sinks, episode statistics.

Metric names are namespaced (``episode/return/<task>``, ``loss/policy``, ``perf/fps``, ...); every
name is documented in ``docs/metrics.md``. The x-axis of every metric is the env frame count.
"""

from __future__ import annotations

import collections
import csv
import math
import time
from pathlib import Path
from typing import Protocol

import torch


class Logger(Protocol):
    def write(self, frames: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...

    # Optional: ``rewind(frames)`` forgets what was written after ``frames`` (see MultiLogger.rewind).


class CSVLogger:
    """Long-format CSV (``frames,time,name,value``): new metric names never break the header."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        new = not self.path.exists()
        self._f = open(self.path, "a", newline="")
        self._w = csv.writer(self._f)
        if new:
            self._w.writerow(["frames", "time", "name", "value"])
        self._t0 = time.time()

    def write(self, frames: int, metrics: dict[str, float]) -> None:
        now = round(time.time(), 3)
        for k, v in metrics.items():
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            self._w.writerow([frames, now, k, f"{float(v):.6g}"])
        self._f.flush()

    def rewind(self, frames: int) -> None:
        """Drop the rows logged after ``frames``: a run resumed from a checkpoint at ``frames`` retrains
        what came after it, and its curve must not hold both (nor go back in frames)."""
        self._f.close()
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= frames]
        if len(kept) < len(rows):
            tmp = self.path.with_suffix(".csv.tmp")
            with open(tmp, "w", newline="") as f:
                csv.writer(f).writerows(kept)
            tmp.replace(self.path)
        self._f = open(self.path, "a", newline="")
        self._w = csv.writer(self._f)

    def close(self) -> None:
        self._f.close()


class TensorBoardLogger:
    def __init__(self, log_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter

        self._log_dir = str(log_dir)
        self._w = SummaryWriter(log_dir=self._log_dir)

    def write(self, frames: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            if v is not None:
                self._w.add_scalar(k, float(v), global_step=frames)
        self._w.flush()

    def rewind(self, frames: int) -> None:
        """TensorBoard's own mechanism: events after ``frames`` are purged when the writer reopens."""
        from torch.utils.tensorboard import SummaryWriter

        self._w.close()
        self._w = SummaryWriter(log_dir=self._log_dir, purge_step=frames + 1)

    def close(self) -> None:
        self._w.close()


class MultiLogger:
    def __init__(self, loggers: list[Logger]):
        self.loggers = loggers

    def write(self, frames: int, metrics: dict[str, float]) -> None:
        for lg in self.loggers:
            lg.write(frames, metrics)

    def rewind(self, frames: int) -> None:
        """Forget what was logged after ``frames`` (a resume from a checkpoint taken there), in every
        logger that can."""
        for lg in self.loggers:
            rewind = getattr(lg, "rewind", None)
            if rewind is not None:
                rewind(frames)

    def close(self) -> None:
        for lg in self.loggers:
            lg.close()


def read_metrics(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Read a run's ``metrics.csv`` back as ``{name: [(frames, value), ...]}``."""
    out: dict[str, list[tuple[int, float]]] = collections.defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out[row["name"]].append((int(row["frames"]), float(row["value"])))
    return dict(out)


class EpisodeStats:
    """Per-task returns of finished episodes, read from the ``ep_*`` fields of unrolls."""

    def __init__(self, task_names: tuple[str, ...], window: int = 100):
        from kickstart.envs import suites

        self.task_names = task_names
        self._suites = suites
        self.recent = {t: collections.deque(maxlen=window) for t in task_names}
        self.lengths = {t: collections.deque(maxlen=window) for t in task_names}
        self.count = {t: 0 for t in task_names}
        self.new: dict[str, list[float]] = {t: [] for t in task_names}

    def update(self, batch: dict[str, torch.Tensor]) -> None:
        # Entry 0 repeats entry T of the previous unroll: read entries 1..T only.
        end = batch["ep_end"][1:]
        if not bool(end.any()):
            return
        tasks = batch["ep_task"][1:][end].tolist()
        rets = batch["ep_return"][1:][end].tolist()
        lens = batch["ep_length"][1:][end].tolist()
        for task, ret, length in zip(tasks, rets, lens):
            name = self.task_names[task]
            self.recent[name].append(ret)
            self.lengths[name].append(length)
            self.count[name] += 1
            self.new[name].append(ret)

    def mean_returns(self) -> dict[str, float]:
        return {t: sum(v) / len(v) for t, v in self.recent.items() if v}

    # The windows travel in the checkpoint (Trainer.state_extras): a resumed run reports its returns
    # and suite score at once, not after every task has finished a fresh episode.
    def state_dict(self) -> dict:
        return {"recent": {t: list(v) for t, v in self.recent.items()},
                "lengths": {t: list(v) for t, v in self.lengths.items()},
                "count": dict(self.count)}

    def load_state_dict(self, state: dict) -> None:
        """Windows saved by :meth:`state_dict`; tasks this run does not have are an error."""
        unknown = sorted(set(state["count"]) - set(self.task_names))
        if unknown:
            raise ValueError(f"saved episode windows of unknown tasks {unknown}; this run's: "
                             f"{', '.join(self.task_names)}")
        for t in self.task_names:
            self.recent[t].clear()
            self.recent[t].extend(float(r) for r in state["recent"].get(t, ()))
            self.lengths[t].clear()
            self.lengths[t].extend(state["lengths"].get(t, ()))
            self.count[t] = int(state["count"].get(t, 0))
            self.new[t] = []

    @property
    def episodes(self) -> int:
        """Finished episodes counted so far, all tasks together."""
        return sum(self.count.values())

    def returns_since(self, seen: dict[str, int]) -> dict[str, list[float]]:
        """The returns of the episodes finished since ``seen`` (episodes counted per task, as in
        ``count``; brought up to date here), per task with new ones, oldest first; at most the
        recent window's."""
        out = {}
        for task in self.task_names:
            new = self.count[task] - seen.get(task, 0)
            if new > 0:
                seen[task] = self.count[task]
                out[task] = list(self.recent[task])[-new:]
        return out

    def summary(self) -> dict[str, float]:
        """``episode/*`` metrics over the recent window; clears the per-interval lists."""
        m: dict[str, float] = {}
        means = self.mean_returns()
        for t, r in means.items():
            m[f"episode/return/{t}"] = r
            m[f"episode/length/{t}"] = sum(self.lengths[t]) / len(self.lengths[t])
            if self._suites.has_normalisation(t):
                m[f"episode/score/{t}"] = self._suites.capped_score(t, r)
        m["episode/count"] = float(self.episodes)
        if len(self.task_names) > 1:
            s = self.suite_score()
            if s is not None:
                m["episode/suite_score"] = s
                # The suite's weakest task (M&M Fig. 9: a multitask agent distilled in policy space,
                # which is invariant to reward scale, keeps a higher minimum over tasks); a suite score
                # means every task has its score above.
                m["episode/worst_score"] = min(m[f"episode/score/{t}"] for t in self.task_names)
        for t in self.new:
            self.new[t] = []
        return m

    def suite_score(self) -> float | None:
        means = self.mean_returns()
        if len(means) < len(self.task_names) or not all(self._suites.has_normalisation(t) for t in self.task_names):
            return None
        return sum(self._suites.capped_score(t, means[t]) for t in self.task_names) / len(self.task_names)
