"""Env families: shapes, action sets, frame counting, seeding, auto-reset, episodic life, errors."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from kickstart.config import EnvConfig
from kickstart.envs import (
    Episode,
    atari,
    env_spec,
    make_batched_env,
    minatar,
    resolve_tasks,
)
from kickstart.envs.batched import env_seeds
from kickstart.errors import UserError


def run(env, actions):
    """Reset, then step through ``actions`` [T, N]; returns stacked obs [T+1, ...], rewards, dones, episodes."""
    obs = [env.reset()]
    rewards, dones, episodes = [], [], []
    for a in actions:
        o, r, d, eps = env.step(a)
        obs.append(o)
        rewards.append(r)
        dones.append(d)
        episodes.append(eps)
    return np.stack(obs), np.stack(rewards), np.stack(dones), episodes


def check_step_types(env, obs, reward, done):
    n, spec = env.num_envs, env.spec
    assert obs.shape == (n, *spec.obs_shape) and obs.dtype == spec.np_obs_dtype
    assert reward.shape == (n,) and reward.dtype == np.float32
    assert done.shape == (n,) and done.dtype == np.bool_


# ---------------------------------------------------------------------------------------------
# MinAtar

MINATAR_CHANNELS = {"Asterix": 4, "Breakout": 4, "Freeway": 7, "Seaquest": 10, "SpaceInvaders": 6}


@pytest.mark.parametrize("game", list(MINATAR_CHANNELS))
def test_minatar_spec_and_observations(game):
    spec = env_spec(EnvConfig(id=f"minatar:{game.lower()}"))
    assert spec.obs_shape == (MINATAR_CHANNELS[game], 10, 10)
    assert (spec.obs_dtype, spec.obs_scale, spec.frames_per_step) == ("uint8", 1.0, 1)
    assert spec.action_nvec == (6,) and not spec.multi_discrete
    assert spec.action_meanings == ("NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE")
    assert spec.task_names == (f"minatar:{game}",)
    env = make_batched_env(EnvConfig(id=f"minatar:{game}"), [0, 0, 0], seed=1)
    obs = env.reset()
    assert obs.shape == (3, *spec.obs_shape) and obs.dtype == np.uint8
    for a in np.random.default_rng(0).integers(0, 6, (20, 3)):
        obs, reward, done, _ = env.step(a)
        check_step_types(env, obs, reward, done)
        assert set(np.unique(obs)) <= {0, 1} and obs.sum() > 0
    env.close()


def test_minatar_matches_minatar_environment():
    """Our loop over game objects reproduces ``minatar.Environment`` (sticky 0.1) step for step."""
    from minatar import Environment

    seed, actions = 3, np.random.default_rng(0).integers(0, 6, (400, 1))
    ours = make_batched_env(EnvConfig(id="minatar:Seaquest"), [0], seed)
    obs, rewards, dones, _ = run(ours, actions)
    ref = Environment("seaquest", sticky_action_prob=0.1)
    ref.seed(env_seeds(seed, 1)[0])
    ref.reset()
    ref_obs = [ref.state()]
    for a in actions[:, 0]:
        r, terminal = ref.act(int(a))
        if terminal:
            ref.reset()
        ref_obs.append(ref.state())
        assert r == rewards[len(ref_obs) - 2, 0] and terminal == dones[len(ref_obs) - 2, 0]
    np.testing.assert_array_equal(obs[:, 0], np.stack(ref_obs).transpose(0, 3, 1, 2).astype(np.uint8))
    assert dones.sum() >= 2  # the comparison went through auto-resets


def test_minatar_auto_reset_gives_fresh_episode_and_episode_record():
    env = make_batched_env(EnvConfig(id="minatar:Breakout"), [0] * 4, seed=0)
    env.reset()
    ret, length, seen = np.zeros(4), np.zeros(4, int), 0
    for a in np.random.default_rng(1).integers(0, 6, (200, 4)):
        obs, reward, done, episodes = env.step(a)
        ret += reward
        length += 1
        assert len(episodes) == done.sum()
        for i, ep in zip(np.flatnonzero(done), episodes):
            assert ep == Episode(task_id=0, ret=ret[i], length=length[i], frames=length[i], env_index=i)
            # Breakout's first frame: 3 full rows of bricks (channel 3), paddle mid-bottom, ball on row 3.
            assert obs[i, 3].sum() == 30 and obs[i, 3, 1:4].all()
            assert obs[i, 0, 9, 4] == 1 and obs[i, 1, 3].sum() == 1
            ret[i], length[i] = 0, 0
            seen += 1
    assert seen >= 4


def test_minatar_determinism_under_seed():
    actions = np.random.default_rng(0).integers(0, 6, (150, 3))
    cfg = EnvConfig(id="minatar:Asterix")
    a = run(make_batched_env(cfg, [0, 0, 0], seed=7), actions)
    b = run(make_batched_env(cfg, [0, 0, 0], seed=7), actions)
    c = run(make_batched_env(cfg, [0, 0, 0], seed=8), actions)
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(x, y)
    assert a[1].sum() + a[2].sum() > 0  # something happened
    assert not np.array_equal(a[0], c[0])
    # envs within one batch get different seeds
    assert not np.array_equal(a[0][:, 0], a[0][:, 1])


def test_minatar_sticky_actions():
    """Breakout's paddle starts at column 4; LEFT moves it unless the previous action (NOOP) sticks."""
    left = np.full((1, 8), 1)
    for sticky, col in ((0.0, 3), (1.0, 4)):
        env = make_batched_env(EnvConfig(id="minatar:Breakout", sticky_actions=sticky), [0] * 8, seed=0)
        env.reset()
        obs = env.step(left[0])[0]
        assert (obs[:, 0, 9, col] == 1).all()
    default = make_batched_env(EnvConfig(id="minatar:Breakout"), [0], seed=0)
    assert default._envs[0].sticky == minatar.DEFAULT_STICKY == 0.1


