"""Loading frozen teachers and adapting them to the student's observations and actions."""

import math
import textwrap
from typing import List

import pytest
import torch

from kickstart.config import NetConfig
from kickstart.envs import env_spec
from kickstart.errors import CheckpointError, ConfigError, UserError
from kickstart.kickstarting.adapt import action_mapping, bind, load_bound_teacher, nearest_action, obs_channels
from kickstart.kickstarting.config import TeacherConfig
from kickstart.kickstarting.plan import task_ids
from kickstart.kickstarting.teachers import FunctionTeacher, NetTeacher, load_teacher
from kickstart.methods import load_config
from kickstart.nets import build_net
from kickstart.specs import EnvSpec
from kickstart.train import Trainer

ALE_FULL = ("NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT", "UPFIRE",
            "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE", "DOWNLEFTFIRE")
BREAKOUT_MINIMAL = ("NOOP", "FIRE", "RIGHT", "LEFT")
MINATAR = ("NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE")


def spec_of(meanings=MINATAR, obs_shape=(10, 10, 10), tasks=("t", "u"), nvec=None):
    """A student env: by default a two-task suite of MinAtar-like 10-channel (padded) images."""
    multi = nvec is not None
    return EnvSpec(obs_shape=tuple(obs_shape), obs_dtype="uint8", obs_scale=1.0,
                   action_nvec=tuple(nvec) if multi else (len(meanings),), multi_discrete=multi,
                   action_meanings=() if multi else tuple(meanings), frames_per_step=1, task_names=tuple(tasks))


def fixed_logits(values):
    """A feed-forward function teacher that outputs ``values`` for every observation."""
    v = torch.tensor(values, dtype=torch.float32)
    return lambda obs: v.expand(obs.shape[0], -1).clone()


def one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def make_checkpoint(run_dir, overrides=()):
    """A (untrained) kickstart checkpoint; loading it is what these tests are about."""
    cfg = load_config(None, ["env.id=minatar:Breakout", "net.torso=minatar", "net.hidden_size=16",
                             "net.lstm_size=16", "runtime.backend=serial", "runtime.envs_per_actor=4",
                             "learner.batch_size=4", *overrides])
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, run_dir, loggers=[])
    trainer.save()
    trainer.close()
    return run_dir


# -- action mapping ------------------------------------------------------------------------------

def test_a_teacher_with_a_subset_of_actions_gives_the_others_zero_probability():
    logits = [1.0, -0.5, 2.0, 0.3]  # over Breakout's NOOP, FIRE, RIGHT, LEFT
    teacher = FunctionTeacher("brk", fixed_logits(logits), action_meanings=BREAKOUT_MINIMAL, obs_shape=(4, 84, 84))
    bound = bind(teacher, spec_of(ALE_FULL, (4, 84, 84)))
    out, _ = bound(torch.zeros(3, 4, 84, 84, dtype=torch.uint8), torch.zeros(3, dtype=torch.bool),
                   torch.zeros(3, dtype=torch.long), torch.zeros(3), ())
    assert out.shape == (3, 18)
    p_student = out.softmax(-1)
    p_teacher = torch.tensor(logits).softmax(-1)
    shared = [ALE_FULL.index(m) for m in BREAKOUT_MINIMAL]
    assert torch.allclose(p_student[:, shared], p_teacher.expand(3, -1), atol=1e-6)
    others = [j for j in range(18) if j not in shared]
    assert torch.equal(p_student[:, others], torch.zeros(3, len(others)))
    assert torch.isinf(out[:, others]).all()


def test_permuted_meanings_map_each_action_to_its_namesake():
    perm = ("FIRE", "DOWN", "RIGHT", "UP", "LEFT", "NOOP")
    logits = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    bound = bind(FunctionTeacher("p", fixed_logits(logits.tolist()), action_meanings=perm), spec_of())
    out, _ = bound(torch.zeros(1, 10, 10, 10), torch.ones(1, dtype=torch.bool), torch.zeros(1, dtype=torch.long),
                   torch.zeros(1), ())
    p = logits.softmax(-1)
    for i, m in enumerate(perm):
        assert out[0].softmax(-1)[MINATAR.index(m)].item() == pytest.approx(p[i].item(), rel=1e-6)
    assert action_mapping("p", perm, MINATAR) == [5, 4, 3, 2, 1, 0]
    # last actions go back the other way (for LSTM teachers); actions the teacher lacks -> its 0
    assert bound.inverse.tolist() == [5, 4, 3, 2, 1, 0]
    sub = bind(FunctionTeacher("s", fixed_logits([0.0] * 4), action_meanings=BREAKOUT_MINIMAL), spec_of(ALE_FULL))
    assert sub.inverse.tolist() == [0, 1, 0, 2, 3] + [0] * 13


