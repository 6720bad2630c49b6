"""Cores: what sits between the torso and the heads, ``[T, B, F] -> [T, B, out_size]``.

A core has ``out_size``, ``initial_state(batch_size, device)`` and
``forward(x, last_action, last_reward, first, state) -> (out, state)``, with the shapes of
:meth:`kickstart.nets.AgentNet.forward`.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kickstart.errors import UserError
from kickstart.precision import native_bf16

State = tuple[torch.Tensor, ...]


class FFCore(nn.Module):
    """Feed-forward core: the torso output as is; no state."""

    def __init__(self, in_size: int):
        super().__init__()
        self.out_size = in_size

    def initial_state(self, batch_size: int, device=None) -> State:
        return ()

    def forward(self, x, last_action, last_reward, first, state: State):
        return x, state


class LSTMCore(nn.Module):
    """IMPALA's LSTM core.

    Input at step t: torso output ⊕ one_hot(last_action[t]) (one one-hot per factor, concatenated,
    for MultiDiscrete) ⊕ clamp(last_reward[t], -1, 1). The state is reset to zeros *before* step t
    in every column b where ``first[t, b]`` is set (``state * (1 - first[t])``).

    Two equivalent ways to run the recurrence (``mode``):

    - ``fused``: the unroll is cut at the steps where some column starts an episode, and each
      piece runs as one ``nn.LSTM`` call (a single call when no episode starts inside the unroll).
    - ``stepwise``: the input projection of all T steps is one matrix product, then a Python loop
      does one ``h @ W_hh`` and the gate arithmetic per step (the same weights as ``nn.LSTM``).

    ``auto`` (the default) uses ``fused`` when it makes at most ``0.4 * T`` pieces and
    ``stepwise`` otherwise: each extra fused piece costs a few percent of one call (oneDNN's LSTM
    primitive starts again), while stepwise pays Python and small-matmul overhead per step. Since
    stepwise unbinds its input (see ``_stepwise``) it costs about as much as one fused call on one CPU
    thread, so the threshold leans to fused only where an unroll has few episode starts (long-episode
    games at small B); MinAtar at B=80 starts an episode almost every step and runs stepwise.
    A single step on a CPU (the actors' inference) always runs stepwise: there one ``nn.LSTM`` call is
    mostly oneDNN's set-up, and at B=80, 256 units on one thread it took 1.5x (fp32) to 2.6x (bf16)
    the time of one ``addmm`` and the gates. Under bf16 autocast on a CPU, an unroll runs fused only
    when it is one piece: oneDNN's bf16 LSTM restarts dearer than its fp32 one, and over T=21, B=80
    (forward and backward, one thread) one piece tied with stepwise while 3 pieces took 1.2x and 9
    pieces 1.45x its time; in fp32 fused led by 9% at one piece and broke even at 5-7.

    Under CPU bf16 autocast on a CPU without native bf16, the recurrence runs in float32: oneDNN
    has no bf16 LSTM primitive there (``nn.LSTM`` raises "could not create a primitive
    descriptor"), and emulated bf16 would be slower than fp32 anyway.

    State: ``(h, c)``, each ``[B, lstm_size]``.
    """

    def __init__(self, in_size: int, action_nvec: Sequence[int], lstm_size: int):
        super().__init__()
        self.action_nvec = tuple(int(n) for n in action_nvec)
        self.lstm = nn.LSTM(in_size + sum(self.action_nvec) + 1, lstm_size)
        self.out_size = lstm_size
        self.mode = "auto"  # or "fused" / "stepwise" (see the class docstring): same results

    def initial_state(self, batch_size: int, device=None) -> State:
        if device is None:
            device = self.lstm.weight_hh_l0.device
        z = torch.zeros(batch_size, self.out_size, device=device)
        return (z, z.clone())

    def _one_hot(self, last_action: torch.Tensor) -> torch.Tensor:
        """``[T, B]`` (or ``[T, B, D]``) int actions -> ``[T, B, sum(nvec)]`` float one-hots."""
        if last_action.dim() == 2:
            last_action = last_action.unsqueeze(-1)
        parts = [F.one_hot(last_action[..., j].long(), n) for j, n in enumerate(self.action_nvec)]
        return torch.cat(parts, -1).float()

    def _piece_starts(self, first: torch.Tensor) -> list[int]:
        """Steps where a fused piece starts: 0 and every t > 0 where some column has first[t]."""
        if first.shape[0] == 1:
            return [0]
        return [0] + torch.nonzero(first[1:].any(dim=1)).flatten().add(1).tolist()  # one device sync

    def forward(self, x: torch.Tensor, last_action: torch.Tensor, last_reward: torch.Tensor,
                first: torch.Tensor, state: State):
        inp = torch.cat([x, self._one_hot(last_action),
                         last_reward.float().clamp(-1.0, 1.0).unsqueeze(-1)], dim=-1)
        keep = (~first.bool()).unsqueeze(-1).to(inp.dtype)  # [T, B, 1]: 0 where an episode starts
        h, c = state
        if inp.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not native_bf16("cpu"):
            with torch.autocast("cpu", enabled=False):
                return self._recur(inp.float(), keep.float(), h.float(), c.float(), first)
        return self._recur(inp, keep, h, c, first)

    def _recur(self, inp, keep, h, c, first):
        T = first.shape[0]
        if self.mode == "auto" and T == 1 and inp.device.type == "cpu":
            return self._stepwise(inp, keep, h, c)
        starts = None if self.mode == "stepwise" else self._piece_starts(first)
        cpu_bf16 = inp.device.type == "cpu" and torch.is_autocast_enabled("cpu") \
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
        if starts is not None and (self.mode == "fused" or len(starts) <= (1 if cpu_bf16 else max(1, 0.4 * T))):
            return self._fused(inp, keep, h, c, starts)
        return self._stepwise(inp, keep, h, c)

    def _fused(self, inp, keep, h, c, starts: list[int]):
        h, c = h.unsqueeze(0), c.unsqueeze(0)
        outs = []
        # split, not inp[s:e]: a slice's backward writes its gradient into a zeroed tensor of the whole
        # unroll, one per piece, where split's backward is one concatenation.
        ends = starts[1:] + [inp.shape[0]]
        for s, piece in zip(starts, inp.split([e - s for s, e in zip(starts, ends)])):
            out, (h, c) = self.lstm(piece, (h * keep[s], c * keep[s]))
            outs.append(out)
        out = outs[0] if len(outs) == 1 else torch.cat(outs, 0)
        return out, (h.squeeze(0), c.squeeze(0))

    def _stepwise(self, inp, keep, h, c):
        lstm = self.lstm
        gates_x = F.linear(inp, lstm.weight_ih_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0)  # [T, B, 4H]
        w_hh = lstm.weight_hh_l0.t()
        outs = []
        # unbind, not gates_x[t]: each indexed step's backward would zero-fill and add a gradient of the
        # whole [T, B, 4H] unroll (a quarter of a 256-unit learner step on one CPU thread); unbind's
        # backward is one stack.
        for x_t, keep_t in zip(gates_x.unbind(0), keep.unbind(0)):
            h, c = h * keep_t, c * keep_t
            i, f, g, o = torch.addmm(x_t, h, w_hh).chunk(4, dim=1)  # nn.LSTM's gate order
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        return torch.stack(outs), (h, c)


def make_core(name: str, in_size: int, action_nvec: Sequence[int], lstm_size: int = 256) -> nn.Module:
    """Build core ``name`` (``ff`` or ``lstm``) on a torso output of ``in_size``."""
    if name == "ff":
        return FFCore(in_size)
    if name == "lstm":
        return LSTMCore(in_size, action_nvec, lstm_size)
    raise UserError(f"net.core={name!r} is not valid; choose one of: ff, lstm")