def test_minatar_max_episode_steps_truncates():
    env = make_batched_env(EnvConfig(id="minatar:Freeway", max_episode_steps=3), [0, 0], seed=0)
    _, _, dones, episodes = run(env, np.zeros((9, 2), np.int64))
    assert dones.tolist() == [[False, False], [False, False], [True, True]] * 3
    assert all(ep.length == 3 and ep.frames == 3 for eps in episodes for ep in eps)
    # the kind of end (tests/test_truncation.py checks the final observations)
    for t in range(3):
        r = env.step_full(np.zeros(2, np.int64))
        assert r.truncated.tolist() == [t == 2] * 2 and not r.terminated.any()
        assert r.done.tolist() == r.truncated.tolist()
        assert r.terminated.dtype == r.truncated.dtype == np.bool_


def test_actions_are_checked():
    env = make_batched_env(EnvConfig(id="minatar:Breakout"), [0, 0], seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, np.int64))
    env.reset()
    for bad in (np.zeros(3, np.int64), np.array([0, 6]), np.array([-1, 0]), np.zeros(2)):
        with pytest.raises(ValueError):
            env.step(bad)


# ---------------------------------------------------------------------------------------------
# Atari

def test_atari_pong_action_sets_and_factors():
    minimal = env_spec(EnvConfig(id="atari:pong"))
    full = env_spec(EnvConfig(id="atari:Pong", full_action_space=True))
    assert minimal.action_meanings == ("NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE")
    assert full.num_actions == 18 and full.action_meanings[:2] == ("NOOP", "FIRE")
    assert set(minimal.action_meanings) < set(full.action_meanings)
    for spec in (minimal, full):
        assert spec.obs_shape == (4, 84, 84) and spec.obs_dtype == "uint8"
        assert spec.obs_scale == pytest.approx(1 / 255) and spec.frames_per_step == 4
        assert spec.factor_sizes == (9, 2) and len(spec.action_factors) == spec.num_actions
        assert len(set(spec.action_factors)) == spec.num_actions  # no two actions share factors
        for name, (stick, fire) in zip(spec.action_meanings, spec.action_factors):
            rebuilt = (atari.JOYSTICK[stick] if stick else "") + ("FIRE" if fire else "")
            assert rebuilt == (name if name != "NOOP" else "")
    # the full set covers every (joystick, fire) pair exactly once
    assert sorted(full.action_factors) == [(s, f) for s in range(9) for f in range(2)]
    # ALE's own action list for the full set agrees with the spec
    env = make_batched_env(EnvConfig(id="atari:Pong", full_action_space=True), [0], seed=0)
    assert tuple(a.name for a in env._groups[0].env.ale.get_action_set()) == full.action_meanings
    env.close()


