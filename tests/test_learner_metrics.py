"""The learner's critic diagnostic, ``value/explained_variance``: its definition on hand-made values,
and that a real update reports it."""

import math

import pytest
import torch

from kickstart.learner import Learner, explained_variance
from tests.test_learner_passes import _cfg, _setup


def test_explained_variance_against_its_definition():
    g = torch.Generator().manual_seed(0)
    targets = torch.randn(7, 5, generator=g)
    assert explained_variance(targets, targets) == pytest.approx(1.0)
    # A critic that only knows the mean explains nothing, whatever the scale.
    assert explained_variance(torch.full_like(targets, targets.mean().item()), targets) == pytest.approx(0.0, abs=1e-6)
    noisy = targets + 0.5 * torch.randn(7, 5, generator=g)
    naive = 1 - ((targets - noisy) - (targets - noisy).mean()).pow(2).mean() / (targets - targets.mean()).pow(2).mean()
    assert explained_variance(noisy, targets) == pytest.approx(naive.item(), rel=1e-5)
    assert explained_variance(-targets, targets) < 0          # anti-correlated: worse than the mean
    assert math.isnan(explained_variance(targets, torch.ones_like(targets)))


def test_update_reports_explained_variance_of_its_values_and_targets():
    cfg = _cfg()
    net, batch = _setup(cfg)
    metrics = Learner(net, cfg.learner, total_frames=10_000).step(batch, frames=0)
    ev = metrics["value/explained_variance"]
    assert math.isfinite(ev) and ev <= 1.0
