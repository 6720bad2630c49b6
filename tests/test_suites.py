"""Suites (shared shapes and action sets, task ids) and score normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kickstart.config import EnvConfig
from kickstart.envs import (
    SUITES,
    atari,
    capped_score,
    env_spec,
    has_normalisation,
    make_batched_env,
    normalised_score,
    resolve_tasks,
    suite_score,
)
from kickstart.envs.minatar_reference import RANDOM, REFERENCE
from kickstart.envs.suites import atari_human_random

MINATAR5 = ["minatar:Asterix", "minatar:Breakout", "minatar:Freeway", "minatar:Seaquest",
            "minatar:SpaceInvaders"]


def test_suite_contents():
    assert resolve_tasks("minatar5") == MINATAR5
    assert resolve_tasks("ATARI5") == ["atari:Pong", "atari:Breakout", "atari:Boxing",
                                       "atari:SpaceInvaders", "atari:Seaquest"]
    a57 = resolve_tasks("atari57")
    assert len(a57) == len(set(a57)) == 57
    assert {atari.rom_id(t) for t in a57} == set(atari_human_random())  # every game has a ROM
    assert all(has_normalisation(t) for name in SUITES for t in SUITES[name])


def test_minatar5_pads_channels_and_spreads_tasks():
    spec = env_spec(EnvConfig(id="minatar5"))
    assert spec.obs_shape == (10, 10, 10) and spec.num_actions == 6
    assert spec.task_names == tuple(MINATAR5)
    task_ids = [0, 1, 2, 3, 4] * 2
    env = make_batched_env(EnvConfig(id="minatar5"), task_ids, seed=0, spec=spec)
    assert env.task_ids.tolist() == task_ids and env.task_ids.dtype == np.int64
    channels = np.array([4, 4, 7, 10, 6] * 2)
    obs = env.reset()
    finished = set()
    for a in np.random.default_rng(0).integers(0, 6, (100, 10)):
        assert obs.shape == (10, 10, 10, 10)
        for i, c in enumerate(channels):
            assert obs[i, c:].max(initial=0) == 0  # padding stays zero
            assert obs[i, :c].max() == 1
        obs, _, done, episodes = env.step(a)
        assert [ep.task_id for ep in episodes] == [task_ids[i] for i in np.flatnonzero(done)]
        finished |= {ep.task_id for ep in episodes}
    assert {0, 1} <= finished  # Asterix and Breakout end quickly under a random policy


def test_atari_suite_uses_full_action_set_and_steps_several_games():
    cfg = EnvConfig(id="atari5")  # full_action_space=False, overridden for suites
    spec = env_spec(cfg)
    assert spec.num_actions == 18 and spec.factor_sizes == (9, 2)
    assert spec.task_names[:2] == ("atari:Pong", "atari:Breakout")
    env = make_batched_env(cfg, [1, 0, 1], seed=0, spec=spec)
    obs = env.reset()
    assert obs.shape == (3, 4, 84, 84)
    assert not np.array_equal(obs[0], obs[1]) and np.array_equal(obs[0], obs[2])  # Breakout, Pong, Breakout
    for a in np.random.default_rng(0).integers(0, 18, (20, 3)):
        obs, reward, done, _ = env.step(a)
    assert obs.shape == (3, 4, 84, 84) and reward.dtype == np.float32
    env.close()


def test_atari_normalised_scores_golden():
    assert normalised_score("atari:Pong", -20.7) == pytest.approx(0.0)
    assert normalised_score("atari:Pong", 14.6) == pytest.approx(100.0)
    assert normalised_score("atari:pong", -3.05) == pytest.approx(50.0)
    assert normalised_score("atari:Breakout", 30.5) == pytest.approx(100.0)
    assert normalised_score("atari:space_invaders", 148.0) == pytest.approx(0.0)
    assert normalised_score("atari:SpaceInvaders", 1668.7) == pytest.approx(100.0)
    assert normalised_score("atari:MontezumaRevenge", 4753.3) == pytest.approx(100.0)
    assert normalised_score("atari:Skiing", -17098.1) == pytest.approx(0.0)  # negative returns
    assert capped_score("atari:Pong", 21.0) == 100.0
    assert capped_score("atari:Pong", -21.0) < 0  # only the top is capped
    assert not has_normalisation("atari:Adventure")  # a ROM outside the 57


def test_minatar_normalised_scores():
    for game in RANDOM:
        task = f"minatar:{game}"
        assert REFERENCE[game] > RANDOM[game] >= 0.0
        assert normalised_score(task, RANDOM[game]) == pytest.approx(0.0)
        assert normalised_score(task, REFERENCE[game]) == pytest.approx(100.0)
        assert capped_score(task, 2 * REFERENCE[game]) == 100.0
    assert normalised_score("minatar:space_invaders", REFERENCE["SpaceInvaders"]) == pytest.approx(100.0)


def test_tasks_without_normalisation_keep_raw_scores():
    assert not has_normalisation("CartPole-v1")
    assert normalised_score("CartPole-v1", 500.0) == capped_score("CartPole-v1", 500.0) == 500.0


def test_suite_score():
    tasks = ["atari:Pong", "atari:Breakout"]
    assert suite_score({}, tasks) is None
    assert suite_score({"atari:Pong": 14.6}, tasks) is None  # Breakout has no episode yet
    assert suite_score({"atari:Pong": 14.6, "atari:Breakout": None}, tasks) is None
    assert suite_score({"atari:Pong": 14.6, "atari:Breakout": math.nan}, tasks) is None
    # Pong far above human is capped at 100; Breakout at random scores 0 -> mean 50
    assert suite_score({"atari:Pong": 21.0, "atari:Breakout": 1.7}, tasks) == pytest.approx(50.0)
    assert suite_score({"atari:Pong": -3.05}) == pytest.approx(50.0)  # tasks default to the keys
    assert suite_score({}) is None


def test_episode_summary_gives_the_suite_score_and_its_weakest_task_once_every_task_has_played():
    from kickstart.metrics import EpisodeStats

    tasks = ("minatar:Breakout", "minatar:Freeway")
    stats = EpisodeStats(tasks, window=2)

    def finish(task, ret):
        stats.update({"ep_end": torch.tensor([[False], [True]]), "ep_task": torch.full((2, 1), task),
                      "ep_return": torch.full((2, 1), ret), "ep_length": torch.full((2, 1), 10)})

    finish(0, 30.0)
    first = stats.summary()
    assert "episode/suite_score" not in first and "episode/worst_score" not in first   # Freeway unplayed
    finish(1, 0.0)
    finish(1, 2.0)
    m = stats.summary()
    scores = [capped_score(tasks[0], 30.0), capped_score(tasks[1], 1.0)]
    assert m["episode/worst_score"] == pytest.approx(min(scores)) and min(scores) < max(scores)
    assert m["episode/suite_score"] == pytest.approx(sum(scores) / 2)
