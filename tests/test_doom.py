"""ViZDoom: the adapter (shapes, frames, seeding, terminations and truncations), its action sets by
meaning, the ``doom`` suite and bad input.

There is no learning smoke test yet: no setting tried learned ``basic`` within a few hundred thousand
frames (README, ViZDoom), and a threshold no run has reached would be a test that cannot pass.

ViZDoom is a dependency (pyproject.toml): these tests are skipped only where its wheel cannot be
installed. Each game is an engine process that starts in about 0.3 s, so the tests use few envs.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("vizdoom")

from kickstart.config import DoomConfig, EnvConfig  # noqa: E402
from kickstart.envs import (  # noqa: E402
    SUITES,
    capped_score,
    doom,
    env_spec,
    has_normalisation,
    make_batched_env,
    normalised_score,
    resolve_tasks,
    suite_score,
)
from kickstart.envs.suites import doom_random_reference  # noqa: E402
from kickstart.errors import ConfigError, UserError  # noqa: E402

BASIC_SMALL = ("NOOP", "MOVE_LEFT", "MOVE_RIGHT", "ATTACK")
DOOM_SUITE = ["vizdoom:basic", "vizdoom:defend_the_center", "vizdoom:predict_position", "vizdoom:take_cover",
              "vizdoom:deadly_corridor", "vizdoom:my_way_home", "vizdoom:health_gathering",
              "vizdoom:deathmatch_bots"]


def doom_cfg(scenario: str = "basic", **doom_kw) -> EnvConfig:
    env_kw = {k: doom_kw.pop(k) for k in ("frame_stack", "max_episode_steps", "sticky_actions") if k in doom_kw}
    return EnvConfig(id=f"vizdoom:{scenario}", doom=DoomConfig(**doom_kw), **env_kw)


def play(cfg: EnvConfig, actions: np.ndarray, seed: int):
    """Reset and step ``actions [T, N]``: stacked obs [T+1, N, ...], rewards [T, N], StepResults."""
    with make_batched_env(cfg, [0] * actions.shape[1], seed) as env:
        obs, rewards, results = [env.reset()], [], []
        for a in actions:
            r = env.step_full(a)
            obs.append(r.obs)
            rewards.append(r.reward)
            results.append(r)
    return np.stack(obs), np.stack(rewards), results


# -- spec and actions ------------------------------------------------------------------------------

def test_spec_small_and_large_action_sets():
    small = env_spec(doom_cfg())
    assert small.task_names == ("vizdoom:basic",)
    assert (small.obs_shape, small.obs_dtype, small.obs_scale) == ((4, 84, 84), "uint8", 1 / 255)
    assert small.frames_per_step == 4 and not small.multi_discrete
    assert small.action_meanings == BASIC_SMALL == small.minimal_action_meanings
    assert small.factor_sizes == doom.FACTOR_SIZES == (3, 3, 3, 2, 2)
    large = env_spec(doom_cfg(actions="large"))
    assert large.num_actions == 108 and large.action_meanings == doom.LARGE_MEANINGS
    assert large.minimal_action_meanings == BASIC_SMALL     # Mix & Match's small -> large curriculum
    assert env_spec(doom_cfg("health_gathering")).action_meanings == ("NOOP", "TURN_LEFT", "TURN_RIGHT",
                                                                      "MOVE_FORWARD")
    # deathmatch's .cfg has 20 buttons: weapon selection, delta buttons and the SPEED modifier are left out
    assert set(env_spec(doom_cfg("deathmatch")).action_meanings) == {"NOOP", *doom.BUTTONS} - {"SPEED"}
    custom = env_spec(doom_cfg(buttons=["move_left", "TURN_LEFT", "ATTACK"]))
    assert custom.action_meanings == ("NOOP", "MOVE_LEFT", "TURN_LEFT", "ATTACK")
    assert env_spec(doom_cfg(color=True, frame_stack=2, obs_size=[60, 80])).obs_shape == (6, 60, 80)
    assert resolve_tasks("vizdoom:DefendTheCenter") == ["vizdoom:defend_the_center"]


def test_large_set_round_trips_between_index_meaning_factors_and_buttons():
    from kickstart.nets.heads import FactorisedJointHead, make_policy_head

    spec = env_spec(doom_cfg(actions="large"))
    seen = set()
    for i, meaning in enumerate(spec.action_meanings):
        factors = doom.factors_of(meaning)
        assert factors == spec.action_factors[i] and doom.large_index(factors) == i
        assert doom.meaning_of(factors) == meaning
        pressed = {b for b, v in zip(doom.BUTTONS, doom.buttons_of(factors)) if v}
        assert pressed == (set() if meaning == "NOOP" else set(meaning.split("+")))
        assert all(doom.FACTORS[j][1][v] in pressed for j, v in enumerate(factors) if v)
        seen.add(tuple(doom.buttons_of(factors)))
    assert len(seen) == 108     # every action presses a different set of buttons
    assert doom.factors_of("attack + move_forward") == doom.factors_of("MOVE_FORWARD+ATTACK") == (1, 0, 0, 1, 0)
    head = make_policy_head("factorised", 8, spec)
    assert isinstance(head, FactorisedJointHead) and not head.renormalise   # the full product: no renormalising
    assert make_policy_head("factorised", 8, env_spec(doom_cfg())).renormalise    # a subset of it


def test_actions_map_by_meaning_for_kickstarting_and_mixmatch():
    from kickstart.kickstarting.adapt import action_mapping
    from kickstart.mixmatch.config import ComponentConfig
    from kickstart.mixmatch.net import component_actions

    small, large = env_spec(doom_cfg()), env_spec(doom_cfg(actions="large"))
    index = action_mapping("basic-expert", small.action_meanings, large.action_meanings)
    for a, j in enumerate(index):
        assert large.action_factors[j] == small.action_factors[a]
        assert doom.buttons_of(large.action_factors[j]) == doom.buttons_of(small.action_factors[a])
    assert component_actions(large, ComponentConfig(action_set="minimal"), 0) == BASIC_SMALL
    # The same meaning presses the same buttons in either set: identical games under one seed.
    n = 12
    acts = np.array([[1, 2, 3, 0][(t // 3) % 4] for t in range(n)])
    as_large = np.array([index[a] for a in acts])
    o_s, r_s, _ = play(doom_cfg(), acts[:, None], seed=5)
    o_l, r_l, _ = play(doom_cfg(actions="large"), as_large[:, None], seed=5)
    np.testing.assert_array_equal(o_s, o_l)
    np.testing.assert_array_equal(r_s, r_l)


# -- observations, frames, seeding -----------------------------------------------------------------

def test_area_resize_matches_the_weight_matrices():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 1, 120, 160), dtype=np.uint8)
    rows, cols = doom.area_matrix(120, 84), doom.area_matrix(160, 84)
    np.testing.assert_allclose(rows.sum(1), 1.0, rtol=1e-6)
    want = rows.astype(np.float64) @ frames.astype(np.float64) @ cols.T.astype(np.float64)
    got = doom._Resize((120, 160), (84, 84))(frames)
    assert got.shape == (3, 1, 84, 84) and got.dtype == np.uint8
    assert np.abs(got - np.floor(want + 0.5)).max() <= 1      # float32 against float64 rounding
    half = doom._Resize((4, 6), (2, 3))(np.arange(24, dtype=np.uint8).reshape(1, 1, 4, 6))
    np.testing.assert_array_equal(half[0, 0], [[4, 6, 8], [16, 18, 20]])   # 2x2 block means, .5 up
    same = rng.integers(0, 256, (2, 3, 120, 160), dtype=np.uint8)
    assert doom._Resize((120, 160), (120, 160))(same) is same


@pytest.mark.parametrize("skip", [4, 3])
def test_observations_stack_frames_and_frames_count_the_repeat(skip):
    cfg = doom_cfg(frame_skip=skip)
    spec = env_spec(cfg)
    assert spec.frames_per_step == skip
    resize = doom._Resize((120, 160), (84, 84))
    with make_batched_env(cfg, [0, 0], seed=1, spec=spec) as env:
        obs = env.reset()
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        assert obs[:, :3].max() == 0 and obs[:, 3].min() < obs[:, 3].max()   # zeros, then the first frame
        t0 = [g.game.get_episode_time() for g in env.games]
        for step in range(1, 6):
            new = env.step_full(np.array([1, 2])).obs
            np.testing.assert_array_equal(new[:, :3], obs[:, 1:])            # oldest first, shifted by one
            for i, g in enumerate(env.games):
                np.testing.assert_array_equal(new[i, 3], resize(g.frame()[None])[0, 0])   # the newest screen
                assert g.game.get_episode_time() - t0[i] == step * skip     # tics = steps x repeat
            obs = new
        assert not np.array_equal(obs[0], obs[1])                            # left and right differ


def test_seeding_is_deterministic():
    acts = np.random.default_rng(0).integers(0, 108, (40, 2))
    cfg = doom_cfg("defend_the_center", actions="large")
    a, ra, _ = play(cfg, acts, seed=3)
    b, rb, _ = play(cfg, acts, seed=3)
    c, _, _ = play(cfg, acts, seed=4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ra, rb)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[:, 0], a[:, 1])   # the two envs of one batch get different seeds


def test_sticky_actions_repeat_the_previous_action():
    noop = np.zeros((10, 1), np.int64)
    plain, _, _ = play(doom_cfg(), noop, seed=2)
    sticky, _, _ = play(doom_cfg(sticky_actions=1.0), noop + 1, seed=2)   # always repeats the first: NOOP
    np.testing.assert_array_equal(plain, sticky)


# -- episode ends ----------------------------------------------------------------------------------

def test_timeout_is_a_truncation_with_the_final_observation():
    # basic's timeout is 300 tics: 75 steps of 4; standing still never kills the monster.
    obs, rewards, results = play(doom_cfg(), np.zeros((76, 1), np.int64), seed=0)
    ends = [t for t, r in enumerate(results) if r.done[0]]
    assert ends == [74]
    r = results[74]
    assert r.truncated[0] and not r.terminated[0]
    assert r.final_obs is not None
    np.testing.assert_array_equal(r.final_obs[0, :3], obs[74][0, 1:])     # the episode's last stack
    assert r.final_obs[0, 3].max() > 0
    assert obs[75][0, :3].max() == 0 and obs[75][0, 3].max() > 0           # a new episode starts
    (ep,) = r.episodes
    assert (ep.length, ep.frames, ep.ret) == (75, 300, -300.0)               # -1 a tic, no shot
    assert rewards[:75].sum() == -300.0 and all(x.final_obs is None for x in results[:74])


def test_death_is_a_termination():
    # Standing still on health_gathering's acid floor kills the player; -100 on death.
    _, rewards, results = play(doom_cfg("health_gathering"), np.zeros((200, 1), np.int64), seed=0)
    t = next(t for t, r in enumerate(results) if r.done[0])
    r = results[t]
    assert r.terminated[0] and not r.truncated[0] and r.final_obs is None
    (ep,) = r.episodes
    assert ep.length == t + 1 and ep.frames == 4 * ep.length
    alive = ep.ret + 100.0                                   # +1 for every tic alive
    assert 4 * (ep.length - 1) < alive <= 4 * ep.length
    assert rewards[t, 0] < 0


def test_max_episode_steps_truncates():
    _, _, results = play(doom_cfg(max_episode_steps=5), np.zeros((6, 2), np.int64), seed=0)
    assert [r.truncated.tolist() for r in results[3:5]] == [[False, False], [True, True]]
    assert results[4].final_obs is not None and [ep.length for ep in results[4].episodes] == [5, 5]


def test_deathmatch_bots_plays_against_built_in_bots():
    acts = np.random.default_rng(0).integers(0, 108, (30, 1))
    cfg = doom_cfg("deathmatch_bots", actions="large")
    with make_batched_env(cfg, [0], seed=0) as env:
        env.reset()
        assert env.games[0].max_tics == 4200
        for a in acts:
            assert not env.step_full(a).done[0]
            # the bots join on the first tic after the "addbot" commands of the episode's start
            assert env.games[0].game.get_server_state().player_count == 8   # the agent and 7 bots
    a, _, _ = play(cfg, acts[:12], seed=0)
    b, _, _ = play(cfg, acts[:12], seed=0)
    np.testing.assert_array_equal(a, b)                     # bots follow the game's seeded RNG


# -- the suite ------------------------------------------------------------------------------------

def test_doom_suite_shares_one_space_and_is_normalised():
    assert resolve_tasks("doom") == DOOM_SUITE == SUITES["doom"]
    large = env_spec(EnvConfig(id="doom", doom=DoomConfig(actions="large")))
    assert large.num_actions == 108 and large.task_names == tuple(DOOM_SUITE) and large.minimal_action_meanings is None
    small = env_spec(EnvConfig(id="doom"))
    assert small.action_meanings == ("NOOP", *(b for b in doom.BUTTONS if b != "SPEED"))   # the union
    table = doom_random_reference()
    for task in DOOM_SUITE:
        assert has_normalisation(task)
        low, high = table[doom.scenario_name(task)]
        assert high > low
        assert normalised_score(task, low) == pytest.approx(0.0)
        assert normalised_score(task, high) == pytest.approx(100.0)
        assert capped_score(task, high + abs(high)) == 100.0
    assert not has_normalisation("vizdoom:defend_the_line")       # outside the suite: raw returns
    assert suite_score({t: table[doom.scenario_name(t)][1] for t in DOOM_SUITE}, DOOM_SUITE) == pytest.approx(100.0)
    cfg = EnvConfig(id="doom", doom=DoomConfig(actions="large"))
    with make_batched_env(cfg, list(range(8)), seed=0, spec=large) as env:
        obs = env.reset()
        assert obs.shape == (8, 4, 84, 84)
        for a in np.random.default_rng(0).integers(0, 108, (5, 8)):
            r = env.step_full(a)
        assert r.obs.shape == (8, 4, 84, 84) and r.reward.dtype == np.float32


# -- bad input -------------------------------------------------------------------------------------

def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_bad_input_is_a_one_line_error_naming_what_is_valid():
    with pytest.raises(UserError) as e:
        resolve_tasks("vizdoom:basik")
    msg = one_line(e)
    assert "'basik'" in msg and "did you mean vizdoom:basic" in msg and "vizdoom:take_cover" in msg
    with pytest.raises(UserError) as e:
        env_spec(doom_cfg(buttons=["MOVE_LEFT", "JUMP"]))
    msg = one_line(e)
    assert "'JUMP'" in msg and "MOVE_FORWARD" in msg and "ATTACK" in msg
    with pytest.raises(UserError) as e:
        doom.factors_of("MOVE_LEFT+FLY")
    assert "'FLY'" in one_line(e) and "TURN_RIGHT" in str(e.value)
    with pytest.raises(UserError) as e:
        doom.factors_of("MOVE_LEFT+MOVE_RIGHT")
    assert "strafe" in one_line(e)
    with pytest.raises(ConfigError) as e:
        DoomConfig(actions="huge")
    assert "small, large" in one_line(e)
    with pytest.raises(ConfigError):
        DoomConfig(actions="large", buttons=["ATTACK"])
    with pytest.raises(ConfigError):
        DoomConfig(obs_size=[84])
    with pytest.raises(UserError) as e:
        env_spec(doom_cfg(obs_size=[5000, 84]))
    assert "at most" in one_line(e)


def test_cli_rejects_an_unknown_scenario_in_one_line(tmp_path):
    from test_cli import assert_user_error, cli

    p = cli("train", "env.id=vizdoom:my_way_hom", f"run.out_dir={tmp_path}", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "unknown ViZDoom scenario", "vizdoom:my_way_home")
    assert not any(tmp_path.iterdir())       # no run directory


def test_the_suite_experiment_maps_every_experts_actions_onto_the_student(tmp_path, monkeypatch):
    """configs/experiments/doom_experts.yaml: the eight experts of configs/doom_<task>.yaml (here with
    untrained weights, as scripts/run_doom_kickstart.sh exports them) load as teachers of the suite's
    student, each bound to its own task, with its actions mapped onto the large set by meaning."""
    import dataclasses
    from pathlib import Path

    from kickstart.checkpoint import save_checkpoint
    from kickstart.configio import to_dict
    from kickstart.envs import env_spec
    from kickstart.methods import load_config
    from kickstart.nets import build_agent
    from kickstart.train import validate

    root = Path(__file__).resolve().parent.parent
    experiment = load_config(str(root / "configs/experiments/doom_experts.yaml"))
    suite = resolve_tasks("doom")
    assert sorted(t.tasks[0] for t in experiment.kickstart.teachers.values()) == sorted(suite)
    monkeypatch.chdir(tmp_path)
    for name, teacher in experiment.kickstart.teachers.items():
        cfg = load_config(str(root / f"configs/doom_{name}.yaml"))
        assert cfg.env.id == teacher.tasks[0], name
        spec = env_spec(cfg.env)
        net = build_agent(cfg, spec)
        save_checkpoint(tmp_path / teacher.path, {"config": to_dict(cfg), "learner": {"net": net.state_dict()},
                                                  "counters": {}, "spec": dataclasses.asdict(spec)})
    setup = validate(experiment)
    (term,) = setup.terms
    for name, teacher in experiment.kickstart.teachers.items():
        assert term.covers[name].nonzero().flatten().tolist() == [suite.index(teacher.tasks[0])], name
