"""The kickstarting loss (Schmitt et al. 2018, Eq. 2), its diagnostics and the lambda schedules."""

import math

import pytest
import torch

from kickstart.distributions import Categorical, MultiCategorical
from kickstart.kickstarting.config import KickstartConfig
from kickstart.kickstarting.schedules import schedule_value
from kickstart.losses.kickstart import distillation_loss, distillation_stats

LN2 = math.log(2.0)
NAN, NINF = math.nan, -math.inf


def _log(*p):
    return [math.log(x) if x > 0 else NINF for x in p]


def hand_example():
    """A [T=2, B=2] batch of 3-action policies with cross-entropies worked out by hand."""
    teacher = torch.tensor([
        [_log(1 / 2, 1 / 4, 1 / 4), _log(1, 0, 0)],            # p_T, including a masked action
        [[0.0, 0.0, 0.0], [NAN, NAN, NAN]],                    # uniform; no teacher output (weight 0)
    ])
    student = torch.tensor([
        [_log(1 / 4, 1 / 2, 1 / 4), _log(1 / 2, 1 / 4, 1 / 4)],
        [_log(1 / 2, 1 / 4, 1 / 4), _log(1 / 3, 1 / 3, 1 / 3)],
    ], requires_grad=True)
    weights = torch.tensor([[1.0, 0.5], [2.0, 0.0]])
    # H(p_T || p_S) = -sum_a p_T(a) ln p_S(a):
    #   [0,0]: -(1/2 ln 1/4 + 1/4 ln 1/2 + 1/4 ln 1/4) = (1 + 1/4 + 1/2) ln 2 = 7/4 ln 2
    #   [0,1]: -(1 ln 1/2)                                                     = ln 2
    #   [1,0]: -1/3 (ln 1/2 + 2 ln 1/4)                                        = 5/3 ln 2
    # weighted: 7/4 + 1/2 * 1 + 2 * 5/3 = 67/12 (times ln 2); [1,1] has weight 0.
    return teacher, student, weights, 67 / 12 * LN2


def test_loss_matches_the_hand_computation_with_sum_and_mean():
    teacher, student, weights, expected = hand_example()
    dist = Categorical(3)
    total = distillation_loss(teacher, student, dist, weights, reduction="sum")
    mean = distillation_loss(teacher, student, dist, weights, reduction="mean")
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert mean.item() == pytest.approx(expected / 4, rel=1e-6)  # mean over all T x B steps, as IMPALA's terms


def naive_loss(teacher, student, weights):
    """Eq. (2) in the paper's notation, one step at a time: sum_t lambda_t sum_a -pi_T(a|x_t) log pi_S(a|x_t)."""
    total = 0.0
    T, B, A = teacher.shape
    for t in range(T):
        for b in range(B):
            lam = float(weights[t, b])
            if lam == 0:
                continue
            zt = [math.exp(float(v)) for v in teacher[t, b]]
            zs = [math.exp(float(v)) for v in student[t, b]]
            pi_t = [v / sum(zt) for v in zt]
            log_pi_s = [math.log(v / sum(zs)) for v in zs]
            total += lam * sum(-p * lp for p, lp in zip(pi_t, log_pi_s) if p > 0)
    return total


def test_loss_matches_a_naive_loop_on_random_inputs():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(5, 3, 4, generator=g) * 2
    student = torch.randn(5, 3, 4, generator=g)
    weights = torch.rand(5, 3, generator=g) * (torch.rand(5, 3, generator=g) > 0.3)
    got = distillation_loss(teacher, student, Categorical(4), weights, reduction="sum")
    assert got.item() == pytest.approx(naive_loss(teacher, student, weights), rel=1e-5)


def test_gradients_reach_the_student_only_and_are_lambda_times_ps_minus_pt():
    teacher, student, weights, _ = hand_example()
    teacher = teacher.clone().requires_grad_(True)   # even if a caller hands in a tensor with grad
    weights = weights.clone().requires_grad_(True)
    distillation_loss(teacher, student, Categorical(3), weights, reduction="sum").backward()
    assert teacher.grad is None and weights.grad is None
    g = student.grad
    assert torch.isfinite(g).all()
    # d/dz_S [lambda H(p_T || softmax(z_S))] = lambda (p_S - p_T)
    assert torch.allclose(g[0, 0], 1.0 * torch.tensor([1 / 4 - 1 / 2, 1 / 2 - 1 / 4, 0.0]), atol=1e-6)
    assert torch.allclose(g[0, 1], 0.5 * torch.tensor([1 / 2 - 1, 1 / 4, 1 / 4]), atol=1e-6)
    assert torch.allclose(g[1, 0], 2.0 * torch.tensor([1 / 2 - 1 / 3, 1 / 4 - 1 / 3, 1 / 4 - 1 / 3]), atol=1e-6)
    assert torch.equal(g[1, 1], torch.zeros(3))     # weight 0: no gradient, even with a NaN teacher


def test_minimal_when_the_student_equals_the_teacher():
    g = torch.Generator().manual_seed(1)
    teacher = torch.randn(4, 2, 5, generator=g) * 3
    student = teacher.clone().requires_grad_(True)
    weights = torch.ones(4, 2)
    dist = Categorical(5)
    loss = distillation_loss(teacher, student, dist, weights, reduction="sum")
    loss.backward()
    assert loss.item() == pytest.approx(dist.entropy(teacher).sum().item(), rel=1e-5)  # CE = H(pi_T)
    assert student.grad.abs().max().item() < 1e-6                                      # a stationary point
    stats = distillation_stats(teacher, student, dist, weights > 0)
    assert stats.kl == pytest.approx(0.0, abs=1e-6) and stats.agreement == 1.0
    for _ in range(5):  # and a minimum: any other student costs more
        other = teacher + torch.randn(teacher.shape, generator=g)
        assert distillation_loss(teacher, other, dist, weights).item() > loss.item()


