"""Tests of V-trace (kickstart.losses.vtrace) four ways: a naive reference in the paper's notation,
golden numbers, properties, and (absence of) gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kickstart.losses import vtrace

torch.set_num_threads(1)


def naive_vtrace(log_rhos, discounts, rewards, values, bootstrap_value,
                 rho_bar=1.0, pg_rho_bar=1.0, truncated=None, final_values=None, lam=1.0):
    """IMPALA eq. (1), literally, with n = T (the rest of the unroll) and Remark 2's lambda
    (``c_i = lambda * min(1, pi/mu)``; lambda = 1 is eq. (1) itself):

        v_t = V(x_t) + sum_{s=t}^{n_t-1} (prod_{i=t}^{s-1} gamma_i c_i) delta_s V
        delta_s V = rho_s (r_s + gamma_s V(x_{s+1}) - V(x_s)),  rho_s = min(rho_bar, pi/mu),
        c_i = min(1, pi/mu),

    where the paper's gamma^(s-t) becomes prod_{i=t}^{s-1} gamma_i for per-step discounts, and
    V(x_T) is the bootstrap value. Advantage (Section 4.2):
    rho^pg_t (r_t + gamma_t v_{t+1} - V(x_t)), v_T = V(x_T). Inputs are numpy [T, B] and [B].

    Truncations (Pardo et al. 2018): where the transition s -> s+1 is truncated, the episode of x_t
    (t <= s) ends at its final observation x'_{s+1}, so the sum stops there (n_t = s + 1, the
    first truncated transition at or after t), and V(x_{s+1}) in delta_s and v_{s+1} in the
    advantage are both V(x'_{s+1}) = final_values[s]: the unroll "ends" at x'_{s+1}.
    """
    T, B = log_rhos.shape
    truncated = np.zeros((T, B), bool) if truncated is None else np.asarray(truncated, bool)
    ratio = np.exp(log_rhos)
    rho = ratio if rho_bar is None else np.minimum(rho_bar, ratio)
    rho_pg = ratio if pg_rho_bar is None else np.minimum(pg_rho_bar, ratio)
    c = lam * np.minimum(1.0, ratio)
    V = np.concatenate([values, bootstrap_value[None]], axis=0)  # V(x_0), ..., V(x_T)

    def V_next(s, b):  # the value the transition s -> s+1 bootstraps from
        return final_values[s, b] if truncated[s, b] else V[s + 1, b]

    vs = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            n = T
            for s in range(t, T):
                if truncated[s, b]:
                    n = s + 1
                    break
            total = V[t, b]
            for s in range(t, n):
                coef = 1.0
                for i in range(t, s):
                    coef *= discounts[i, b] * c[i, b]
                delta_s = rho[s, b] * (rewards[s, b] + discounts[s, b] * V_next(s, b) - V[s, b])
                total += coef * delta_s
            vs[t, b] = total
    v_next = np.concatenate([vs, bootstrap_value[None]], axis=0)
    pg = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            v_tp1 = final_values[t, b] if truncated[t, b] else v_next[t + 1, b]
            pg[t, b] = rho_pg[t, b] * (rewards[t, b] + discounts[t, b] * v_tp1 - V[t, b])
    return vs, pg


def make_inputs(T, B, seed, gamma=0.9, p_done=0.2):
    """Random numpy inputs with ratios pi/mu spread over [e^-2, e^2] and some episode ends."""
    rng = np.random.default_rng(seed)
    log_rhos = rng.uniform(-2.0, 2.0, size=(T, B))
    dones = rng.uniform(size=(T, B)) < p_done
    discounts = gamma * (1.0 - dones)
    rewards = rng.normal(size=(T, B))
    values = rng.normal(size=(T, B))
    bootstrap_value = rng.normal(size=(B,))
    return log_rhos, discounts, rewards, values, bootstrap_value


def make_truncations(T, B, seed, gamma=0.9, p_trunc=0.15):
    """Random inputs as :func:`make_inputs`, plus truncated transitions (discount gamma, never at a
    termination) and their final values; ``[T, B]`` bool and float."""
    log_rhos, discounts, rewards, values, bootstrap_value = make_inputs(T, B, seed, gamma=gamma)
    rng = np.random.default_rng(seed + 1)
    truncated = (rng.uniform(size=(T, B)) < p_trunc) & (discounts > 0)
    final_values = np.where(truncated, rng.normal(size=(T, B)) * 3.0, 0.0)
    return (log_rhos, discounts, rewards, values, bootstrap_value), truncated, final_values


def run(log_rhos, discounts, rewards, values, bootstrap_value, dtype=torch.float64, truncated=None,
        final_values=None, **kw):
    t = lambda x: torch.as_tensor(x, dtype=dtype)
    if truncated is not None:
        kw.update(truncated=torch.as_tensor(truncated, dtype=torch.bool), final_values=t(final_values))
    out = vtrace.from_importance_weights(t(log_rhos), t(discounts), t(rewards), t(values),
                                         t(bootstrap_value), **kw)
    return out.vs.numpy(), out.pg_advantages.numpy()


SHAPES = [(1, 1), (1, 3), (5, 1), (5, 3), (5, 8), (20, 1), (20, 3), (20, 8)]
THRESHOLDS = [(1.0, 1.0), (None, None), (2.0, 0.5), (0.7, None)]


@pytest.mark.parametrize("T,B", SHAPES)
@pytest.mark.parametrize("rho_bar,pg_rho_bar", THRESHOLDS)
def test_matches_naive_reference(T, B, rho_bar, pg_rho_bar):
    inputs = make_inputs(T, B, seed=1000 * T + B)
    vs, pg = run(*inputs, clip_rho_threshold=rho_bar, clip_pg_rho_threshold=pg_rho_bar)
    ref_vs, ref_pg = naive_vtrace(*inputs, rho_bar=rho_bar, pg_rho_bar=pg_rho_bar)
    np.testing.assert_allclose(vs, ref_vs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(pg, ref_pg, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("T,B", SHAPES)
@pytest.mark.parametrize("rho_bar,pg_rho_bar", THRESHOLDS)
def test_truncations_match_naive_reference(T, B, rho_bar, pg_rho_bar):
    """Terminations (discount 0) and truncations (discount gamma, bootstrapped from the final
    observation's value, trace cut) in one unroll, against the reference in the paper's notation."""
    inputs, truncated, final_values = make_truncations(T, B, seed=1000 * T + B + 17)
    vs, pg = run(*inputs, truncated=truncated, final_values=final_values,
                 clip_rho_threshold=rho_bar, clip_pg_rho_threshold=pg_rho_bar)
    ref_vs, ref_pg = naive_vtrace(*inputs, rho_bar=rho_bar, pg_rho_bar=pg_rho_bar,
                                  truncated=truncated, final_values=final_values)
    np.testing.assert_allclose(vs, ref_vs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(pg, ref_pg, rtol=1e-10, atol=1e-10)


def test_truncation_inputs_have_both_kinds_of_ends():
    """The inputs above truncate inside an unroll and at its last step, and terminate too."""
    inside = last = terminated = False
    for T, B in SHAPES:
        (_, discounts, *_), truncated, _ = make_truncations(T, B, seed=1000 * T + B + 17)
        inside |= bool(truncated[:-1].any() and (discounts[:-1] == 0).any())
        last |= bool(T > 1 and truncated[-1].any())
        terminated |= bool((discounts == 0).any())
        assert not (truncated & (discounts == 0)).any()
    assert inside and last and terminated
    # and the truncations matter: read as plain continuations, the targets differ
    inputs, truncated, final_values = make_truncations(20, 8, seed=1000 * 20 + 8 + 17)
    assert not np.allclose(run(*inputs)[0], run(*inputs, truncated=truncated, final_values=final_values)[0])


def test_reference_inputs_cross_both_clip_thresholds_and_end_episodes():
    """The inputs above exercise clipping (ratios above and below every threshold used, and
    above and below 1 for c) and episode ends inside the unroll."""
    log_rhos, discounts, *_ = make_inputs(20, 8, seed=1000 * 20 + 8)
    ratios = np.exp(log_rhos)
    for threshold in (0.5, 0.7, 1.0, 2.0):
        assert (ratios > threshold).any() and (ratios < threshold).any()
    assert (discounts[:-1] == 0).any() and (discounts > 0).any()


def test_float32_matches_float64_reference():
    inputs = make_inputs(20, 8, seed=7)
    vs, pg = run(*inputs, dtype=torch.float32)
    assert vs.dtype == np.float32 and pg.dtype == np.float32
    ref_vs, ref_pg = naive_vtrace(*inputs)
    np.testing.assert_allclose(vs, ref_vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pg, ref_pg, rtol=1e-5, atol=1e-5)


# Golden numbers: T=3, B=2, default thresholds (1, 1).
GOLDEN_INPUTS = dict(
    log_rhos=[[0.0, 1.0], [-1.0, 0.5], [0.5, -0.5]],
    discounts=[[0.9, 0.9], [0.9, 0.0], [0.9, 0.9]],
    rewards=[[1.0, -1.0], [0.0, 2.0], [0.5, 1.0]],
    values=[[0.5, 1.0], [1.0, -0.5], [0.0, 0.25]],
    bootstrap_value=[2.0, -1.0],
)
# Pasted from naive_vtrace (above) on GOLDEN_INPUTS, and checked by hand:
# b=1 (ratios e^1, e^0.5, e^-0.5; an episode ends at t=1):
#   t=2: rho = c = e^-0.5 = 0.606530, delta = 0.606530 * (1 + 0.9 * -1 - 0.25) = -0.090980,
#        v_2 = 0.25 - 0.090980 = 0.159020.
#   t=1: discount 0, rho = min(1, e^0.5) = 1: v_1 = V(x_1) + (2 - V(x_1)) = 2.
#   t=0: rho = c = 1: v_0 = 1 + (-1 + 0.9 * -0.5 - 1) + 0.9 * 1 * (v_1 - V(x_1))
#        = 1 - 2.45 + 0.9 * 2.5 = 0.8.
#   pg_2 = delta_2 = -0.090980;  pg_1 = 1 * (2 + 0 * v_2 + 0.5) = 2.5;
#   pg_0 = 1 * (-1 + 0.9 * 2 - 1) = -0.2.
# b=0 (ratios 1, e^-1, e^0.5):
#   t=2: rho = 1: v_2 = 0 + (0.5 + 0.9 * 2 - 0) = 2.3 = pg_2.
#   t=1: rho = c = e^-1 = 0.367879: v_1 = 1 + 0.367879 * (0 + 0.9 * 0 - 1)
#        + 0.9 * 0.367879 * (2.3 - 0) = 1.393631;  pg_1 = 0.367879 * (0.9 * 2.3 - 1) = 0.393631.
#   t=0: rho = c = 1: v_0 = 0.5 + (1 + 0.9 - 0.5) + 0.9 * (1.393631 - 1) = 2.254268;
#        pg_0 = 1 + 0.9 * 1.393631 - 0.5 = 1.754268.
GOLDEN_VS = [[2.254267901848099, 0.8],
             [1.3936310020534433, 2.0],
             [2.3, 0.15902040104310497]]
GOLDEN_PG = [[1.7542679018480989, -0.2],
             [0.39363100205344326, 2.5],
             [2.3, -0.09097959895689503]]


def test_golden_numbers():
    inputs = [np.asarray(v, dtype=np.float64) for v in GOLDEN_INPUTS.values()]
    vs, pg = run(*inputs)
    np.testing.assert_allclose(vs, GOLDEN_VS, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pg, GOLDEN_PG, rtol=1e-12, atol=1e-12)


# Golden numbers with truncations: GOLDEN_INPUTS, plus the transition 0 -> 1 of b=0 truncated with
# V(x'_1) = 3 (discount stays 0.9), and the last transition of b=1 truncated with V(x'_3) = -2
# (b=1 also terminates at t=1). The final values elsewhere are junk that must not be read.
GOLDEN_TRUNCATED = [[True, False], [False, False], [False, True]]
GOLDEN_FINAL_VALUES = [[3.0, 1e6], [1e6, 1e6], [1e6, -2.0]]
# Checked by hand:
# b=0: t=2 and t=1 do not see the truncation: v_2 = 2.3, v_1 = 1.393631 as above (pg too).
#   t=0: rho = c = 1, truncated: v_0 = 0.5 + (1 + 0.9 * 3 - 0.5) = 3.7 (nothing of v_1);
#        pg_0 = 1 + 0.9 * 3 - 0.5 = 3.2.
# b=1: t=2: rho = c = e^-0.5 = 0.606531, delta = 0.606531 * (1 + 0.9 * -2 - 0.25) = -0.636857
#        (V(x'_3) = -2 instead of the bootstrap -1): v_2 = 0.25 - 0.636857 = -0.386857 = 0.25 + pg_2.
#   t=1, t=0: the termination at t=1 hides t=2: v_1 = 2, v_0 = 0.8, pg_1 = 2.5, pg_0 = -0.2.
GOLDEN_TRUNC_VS = [[3.7, 0.8],
                   [1.3936310020534433, 2.0],
                   [2.3, -0.38685719269826513]]
GOLDEN_TRUNC_PG = [[3.2, -0.2],
                   [0.39363100205344326, 2.5],
                   [2.3, -0.6368571926982651]]


def test_golden_numbers_with_truncations():
    inputs = [np.asarray(v, dtype=np.float64) for v in GOLDEN_INPUTS.values()]
    vs, pg = run(*inputs, truncated=GOLDEN_TRUNCATED, final_values=GOLDEN_FINAL_VALUES)
    np.testing.assert_allclose(vs, GOLDEN_TRUNC_VS, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pg, GOLDEN_TRUNC_PG, rtol=1e-12, atol=1e-12)
    ref = naive_vtrace(*inputs, truncated=np.array(GOLDEN_TRUNCATED), final_values=np.array(GOLDEN_FINAL_VALUES))
    np.testing.assert_allclose(vs, ref[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pg, ref[1], rtol=1e-12, atol=1e-12)


def test_no_truncation_equals_the_plain_call():
    """An all-False mask (with any final values) is the call without truncations, bit for bit."""
    inputs = make_inputs(9, 4, seed=21)
    plain = run(*inputs, clip_rho_threshold=2.0, clip_pg_rho_threshold=0.5)
    masked = run(*inputs, truncated=np.zeros((9, 4), bool), final_values=np.full((9, 4), 1e6),
                 clip_rho_threshold=2.0, clip_pg_rho_threshold=0.5)
    for a, b in zip(plain, masked):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("k", [1, 4, 9, 10])
def test_splitting_an_unroll_at_a_truncation_changes_nothing(k):
    """The transition k-1 -> k truncated with final value F: the first k steps are those of an
    unroll [0, k) bootstrapped with F, and the rest those of [k, T) (k = T: the unroll's own
    bootstrap value is not read)."""
    T, B = 10, 5
    log_rhos, discounts, rewards, values, bootstrap_value = make_inputs(T, B, seed=k + 50, p_done=0.1)
    discounts[k - 1] = 0.9
    truncated = np.zeros((T, B), bool)
    truncated[k - 1] = True
    final = np.random.default_rng(k).normal(size=B) * 3.0
    final_values = np.zeros((T, B))
    final_values[k - 1] = final
    kw = dict(clip_rho_threshold=2.0, clip_pg_rho_threshold=0.5)
    vs, pg = run(log_rhos, discounts, rewards, values, bootstrap_value, truncated=truncated,
                 final_values=final_values, **kw)
    vs_a, pg_a = run(log_rhos[:k], discounts[:k], rewards[:k], values[:k], final, **kw)
    np.testing.assert_allclose(vs[:k], vs_a, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pg[:k], pg_a, rtol=1e-12, atol=1e-12)
    if k < T:
        vs_b, pg_b = run(log_rhos[k:], discounts[k:], rewards[k:], values[k:], bootstrap_value, **kw)
        np.testing.assert_allclose(vs[k:], vs_b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(pg[k:], pg_b, rtol=1e-12, atol=1e-12)
    # a termination there instead differs (the final value is not 0 and would be bootstrapped)
    d0 = discounts.copy()
    d0[k - 1] = 0.0
    assert not np.allclose(run(log_rhos, d0, rewards, values, bootstrap_value, **kw)[0][:k], vs_a)


@pytest.mark.parametrize("rho_bar,pg_rho_bar", [(1.0, 1.0), (None, None), (2.0, 3.0)])
def test_on_policy_vs_is_the_bootstrapped_discounted_return(rho_bar, pg_rho_bar):
    """With pi = mu (log_rhos = 0) and thresholds >= 1, v_t is the n-step return
    sum_{s>=t} (prod_{i=t}^{s-1} gamma_i) r_s + (prod_{i=t}^{T-1} gamma_i) V(x_T): no value
    appears in it."""
    T, B = 12, 4
    _, discounts, rewards, values, bootstrap_value = make_inputs(T, B, seed=3, p_done=0.15)
    expected = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            ret, discount = 0.0, 1.0
            for s in range(t, T):
                ret += discount * rewards[s, b]
                discount *= discounts[s, b]
            expected[t, b] = ret + discount * bootstrap_value[b]
    vs, pg = run(np.zeros((T, B)), discounts, rewards, values, bootstrap_value,
                 clip_rho_threshold=rho_bar, clip_pg_rho_threshold=pg_rho_bar)
    np.testing.assert_allclose(vs, expected, rtol=1e-10, atol=1e-10)
    expected_next = np.concatenate([expected[1:], bootstrap_value[None]], axis=0)
    np.testing.assert_allclose(pg, rewards + discounts * expected_next - values,
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k", [1, 4, 9])
def test_splitting_an_unroll_at_an_episode_end_changes_nothing(k):
    """discount_{k-1} = 0: the first k steps do not see the rest of the unroll, so computing
    [0, k) (bootstrapped with any value) and [k, T) separately gives the same outputs."""
    T, B = 10, 5
    log_rhos, discounts, rewards, values, bootstrap_value = make_inputs(T, B, seed=k, p_done=0.1)
    discounts[k - 1] = 0.0
    vs, pg = run(log_rhos, discounts, rewards, values, bootstrap_value,
                 clip_rho_threshold=2.0, clip_pg_rho_threshold=0.5)

    junk_bootstrap = np.full((B,), 1e3)
    vs_a, pg_a = run(log_rhos[:k], discounts[:k], rewards[:k], values[:k], junk_bootstrap,
                     clip_rho_threshold=2.0, clip_pg_rho_threshold=0.5)
    np.testing.assert_allclose(vs[:k], vs_a, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pg[:k], pg_a, rtol=1e-12, atol=1e-12)
    if k < T:
        vs_b, pg_b = run(log_rhos[k:], discounts[k:], rewards[k:], values[k:], bootstrap_value,
                         clip_rho_threshold=2.0, clip_pg_rho_threshold=0.5)
        np.testing.assert_allclose(vs[k:], vs_b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(pg[k:], pg_b, rtol=1e-12, atol=1e-12)


def test_no_clipping_equals_huge_thresholds():
    inputs = make_inputs(8, 3, seed=11)
    vs_none, pg_none = run(*inputs, clip_rho_threshold=None, clip_pg_rho_threshold=None)
    vs_big, pg_big = run(*inputs, clip_rho_threshold=1e9, clip_pg_rho_threshold=1e9)
    vs_one, _ = run(*inputs)
    np.testing.assert_allclose(vs_none, vs_big, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pg_none, pg_big, rtol=1e-12, atol=1e-12)
    assert not np.allclose(vs_none, vs_one)  # the inputs do make clipping matter


def test_outputs_carry_no_gradient_and_inputs_are_not_modified():
    inputs = [torch.tensor(x, requires_grad=True) for x in make_inputs(6, 3, seed=5)]
    before = [x.detach().clone() for x in inputs]
    out = vtrace.from_importance_weights(*inputs)
    for x in out:
        assert not x.requires_grad and x.grad_fn is None
    for x, x0 in zip(inputs, before):
        assert torch.equal(x.detach(), x0)
    _, truncated, final_values = make_truncations(6, 3, seed=5)
    truncated = torch.as_tensor(truncated)
    final_values = torch.tensor(final_values, requires_grad=True)
    before_final = final_values.detach().clone()
    out = vtrace.from_importance_weights(*inputs, truncated=truncated, final_values=final_values)
    assert truncated.any()
    for x in out:
        assert not x.requires_grad and x.grad_fn is None
    assert torch.equal(final_values.detach(), before_final)


def test_shape_validation():
    T, B = 4, 3
    good = dict(log_rhos=torch.zeros(T, B), discounts=torch.zeros(T, B), rewards=torch.zeros(T, B),
                values=torch.zeros(T, B), bootstrap_value=torch.zeros(B))
    vtrace.from_importance_weights(**good)  # no error
    bad_cases = [
        ("log_rhos", torch.zeros(T), r"log_rhos must be \[T, B\]"),
        ("log_rhos", torch.zeros(T, B, 1), r"log_rhos must be \[T, B\]"),
        ("discounts", torch.zeros(T, B + 1), r"discounts must be \[T, B\] = \(4, 3\)"),
        ("rewards", torch.zeros(T + 1, B), r"rewards must be \[T, B\]"),
        ("values", torch.zeros(T, B, 1), r"values must be \[T, B\]"),
        ("bootstrap_value", torch.zeros(1, B), r"bootstrap_value must be \[B\] = \(3,\)"),
        ("bootstrap_value", torch.zeros(B + 1), r"bootstrap_value must be \[B\]"),
    ]
    for name, value, match in bad_cases:
        with pytest.raises(ValueError, match=match):
            vtrace.from_importance_weights(**{**good, name: value})
    with pytest.raises(ValueError, match="truncated and final_values go together"):
        vtrace.from_importance_weights(**good, truncated=torch.zeros(T, B, dtype=torch.bool))
    with pytest.raises(ValueError, match="truncated and final_values go together"):
        vtrace.from_importance_weights(**good, final_values=torch.zeros(T, B))
    with pytest.raises(ValueError, match=r"final_values must be \[T, B\] = \(4, 3\)"):
        vtrace.from_importance_weights(**good, truncated=torch.zeros(T, B, dtype=torch.bool),
                                       final_values=torch.zeros(B))
    with pytest.raises(ValueError, match=r"truncated must be \[T, B\]"):
        vtrace.from_importance_weights(**good, truncated=torch.zeros(T + 1, B, dtype=torch.bool),
                                       final_values=torch.zeros(T, B))
    with pytest.raises(ValueError, match="truncated must be a bool tensor"):
        vtrace.from_importance_weights(**good, truncated=torch.zeros(T, B), final_values=torch.zeros(T, B))
    with pytest.raises(ValueError, match="clip_rho_threshold must be a positive number or None"):
        vtrace.from_importance_weights(**good, clip_rho_threshold=0.0)
    with pytest.raises(ValueError, match="clip_pg_rho_threshold"):
        vtrace.from_importance_weights(**good, clip_pg_rho_threshold=-1.0)


# -- lambda (IMPALA, Remark 2) ------------------------------------------------------------------------

def _random_inputs(seed, T=7, B=4, off_policy=True):
    g = np.random.default_rng(seed)
    log_rhos = g.normal(0, 0.7, (T, B)) if off_policy else np.zeros((T, B))
    discounts = 0.95 * (g.random((T, B)) > 0.15)
    rewards = g.normal(0, 1, (T, B))
    values = g.normal(0, 1, (T, B))
    boot = g.normal(0, 1, B)
    truncated = (g.random((T, B)) > 0.85) & (discounts > 0)
    final_values = g.normal(0, 1, (T, B))
    return log_rhos, discounts, rewards, values, boot, truncated, final_values


def _torch_vtrace(inputs, lam, **kw):
    log_rhos, discounts, rewards, values, boot, truncated, final_values = (torch.as_tensor(x) for x in inputs)
    return vtrace.from_importance_weights(log_rhos, discounts, rewards, values, boot, truncated=truncated.bool(),
                                          final_values=final_values, lambda_=lam, **kw)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
@pytest.mark.parametrize("seed", range(3))
def test_lambda_matches_naive_reference(lam, seed):
    inputs = _random_inputs(seed)
    out = _torch_vtrace(inputs, lam)
    ref_vs, ref_pg = naive_vtrace(*inputs[:5], truncated=inputs[5], final_values=inputs[6], lam=lam)
    np.testing.assert_allclose(out.vs.numpy(), ref_vs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out.pg_advantages.numpy(), ref_pg, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("lam", [0.0, 0.7, 1.0])
def test_lambda_on_policy_targets_are_lambda_returns(lam):
    """On-policy (rho = 1), v_s is the lambda-return G_s = r_s + g_s ((1 - lam) V(x_{s+1}) + lam G_{s+1}),
    G_T = V(x_T) (no truncation here, so the recursion is the textbook one)."""
    log_rhos, discounts, rewards, values, boot, _, _ = _random_inputs(7, off_policy=False)
    out = vtrace.from_importance_weights(*(torch.as_tensor(x) for x in (log_rhos, discounts, rewards, values, boot)),
                                         lambda_=lam)
    T, B = rewards.shape
    V = np.concatenate([values, boot[None]])
    G = np.zeros((T + 1, B))
    G[T] = boot
    for s in reversed(range(T)):
        G[s] = rewards[s] + discounts[s] * ((1 - lam) * V[s + 1] + lam * G[s + 1])
    np.testing.assert_allclose(out.vs.numpy(), G[:T], rtol=1e-10, atol=1e-10)


def test_lambda_zero_is_one_step_td():
    log_rhos, discounts, rewards, values, boot, _, _ = _random_inputs(3)
    out = vtrace.from_importance_weights(*(torch.as_tensor(x) for x in (log_rhos, discounts, rewards, values, boot)),
                                         lambda_=0.0)
    V1 = np.concatenate([values[1:], boot[None]])
    rho = np.minimum(1.0, np.exp(log_rhos))
    np.testing.assert_allclose(out.vs.numpy(), values + rho * (rewards + discounts * V1 - values), rtol=1e-10)


def test_lambda_out_of_range_is_refused():
    x = torch.zeros(2, 1)
    with pytest.raises(ValueError, match=r"lambda_=1.5 must be in \[0, 1\]"):
        vtrace.from_importance_weights(x, x, x, x, torch.zeros(1), lambda_=1.5)