def test_atari_observations_and_frame_count():
    cfg = EnvConfig(id="atari:Breakout", max_episode_frames=200)
    env = make_batched_env(cfg, [0, 0], seed=0)
    obs, rewards, dones, episodes = run(env, np.random.default_rng(0).integers(0, 4, (60, 2)))
    assert obs.shape == (61, 2, 4, 84, 84) and obs.dtype == np.uint8
    assert obs[0, :, :3].max() == 0 and obs[0, :, 3].max() > 0  # first obs: zeros, then the frame
    assert dones[:49].sum() == 0 and dones[49].all()  # 200 frames = 50 steps, then truncation
    assert [len(e) for e in episodes[49:51]] == [2, 0]
    for ep in episodes[49]:
        assert (ep.task_id, ep.length, ep.frames) == (0, 50, 200)
    assert obs[50, :, :3].max() == 0  # obs at done is the next episode's first obs
    env.close()


def test_atari_noop_starts():
    """SpaceInvaders' aliens animate from the first frame, so no-op starts change the first obs."""
    def first_obs(noop_max, seed):
        env = make_batched_env(EnvConfig(id="atari:SpaceInvaders", noop_max=noop_max), [0] * 4, seed)
        obs = env.reset()
        obs = np.concatenate([obs, env.step(np.zeros(4, np.int64))[0]], axis=1)
        env.close()
        return obs

    with_noops = first_obs(30, seed=0)
    assert len({o.tobytes() for o in with_noops}) > 1  # envs differ
    assert not np.array_equal(with_noops, first_obs(30, seed=1))
    without = first_obs(0, seed=0)
    assert len({o.tobytes() for o in without}) == 1  # every env starts identically
    np.testing.assert_array_equal(without, first_obs(0, seed=5))


def test_atari_determinism_with_sticky_actions():
    cfg = EnvConfig(id="atari:Breakout", sticky_actions=0.25)
    actions = np.random.default_rng(0).integers(0, 4, (80, 2))
    a = run(make_batched_env(cfg, [0, 0], seed=3), actions)
    b = run(make_batched_env(cfg, [0, 0], seed=3), actions)
    c = run(make_batched_env(cfg, [0, 0], seed=4), actions)
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_atari_episodic_life():
    """A life loss ends a learning episode but not the game: same obs/rewards as without episodic
    life, ``done`` at each of Breakout's 5 lives, one Episode summing the whole game."""
    actions = np.random.default_rng(0).integers(0, 4, (1500, 1))
    envs = {flag: make_batched_env(EnvConfig(id="atari:Breakout", episodic_life=flag), [0], seed=0)
            for flag in (False, True)}
    for e in envs.values():
        e.reset()
    total, steps, dones, episode = 0.0, 0, 0, None
    for a in actions:
        o0, r0, d0, eps0 = envs[False].step(a)
        o1, r1, d1, eps1 = envs[True].step(a)
        np.testing.assert_array_equal(o0, o1)
        assert r0[0] == r1[0] and eps0 == eps1
        total, steps, dones = total + r1[0], steps + 1, dones + int(d1[0])
        assert d1[0] or not d0[0]
        if eps1:
            episode = eps1[0]
            break
    assert episode is not None, "Breakout with random actions should end within 1500 steps"
    assert dones == 5
    assert (episode.ret, episode.length, episode.frames) == (total, steps, 4 * steps)


# ---------------------------------------------------------------------------------------------
# Gymnasium

def test_gym_cartpole():
    spec = env_spec(EnvConfig(id="CartPole-v1"))
    assert (spec.obs_shape, spec.obs_dtype, spec.obs_scale) == ((4,), "float32", 1.0)
    assert spec.action_nvec == (2,) and spec.action_meanings == ("0", "1") and spec.frames_per_step == 1
    env = make_batched_env(EnvConfig(id="CartPole-v1"), [0, 0, 0], seed=0)
    obs, rewards, dones, episodes = run(env, np.random.default_rng(0).integers(0, 2, (100, 3)))
    assert obs.dtype == np.float32 and obs.shape == (101, 3, 4)
    assert dones.sum() >= 3
    for t, i in zip(*np.nonzero(dones)):
        assert np.abs(obs[t + 1, i]).max() <= 0.05  # CartPole starts in [-0.05, 0.05]^4
    ep = episodes[np.nonzero(dones[:, 0])[0][0]][0]
    assert ep.task_id == 0 and ep.length == ep.ret == np.nonzero(dones[:, 0])[0][0] + 1
    assert run(make_batched_env(EnvConfig(id="CartPole-v1"), [0, 0, 0], seed=0),
               np.random.default_rng(0).integers(0, 2, (100, 3)))[0].tobytes() == obs.tobytes()


