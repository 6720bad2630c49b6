"""Truncation is not termination, end to end (Pardo et al. 2018, "Time Limits in Reinforcement
Learning"): the env adapters report the two kinds of episode end apart and keep a truncated
episode's final observation; the actor stores the behaviour network's value of that observation in
the unroll; the learner bootstraps from it (and from nothing at a termination)."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces

from kickstart.config import EnvConfig, LearnerConfig
from kickstart.envs import env_spec, make_batched_env
from kickstart.envs.batched import env_seeds
from kickstart.learner import Learner, vtrace_targets
from kickstart.methods import load_config
from kickstart.nets import build_net
from kickstart.runtime.actor import assign_tasks
from kickstart.runtime.unroll import Actor, allocate, net_inputs, unroll_fields
from kickstart.train import net_num_logits

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# The learner's V-trace targets on a golden unroll, against a naive loop over the unroll layout

def naive_unroll_targets(first, truncated, final_value, reward, values, log_rhos, gamma, reward_clip,
                         rho_bar=1.0, pg_rho_bar=1.0):
    """IMPALA eq. (1) read straight off the unroll layout (kickstart/runtime/unroll.py), lambda = 1:

        v_t = V(x_t) + sum_{s=t}^{n-1} (prod_{i=t}^{s-1} gamma c_i) delta_s,
        delta_s = rho_s (r_{s+1} + B_s - V(x_s)),

    where r_{s+1} = clip(reward[s+1]) and the sum stops at the end of x_t's episode, at the first
    s >= t with first[s+1] (n = s + 1), or at the unroll's end (n = T). The bootstrap B_s of the
    transition s -> s+1 is 0 if it terminates (first[s+1] and not truncated[s+1]),
    gamma * final_value[s+1] if it is truncated (the value of the cut episode's final observation),
    and gamma * V(x_{s+1}) otherwise. The advantage is rho^pg_s (r_{s+1} + B'_s - V(x_s)), with v_{s+1}
    in place of V(x_{s+1}) in B'_s (v_T = V(x_T)). Arrays are [T+1, B]; log_rhos [T, B]."""
    T, B = log_rhos.shape
    ratio = np.exp(log_rhos)
    rho, c, rho_pg = np.minimum(rho_bar, ratio), np.minimum(1.0, ratio), np.minimum(pg_rho_bar, ratio)
    r = np.clip(reward, -reward_clip, reward_clip)

    def boot(s, b, v):  # B_s with v(x_{s+1}) = v
        if first[s + 1, b]:
            return gamma * final_value[s + 1, b] if truncated[s + 1, b] else 0.0
        return gamma * v

    vs = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            total, coef = values[t, b], 1.0
            for s in range(t, T):
                total += coef * rho[s, b] * (r[s + 1, b] + boot(s, b, values[s + 1, b]) - values[s, b])
                if first[s + 1, b]:
                    break
                coef *= gamma * c[s, b]
            vs[t, b] = total
    pg = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            v_next = vs[t + 1, b] if t + 1 < T else values[T, b]
            pg[t, b] = rho_pg[t, b] * (r[t + 1, b] + boot(t, b, v_next) - values[t, b])
    return vs, pg


# T = 6, three envs. Env 0: a truncation at entry 2 and a termination at entry 4. Env 1: a
# termination at entry 2, a truncation at entry 3 (an episode of one step) and one at the last
# entry (so the unroll's bootstrap value is not read). Env 2: no end. Entry 0 starts episodes, with
# junk in truncated / final_value that must not be read (it belongs to the previous unroll).
GOLDEN_FIRST = [[1, 1, 1], [0, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0]]
GOLDEN_TRUNCATED = [[1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0]]
GOLDEN_FINAL_VALUE = [[9.0, 9.0, 9.0], [0, 0, 0], [2.5, 0, 0], [0, -1.5, 0], [0, 0, 0], [0, 0, 0],
                      [0, 4.0, 0]]
GOLDEN_REWARD = [[7.0, 7.0, 7.0], [0.5, -0.2, 3.0], [1.0, 1.0, 0.0], [-0.3, 0.4, 0.1],
                 [2.0, -1.0, 0.2], [0.0, 0.3, -0.4], [0.6, 1.0, 0.0]]
GOLDEN_VALUES = [[0.3, -0.2, 1.0], [0.8, 0.1, 0.9], [-0.4, 1.2, 0.7], [0.2, -0.6, 0.5],
                 [1.1, 0.4, 0.3], [0.0, 0.9, 0.1], [-0.7, 2.0, 0.6]]
GOLDEN_LOG_RHOS = [[0.0, 0.8, -0.5], [-0.9, 0.0, 1.2], [0.4, -1.5, 0.0], [1.0, 0.3, -0.2],
                   [-0.3, -0.7, 0.6], [0.2, 1.4, -1.1]]


def golden_batch(dtype=torch.float64):
    return {"first": torch.tensor(GOLDEN_FIRST, dtype=torch.bool),
            "truncated": torch.tensor(GOLDEN_TRUNCATED, dtype=torch.bool),
            "final_value": torch.tensor(GOLDEN_FINAL_VALUE, dtype=dtype),
            "reward": torch.tensor(GOLDEN_REWARD, dtype=dtype)}


@pytest.mark.parametrize("rho_bar,pg_rho_bar", [(1.0, 1.0), (2.0, 0.5)])
def test_learner_targets_on_a_golden_unroll_match_the_naive_loop(rho_bar, pg_rho_bar):
    cfg = LearnerConfig(discount=0.9, reward_clip=1.0, clip_rho_threshold=rho_bar, clip_pg_rho_threshold=pg_rho_bar)
    batch = golden_batch()
    values = torch.tensor(GOLDEN_VALUES, dtype=torch.float64)
    log_rhos = torch.tensor(GOLDEN_LOG_RHOS, dtype=torch.float64)
    vt = vtrace_targets(batch, log_rhos, values, cfg)
    ref_vs, ref_pg = naive_unroll_targets(
        np.array(GOLDEN_FIRST, bool), np.array(GOLDEN_TRUNCATED, bool), np.array(GOLDEN_FINAL_VALUE),
        np.array(GOLDEN_REWARD), np.array(GOLDEN_VALUES), np.array(GOLDEN_LOG_RHOS), 0.9, 1.0, rho_bar, pg_rho_bar)
    np.testing.assert_allclose(vt.vs.numpy(), ref_vs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(vt.pg_advantages.numpy(), ref_pg, rtol=1e-12, atol=1e-12)
    # Spot checks by hand (rho_bar = 1): env 1's one-step episode x_2 -> x'_3 (rho = c = e^-1.5),
    # v_2 = V(x_2) + rho (r + 0.9 * -1.5 - V(x_2)) = 1.2 + 0.22313 * (0.4 - 1.35 - 1.2).
    if rho_bar == 1.0:
        assert vt.vs[2, 1].item() == pytest.approx(1.2 + np.exp(-1.5) * (0.4 - 1.35 - 1.2), abs=1e-12)
        # env 0, x_3 -> x_4 terminates: v_3 = V(x_3) + 1 * (clip(2.0) + 0 - V(x_3)) = 1.
        assert vt.vs[3, 0].item() == pytest.approx(1.0, abs=1e-12)
    # The truncations matter: read as terminations (the learner before truncations), they differ.
    as_terminations = dict(batch, truncated=torch.zeros_like(batch["truncated"]))
    vt_term = vtrace_targets(as_terminations, log_rhos, values, cfg)
    differ = ~torch.isclose(vt.vs, vt_term.vs)
    assert differ[:, 0].any() and differ[:, 1].any() and not differ[:, 2].any()


def test_batch_without_truncation_fields_has_terminations_only():
    """Callers that build batches by hand (without the two fields) get the old targets."""
    cfg = LearnerConfig(discount=0.9)
    values = torch.tensor(GOLDEN_VALUES, dtype=torch.float64)
    log_rhos = torch.tensor(GOLDEN_LOG_RHOS, dtype=torch.float64)
    old = {k: v for k, v in golden_batch().items() if k in ("first", "reward")}
    zeroed = dict(golden_batch(), truncated=torch.zeros(7, 3, dtype=torch.bool))
    a, b = vtrace_targets(old, log_rhos, values, cfg), vtrace_targets(zeroed, log_rhos, values, cfg)
    assert torch.equal(a.vs, b.vs) and torch.equal(a.pg_advantages, b.pg_advantages)


# ---------------------------------------------------------------------------------------------
# With exact values, a truncation bootstrapped from the final observation changes nothing

CHAIN_GAMMA = 0.9


def chain_reward(k):
    """Reward on leaving state k of an infinite deterministic chain 0 -> 1 -> 2 -> ..."""
    return 1.0 + np.sin(k)


def chain_value(k):
    """V(k) = sum_j gamma^j r_{k+j}, to float64 precision (gamma^800 < 1e-36)."""
    j = np.arange(800)
    return float(np.sum(CHAIN_GAMMA ** j * chain_reward(k + j)))


@pytest.mark.parametrize("noisy", [False, True])
def test_truncating_with_the_exact_final_value_equals_the_untruncated_target(noisy):
    """Every episode starts in state 0. Unroll A never ends; unroll B is cut by a time limit after
    L steps (x'_L = state L, then state 0 again). With V exact from state L on (and anything before
    it, and anything in B's next episode, when ``noisy``) and any importance ratios, B's targets on
    its first L steps equal A's: the time limit is invisible to learning. As a termination
    (bootstrap 0), or bootstrapped from the next episode's first state (V(0) != V(L)), they differ."""
    T, L = 12, 5
    rng = np.random.default_rng(int(noisy))
    cfg = LearnerConfig(discount=CHAIN_GAMMA, reward_clip=0.0, clip_rho_threshold=1.0, clip_pg_rho_threshold=1.0)
    log_rhos = torch.tensor(rng.uniform(-1.5, 1.5, size=(T, 1)))
    exact = np.array([chain_value(k) for k in range(T + 1)])
    noise = rng.normal(size=L) * 2.0 if noisy else np.zeros(L)

    def unroll(states, first, truncated, final_value):
        values = np.array([exact[k] for k in states])
        values[:L] += noise                  # both unrolls share states 0..L-1 at entries 0..L-1
        reward = np.zeros(T + 1)
        reward[1:] = [chain_reward(k) for k in states[:-1]]
        batch = {"first": torch.tensor(first)[:, None], "truncated": torch.tensor(truncated)[:, None],
                 "final_value": torch.tensor(final_value)[:, None], "reward": torch.tensor(reward)[:, None]}
        return batch, torch.tensor(values)[:, None]

    flags = np.zeros(T + 1, bool)
    a_batch, a_values = unroll(list(range(T + 1)), np.r_[True, flags[1:]], flags, np.zeros(T + 1))
    b_states = list(range(L)) + list(range(T + 1 - L))
    b_first, b_trunc, b_final = flags.copy(), flags.copy(), np.zeros(T + 1)
    b_first[[0, L]] = True
    b_trunc[L] = True
    b_final[L] = exact[L]
    b_batch, b_values = unroll(b_states, b_first, b_trunc, b_final)
    assert b_values[L].item() == exact[0] != exact[L]
    if noisy:                               # the next episode's values do not matter either
        b_values[L + 1:] += torch.tensor(rng.normal(size=(T - L, 1)) * 2.0)

    a = vtrace_targets(a_batch, log_rhos, a_values, cfg)
    b = vtrace_targets(b_batch, log_rhos, b_values, cfg)
    torch.testing.assert_close(b.vs[:L], a.vs[:L], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b.pg_advantages[:L], a.pg_advantages[:L], rtol=1e-12, atol=1e-12)
    if not noisy:  # exact values everywhere: the targets are the values, the advantages 0
        torch.testing.assert_close(b.vs[:, 0], b_values[:T, 0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(b.pg_advantages, torch.zeros(T, 1, dtype=torch.float64), rtol=0, atol=1e-12)

    terminated = dict(b_batch, truncated=torch.zeros_like(b_batch["truncated"]))
    wrong_value = dict(b_batch, final_value=torch.where(b_batch["truncated"], b_values[L], 0.0))
    for bad in (terminated, wrong_value):
        assert not torch.allclose(vtrace_targets(bad, log_rhos, b_values, cfg).vs[L - 1], a.vs[L - 1])


# ---------------------------------------------------------------------------------------------
# The actor: V(x') from the behaviour network, with the core state that saw x'

class RecordFinalObs:
    """A BatchedEnv that keeps every step's ``final_obs`` (a copy), for the tests to read."""

    def __init__(self, env):
        self.env = env
        self.final_obs: list[np.ndarray | None] = []

    def __getattr__(self, name):
        return getattr(self.env, name)

    def step_full(self, actions):
        r = self.env.step_full(actions)
        self.final_obs.append(None if r.final_obs is None else r.final_obs.copy())
        return r


def _cfg(tmp_path, *overrides):
    """MinAtar Breakout (or, with ``env.id=CartPole-v1``, CartPole: a reward at every step, so
    that the last-reward input at x' matters), episodes cut at 5 steps, unrolls of 8."""
    return load_config(None, ["env.id=minatar:Breakout", "env.max_episode_steps=5", "net.hidden_size=32",
                              "net.lstm_size=16", "net.mlp_sizes=[32]", "learner.unroll_length=8",
                              "runtime.envs_per_actor=4", f"run.out_dir={tmp_path}", *overrides])


def _collect(cfg, unrolls, seed=3):
    """The stream of ``unrolls`` unrolls of one actor (entries 0..T, then 1..T of each next one),
    the per-step final observations (stream entry j >= 1 <- final_obs[j - 1]), and the net."""
    spec = env_spec(cfg.env)
    torch.manual_seed(seed)
    net = build_net(cfg.net, spec)
    env = RecordFinalObs(make_batched_env(cfg.env, assign_tasks(0, cfg.runtime.envs_per_actor, spec.num_tasks), seed))
    fields = unroll_fields(spec, net_num_logits(net), net.initial_state(1))
    actor = Actor(env, net, cfg.learner.unroll_length, seed)
    bufs = []
    for _ in range(unrolls):
        buf = allocate(fields, cfg.learner.unroll_length, cfg.runtime.envs_per_actor)
        actor.collect(buf)
        bufs.append(buf)
    stream = {k: torch.cat([bufs[0][k]] + [b[k][1:] for b in bufs[1:]]) for k, f in fields.items() if f.per_step}
    actor.close()
    return stream, env.final_obs, net, bufs


@pytest.mark.parametrize("env_id", ["minatar:Breakout", "CartPole-v1"])
@pytest.mark.parametrize("core", ["ff", "lstm"])
def test_actor_final_value_is_the_value_of_the_final_obs_from_the_state_that_saw_it(tmp_path, core, env_id):
    """For every truncation in the stream (across unroll boundaries), the stored final_value equals
    the network's value at x' when it runs over the whole cut episode x_s, ..., x_{j-1}, x' from the
    episode's start: the value the learner's net would give x' had the episode gone on."""
    cfg = _cfg(tmp_path, f"net.core={core}", f"env.id={env_id}")
    stream, finals, net, _ = _collect(cfg, unrolls=4)
    first, truncated, final_value = stream["first"], stream["truncated"], stream["final_value"]
    assert truncated[1:].sum() >= 8 and bool((first & ~truncated)[1:].any()) is False  # all cut at 5 steps
    assert torch.equal(truncated, truncated & first)
    assert torch.all(final_value[~truncated] == 0)
    checked, state_matters = 0, False
    for j, i in zip(*torch.nonzero(truncated[1:], as_tuple=True)):
        j, i = int(j) + 1, int(i)
        s = int(torch.nonzero(first[:j, i])[-1])                      # the cut episode's start
        x_final = torch.from_numpy(finals[j - 1][i])
        assert not torch.equal(x_final, stream["obs"][j, i])         # the reset replaced it
        obs = torch.cat([stream["obs"][s:j, i], x_final[None]])[:, None]
        last_action = torch.cat([stream["last_action"][s:j, i], stream["action"][j - 1, i][None]])[:, None]
        reward = torch.cat([stream["reward"][s:j, i], stream["reward"][j, i][None]])[:, None]
        ep_first = torch.zeros(j - s + 1, 1, dtype=torch.bool)
        ep_first[0] = True
        with torch.no_grad():
            out, _ = net(*net_inputs(obs, last_action, reward, ep_first), net.initial_state(1))
            alone, _ = net(*net_inputs(x_final[None, None], last_action[-1:], reward[-1:],
                                       torch.ones(1, 1, dtype=torch.bool)), net.initial_state(1))
        assert final_value[j, i].item() == pytest.approx(out.baseline[-1, 0].item(), abs=1e-5)
        state_matters |= abs(alone.baseline[0, 0].item() - out.baseline[-1, 0].item()) > 1e-3
        checked += 1
    assert checked >= 8 and j > cfg.learner.unroll_length         # some after the first unroll
    assert state_matters == (core == "lstm")                      # the LSTM case tests the state


def test_episode_statistics_count_truncated_episodes(tmp_path):
    """A truncated episode is a finished game episode: reported where it ends (``ep_*`` columns
    0..k-1 for the k envs whose episode ended there, in env order), with its length (the limit) and
    its whole raw return."""
    cfg = _cfg(tmp_path, "env.max_episode_steps=6")
    stream, _, _, bufs = _collect(cfg, unrolls=3)
    T, truncated_seen = cfg.learner.unroll_length, 0
    reported = {i: [] for i in range(cfg.runtime.envs_per_actor)}
    for buf in bufs:
        for t in range(1, T + 1):
            ended = torch.nonzero(buf["first"][t]).flatten().tolist()
            assert buf["ep_end"][t].sum() == len(ended) and buf["ep_end"][t, :len(ended)].all()
            for n, i in enumerate(ended):
                if buf["truncated"][t, i]:
                    assert int(buf["ep_length"][t, n]) == 6
                    truncated_seen += 1
                reported[i].append(float(buf["ep_return"][t, n]))
    assert truncated_seen >= 4
    for i, rets in reported.items():   # each return is the sum of the episode's rewards
        starts = torch.nonzero(stream["first"][:, i]).flatten().tolist()
        sums = [float(stream["reward"][a + 1:b + 1, i].sum()) for a, b in zip(starts, starts[1:])]
        assert rets == pytest.approx(sums) and len(rets) >= 3


def test_learner_reads_the_truncations(tmp_path):
    """The learner's loss on an actor's batch depends on the truncation fields (the targets of the
    steps before each cut), and with the actor's own parameters the logits are reproduced (rho = 1)."""
    cfg = _cfg(tmp_path, "net.core=lstm")
    _, _, net, bufs = _collect(cfg, unrolls=2)
    batch = bufs[1]
    assert batch["truncated"][1:].any()
    learner = Learner(net, cfg.learner, 10_000, device=torch.device("cpu"))
    _, m = learner.loss(batch, 0)
    _, m_term = learner.loss(dict(batch, truncated=torch.zeros_like(batch["truncated"])), 0)
    assert m["vtrace/rho_mean"] == pytest.approx(1.0, abs=1e-5)
    assert m["value/target_mean"] != pytest.approx(m_term["value/target_mean"], abs=1e-6)
    assert np.isfinite(m["loss/total"])


# ---------------------------------------------------------------------------------------------
# Env adapters: truncated, not terminated, and the final observation kept

def test_gym_time_limit_truncates_and_keeps_the_final_obs():
    """CartPole-v1 with env.max_episode_steps=5 (balanced by alternating pushes, so it never
    falls): truncated at step 5, the final obs is the one a plain Gymnasium env reaches."""
    env = make_batched_env(EnvConfig(id="CartPole-v1", max_episode_steps=5), [0, 0], seed=0)
    env.reset()
    actions = np.array([[0, 1], [1, 0], [0, 1], [1, 0], [0, 1]])
    for a in actions[:-1]:
        r = env.step_full(a)
        assert not r.terminated.any() and not r.truncated.any() and r.final_obs is None
    r = env.step_full(actions[-1])
    assert r.truncated.tolist() == [True, True] and not r.terminated.any()
    assert [(e.length, e.ret) for e in r.episodes] == [(5, 5.0), (5, 5.0)]
    for i in range(2):
        ref = gymnasium.make("CartPole-v1")
        ref.reset(seed=env_seeds(0, 2)[i])
        for a in actions[:, i]:
            ref_obs = ref.step(int(a))[0]
        np.testing.assert_array_equal(r.final_obs[i], ref_obs)
        assert np.abs(r.obs[i]).max() <= 0.05 and not np.array_equal(r.obs[i], r.final_obs[i])
    env.close()


class _Count(gymnasium.Env):
    """Observation: the step count; terminates at step 3."""

    observation_space = spaces.Box(0, 100, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(1, self.t, np.float32), 1.0, self.t == 3, False, {}


gymnasium.register("KickstartTestCount-v0", entry_point=_Count)


def test_gym_terminated_and_truncated_on_one_step_is_a_termination():
    for limit, kinds in ((3, ("terminated", 3.0)), (2, ("truncated", 2.0)), (10, ("terminated", 3.0))):
        env = make_batched_env(EnvConfig(id="KickstartTestCount-v0", max_episode_steps=limit), [0], seed=0)
        env.reset()
        for _ in range(limit):
            r = env.step_full(np.zeros(1, np.int64))
            if r.done.any():
                break
        kind, final = kinds
        assert r.terminated[0] == (kind == "terminated") and r.truncated[0] == (kind == "truncated")
        if kind == "truncated":
            assert r.final_obs[0].tolist() == [final] and r.obs[0].tolist() == [0.0]
        else:
            assert r.final_obs is None
        assert r.episodes[0].length == final
        _, _, done, _ = env.step(np.zeros(1, np.int64))     # the 4-tuple step still works
        assert done.tolist() == [False]


def test_minatar_max_episode_steps_is_a_truncation_with_the_final_obs():
    """Freeway never ends within 3 steps: with max_episode_steps=3 every episode is truncated, and
    its final obs is what an uncapped env with the same seed and actions shows at step 3."""
    actions = np.random.default_rng(0).integers(0, 6, (3, 2))
    capped = make_batched_env(EnvConfig(id="minatar:Freeway", max_episode_steps=3), [0, 0], seed=4)
    free = make_batched_env(EnvConfig(id="minatar:Freeway"), [0, 0], seed=4)
    first_obs = capped.reset()
    free.reset()
    for a in actions:
        r = capped.step_full(a)
        ref = free.step_full(a)
    assert r.truncated.all() and not r.terminated.any() and not ref.done.any()
    np.testing.assert_array_equal(r.final_obs, ref.obs)
    assert not np.array_equal(r.final_obs, r.obs) and not np.array_equal(first_obs, ref.obs)
    assert [e.length for e in r.episodes] == [3, 3]


def test_minatar_terminations_and_truncations_apart():
    """Breakout under random play: episodes end by a game over before 20 steps or are cut at 20;
    never both at once, the final obs only with a truncation, every end an Episode record."""
    env = make_batched_env(EnvConfig(id="minatar:Breakout", max_episode_steps=20), [0] * 4, seed=0)
    env.reset()
    length = np.zeros(4, int)
    kinds = {"terminated": 0, "truncated": 0}
    for a in np.random.default_rng(1).integers(0, 6, (200, 4)):
        r = env.step_full(a)
        length += 1
        assert not (r.terminated & r.truncated).any()
        assert (r.final_obs is not None) == bool(r.truncated.any())
        assert [e.env_index for e in r.episodes] == np.flatnonzero(r.done).tolist()
        assert (length[r.truncated] == 20).all() and (length[r.terminated] <= 20).all()
        kinds["terminated"] += int(r.terminated.sum())
        kinds["truncated"] += int(r.truncated.sum())
        length[r.done] = 0
    assert kinds["terminated"] >= 2 and kinds["truncated"] >= 2, kinds


def test_atari_frame_cap_is_a_truncation_with_the_final_obs():
    """max_episode_frames=200 (50 steps): truncated, not terminated, and the final obs is the old
    game's: its frame stack is the one an uncapped env with the same seed and actions shows at step
    50 (the newest frame is ALE's last frame at the cap, which can catch a moving ball a frame or
    two earlier than the uncapped env's 4-frame repeat; compared loosely)."""
    actions = np.random.default_rng(0).integers(0, 4, (50, 2))
    capped = make_batched_env(EnvConfig(id="atari:Breakout", max_episode_frames=200), [0, 0], seed=0)
    free = make_batched_env(EnvConfig(id="atari:Breakout"), [0, 0], seed=0)
    capped.reset()
    free.reset()
    for t, a in enumerate(actions):
        r = capped.step_full(a)
        ref = free.step_full(a)
        assert not r.terminated.any() and r.truncated.all() == (t == 49) and not ref.done.any()
        if t < 49:
            np.testing.assert_array_equal(r.obs, ref.obs)
    assert r.final_obs is not None and r.final_obs[:, :3].min(axis=(1, 2, 3)).tolist() == [0, 0]
    np.testing.assert_array_equal(r.final_obs[:, :3], ref.obs[:, :3])
    assert np.abs(r.final_obs[:, 3].astype(int) - ref.obs[:, 3]).mean() < 0.5
    assert r.obs[:, :3].max() == 0 and r.final_obs[:, :3].max() > 0   # obs is the next game's first
    assert [(e.length, e.frames) for e in r.episodes] == [(50, 200), (50, 200)]
    capped.close()
    free.close()


def test_atari_episodic_life_losses_terminate_and_the_cap_truncates():
    """With env.episodic_life, a life lost is a termination (nothing bootstrapped, the game goes on,
    no final obs needed); the frame cap still truncates."""
    env = make_batched_env(EnvConfig(id="atari:Breakout", episodic_life=True, max_episode_frames=600),
                           [0], seed=0)
    env.reset()
    lives, truncations = 0, 0
    for t, a in enumerate(np.random.default_rng(0).integers(0, 4, (150, 1))):
        r = env.step_full(a)
        assert not (r.terminated & r.truncated).any()
        if r.terminated[0]:
            lives += 1
            assert not r.episodes and r.final_obs is None     # a life, not the game
        if r.truncated[0]:
            truncations += 1
            assert t == 149 and r.episodes[0].length == 150 and r.final_obs is not None
    assert lives >= 2 and truncations == 1
    env.close()


def test_minatar5_suite_truncations_keep_padded_final_obs():
    spec = env_spec(EnvConfig(id="minatar5"))
    task_ids = [0, 1, 2, 3, 4]
    env = make_batched_env(EnvConfig(id="minatar5", max_episode_steps=4), task_ids, seed=0, spec=spec)
    env.reset()
    seen = np.zeros(5, bool)
    for a in np.random.default_rng(0).integers(0, 6, (12, 5)):
        r = env.step_full(a)
        if r.truncated.any():
            for i in np.flatnonzero(r.truncated):
                c = [4, 4, 7, 10, 6][i]
                assert r.final_obs[i, :c].max() == 1 and r.final_obs[i, c:].max(initial=0) == 0
                seen[i] = True
        assert [e.task_id for e in r.episodes] == [task_ids[i] for i in np.flatnonzero(r.done)]
    assert seen[2] and seen.sum() >= 3   # Freeway always; most games survive 4 steps


def test_atari_suite_final_obs_rows_follow_the_envs():
    """Three envs in two ALE vector envs (Breakout, Pong, Breakout): the final obs of each env is
    its own (the frame stack shifted by one from its previous obs), placed at its position."""
    cfg = EnvConfig(id="atari5", max_episode_frames=40, noop_max=0)
    env = make_batched_env(cfg, [1, 0, 1], seed=0, spec=env_spec(cfg))
    prev = env.reset()
    for t in range(10):
        r = env.step_full(np.array([1, 1, 1]))
        if t < 9:
            assert not r.done.any()
            prev = r.obs
    assert r.truncated.all() and not r.terminated.any()
    for i in range(3):
        np.testing.assert_array_equal(r.final_obs[i, :3], prev[i, 1:])
    np.testing.assert_array_equal(r.final_obs[0], r.final_obs[2])      # same game, same actions
    assert not np.array_equal(r.final_obs[0], r.final_obs[1])
    env.close()