def test_stats_over_the_covered_steps():
    teacher, student, weights, _ = hand_example()
    stats = distillation_stats(teacher, student, Categorical(3), weights > 0)
    assert stats.count == 3
    assert stats.cross_entropy == pytest.approx((7 / 4 + 1 + 5 / 3) * LN2 / 3, rel=1e-6)
    # KL = CE - H(p_T): H = 3/2 ln 2, 0 and ln 3 for the three covered steps.
    kl = (7 / 4 - 3 / 2) * LN2 + LN2 + (5 / 3 * LN2 - math.log(3))
    assert stats.kl == pytest.approx(kl / 3, rel=1e-5)
    # Greedy actions: teacher 0, 0, 0 (uniform: first); student 1, 0, 0.
    assert stats.agreement == pytest.approx(2 / 3)
    assert distillation_stats(teacher, student, Categorical(3), torch.zeros(2, 2, dtype=torch.bool)).count == 0


def test_multidiscrete_sums_over_factors_and_agreement_needs_every_factor():
    dist = MultiCategorical((2, 3))
    teacher = torch.tensor([[_log(1 / 2, 1 / 2) + _log(1, 0, 0)]])   # [1, 1, 5]
    student = torch.tensor([[_log(1 / 4, 3 / 4) + _log(1 / 2, 1 / 4, 1 / 4)]])
    ce = -(0.5 * math.log(1 / 4) + 0.5 * math.log(3 / 4)) - math.log(1 / 2)
    assert distillation_loss(teacher, student, dist, torch.ones(1, 1)).item() == pytest.approx(ce, rel=1e-6)
    stats = distillation_stats(teacher, student, dist, torch.ones(1, 1, dtype=torch.bool))
    assert stats.agreement == 0.0  # factor 0: teacher argmax 0 (tie), student 1


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="must be"):
        distillation_loss(torch.zeros(2, 2, 3), torch.zeros(2, 2, 3), Categorical(3), torch.ones(2, 3))


@pytest.mark.parametrize("schedule,kwargs,golden", [
    ("constant", dict(lambda_0=2.0), {0: 2.0, 10**6: 2.0, 10**9: 2.0}),
    ("linear", dict(lambda_0=2.0, lambda_end_frames=1000),
     {0: 2.0, 250: 1.5, 500: 1.0, 999: 0.002, 1000: 0.0, 5000: 0.0}),
    ("piecewise", dict(piecewise=[[100, 1.0], [300, 0.5], [400, 0.0], [1000, 0.25]]),
     {0: 1.0, 100: 1.0, 200: 0.75, 300: 0.5, 350: 0.25, 400: 0.0, 700: 0.125, 1000: 0.25, 10**8: 0.25}),
    ("piecewise", dict(piecewise=[[0, 3.0]]), {0: 3.0, 50: 3.0}),
])
def test_schedule_golden_values(schedule, kwargs, golden):
    cfg = KickstartConfig(schedule=schedule, **kwargs)
    for frames, value in golden.items():
        assert schedule_value(cfg, frames) == pytest.approx(value, abs=1e-12), (schedule, frames)


def test_disjoint_teachers_share_one_pass_with_identical_results():
    """Task experts (disjoint tasks) are merged into one target; the result equals one term per teacher."""
    from types import SimpleNamespace

    from kickstart.distributions import make_dist
    from kickstart.kickstarting.config import KickstartConfig, TeacherConfig
    from kickstart.kickstarting.names import field_name
    from kickstart.kickstarting.term import KickstartTerm

    torch.manual_seed(0)
    T, B, L = 4, 6, 5
    cfg = KickstartConfig(teachers={"a": TeacherConfig(path="a.pt", tasks=["x"], rho=1.0),
                                    "b": TeacherConfig(path="b.pt", tasks=["y"], rho=0.5)}, lambda_0=2.0)
    task = torch.tensor([0, 1, 2, 0, 1, 2]).expand(T + 1, B)      # task 2 has no teacher
    batch = {"task": task}
    for name in ("a", "b"):
        logits = torch.randn(T + 1, B, L)
        logits[1, 0] = float("nan")                                # the actor skipped a step
        logits[..., 4] = float("-inf")                             # an action the teacher lacks
        batch[field_name(name)] = logits
    student = torch.randn(T + 1, B, L, requires_grad=True)
    ctx = SimpleNamespace(batch=batch, out=SimpleNamespace(policy_logits=student), dist=make_dist((L,), False),
                          hparams={"kickstart/alpha": 1.0, "kickstart/rho/a": 1.0, "kickstart/rho/b": 0.5},
                          reduction="sum", frames=0)
    merged = KickstartTerm(cfg, {"a": [0], "b": [1]}, 3)
    assert merged.disjoint
    loss_m, met_m = merged(ctx)
    grad_m, = torch.autograd.grad(loss_m, student)
    separate = KickstartTerm(cfg, {"a": [0], "b": [1]}, 3)
    separate.disjoint = False
    loss_s, met_s = separate(ctx)
    grad_s, = torch.autograd.grad(loss_s, student)
    torch.testing.assert_close(loss_m, loss_s)
    torch.testing.assert_close(grad_m, grad_s)
    assert met_m.keys() == met_s.keys()
    for k in met_m:
        assert met_m[k] == pytest.approx(met_s[k], rel=1e-5, abs=1e-6), k
    assert met_m["kickstart/b/lambda"] == 1.0 and 0 < met_m["kickstart/a/coverage"] < 1 / 3
    assert not KickstartTerm(cfg, {"a": [0, 1], "b": [1]}, 3).disjoint