def test_gym_max_episode_steps_and_acrobot_actions():
    spec = env_spec(EnvConfig(id="Acrobot-v1"))
    assert spec.action_nvec == (3,) and spec.action_meanings == ("0", "1", "2")
    env = make_batched_env(EnvConfig(id="Acrobot-v1", max_episode_steps=4), [0], seed=0)
    _, _, dones, episodes = run(env, np.zeros((8, 1), np.int64))
    assert dones[:, 0].tolist() == [False, False, False, True] * 2
    assert episodes[3] == [Episode(task_id=0, ret=-4.0, length=4, frames=4, env_index=0)]
    kinds = [(r.terminated[0], r.truncated[0]) for r in (env.step_full(np.zeros(1, np.int64)) for _ in range(4))]
    assert kinds == [(False, False)] * 3 + [(False, True)]  # a time limit, not a terminal state


class _ImageMultiDiscrete(gymnasium.Env):
    """A tiny env with an HxWxC uint8 image and MultiDiscrete actions (with non-zero starts)."""

    observation_space = spaces.Box(0, 255, (6, 5, 3), np.uint8)
    action_space = spaces.MultiDiscrete([3, 2], start=[1, -1])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(np.zeros(2, np.int64)), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action))
        self.t += 1
        return self._obs(np.asarray(action)), float(action.sum()), self.t == 3, False, {}

    def _obs(self, action):
        obs = np.zeros((6, 5, 3), np.uint8)
        obs[0, 0, :2] = action - self.action_space.start  # raw action back, channel c = dim c
        obs[5, 4, 2] = 200
        return obs


gymnasium.register("KickstartTestImageMD-v0", entry_point=_ImageMultiDiscrete)


def test_gym_image_obs_and_multidiscrete_actions():
    spec = env_spec(EnvConfig(id="KickstartTestImageMD-v0"))
    assert (spec.obs_shape, spec.obs_dtype) == ((3, 6, 5), "uint8")
    assert spec.multi_discrete and spec.action_nvec == (3, 2) and spec.action_shape == (2,)
    assert spec.action_meanings == ()
    env = make_batched_env(EnvConfig(id="KickstartTestImageMD-v0"), [0, 0], seed=0)
    assert env.reset()[:, 2, 5, 4].tolist() == [200, 200]
    obs, reward, done, _ = env.step(np.array([[2, 1], [0, 0]]))
    assert obs[:, :2, 0, 0].tolist() == [[2, 1], [0, 0]]  # channels-first, offsets undone
    assert reward.tolist() == [3.0 + 0.0, 1.0 - 1.0]  # env saw actions + start
    with pytest.raises(ValueError):
        env.step(np.array([[3, 0], [0, 0]]))


# ---------------------------------------------------------------------------------------------
# Bad input: one-line UserErrors that say what is valid

@pytest.mark.parametrize("env_id, words", [
    ("minatar:Pacman", ["minatar:Asterix", "minatar:SpaceInvaders"]),
    ("atari:Pongg", ["atari:Pong"]),
    ("minatar6", ["minatar:<Game>", "atari:<Game>", "Gymnasium", "minatar5", "atari57"]),
    ("NoSuchEnv-v0", ["minatar:<Game>", "CartPole-v1"]),
    ("", ["minatar:<Game>"]),
])
def test_unknown_ids(env_id, words):
    with pytest.raises(UserError) as e:
        resolve_tasks(env_id)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    with pytest.raises(UserError):
        env_spec(EnvConfig(id=env_id or "x"))


def test_unsupported_action_space():
    with pytest.raises(UserError) as e:
        env_spec(EnvConfig(id="Pendulum-v1"))
    msg = str(e.value)
    assert "\n" not in msg and "Box" in msg and "Discrete" in msg and "MultiDiscrete" in msg


def test_resolve_single_ids_canonically():
    assert resolve_tasks("minatar:space_invaders") == ["minatar:SpaceInvaders"]
    assert resolve_tasks("ATARI:ms_pacman") == ["atari:MsPacman"]
    assert resolve_tasks("atari:SpaceInvaders") == ["atari:SpaceInvaders"]
    assert resolve_tasks("CartPole-v1") == ["CartPole-v1"]
