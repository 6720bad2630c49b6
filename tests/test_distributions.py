"""Tests of the action distributions (kickstart.distributions)."""

from __future__ import annotations

import itertools
import math
import pickle

import numpy as np
import pytest
import scipy.stats
import torch
import torch.distributions as td

from kickstart.distributions import Categorical, MultiCategorical, make_dist

torch.set_num_threads(1)

NINF = -math.inf


def logits_for(dist, *batch, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(*batch, dist.num_logits, generator=g, dtype=dtype)


def reference_factors(dist, logits):
    """torch.distributions.Categorical per factor (one for a Categorical)."""
    nvec = dist.nvec if isinstance(dist, MultiCategorical) else (dist.n,)
    return [td.Categorical(logits=x) for x in logits.split(list(nvec), dim=-1)]


DISTS = [Categorical(1), Categorical(5), MultiCategorical((3, 3)), MultiCategorical((3, 2, 4)),
         MultiCategorical((6,))]


@pytest.mark.parametrize("dist", DISTS, ids=repr)
def test_log_prob_and_entropy_match_torch_distributions(dist):
    logits = logits_for(dist, 4, 7)
    refs = reference_factors(dist, logits)
    g = torch.Generator().manual_seed(1)
    actions = torch.stack([torch.randint(r.logits.shape[-1], (4, 7), generator=g) for r in refs],
                          dim=-1)
    if isinstance(dist, Categorical):
        actions = actions.squeeze(-1)
        ref_log_prob = refs[0].log_prob(actions)
    else:
        ref_log_prob = sum(r.log_prob(actions[..., d]) for d, r in enumerate(refs))
    ref_entropy = sum(r.entropy() for r in refs)
    torch.testing.assert_close(dist.log_prob(logits, actions), ref_log_prob)
    torch.testing.assert_close(dist.entropy(logits), ref_entropy)
    assert dist.log_prob(logits, actions).shape == (4, 7) == dist.entropy(logits).shape


def test_log_prob_accepts_narrow_integer_actions():
    dist = MultiCategorical((3, 2, 4))
    logits = logits_for(dist, 5)
    actions = torch.tensor([[0, 1, 3], [2, 0, 0], [1, 1, 1], [0, 0, 2], [2, 1, 3]])
    torch.testing.assert_close(dist.log_prob(logits, actions.to(torch.uint8)),
                               dist.log_prob(logits, actions))


def test_multicategorical_joint_probabilities_sum_to_one():
    dist = MultiCategorical((3, 2))
    logits = logits_for(dist, 2)
    joint = torch.tensor(list(itertools.product(range(3), range(2))))  # [6, 2]
    assert len(joint) == 6
    log_p = dist.log_prob(logits[:, None, :].expand(2, 6, 5), joint.expand(2, 6, 2))
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(2, dtype=torch.float64))
    # ... and the joint entropy is -sum over the 6 joint actions of p log p.
    torch.testing.assert_close(dist.entropy(logits), -(log_p.exp() * log_p).sum(-1))


@pytest.mark.parametrize("dist", [Categorical(4), MultiCategorical((3, 2, 4))], ids=repr)
def test_cross_entropy_is_minimal_at_the_target_and_equals_its_entropy(dist):
    target = logits_for(dist, 6, seed=2)
    ce_at_target = dist.cross_entropy(target, target.clone())
    torch.testing.assert_close(ce_at_target, dist.entropy(target))
    # Any other student (a random perturbation: almost surely another distribution) does worse.
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        student = target + 0.5 * torch.randn(target.shape, generator=g, dtype=target.dtype)
        assert (dist.cross_entropy(target, student) > ce_at_target).all()
    # Stationary point: zero gradient wrt the student's logits there.
    student = target.clone().requires_grad_(True)
    dist.cross_entropy(target, student).sum().backward()
    torch.testing.assert_close(student.grad, torch.zeros_like(target), atol=1e-12, rtol=0)


@pytest.mark.parametrize("dist", [Categorical(4), MultiCategorical((3, 2, 4))], ids=repr)
def test_kl_is_zero_at_the_target_positive_elsewhere_and_is_ce_minus_entropy(dist):
    target = logits_for(dist, 6, seed=4)
    student = logits_for(dist, 6, seed=5)
    assert torch.equal(dist.kl(target, target.clone()), torch.zeros(6, dtype=torch.float64))
    kl = dist.kl(target, student)
    assert (kl > 1e-3).all()
    torch.testing.assert_close(kl, dist.cross_entropy(target, student) - dist.entropy(target))
    ref = sum(td.kl_divergence(p, q) for p, q in
              zip(reference_factors(dist, target), reference_factors(dist, student)))
    torch.testing.assert_close(kl, ref)


