"""PopArt: a value head whose targets are normalised per task, and whose outputs survive it.

Hessel et al. 2019, "Multi-task Deep Reinforcement Learning with PopArt" (built on van Hasselt et al.
2016, "Learning values across many orders of magnitude"). Why: on a multi-task suite the returns
differ by orders of magnitude between tasks (MinAtar: Seaquest a few points, SpaceInvaders over a
hundred), so the summed value loss and the policy-gradient advantages are dominated by the tasks with
the largest rewards, and the shared network spends its capacity there. PopArt keeps, per task ``i``,
running first and second moments ``mu_i``, ``nu_i`` of the value targets, with
``sigma_i = sqrt(nu_i - mu_i^2)``; the head outputs a normalised value ``n_i(x)`` and the value is
``v_i(x) = sigma_i * n_i(x) + mu_i``. The learner

* computes V-trace on the unnormalised values (rewards keep their meaning),
* trains the head on the normalised targets ``(v_s - mu_i) / sigma_i`` and scales the
  policy-gradient advantage by ``1 / sigma_i`` (every task's gradient has a similar size),
* then moves the statistics towards the new targets (:meth:`PopArtHead.update`) and rescales the
  head's last linear layer so that every unnormalised output is unchanged ("preserving outputs
  precisely while adaptively rescaling targets"): ``w_i <- w_i * sigma_old / sigma_new``,
  ``b_i <- (sigma_old * b_i + mu_old - mu_new) / sigma_new``.

The statistics are buffers of the network, so the actors (which use the value to bootstrap at a
truncation) and checkpoints see the same normalisation as the learner.
"""

from __future__ import annotations

import torch
from torch import nn

from kickstart.nets.heads import BaselineHead


class PopArtHead(nn.Module):
    """Linear -> one normalised value per task; ``forward`` gives the unnormalised value of each
    sample's own task and its normalised value. ``[N, in_size], [N] -> [N], [N]``.

    ``beta`` is the step size of the moment estimates (the paper's 3e-4 per learner update);
    ``sigma`` is kept in ``[sigma_min, sigma_max]`` so that a task whose targets are all alike (or
    have not been seen yet) does not divide by zero.
    """

    def __init__(self, in_size: int, num_tasks: int, beta: float = 3e-4, sigma_min: float = 1e-4,
                 sigma_max: float = 1e6):
        super().__init__()
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"PopArt beta={beta} must be in (0, 1]")
        self.linear = nn.Linear(in_size, num_tasks)
        self.beta, self.sigma_min, self.sigma_max = beta, sigma_min, sigma_max
        self.register_buffer("mu", torch.zeros(num_tasks))
        self.register_buffer("nu", torch.ones(num_tasks))

    @property
    def num_tasks(self) -> int:
        return self.mu.numel()

    def sigma(self) -> torch.Tensor:
        """``[num_tasks]`` scale of each task's targets."""
        var = (self.nu - self.mu.square()).clamp(min=self.sigma_min ** 2, max=self.sigma_max ** 2)
        return var.sqrt()

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Unnormalised and normalised values of each sample's task (task 0 when ``task`` is None)."""
        if task is None:
            task = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
        normalised = self.linear(x).float().gather(1, task.reshape(-1, 1)).squeeze(1)
        return self.sigma()[task] * normalised + self.mu[task], normalised

    def normalise(self, values: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """``(values - mu) / sigma`` of each sample's task."""
        return (values - self.mu[task]) / self.sigma()[task]

    @torch.no_grad()
    def update(self, targets: torch.Tensor, task: torch.Tensor) -> None:
        """Move each task's moments towards the mean of its ``targets`` (unnormalised value targets of
        one learner batch; tasks absent from the batch keep theirs) and rescale the last layer so
        that the unnormalised outputs stay what they were."""
        targets, task = targets.reshape(-1).float(), task.reshape(-1)
        k = self.num_tasks
        count = torch.zeros(k, device=targets.device).index_add_(0, task, torch.ones_like(targets))
        first = torch.zeros(k, device=targets.device).index_add_(0, task, targets)
        second = torch.zeros(k, device=targets.device).index_add_(0, task, targets.square())
        seen = count > 0
        mean1 = torch.where(seen, first / count.clamp(min=1), self.mu)
        mean2 = torch.where(seen, second / count.clamp(min=1), self.nu)
        old_mu, old_sigma = self.mu.clone(), self.sigma()
        self.mu.copy_(torch.where(seen, (1 - self.beta) * self.mu + self.beta * mean1, self.mu))
        self.nu.copy_(torch.where(seen, (1 - self.beta) * self.nu + self.beta * mean2, self.nu))
        new_sigma = self.sigma()
        w, b = self.linear.weight, self.linear.bias
        w.mul_((old_sigma / new_sigma).to(w.dtype)[:, None])
        b.copy_(((old_sigma * b.float() + old_mu - self.mu) / new_sigma).to(b.dtype))


def make_value_head(in_size: int, num_tasks: int, popart: bool, beta: float) -> nn.Module:
    """The value head of a network: PopArt's (``net.popart``) or a plain linear one."""
    return PopArtHead(in_size, num_tasks, beta) if popart else BaselineHead(in_size)


def value_outputs(head: nn.Module, z: torch.Tensor, task: torch.Tensor | None, shape: tuple[int, ...]):
    """``(value [shape], extras)`` of either kind of value head on features ``z [N, in_size]``; a PopArt
    head adds its normalised value as ``extras["baseline_normalised"]``, which its learner trains."""
    if isinstance(head, PopArtHead):
        value, normalised = head(z, None if task is None else task.reshape(-1))
        return value.view(shape), {"baseline_normalised": normalised.view(shape)}
    return head(z).view(shape), {}