def test_actions_the_student_cannot_take_are_a_one_line_error():
    teacher = FunctionTeacher("expert", fixed_logits([0.0] * 4),
                              action_meanings=("NOOP", "FIRE", "UPFIRE", "DOWNFIRE"))
    with pytest.raises(UserError) as e:
        bind(teacher, spec_of(BREAKOUT_MINIMAL))
    assert one_line(e) == ("teacher 'expert' has actions the student cannot take: UPFIRE, DOWNFIRE; "
                           "student actions: NOOP, FIRE, RIGHT, LEFT")


def test_without_meanings_the_teacher_needs_the_students_number_of_actions():
    same = bind(FunctionTeacher("n", fixed_logits([0.0] * 6)), spec_of())
    assert same.index is None and same.num_logits == 6
    with pytest.raises(UserError) as e:
        bind(FunctionTeacher("n", fixed_logits([0.0] * 4)), spec_of())
    assert "teacher 'n' has 4 actions and the student 6" in one_line(e)


def test_multidiscrete_students_need_the_identical_action_space():
    student = spec_of(obs_shape=(8,), nvec=(3, 2))
    net = build_net(NetConfig(torso="mlp", hidden_size=8, mlp_sizes=[8]), student)
    assert bind(NetTeacher("same", net), student).num_logits == 5
    other = build_net(NetConfig(torso="mlp", hidden_size=8, mlp_sizes=[8]), spec_of(obs_shape=(8,), nvec=(2, 3)))
    with pytest.raises(UserError) as e:
        bind(NetTeacher("other", other), student)
    assert "teacher 'other' acts in MultiDiscrete[2, 3] but the student in MultiDiscrete[3, 2]" in one_line(e)
    with pytest.raises(UserError):
        bind(NetTeacher("multi", net), spec_of(obs_shape=(8,)))   # a Discrete student


# -- observations --------------------------------------------------------------------------------

def test_observation_adaptation():
    assert obs_channels("t", (4, 10, 10), (4, 10, 10)) is None
    assert obs_channels("t", (4, 10, 10), (10, 10, 10)) == 4            # MinAtar suite padding
    for teacher, student, padded in [((4, 10, 10), (4, 84, 84), True), ((10, 10, 10), (4, 10, 10), True),
                                     ((4,), (8,), True), ((4, 10, 10), (10, 10, 10), False)]:
        with pytest.raises(UserError) as e:     # the last: a single game's extra channels are not padding
            obs_channels("t", teacher, student, padded=padded)
        assert one_line(e) == f"teacher 't' expects observations of shape {teacher} but the student's are {student}"


def test_the_teacher_sees_the_leading_channels_only():
    seen = []

    def fn(obs):
        seen.append(obs)
        return torch.zeros(obs.shape[0], 6)

    bound = bind(FunctionTeacher("c", fn, obs_shape=(4, 10, 10)), spec_of(tasks=("a", "b")))   # a padded suite
    obs = torch.arange(2 * 10 * 100).reshape(2, 10, 10, 10).to(torch.uint8)
    bound(obs, torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.long), torch.zeros(2), ())
    assert seen[-1].dtype == torch.float32 and torch.equal(seen[-1], obs[:, :4].float())


# -- loading -------------------------------------------------------------------------------------

def test_checkpoint_teacher_from_file_or_run_dir_is_frozen_and_keeps_its_own_processing(tmp_path):
    run = make_checkpoint(tmp_path / "lstm", ["net.core=lstm"])
    for path in (run, run / "checkpoint.pt"):
        teacher = load_teacher("brk", TeacherConfig(path=str(path)))
        assert isinstance(teacher, NetTeacher) and teacher.recurrent
        assert teacher.obs_shape == (4, 10, 10) and teacher.action_meanings == MINATAR
        assert not any(p.requires_grad for p in teacher.net.parameters()) and not teacher.net.training
    student = env_spec(load_config(None, ["env.id=minatar5"]).env)
    bound = load_bound_teacher("brk", TeacherConfig(path=str(run)), student)
    assert bound.channels == 4 and bound.index is None and bound.num_logits == 6


class ScriptedTeacher(torch.nn.Module):
    action_meanings: List[str]
    obs_shape: List[int]

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4 * 10 * 10, 4)
        self.action_meanings = list(BREAKOUT_MINIMAL)
        self.obs_shape = [4, 10, 10]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.linear(obs.flatten(1))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script/trace