def test_kl_is_invariant_to_a_constant_shift_of_the_logits():
    dist = MultiCategorical((3, 2))
    target = logits_for(dist, 4, seed=6)
    shifted = target + torch.tensor([5.0, 5.0, 5.0, -3.0, -3.0], dtype=torch.float64)
    torch.testing.assert_close(dist.kl(target, shifted), torch.zeros(4, dtype=torch.float64),
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize("dist", [Categorical(4), MultiCategorical((3, 2, 4))], ids=repr)
def test_masked_actions_give_finite_values_and_gradients(dist):
    """A target with probability 0 on some actions (-inf logits), and a student with -inf on the
    same actions (or a finite logit there)."""
    target = logits_for(dist, 3, seed=7)
    target[:, 0] = NINF  # masked in both (first action of the first factor)
    target[0, 2] = NINF  # masked in the target only
    student = logits_for(dist, 3, seed=8)
    student[:, 0] = NINF
    student.requires_grad_(True)
    target.requires_grad_(True)
    ce, kl = dist.cross_entropy(target, student), dist.kl(target, student)
    ent_t, ent_s = dist.entropy(target), dist.entropy(student)
    for x in (ce, kl, ent_t, ent_s):
        assert torch.isfinite(x).all()
    (ce + kl + ent_t + ent_s).sum().backward()
    assert torch.isfinite(student.grad).all() and torch.isfinite(target.grad).all()
    # The masked action changes nothing: the same as dropping it from a categorical.
    if isinstance(dist, Categorical):
        t, s = target.detach()[:, 1:], student.detach()[:, 1:]
        small = Categorical(3)
        torch.testing.assert_close(ce.detach(), small.cross_entropy(t, s))
        torch.testing.assert_close(kl.detach(), small.kl(t, s))
        torch.testing.assert_close(ent_t.detach(), small.entropy(t))
    # A student ruling out an action the target allows has an infinite cross-entropy.
    student2 = student.detach().clone()
    student2[1, 1] = NINF
    assert dist.cross_entropy(target.detach(), student2)[1] == math.inf


@pytest.mark.parametrize("dist", [Categorical(5), MultiCategorical((3, 2, 4))], ids=repr)
def test_gradcheck_cross_entropy_and_kl(dist):
    target = logits_for(dist, 3, seed=9)
    target[0, 1] = NINF  # a masked target action; the student's logit there still gets checked
    student = logits_for(dist, 3, seed=10).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: dist.cross_entropy(target, s), (student,))
    assert torch.autograd.gradcheck(lambda s: dist.kl(target, s), (student,))
    assert torch.autograd.gradcheck(dist.entropy, (student,))
    finite_target = logits_for(dist, 3, seed=11).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: dist.kl(t, student.detach()), (finite_target,))


@pytest.mark.parametrize("dist", DISTS, ids=repr)
def test_sample_and_greedy_shapes(dist):
    logits = logits_for(dist, 4, 3, dtype=torch.float32)
    for actions in (dist.sample(logits), dist.greedy(logits)):
        assert actions.shape == (4, 3) + dist.action_shape
        assert actions.dtype == torch.int64
    greedy = dist.greedy(logits)
    refs = reference_factors(dist, logits)
    expected = torch.stack([r.logits.argmax(-1) for r in refs], -1)
    assert torch.equal(greedy, expected.squeeze(-1) if isinstance(dist, Categorical) else expected)


