"""Auxiliary inference split between actors and learner: where a frozen network's outputs are computed.

A method may need the per-step outputs of a frozen feed-forward network as an unroll field (for
kickstarting, a teacher's log-probabilities over the student's actions). A feed-forward network's
output at a step depends on that step's inputs alone, so the actors and the learner compute exactly
the same numbers from the same stored inputs, and the work can go to whichever side has room for it.
One :class:`SplitInference` declares such a network:

* the actors (the method's actor hook) compute it on the first ``share`` of the env columns it
  covers (:func:`actor_columns`) and store it with the unroll, NaN elsewhere; ``share`` is a
  hyperparameter the learner publishes with its parameters, under a name the method gives;
* the learner computes the rest (:meth:`SplitInference.fill`): on its own device, over the steps the
  network covers whose stored values are NaN, before the loss terms read the field. Without a share
  (``share=None``) the learner computes all of it and nothing travels with the unrolls.

:class:`Placement` is the set of them a run has. The trainer owns it: it hands it to the learner,
which fills each batch and publishes the shares, and every few seconds it reports the learner's idle
fraction to it (:meth:`Placement.balance`), which moves each share towards the side with slack
(:class:`Balancer`). Why here, in the runtime, and not in the method that asks for the outputs:
where work runs and the balance between actors and learner are the runtime's business, the same
for any such network; the method says which network, which field and columns, and names the
hyperparameters. Why balance at all: a teacher's forward pass costs about a quarter of a learner
step on a CPU, and which side has room for it depends on the machine (with the learner on a GPU
it is nearly free there and the share stays 0; on 2 CPU cores both sides are saturated and a split
costs less than either side alone; measured in :mod:`kickstart.kickstarting`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import torch
from torch import Tensor

from kickstart.runtime.unroll import net_inputs

__all__ = ["MAX_ROWS", "Balancer", "FrozenNet", "Placement", "SplitInference", "actor_columns", "unroll_in_pieces"]

MAX_ROWS = 512
"""Rows (entries x envs) per network call at most on a CPU. Measured on one CPU thread (MinAtar torso,
feed-forward, 20 x 80 rows): 4.2-4.7 us per row in calls of 320-800 rows, 10-11 in one call of
1600, whose buffers glibc's malloc maps fresh each time (~3,200 page faults per call); so an
unroll of 20 entries of 80 envs runs as 4 calls. On a GPU one call is best."""

State = tuple[Tensor, ...]


class FrozenNet(Protocol):
    """What :class:`SplitInference` runs: a frozen network over ``[T, n]`` stored inputs."""

    def initial_state(self, batch_size: int) -> State:
        """``()`` for a feed-forward network."""

    def unroll(self, obs: Tensor, first: Tensor, last_action: Tensor, last_reward: Tensor,
               state: State) -> tuple[Tensor, State]:
        """``T`` steps of ``n`` envs in one call (the network inputs as the learner's network gets
        them, see :func:`kickstart.runtime.unroll.net_inputs`); outputs ``[T, n, width]``."""

    def to(self, device: torch.device) -> Any:
        """Move its weights to ``device``."""


def unroll_in_pieces(net: FrozenNet, obs: Tensor, first: Tensor, last_action: Tensor, last_reward: Tensor,
                     state: State, max_rows: int | None) -> tuple[Tensor, State]:
    """``net`` over ``[T', n]`` in as few calls as keep each within ``max_rows`` rows (None: one
    call): consecutive pieces of time, the state carried from one to the next (same outputs)."""
    steps, cols = first.shape
    pieces = 1 if max_rows is None else max(1, min(steps, -(-steps * cols // max_rows)))
    if pieces == 1:
        return net.unroll(obs, first, last_action, last_reward, state)
    out, bounds = [], [steps * i // pieces for i in range(pieces + 1)]
    for s, e in zip(bounds, bounds[1:]):
        piece, state = net.unroll(obs[s:e], first[s:e], last_action[s:e], last_reward[s:e], state)
        out.append(piece)
    return torch.cat(out), state


def actor_columns(cols: Tensor, share: float) -> Tensor:
    """The columns an actor computes of the ``n`` covered columns ``cols``: the first
    ``round(share * n)``. The learner computes the others (it finds them by their NaN values, so it
    needs neither the share the actor used nor its columns)."""
    return cols[:round(share * cols.numel())]


class Balancer:
    """Moves a share of work between actors and learner from the learner's idle fraction.

    The learner waiting for batches near its floor (the smallest idle fraction seen: the part of
    ``get_batch`` that is copying, not waiting) is the bottleneck, and the actors take a step more
    of the work; clearly above it, the actors are, and the learner takes a step back. A GPU
    learner, idle most of the time, keeps the share at 0.
    """

    idle_margin_low = 0.01
    """Idle less than this above the floor: the learner is the bottleneck; the share grows."""
    idle_margin_high = 0.025
    """Idle more than this above the floor: the actors are; the share shrinks."""
    idle_floor_cap = 0.02
    """The floor is at most this: a learner idle more than 2% of the time at best has slack."""
    step_range = (0.025, 0.2)
    """The share moves by a step that starts at 0.1, grows x1.5 while moves go the same way and
    halves when they reverse (within this range), so that it converges in a few moves and then
    stays within a small step of the balance point."""

    def __init__(self, share: float = 0.0):
        self.share = share
        self._step, self._direction, self._floor = 0.1, 0, 1.0

    def update(self, idle: float) -> float:
        """The new share after a window in which the learner was idle ``idle`` of the time."""
        self._floor = min(self._floor, idle)
        floor = min(self._floor, self.idle_floor_cap)
        if idle < floor + self.idle_margin_low:
            direction = 1
        elif idle > floor + self.idle_margin_high:
            direction = -1
        else:
            return self.share
        low, high = self.step_range
        if direction == self._direction:
            self._step = min(high, self._step * 1.5)
        elif self._direction:
            self._step = max(low, self._step / 2)
        self._direction = direction
        self.share = min(1.0, max(0.0, self.share + direction * self._step))
        return self.share


@dataclass(eq=False)
class SplitInference:
    """A frozen feed-forward network whose per-step outputs are the unroll field ``field``
    (``[T+1, N, width]`` float32, NaN where not computed), split between actors and learner."""

    name: str
    """What it is, for messages (e.g. the teacher's name)."""
    field: str
    net: FrozenNet
    width: int
    tasks: Sequence[int]
    """The task ids whose env columns it covers (other columns stay NaN)."""
    num_tasks: int
    share: str | None = None
    """The published hyperparameter that holds the actors' share of the covered columns (several
    networks may share one); None: the learner computes every covered column."""
    gate: str | None = None
    """A published hyperparameter that, while 0, means nobody reads the outputs (e.g. a teacher's
    weight): neither side computes them. None: always computed."""
    max_rows: int | None = MAX_ROWS
    """Rows per call on a CPU learner (as in the actors, see :data:`MAX_ROWS`); one call on a GPU."""
    _device: torch.device | None = field(default=None, init=False, repr=False)
    _covers: Tensor = field(init=False, repr=False)

    def __post_init__(self):
        if getattr(self.net, "recurrent", False):
            raise ValueError(f"{self.name!r} is recurrent: its state must follow every env's stream, so only "
                             f"the actors can run it")
        self._covers = torch.zeros(self.num_tasks, dtype=torch.bool)
        self._covers[list(self.tasks)] = True

    def _to(self, device: torch.device) -> None:
        """Keep the network on the batch's device (the learner's): moved once, not per batch."""
        if self._device != device:
            self.net.to(device)
            self._covers = self._covers.to(device)
            self._device = device

    def fill(self, batch: dict[str, Tensor], hparams: dict[str, float]) -> dict[str, Tensor]:
        """``batch`` with :attr:`field` computed at entries ``0..T-1`` (the steps the loss reads)
        wherever a covered step holds NaN, on the batch's device; the field is created (NaN) when the
        batch has none. A new dict and a new field tensor: the batch's own tensors are not written.
        ``hparams``: the learner's published ones (:attr:`gate`)."""
        if self.gate is not None and hparams.get(self.gate) == 0.0:
            return batch
        task = batch["task"][:-1]
        T, B = task.shape
        self._to(task.device)
        stored = batch.get(self.field)
        if stored is None:
            stored = torch.full((T + 1, B, self.width), math.nan, device=task.device)
        need = self._covers[task] & torch.isnan(stored[:-1, :, 0])
        cols = need.any(0).nonzero().squeeze(-1)
        out = dict(batch)
        out[self.field] = stored
        if cols.numel() == 0:
            return out
        every = cols.numel() == B
        inputs = [batch[k][:-1] for k in ("obs", "last_action", "reward", "first")]
        if not every:
            inputs = [x.index_select(1, cols) for x in inputs]
        obs, last_action, reward, first = net_inputs(*inputs)
        with torch.no_grad():
            values, _ = unroll_in_pieces(self.net, obs, first, last_action, reward,
                                         self.net.initial_state(first.shape[1]),
                                         self.max_rows if task.device.type == "cpu" else None)
        if torch.isnan(values).any():
            raise FloatingPointError(f"{self.name!r} produced NaN values for {self.field!r}")
        filled = stored.clone()
        head = filled[:-1]
        if every:
            head.copy_(torch.where(need.unsqueeze(-1), values, head))
        else:
            old = head.index_select(1, cols)
            head.index_copy_(1, cols, torch.where(need.index_select(1, cols).unsqueeze(-1), values, old))
        out[self.field] = filled
        return out


class Placement:
    """The run's :class:`SplitInference` networks: the learner fills its batches with them and
    publishes their shares; the trainer reports the learner's idle fraction to :meth:`balance`."""

    def __init__(self, items: Sequence[SplitInference] = ()):
        self.items = list(items)
        fields = [i.field for i in self.items]
        dup = sorted({f for f in fields if fields.count(f) > 1})
        if dup:
            raise ValueError(f"two networks write the unroll field(s) {', '.join(dup)}")
        self.balancers = {i.share: Balancer() for i in self.items if i.share is not None}
        """One per share hyperparameter (networks that name the same one move together)."""

    def balance(self, idle: float) -> None:
        """Every few seconds: the fraction of the last window the learner spent waiting for
        batches; moves each share towards the side with slack (:class:`Balancer`)."""
        for b in self.balancers.values():
            b.update(idle)

    def published(self) -> dict[str, float]:
        """The shares, published to the actors with the parameters."""
        return {k: b.share for k, b in self.balancers.items()}

    def metrics(self) -> dict[str, float]:
        """The shares again, logged under their hyperparameters' names."""
        return self.published()

    def fill(self, batch: dict[str, Tensor], hparams: dict[str, float]) -> dict[str, Tensor]:
        """``batch`` with every network's field computed where the actors left it NaN (see
        :meth:`SplitInference.fill`); ``batch`` itself when there are none."""
        for item in self.items:
            batch = item.fill(batch, hparams)
        return batch