def test_torchscript_teacher_with_meanings_and_obs_shape(tmp_path):
    module = ScriptedTeacher()
    path = tmp_path / "teacher.pt"
    torch.jit.script(module).save(str(path))
    teacher = load_teacher("ts", TeacherConfig(path=str(path)))          # kind auto detects TorchScript
    assert isinstance(teacher, FunctionTeacher)
    assert not any(p.requires_grad for p in teacher.fn.parameters()) and not teacher.fn.training
    bound = bind(teacher, spec_of(ALE_FULL, (10, 10, 10), tasks=("a", "b")))   # a padded suite
    obs = torch.randint(0, 2, (3, 10, 10, 10), dtype=torch.uint8)
    out, _ = bound(obs, torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.long), torch.zeros(3), ())
    with torch.no_grad():
        expected = module(obs[:, :4].float()).log_softmax(-1)
    assert torch.allclose(out[:, [0, 1, 3, 4]], expected, atol=1e-6)
    assert out.isinf().sum().item() == 3 * 14


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script/trace
def test_torchscript_without_meanings_must_have_the_students_actions(tmp_path):
    path = tmp_path / "plain.pt"
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1000, 5))
    torch.jit.trace(module, torch.zeros(1, 10, 10, 10)).save(str(path))
    with pytest.raises(UserError) as e:
        load_bound_teacher("ts", TeacherConfig(path=str(path), kind="torchscript"), spec_of())
    assert "teacher 'ts' has 5 actions and the student 6" in one_line(e)


TEACHER_MODULE = textwrap.dedent('''
    import torch
    from kickstart.kickstarting import register_teacher

    CALLS = []

    def plain(obs):
        CALLS.append(obs.shape[0])
        return obs.flatten(1)[:, :6] * 2.0

    def _expert(obs):
        return obs.flatten(1)[:, :3] - 1.0

    register_teacher("ks_test_expert", _expert, action_meanings=["FIRE", "NOOP", "LEFT"], obs_shape=[4, 10, 10])

    def broken(obs):
        return obs.sum()
''')


@pytest.fixture
def teacher_module(tmp_path, monkeypatch):
    (tmp_path / "ks_test_teachers.py").write_text(TEACHER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "ks_test_teachers"


def test_callable_teachers_by_function_or_registered_name(teacher_module):
    student = spec_of()
    obs = torch.randint(0, 2, (2, 10, 10, 10), dtype=torch.uint8)
    args = (torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.long), torch.zeros(2), ())
    plain = load_bound_teacher("plain", TeacherConfig(callable=f"{teacher_module}:plain"), student)
    out, _ = plain(obs, *args)
    assert torch.allclose(out, (obs.flatten(1)[:, :6] * 2.0).log_softmax(-1))
    for target in (f"{teacher_module}:ks_test_expert", "ks_test_expert"):  # module:name, or a name already registered
        expert = load_bound_teacher("expert", TeacherConfig(callable=target), student)
        out, _ = expert(obs, *args)
        assert expert.channels == 4
        p = (obs[:, :4].flatten(1)[:, :3].float() - 1.0).softmax(-1)
        assert torch.allclose(out.softmax(-1)[:, [5, 0, 1]], p, atol=1e-6)     # FIRE, NOOP, LEFT
        assert torch.equal(out.softmax(-1)[:, [2, 3, 4]], torch.zeros(2, 3))


def test_callable_errors_are_one_line(teacher_module):
    student = spec_of()
    cases = {
        f"{teacher_module}:nothing": "has no function 'nothing'",
        "no_such_module_xyz:fn": "cannot import module 'no_such_module_xyz'",
        "not_registered_xyz": "no teacher is registered as 'not_registered_xyz'",
        f"{teacher_module}:broken": "it must return logits of shape (1, A)",
    }
    for target, expected in cases.items():
        with pytest.raises(UserError) as e:
            load_bound_teacher("c", TeacherConfig(callable=target), student)
        assert expected in one_line(e) and "teacher 'c'" in one_line(e)


def test_missing_and_corrupt_teacher_files_are_one_line_errors_naming_the_teacher(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError) as e:
        load_teacher("gone", TeacherConfig(path=str(missing)))
    assert one_line(e).startswith("teacher 'gone': checkpoint") and "does not exist" in one_line(e)
    with pytest.raises(CheckpointError) as e:
        load_teacher("gone", TeacherConfig(path=str(missing), kind="torchscript"))
    assert "teacher 'gone': TorchScript file" in one_line(e) and "does not exist" in one_line(e)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all" * 20)
    with pytest.raises(CheckpointError) as e:
        load_teacher("bad", TeacherConfig(path=str(bad)))
    assert one_line(e).startswith("teacher 'bad': checkpoint") and "corrupt" in one_line(e)
    with pytest.raises(CheckpointError) as e:
        load_teacher("bad", TeacherConfig(path=str(bad), kind="torchscript"))
    assert "teacher 'bad':" in one_line(e) and "corrupt or not a TorchScript file" in one_line(e)