def test_sample_is_reproducible_with_a_generator():
    dist = MultiCategorical((3, 2, 4))
    logits = torch.zeros(64, dist.num_logits)
    a = dist.sample(logits, torch.Generator().manual_seed(0))
    b = dist.sample(logits, torch.Generator().manual_seed(0))
    c = dist.sample(logits, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def _chi2_pvalue(counts, probs):
    probs = probs.double() / probs.double().sum()
    return scipy.stats.chisquare(counts.double().numpy(), (probs * counts.sum()).numpy()).pvalue


def test_categorical_sample_frequencies_match_probabilities():
    dist = Categorical(5)
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0, NINF])
    n = 20000
    # Fixed seed, so deterministic; over seeds the p-value is uniform (checked over 200 seeds).
    actions = dist.sample(logits.expand(n, 5), torch.Generator().manual_seed(1))
    counts = torch.bincount(actions, minlength=5)
    assert counts[4] == 0  # masked action never sampled
    probs = torch.softmax(logits, -1)
    assert _chi2_pvalue(counts[:4], probs[:4]) > 1e-3
    # Not just any distribution passes: a uniform one is rejected.
    assert _chi2_pvalue(counts[:4], torch.full((4,), 0.25)) < 1e-6


def test_multicategorical_sample_frequencies_match_joint_probabilities():
    dist = MultiCategorical((3, 2))
    logits = torch.tensor([0.5, -1.0, 1.0, 1.5, 0.0])
    n = 20000
    actions = dist.sample(logits.expand(n, 5), torch.Generator().manual_seed(1))
    counts = torch.bincount(actions[:, 0] * 2 + actions[:, 1], minlength=6)
    joint = torch.tensor(list(itertools.product(range(3), range(2))))
    probs = dist.log_prob(logits.expand(6, 5), joint).exp()
    assert _chi2_pvalue(counts, probs) > 1e-3
    assert _chi2_pvalue(counts, torch.full((6,), 1 / 6)) < 1e-6


def test_make_dist():
    assert make_dist((6,), False) == Categorical(6)
    assert make_dist((3, 2), True) == MultiCategorical((3, 2))
    assert make_dist([4], True) == MultiCategorical((4,))
    assert make_dist((3, 2), True).action_shape == (2,)
    assert make_dist((6,), False).action_shape == ()
    assert make_dist((3, 2), True).num_logits == 5
    with pytest.raises(ValueError, match=r"Discrete action space has action_nvec=\(n,\)"):
        make_dist((3, 2), False)
    for bad in [(), (3, 0), (2.5,), (3, -1)]:
        with pytest.raises(ValueError, match="nvec must be a non-empty tuple of positive integers"):
            MultiCategorical(bad)
    for bad in [0, 2.0, True]:
        with pytest.raises(ValueError, match="n must be a positive integer"):
            Categorical(bad)
    # Gym spaces hold numpy integers.
    assert make_dist(np.array([6]), False) == Categorical(6)
    assert make_dist(np.array([3, 2]), True).nvec == (3, 2)
    assert type(make_dist(np.array([3, 2]), True).nvec[0]) is int


def test_shape_validation():
    dist = MultiCategorical((3, 2))
    with pytest.raises(ValueError, match=r"logits must be \[\.\.\., 5\], got \(4, 6\)"):
        dist.entropy(torch.zeros(4, 6))
    with pytest.raises(ValueError, match=r"actions must have shape \(4, 2\)"):
        dist.log_prob(torch.zeros(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"actions must have shape \(4,\)"):
        Categorical(5).log_prob(torch.zeros(4, 5), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="must have the same shape"):
        dist.kl(torch.zeros(4, 5), torch.zeros(3, 5))


def test_pickles_without_device_caches():
    dist = MultiCategorical((3, 2, 4))
    dist.entropy(torch.zeros(2, 9))  # fills the index cache
    clone = pickle.loads(pickle.dumps(dist))
    assert clone == dist and clone._pad_index_cache == {}
    torch.testing.assert_close(clone.entropy(torch.zeros(2, 9)), dist.entropy(torch.zeros(2, 9)))


@pytest.mark.parametrize("shape", [(20, 80, 6), (1600, 4), (2, 3, 6), (21, 64, 18), (300, 40), (7,)])
def test_log_softmax_equals_torchs_on_every_path_with_masked_actions_and_gradients(shape):
    from kickstart.distributions import log_softmax

    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g) * 3
    if x.shape[-1] > 2:
        x[..., 1] = -math.inf                  # an action some policy cannot take
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, ref = log_softmax(a), torch.nn.functional.log_softmax(b, dim=-1)
    assert ours.shape == ref.shape and torch.allclose(ours, ref, atol=1e-5, rtol=0)
    w = torch.rand(shape, generator=g)
    (torch.where(torch.isfinite(ours), ours, 0.0) * w).sum().backward()
    (torch.where(torch.isfinite(ref), ref, 0.0) * w).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-5)
