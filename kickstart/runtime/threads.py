"""How many torch threads the learner uses when ``runtime.learner_threads=0`` (auto): measured, not
guessed.

Whether a second learner thread pays depends on which side is the bottleneck, and that depends on
the network, the env and the CPU. When the learner is the bottleneck (a conv net on Atari), the
actors spend part of their time waiting for free slots, and a second intra-op thread uses the core
time they leave; when the actors are the bottleneck (MinAtar), a second learner thread only takes
time from them. So the trainer tries it: :class:`ThreadTuner` times the training rate (env frames
per second) over a window at each thread count, from 1 upwards, and keeps the count with the best
rate, moving up only for a clear gain (``min_gain``), since a tie is better served by fewer threads.
It decides after a warm-up, then keeps watching the rate at the count it settled on, because the
machine can change under a running job: a learner that settled on two threads while it had the
machine to itself ran more than 10x slower once a PBT population started beside it (its two intra-op
threads wait on each other across a contended core), where one thread kept most of its old rate.
So a watch window whose rate falls below the settled rate by more than ``drift`` (other jobs took
cores) while above one thread, or rises above it by as much while below the most (they gave them
back), starts the search again from one thread; a drift with no count to try that way (slower at
one thread, faster at the most) becomes the reference the next windows are held to.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ThreadTuner:
    """A pure state machine: feed it ``(time, frames)`` after every update; it answers the thread
    count to switch to, or None to stay."""

    max_threads: int
    warmup_s: float = 10.0
    """Seconds after the first update before the first window (actors filling their first slots)."""
    window_s: float = 6.0
    """Length of each timed window (after ``settle_s``)."""
    settle_s: float = 1.0
    """Seconds after a switch before its window starts."""
    min_gain: float = 1.05
    """A count must beat the best rate so far by this factor to be kept."""
    watch_s: float = 30.0
    """Length of each window that watches the settled count's rate."""
    drift: float = 1.5
    """A watch window this many times slower (or faster) than the settled rate starts a new search."""
    threads: int = 1
    best: tuple[int, float] | None = None
    rates: dict[int, float] = field(default_factory=dict)
    done: bool = False
    _start: tuple[float, int] | None = None
    _t0: float | None = None
    _warm: bool = False

    def __post_init__(self) -> None:
        self.done = self.max_threads <= 1

    def update(self, now: float, frames: int) -> int | None:
        if self.max_threads <= 1:
            return None
        if self._t0 is None:
            self._t0 = now
            return None
        if self._start is None:
            if now - self._t0 >= (self.settle_s if self._warm else self.warmup_s):
                self._start, self._warm = (now, frames), True
            return None
        if self.done:
            return self._watch(now, frames)
        t0, f0 = self._start
        if now - t0 < self.window_s:
            return None
        rate = (frames - f0) / (now - t0)
        self.rates[self.threads] = rate
        self._start, self._t0 = None, now
        if self.best is None or rate > self.best[1] * self.min_gain:
            self.best = (self.threads, rate)
            if self.threads < self.max_threads:
                self.threads += 1          # a clear gain: try one more
                return self.threads
        self.done = True                   # no clear gain (or no more cores): settle on the best
        if self.threads != self.best[0]:
            self.threads = self.best[0]
            return self.threads
        self._start = (now, frames)        # the watch starts at once: no switch to settle
        return None

    def _watch(self, now: float, frames: int) -> int | None:
        t0, f0 = self._start
        if now - t0 < self.watch_s:
            return None
        rate, settled = (frames - f0) / (now - t0), self.rates[self.threads]
        self._start = (now, frames)
        slower, faster = rate * self.drift < settled, rate > settled * self.drift
        if not (slower or faster):
            return None
        if (slower and self.threads == 1) or (faster and self.threads == self.max_threads):
            self.rates[self.threads] = rate     # no count to try that way: the new rate is the reference
            return None
        self.rates, self.best, self.done = {}, None, False     # the machine changed: measure again
        self._start, self._t0 = None, now
        switched, self.threads = self.threads != 1, 1
        return 1 if switched else None