def test_an_observation_shape_that_does_not_fit_is_a_one_line_error(tmp_path):
    run = make_checkpoint(tmp_path / "ff")
    with pytest.raises(UserError) as e:
        load_bound_teacher("brk", TeacherConfig(path=str(run)), spec_of(obs_shape=(4, 84, 84)))
    assert one_line(e) == "teacher 'brk' expects observations of shape (4, 10, 10) but the student's are (4, 84, 84)"


def test_config_mistakes_are_one_line_errors():
    with pytest.raises(ConfigError) as e:
        TeacherConfig()
    assert "needs a path" in one_line(e)
    with pytest.raises(UserError) as e:
        load_teacher("t", TeacherConfig(callable="m:f", kind="checkpoint"))
    assert one_line(e) == "teacher 't' has kind=checkpoint but no path; set kickstart.teachers.t.path"
    with pytest.raises(UserError) as e:
        load_teacher("a/b", TeacherConfig(path="x"))
    assert "kickstart teacher name 'a/b'" in one_line(e)
    spec = spec_of(tasks=("minatar:Breakout", "minatar:Asterix"))
    assert task_ids("t", [], spec) == [0, 1]
    assert task_ids("t", ["minatar:asterix"], spec) == [1]
    with pytest.raises(UserError) as e:
        task_ids("t", ["minatar:Pong"], spec)
    assert one_line(e) == ("teacher 't' covers task 'minatar:Pong', which is not a task of this run; "
                           "tasks: minatar:Breakout, minatar:Asterix")


def test_logits_are_normalised_log_probs():
    bound = bind(FunctionTeacher("n", fixed_logits([5.0, 1.0, 0.0, 0.0, 0.0, 0.0])), spec_of())
    out, _ = bound(torch.zeros(1, 10, 10, 10), torch.ones(1, dtype=torch.bool), torch.zeros(1, dtype=torch.long),
                   torch.zeros(1), ())
    assert out.exp().sum().item() == pytest.approx(1.0) and not math.isnan(out.sum().item())


def test_an_unroll_is_one_teacher_call_with_the_logits_of_its_steps():
    seen = []
    w = torch.randn(400, 4, generator=torch.Generator().manual_seed(0))

    def fn(obs):
        seen.append(obs.shape[0])
        return obs.flatten(1) @ w

    bound = bind(FunctionTeacher("u", fn, action_meanings=BREAKOUT_MINIMAL, obs_shape=(4, 10, 10)), spec_of(ALE_FULL))
    T, n = 5, 3
    obs = torch.randint(0, 2, (T, n, 10, 10, 10), dtype=torch.uint8)
    first, la, r = torch.zeros(T, n, dtype=torch.bool), torch.zeros(T, n, dtype=torch.long), torch.zeros(T, n)
    seen.clear()
    out, _ = bound.unroll(obs, first, la, r, ())
    assert seen == [T * n] and out.shape == (T, n, 18)
    steps = torch.stack([bound(obs[t], first[t], la[t], r[t], ())[0] for t in range(T)])
    assert torch.allclose(out, steps) and torch.isinf(out).sum().item() == T * n * 14


def test_a_combined_student_action_goes_back_to_the_teacher_action_with_the_most_of_its_buttons():
    """ViZDoom's large set joins buttons with '+'; an LSTM teacher with the scenario's own buttons gets,
    as its last action, the part of the student's combination it knows, not NOOP."""
    teacher = ("NOOP", "TURN_LEFT", "TURN_RIGHT", "MOVE_FORWARD", "MOVE_LEFT", "MOVE_RIGHT")
    assert nearest_action("MOVE_FORWARD+SPEED", teacher) == 3
    assert nearest_action("MOVE_LEFT+TURN_LEFT+ATTACK", teacher) == 1        # a tie: the first one
    assert nearest_action("ATTACK+SPEED", teacher) == 0                      # none of its buttons
    assert nearest_action("turn_right", teacher) == 2
    assert nearest_action("UPFIRE", ("NOOP", "FIRE", "UP")) == 0            # ALE's names are not joined
    student = ("NOOP", "MOVE_FORWARD", "TURN_RIGHT", "MOVE_FORWARD+TURN_RIGHT", "ATTACK", "TURN_RIGHT+ATTACK")
    bound = bind(FunctionTeacher("nav", fixed_logits([0.0] * 3), action_meanings=("NOOP", "TURN_RIGHT", "MOVE_FORWARD")),
                 spec_of(student))
    assert bound.index.tolist() == [0, 2, 1]
    assert bound.inverse.tolist() == [0, 2, 1, 1, 0, 1]
