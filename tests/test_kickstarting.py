"""Kickstarting end to end: teacher hooks in the actors, the loss term, build(), training runs."""

import copy
import math
import pickle

import numpy as np
import pytest
import torch

from kickstart import kickstarting
from kickstart.checkpoint import load_checkpoint, save_checkpoint
from kickstart.config import EnvConfig, NetConfig
from kickstart.distributions import Categorical
from kickstart.envs import env_spec, make_batched_env
from kickstart.errors import UserError
from kickstart.kickstarting.adapt import bind
from kickstart.kickstarting.config import KickstartConfig, TeacherConfig
from kickstart.kickstarting.hooks import TeacherHook
from kickstart.kickstarting.plan import learner_inference
from kickstart.kickstarting.teachers import FunctionTeacher, NetTeacher
from kickstart.kickstarting.term import KickstartTerm
from kickstart.learner import Learner, LossContext
from kickstart.losses.kickstart import distillation_loss
from kickstart.methods import Config, load_config
from kickstart.metrics import read_metrics
from kickstart.nets import AgentOutput, build_net
from kickstart.runtime.placement import Placement
from kickstart.runtime.unroll import Actor, Field, allocate, net_inputs, unroll_fields
from kickstart.specs import EnvSpec
from kickstart.train import Trainer, net_num_logits, train

MINATAR = ("NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE")
TINY = ["net.torso=minatar", "net.hidden_size=16", "net.lstm_size=16", "learner.optimizer=adam",
        "learner.loss_reduction=mean", "learner.lr_schedule=constant", "runtime.backend=serial",
        "runtime.num_actors=1", "run.progress=false", "run.tensorboard=false"]


def spec_of(channels=10, meanings=MINATAR, tasks=("a", "b", "c")):
    return EnvSpec(obs_shape=(channels, 10, 10), obs_dtype="uint8", obs_scale=1.0, action_nvec=(len(meanings),),
                   multi_discrete=False, action_meanings=tuple(meanings), frames_per_step=1, task_names=tuple(tasks))


def lstm_teacher(meanings=MINATAR, seed=0):
    torch.manual_seed(seed)
    net = build_net(NetConfig(torso="minatar", core="lstm", hidden_size=16, lstm_size=16), spec_of(4, meanings, ("t",)))
    for p in net.parameters():  # larger weights than the policy init, so the logits differ visibly
        torch.nn.init.normal_(p, std=0.3)
    return NetTeacher("rec", net)


def reference_logits(bound, obs, first, last_action, last_reward, cols):
    """The teacher run once over a whole [S, N] stream (its columns ``cols``), from its initial state,
    mapped to the student's actions."""
    t = bound.teacher
    o, la, r, f = net_inputs(obs[:, cols, :4], last_action[:, cols], last_reward[:, cols], first[:, cols])
    if bound.inverse is not None:
        la = bound.inverse[la]
    with torch.no_grad():
        out, _ = t.net(o, la, r, f, t.initial_state(len(cols)))
    return torch.stack([bound.to_student(x) for x in out.policy_logits])


# -- the actor hook ------------------------------------------------------------------------------

def random_stream(S, N, seed=0, num_actions=6):
    """``S`` entries of ``N`` envs' inputs as an actor stores them (episode starts at random)."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 2, (S, N, 10, 10, 10), generator=g, dtype=torch.uint8)
    first = torch.rand(S, N, generator=g) < 0.15
    first[0] = True
    last_action = torch.randint(0, num_actions, (S, N), generator=g).masked_fill(first, 0)
    reward = torch.randn(S, N, generator=g)
    return obs, first, last_action, reward


def finish_over_unrolls(hook, task, obs, first, last_action, reward, T, lambdas=None):
    """Drive ``hook.finish`` as ``Actor.collect`` does over the stream ``[S, N]`` cut into unrolls of
    ``T`` (``S = U * T + 1``): unroll u holds entries ``u*T .. u*T+T``, its entry 0 being the previous
    unroll's entry T, copied with the hook's field. ``lambdas[u]``: the weight published before
    unroll u. Returns the field along the stream, ``[S, N, L]``."""
    S, N = first.shape
    U = (S - 1) // T
    assert U * T + 1 == S
    hook.reset(N)
    key, L = hook.key, hook.teacher.num_logits
    out, last = [], None
    for u in range(U):
        sl = slice(u * T, u * T + T + 1)
        buf = {"obs": obs[sl].clone(), "first": first[sl].clone(), "last_action": last_action[sl].clone(),
               "reward": reward[sl].clone(), "task": task.expand(T + 1, N).clone(), key: torch.zeros(T + 1, N, L)}
        if last is not None:
            buf[key][0] = last
        if lambdas is not None:
            hook.set_hparams({hook.lambda_key: lambdas[u]})
        hook.finish(buf, 0 if u == 0 else 1)
        if last is not None:
            assert torch.equal(buf[key][0].nan_to_num(), last.nan_to_num())    # entry 0 left as it was
        last = buf[key][T].clone()
        out.append(buf[key] if u == 0 else buf[key][1:])
    return torch.cat(out)


def test_recurrent_teacher_over_unrolls_with_resets_equals_one_forward_over_the_stream():
    # A teacher with fewer actions, in another order, on 4 of the student's 10 channels; it covers
    # tasks a and c (columns 0, 2, 3 of tasks [a, b, c, a, b]).
    bound = bind(lstm_teacher(("FIRE", "LEFT", "NOOP", "RIGHT")), spec_of())
    hook = TeacherHook("rec", bound, tasks=[0, 2])
    T, U, N = 6, 5, 5
    task = torch.tensor([0, 1, 2, 0, 1])
    obs, first, last_action, reward = random_stream(U * T + 1, N)
    first[[7, 19], 2] = True            # column 2 starts episodes mid-stream (and mid-unroll) for sure
    first[12, 3] = True                 # column 3 at an unroll boundary (entry T of one, 0 of the next)
    last_action.masked_fill_(first, 0)
    got = finish_over_unrolls(hook, task, obs, first, last_action, reward, T, lambdas=[0.5] * U)
    cols = [0, 2, 3]
    expected = reference_logits(bound, obs, first, last_action, reward, cols)
    assert torch.allclose(got[:, cols], expected, atol=1e-5)
    assert torch.isnan(got[:, [1, 4]]).all()                               # tasks it does not cover
    assert torch.isinf(got[:, cols][..., [2, 4]]).all()                    # actions it lacks (UP, DOWN)
    # Resetting at `first` matters (this would fail with a state carried through episode starts):
    no_reset = reference_logits(bound, obs, torch.zeros_like(first).index_fill_(0, torch.tensor([0]), True),
                                last_action, reward, cols)
    assert not torch.allclose(no_reset, expected, atol=1e-3)


def stepwise_reference(bound, covered, task, obs, first, last_action, reward, T, lambdas):
    """What the per-step hook computed: every env on its own, one entry at a time (``T = 1``
    network calls from the state it carries), NaN where it skipped (uncovered task, lambda 0) and,
    for a recurrent teacher that skipped, until the env's next episode start."""
    S, N = first.shape
    out = torch.full((S, N, bound.num_logits), math.nan)
    for c in range(N):
        if int(task[c]) not in covered:
            continue
        state, synced = bound.initial_state(1), True
        for t in range(S):
            if lambdas[max(0, (t - 1) // T)] == 0.0:         # the unroll that writes entry t
                synced = not bound.recurrent
                continue
            synced |= bool(first[t, c])
            if not synced:
                continue
            o, la, r, f = net_inputs(obs[t, c][None], last_action[t, c][None], reward[t, c][None], first[t, c][None])
            logits, state = bound(o, f, la, r, state)
            out[t, c] = logits[0]
    return out


@pytest.mark.parametrize("max_rows", [512, 7])
@pytest.mark.parametrize("recurrent", [True, False])
def test_the_per_unroll_hook_gives_the_per_step_logits(recurrent, max_rows):
    """``finish`` (one teacher call per unroll over the covered columns, or 3 calls of at most 7 of
    its 20-24 rows) against a step-by-step run of the teacher per env, with a teacher that skips two
    unrolls (lambda 0)."""
    meanings = ("FIRE", "LEFT", "NOOP", "RIGHT")
    if recurrent:
        teacher = lstm_teacher(meanings, seed=1)
    else:
        w = torch.randn(400, 4, generator=torch.Generator().manual_seed(1))
        teacher = FunctionTeacher("ff", lambda o: o.flatten(1) @ w, action_meanings=meanings, obs_shape=(4, 10, 10))
    bound = bind(teacher, spec_of())
    covered = [0, 2]
    hook = TeacherHook("t", bound, tasks=covered)
    hook.max_rows = max_rows
    T, U, N = 5, 8, 6
    task = torch.tensor([0, 1, 2, 0, 2, 1])
    obs, first, last_action, reward = random_stream(U * T + 1, N, seed=2)
    lambdas = [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    got = finish_over_unrolls(hook, task, obs, first, last_action, reward, T, lambdas)
    expected = stepwise_reference(bound, covered, task, obs, first, last_action, reward, T, lambdas)
    assert torch.equal(got.isnan(), expected.isnan())
    assert torch.allclose(got.nan_to_num(), expected.nan_to_num(), atol=1e-5)
    ran = ~got[:, [0, 2, 3, 4]].isnan().any(-1)            # the test covers both outcomes of the skip rule
    assert ran[T + 1:2 * T + 1].all() and not ran[2 * T + 1:3 * T + 1].any()
    if recurrent:   # after the skipped unroll: silent in each env until its next episode start
        assert 0 < ran[3 * T + 1:4 * T + 1].sum() < ran[3 * T + 1:4 * T + 1].numel()
    else:
        assert ran[3 * T + 1:4 * T + 1].all()


def test_stepping_the_hook_entry_by_entry_gives_the_logits_of_finish():
    bound = bind(lstm_teacher(), spec_of())
    T, U, N = 4, 3, 3
    task = torch.tensor([0, 1, 0])
    obs, first, last_action, reward = random_stream(U * T + 1, N, seed=3)
    per_unroll = finish_over_unrolls(TeacherHook("s", bound, tasks=[0]), task, obs, first, last_action, reward, T)
    hook = TeacherHook("s", bound, tasks=[0])
    hook.reset(N)
    steps = torch.stack([hook(obs[t], first[t], task, last_action[t], reward[t])["teacher_logits/s"]
                         for t in range(U * T + 1)])
    assert torch.equal(steps.isnan(), per_unroll.isnan())
    assert torch.allclose(steps.nan_to_num(), per_unroll.nan_to_num(), atol=1e-5)


def test_teacher_logits_in_real_unrolls_equal_one_pass_over_the_stream():
    """Through the Actor: entry T of one unroll is entry 0 of the next; the state crosses unrolls."""
    cfg = EnvConfig(id="minatar5", sticky_actions=0.0)
    env = make_batched_env(cfg, [0, 1, 2, 3, 4], seed=3)
    spec = env.spec
    student = build_net(NetConfig(torso="minatar", hidden_size=16), spec)
    bound = bind(lstm_teacher(), spec)
    covered = [spec.task_names.index("minatar:Asterix"), spec.task_names.index("minatar:Breakout")]
    hook = TeacherHook("rec", bound, covered)
    T, U = 12, 4
    actor = Actor(env, student, T, seed=3, hooks=[hook])
    extra = hook.fields
    fields = unroll_fields(spec, net_num_logits(student), student.initial_state(1), extra)
    unrolls = []
    for _ in range(U):
        buf = allocate(fields, T, 5)
        actor.collect(buf)
        unrolls.append({k: v.clone() for k, v in buf.items()})
    actor.close()
    for a, b in zip(unrolls, unrolls[1:]):
        assert torch.equal(a["teacher_logits/rec"][T].nan_to_num(), b["teacher_logits/rec"][0].nan_to_num())
    stream = {k: torch.cat([unrolls[0][k]] + [u[k][1:] for u in unrolls[1:]]) for k in
              ("obs", "first", "last_action", "reward", "teacher_logits/rec")}
    cols = sorted(covered)
    assert stream["first"][1:, cols].any(), "the test needs an episode start inside the stream"
    expected = reference_logits(bound, stream["obs"], stream["first"], stream["last_action"], stream["reward"], cols)
    assert torch.allclose(stream["teacher_logits/rec"][:, cols], expected, atol=1e-5)
    others = [c for c in range(5) if c not in cols]
    assert torch.isnan(stream["teacher_logits/rec"][:, others]).all()


class CountingTeacher:
    def __init__(self):
        self.calls = 0

    def __call__(self, obs):
        self.calls += 1
        return torch.zeros(obs.shape[0], 6)


def test_a_teacher_runs_once_per_unroll_and_not_at_all_when_its_lambda_is_zero():
    fn = CountingTeacher()
    hook = TeacherHook("t", bind(FunctionTeacher("t", fn), spec_of()), tasks=[0, 2])
    probe_calls = fn.calls
    T, N = 5, 4
    task = torch.tensor([0, 1, 2, 1])
    obs, first, last_action, reward = random_stream(2 * T + 1, N)
    hook.set_hparams({"kickstart/lambda/t": 0.0, "learning_rate": 1e-3})
    out = finish_over_unrolls(hook, task, obs[:T + 1], first[:T + 1], last_action[:T + 1], reward[:T + 1], T)
    assert fn.calls == probe_calls and torch.isnan(out).all()
    hook.set_hparams({"kickstart/lambda/t": 0.25})
    out = finish_over_unrolls(hook, task, obs, first, last_action, reward, T)
    assert fn.calls == probe_calls + 2                                     # two unrolls, one call each
    assert torch.isfinite(out[:, [0, 2]]).all() and torch.isnan(out[:, [1, 3]]).all()


class FakeEnv:
    """A batched env whose episodes all last 4 steps (enough for an Actor; a teacher ignores the obs)."""

    def __init__(self, spec, task_ids):
        self.spec, self.task_ids, self.num_envs, self.t = spec, list(task_ids), len(task_ids), 0

    def reset(self):
        return np.zeros((self.num_envs,) + self.spec.obs_shape, np.uint8)

    def step(self, action):
        self.t += 1
        done = np.full(self.num_envs, self.t % 4 == 0)
        return self.reset(), np.zeros(self.num_envs, np.float32), done, []

    def close(self):
        pass


def test_the_actor_calls_finish_hooks_once_per_unroll_and_other_hooks_per_entry():
    spec = spec_of(tasks=("a",))
    calls = []

    class StepHook:
        fields = {"step/x": Field((), torch.float32)}

        def reset(self, n):
            calls.append(("reset", n))

        def set_hparams(self, hp):
            pass

        def __call__(self, obs, first, task, last_action, last_reward):
            calls.append("step")
            return {"step/x": first.float() + 1}

    class UnrollHook(StepHook):
        fields = {"unroll/x": Field((), torch.float32)}

        def __call__(self, *a):
            raise AssertionError("a hook with finish is not called per entry")

        def finish(self, buf, start):
            calls.append(("finish", start))
            buf["unroll/x"][start:] = buf["first"][start:].float() + 2

    T, N = 3, 2
    student = build_net(NetConfig(torso="minatar", hidden_size=8), spec)
    actor = Actor(FakeEnv(spec, [0] * N), student, T, seed=0, hooks=[StepHook(), UnrollHook()])
    fields = unroll_fields(spec, 6, (), {**StepHook.fields, **UnrollHook.fields})
    bufs = [allocate(fields, T, N) for _ in range(2)]
    for buf in bufs:
        actor.collect(buf)
    per_entry = ["step"] * T
    assert calls == [("reset", N), ("reset", N), "step"] + per_entry + [("finish", 0)] + per_entry + [("finish", 1)]
    for buf in bufs:
        assert torch.equal(buf["step/x"], buf["first"].float() + 1)
        assert torch.equal(buf["unroll/x"], buf["first"].float() + 2)


def test_a_recurrent_teacher_that_skipped_steps_waits_for_each_episode_start():
    bound = bind(lstm_teacher(), spec_of())
    hook = TeacherHook("rec", bound, tasks=[0, 1, 2])
    T, N = 3, 3
    task = torch.tensor([0, 1, 2])
    obs = torch.zeros(4 * T + 1, N, 10, 10, 10, dtype=torch.uint8)
    first = torch.zeros(4 * T + 1, N, dtype=torch.bool)
    first[0] = True
    first[2 * T + 2, 1] = True          # unroll 2 (entries 7..9): only column 1 starts a new episode
    first[3 * T + 1, 0] = True          # unroll 3 (entries 10..12): column 0 at its first new entry
    zeros = torch.zeros(4 * T + 1, N, dtype=torch.long)
    out = finish_over_unrolls(hook, task, obs, first, zeros, torch.zeros(4 * T + 1, N), T, [1.0, 0.0, 1.0, 1.0])
    assert torch.isfinite(out[:T + 1]).all()
    assert torch.isnan(out[T + 1:2 * T + 1]).all()           # skipped: the state misses these steps
    u2 = out[2 * T + 1:3 * T + 1]       # entries 7..9
    assert torch.isnan(u2[:, [0, 2]]).all() and torch.isnan(u2[0, 1]).all() and torch.isfinite(u2[1:, 1]).all()
    u3 = out[3 * T + 1:]
    assert torch.isfinite(u3[:, [0, 1]]).all() and torch.isnan(u3[:, 2]).all()


# -- the loss term -------------------------------------------------------------------------------

def make_term(**kw):
    teachers = {"a": TeacherConfig(callable="m:f", rho=1.0), "b": TeacherConfig(callable="m:f", rho=0.25)}
    cfg = KickstartConfig(teachers=teachers, **kw)
    return KickstartTerm(cfg, {"a": [0, 1], "b": [1]}, num_tasks=3)


def test_lambda_is_schedule_times_alpha_times_rho_and_published_to_the_actors():
    term = make_term(schedule="linear", lambda_0=2.0, lambda_end_frames=1000, alpha=0.5)
    assert term.hparams == {"kickstart/alpha": 0.5, "kickstart/rho/a": 1.0, "kickstart/rho/b": 0.25}
    assert term.actor_hparams(term.hparams, 500) == {"kickstart/lambda/a": 0.5, "kickstart/lambda/b": 0.125}
    spec = spec_of()
    learner = Learner(build_net(NetConfig(torso="minatar", hidden_size=8), spec), Config().learner, 10_000,
                      terms=[term], device=torch.device("cpu"))
    learner.set_hparams({"kickstart/alpha": 2.0, "kickstart/rho/b": 1.0})   # what PBT does
    pub = learner.published_hparams(250)
    assert pub["kickstart/lambda/a"] == pytest.approx(3.0) and pub["kickstart/lambda/b"] == pytest.approx(3.0)
    assert learner.published_hparams(1000)["kickstart/lambda/a"] == 0.0


def context(T=3, B=4, seed=0, lam_frames=0):
    g = torch.Generator().manual_seed(seed)
    batch = {"task": torch.tensor([0, 1, 2, 1]).expand(T + 1, B).clone(),
             "teacher_logits/a": torch.randn(T + 1, B, 6, generator=g),
             "teacher_logits/b": torch.randn(T + 1, B, 6, generator=g)}
    batch["teacher_logits/a"][1, 0] = math.nan                      # not run there by the actor
    logits = torch.randn(T + 1, B, 6, generator=g, requires_grad=True)
    out = AgentOutput(logits, torch.zeros(T + 1, B), {})
    return batch, logits, out


def test_term_sums_each_teachers_loss_over_the_tasks_it_covers():
    term = make_term(alpha=0.5)
    batch, logits, out = context()
    dist = Categorical(6)
    ctx = LossContext(batch=batch, out=out, dist=dist, hparams=dict(term.hparams), reduction="sum", frames=0)
    loss, metrics = term(ctx)
    # Columns' tasks [0, 1, 2, 1]: teacher a covers tasks 0, 1 (columns 0, 1, 3); b covers task 1 (1, 3).
    w_a = torch.tensor([0.5, 0.5, 0.0, 0.5]).expand(3, 4).clone()
    w_a[1, 0] = 0.0                                                   # the NaN entry
    w_b = torch.tensor([0.0, 0.125, 0.0, 0.125]).expand(3, 4)
    expected = (distillation_loss(batch["teacher_logits/a"][:-1], logits[:-1], dist, w_a)
                + distillation_loss(batch["teacher_logits/b"][:-1], logits[:-1], dist, w_b))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert metrics["loss/kickstart"] == pytest.approx(expected.item(), rel=1e-6)
    assert metrics["kickstart/a/lambda"] == 0.5 and metrics["kickstart/b/lambda"] == 0.125
    assert metrics["kickstart/a/coverage"] == pytest.approx(8 / 12)
    for t in ("a", "b"):
        assert {f"kickstart/{t}/{m}" for m in ("cross_entropy", "kl", "agreement")} <= set(metrics)
    loss.backward()
    assert logits.grad[-1].abs().sum() == 0 and logits.grad[:, 2].abs().sum() == 0   # entry T; uncovered task


def test_a_teacher_with_lambda_zero_costs_nothing():
    term = make_term(alpha=1.0)
    batch, _, out = context()
    del batch["teacher_logits/b"]                # not even read
    hp = dict(term.hparams, **{"kickstart/rho/b": 0.0})
    loss, metrics = term(LossContext(batch=batch, out=out, dist=Categorical(6), hparams=hp, reduction="mean", frames=0))
    assert metrics["kickstart/b/lambda"] == 0.0 and "kickstart/b/kl" not in metrics
    assert "kickstart/a/kl" in metrics and loss.item() > 0


# -- build ---------------------------------------------------------------------------------------

def constant_teacher(obs):
    """A callable teacher for the tests below (importable as test_kickstarting:constant_teacher)."""
    return torch.tensor([2.0, 0.0, 0.0, 0.0, 0.0, 1.0]).expand(obs.shape[0], -1)


def test_build_is_empty_without_teachers_and_complete_with_them():
    cfg = load_config(None, ["env.id=minatar5"])
    spec = env_spec(cfg.env)
    empty = kickstarting.build(cfg, spec)
    assert empty.terms == [] and empty.hook_factory is None and empty.extra_fields == {}
    teachers = "{c: {callable: 'test_kickstarting:constant_teacher', tasks: [minatar:Breakout]}}"
    cfg = load_config(None, ["env.id=minatar5", f"kickstart.teachers={teachers}"])
    setup = kickstarting.build(cfg, spec)
    assert [t.name for t in setup.terms] == ["kickstart"]
    assert setup.extra_fields == {"teacher_logits/c": Field((6,), torch.float32)} and setup.split_inference == []
    factory = pickle.loads(pickle.dumps(setup.hook_factory))    # sent to actor processes
    (hook,) = factory(cfg, spec)
    assert hook.fields == setup.extra_fields and hook.tasks.tolist() == [spec.task_names.index("minatar:Breakout")]
    bad = load_config(None, ["env.id=minatar5", "kickstart.teachers={c: {callable: 'x:y', tasks: [minatar:Pong]}}"])
    with pytest.raises(UserError, match="not a task of this run"):
        kickstarting.build(bad, spec)


# -- training runs -------------------------------------------------------------------------------

def train_tiny(tmp_path_factory, core: str, frames: int):
    """A freshly trained tiny checkpoint on MinAtar Breakout (a few thousand frames); its run dir."""
    out = tmp_path_factory.mktemp(f"{core}_teacher")
    cfg = load_config(None, ["env.id=minatar:Breakout", f"net.core={core}", *TINY, "learner.unroll_length=10",
                             "learner.batch_size=8", "runtime.envs_per_actor=8", f"run.total_frames={frames}",
                             f"run.out_dir={out}", "run.name=brk"])
    train(cfg)
    return out / "brk"


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    """A tiny LSTM teacher (runs in the actors)."""
    return train_tiny(tmp_path_factory, "lstm", 3000)


def test_kickstarted_training_runs_logs_its_metrics_and_leaves_the_teacher_alone(tiny_teacher, out_dir):
    cfg = load_config(None, ["env.id=minatar5", *TINY, "learner.unroll_length=10", "learner.batch_size=10",
                             "runtime.envs_per_actor=10", "run.total_frames=3000", f"run.out_dir={out_dir}",
                             "run.name=student", "run.log_every_s=0.000001", "kickstart.schedule=linear",
                             "kickstart.lambda_end_frames=100000",
                             f"kickstart.teachers={{brk: {{path: '{tiny_teacher}', tasks: [minatar:Breakout]}}}}"])
    setup = kickstarting.build(cfg, env_spec(cfg.env))
    (out_dir / "student").mkdir()
    trainer = Trainer(cfg, out_dir / "student", setup.terms, setup.hook_factory, setup.extra_fields,
                      split_inference=setup.split_inference)
    try:
        assert trainer.run_until(cfg.run.total_frames)
        (hook,) = trainer.backend.actors[0].hooks
        teacher_net = hook.teacher.teacher.net
        saved = load_checkpoint(tiny_teacher)["learner"]["net"]
        assert all(torch.equal(v, saved[k]) for k, v in teacher_net.state_dict().items())
        assert not any(p.requires_grad for p in teacher_net.parameters())
        in_optimizer = {id(p) for group in trainer.learner.optimizer.param_groups for p in group["params"]}
        assert not in_optimizer & {id(p) for p in teacher_net.parameters()}
    finally:
        trainer.close()
    metrics = read_metrics(out_dir / "student" / "metrics.csv")
    for name in ("loss/kickstart", "kickstart/brk/cross_entropy", "kickstart/brk/kl", "kickstart/brk/agreement",
                 "kickstart/brk/lambda", "hparams/kickstart/alpha", "hparams/kickstart/rho/brk"):
        assert name in metrics, name
    lam = [v for _, v in metrics["kickstart/brk/lambda"]]
    assert 0.96 < lam[-1] < lam[0] <= 1.0                          # the linear schedule is running
    assert all(math.isfinite(v) for _, v in metrics["loss/total"])


class ListLogger:
    def __init__(self):
        self.rows = []

    def write(self, frames, metrics):
        self.rows.append(dict(metrics))

    def close(self):
        pass


def test_pure_distillation_lowers_the_kl(tiny_teacher, tmp_path, out_dir, learning_seed, record_property):
    """The default tier's kickstarting smoke run: the distillation term alone (learner.rl_loss=false,
    24k frames, serial) pulls the student to a sharp teacher.

    Checked on 5 seeds (runtime.seed 0-4, fp32, native and emulated AVX2 alike): KL over the first
    10 steps 1.38, 1.36, 1.52, 1.52, 1.43 (threshold > 0.3), over the last 50 steps 0.0005-0.0008
    (threshold < 0.3 x start, about 0.4); agreement over the last 50 steps 1.0 on every seed
    (threshold > 0.9)."""
    # A freshly trained tiny net is nearly uniform; scaling its policy layer makes a decisive
    # teacher (same argmax, KL from a uniform student well above 0).
    state = load_checkpoint(tiny_teacher)
    net = state["learner"]["net"]
    net["policy_head.linear.weight"] = net["policy_head.linear.weight"] * 300
    net["policy_head.linear.bias"] = torch.tensor([1.0, 0.0, 0.0, 0.5, 0.0, 0.0])
    sharp = save_checkpoint(tmp_path / "sharp.pt", state)
    cfg = load_config(None, ["env.id=minatar:Breakout", *TINY, "learner.rl_loss=false", "learner.learning_rate=0.003",
                             "learner.unroll_length=10", "learner.batch_size=8", "runtime.envs_per_actor=8",
                             "run.total_frames=24000", f"run.out_dir={out_dir}", "run.log_every_s=0.000001",
                             f"runtime.seed={learning_seed}", f"kickstart.teachers={{sharp: {{path: '{sharp}'}}}}"])
    setup = kickstarting.build(cfg, env_spec(cfg.env))
    logger = ListLogger()
    trainer = Trainer(cfg, out_dir / "distill", setup.terms, setup.hook_factory, setup.extra_fields, loggers=[logger],
                      split_inference=setup.split_inference)
    try:
        assert trainer.run_until(cfg.run.total_frames)
    finally:
        trainer.close()
    kl = [r["kickstart/sharp/kl"] for r in logger.rows if "kickstart/sharp/kl" in r]
    assert len(kl) >= 250
    start, end = sum(kl[:10]) / 10, sum(kl[-50:]) / 50
    agreement = [r["kickstart/sharp/agreement"] for r in logger.rows if "kickstart/sharp/agreement" in r]
    record_property("kl_start", round(start, 4))
    record_property("kl_end", round(end, 4))
    record_property("agreement_end", round(sum(agreement[-50:]) / 50, 4))
    assert start > 0.3 and end < 0.3 * start, (start, end)
    assert sum(agreement[-50:]) / 50 > 0.9
    # The RL loss is computed and logged but not trained on: every step logs finite, non-zero RL
    # terms (so adding them would show), and the total is the distillation term alone.
    steps = [r for r in logger.rows if "loss/total" in r]
    assert len(steps) >= 250
    for r in steps:
        rl = r["loss/policy"] + r["loss/baseline"] + r["loss/entropy"]
        assert all(math.isfinite(r[k]) for k in ("loss/policy", "loss/baseline", "loss/entropy")), r
        assert r["loss/policy"] != 0.0 and abs(rl) > 1e-4 * abs(r["loss/kickstart"]), r
        assert r["loss/total"] == pytest.approx(r["loss/kickstart"], rel=1e-6, abs=0), r


def test_pure_distillation_trains_the_policy_only_and_nothing_once_lambda_is_zero(tiny_ff_teacher):
    """learner.rl_loss=false: the value head gets no gradient, and past the end of a linear schedule
    (every lambda 0) a step changes nothing instead of failing on a loss without a gradient."""
    cfg = load_config(None, ["env.id=minatar:Breakout", *TINY, "learner.rl_loss=false", "kickstart.schedule=linear",
                             "kickstart.lambda_end_frames=1000", f"kickstart.teachers={{t: {{path: '{tiny_ff_teacher}'}}}}"])
    spec = env_spec(cfg.env)
    setup = kickstarting.build(cfg, spec)
    torch.manual_seed(0)
    net = build_net(cfg.net, spec)
    learner = Learner(net, cfg.learner, 10_000, setup.terms, device=torch.device("cpu"),
                      placement=Placement(setup.split_inference))
    env = make_batched_env(cfg.env, [0] * 4, 0, spec=spec)
    actor = Actor(env, net, 6, seed=0)
    buf = allocate(unroll_fields(spec, net_num_logits(net), net.initial_state(1)), 6, 4)
    try:
        actor.collect(buf)
        before = {k: v.clone() for k, v in net.state_dict().items()}
        metrics = learner.step(buf, frames=0)                      # lambda 1
        assert metrics["loss/total"] == pytest.approx(metrics["loss/kickstart"]) and metrics["loss/total"] > 0
        assert net.baseline_head.linear.weight.grad is None or not net.baseline_head.linear.weight.grad.any()
        assert not torch.equal(before["policy_head.linear.weight"], net.state_dict()["policy_head.linear.weight"])
        assert torch.equal(before["baseline_head.linear.weight"], net.state_dict()["baseline_head.linear.weight"])
        before = {k: v.clone() for k, v in net.state_dict().items()}
        metrics = learner.step(buf, frames=2000)                   # lambda 0: nothing to learn
        assert metrics["loss/total"] == 0.0 and metrics["grad/norm"] == 0.0
        assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    finally:
        actor.close()


def test_a_task_teacher_map_says_which_tasks_each_teacher_covers(tiny_ff_teacher):
    """kickstart.task_teachers: one teacher may cover several tasks, a task not in the map gets no term."""
    from kickstart.kickstarting.plan import coverage

    teachers = f"kickstart.teachers={{brk: {{path: '{tiny_ff_teacher}'}}, other: {{path: '{tiny_ff_teacher}'}}}}"
    cfg = load_config(None, ["env.id=minatar5", teachers, "kickstart.task_teachers={minatar:Breakout: brk, "
                             "minatar:Seaquest: brk, minatar:Freeway: other}"])
    spec = env_spec(cfg.env)
    ids = {t: spec.task_names.index(f"minatar:{t}") for t in ("Breakout", "Seaquest", "Freeway")}
    assert coverage(cfg.kickstart, spec) == {"brk": [ids["Breakout"], ids["Seaquest"]], "other": [ids["Freeway"]]}
    (term,) = kickstarting.build(cfg, spec).terms
    assert term.covers["brk"].nonzero().flatten().tolist() == sorted([ids["Breakout"], ids["Seaquest"]])
    assert term.covers["other"].nonzero().flatten().tolist() == [ids["Freeway"]]
    for bad, fragment in [("kickstart.task_teachers={minatar:Breakout: brk}", "kickstart.teachers.other covers no task"),
                          ("kickstart.task_teachers={minatar:Breakout: nobody, minatar:Asterix: other}",
                           "unknown teacher 'nobody'; teachers: brk, other")]:
        with pytest.raises(UserError, match=fragment):
            load_config(None, ["env.id=minatar5", teachers, bad])


def test_local_actor_processes_load_the_teacher_themselves(tiny_teacher, out_dir):
    cfg = load_config(None, ["env.id=minatar:Breakout", *TINY, "runtime.backend=local", "learner.unroll_length=10",
                             "learner.batch_size=8", "runtime.envs_per_actor=8", "run.total_frames=1600",
                             f"run.out_dir={out_dir}", "run.name=local",
                             f"kickstart.teachers={{brk: {{path: '{tiny_teacher}'}}}}"])
    setup = kickstarting.build(cfg, env_spec(cfg.env))
    result = train(cfg, terms=setup.terms, hook_factory=setup.hook_factory, extra_fields=setup.extra_fields,
                   split_inference=setup.split_inference)
    assert result.frames >= 1600
    assert "kickstart/brk/kl" in result.metrics and math.isfinite(result.metrics["kickstart/brk/kl"])
    assert result.metrics["kickstart/brk/coverage"] == 1.0


# -- learning ------------------------------------------------------------------------------------

def frames_to_reach(metrics_csv, task, threshold):
    for frames, value in read_metrics(metrics_csv).get(f"episode/return/{task}", []):
        if value >= threshold:
            return frames
    return math.inf


# configs/minatar_breakout.yaml as measured for the test below, pinned against later edits of the file.
BREAKOUT = ["env.id=minatar:Breakout", "net.torso=minatar", "net.core=ff", "net.hidden_size=128",
            "learner.optimizer=adam", "learner.learning_rate=0.001", "learner.lr_schedule=constant",
            "learner.loss_reduction=mean", "learner.entropy_cost=0.001", "learner.discount=0.99",
            "learner.advantage_norm=false", "learner.pg_clip=0", "learner.epochs=1", "learner.minibatches=1",
            "learner.unroll_length=20",
            "learner.batch_size=64", "runtime.num_actors=1", "runtime.envs_per_actor=64", "runtime.backend=local",
            "run.progress=false", "run.tensorboard=false"]


@pytest.mark.slow   # 2 x 2 runs of 300k frames (20 s a seed quiet); default tier: pure distillation
@pytest.mark.parametrize("seed", [0, 1])
def test_a_good_teacher_gets_the_student_to_a_threshold_in_fewer_frames(seed, out_dir):
    """The shipped Breakout expert (return 8; random play 0.5) against no teacher, same seed and
    budget (300k frames each, about 15 s): the kickstarted student's mean return reaches 2.0, and
    sooner than the student from scratch does (if it does at all).

    Measured at 150k / 250k / 300k frames: kickstarted 0.55 / 2.63 / 3.90 (seed 0) and 0.57 / 2.62 /
    3.78 (seed 1); from scratch 0.75 / 1.29 / 1.68 and 0.83 / 1.66 / 1.94 (never 2.0)."""
    common = BREAKOUT + ["run.total_frames=300000", f"run.out_dir={out_dir}", "run.log_every_s=0.5",
                         f"runtime.seed={seed}"]
    train(load_config("configs/minatar_breakout.yaml", common + [f"run.name=scratch-{seed}"]))
    kick_cfg = load_config("configs/minatar_breakout.yaml", common + [
        f"run.name=kick-{seed}", "kickstart.teachers={expert: {path: teachers/minatar-breakout.pt}}"])
    setup = kickstarting.build(kick_cfg, env_spec(kick_cfg.env))
    train(kick_cfg, terms=setup.terms, hook_factory=setup.hook_factory, extra_fields=setup.extra_fields,
          split_inference=setup.split_inference)
    threshold = 2.0
    scratch = frames_to_reach(out_dir / f"scratch-{seed}" / "metrics.csv", "minatar:Breakout", threshold)
    kick = frames_to_reach(out_dir / f"kick-{seed}" / "metrics.csv", "minatar:Breakout", threshold)
    assert kick < math.inf, "the kickstarted student never reached the threshold"
    assert kick < scratch, f"frames to return {threshold}: kickstarted {kick}, from scratch {scratch}"
    metrics = read_metrics(out_dir / f"kick-{seed}" / "metrics.csv")    # the teacher was split, and balanced
    assert "kickstart/actor_share" in metrics and "perf/learner_idle" in metrics


# -- teachers in the learner (kickstart.placement) -----------------------------------------------

def ff_teacher(meanings=MINATAR, channels=4, seed=1):
    torch.manual_seed(seed)
    net = build_net(NetConfig(torso="minatar", core="ff", hidden_size=16), spec_of(channels, meanings, ("t",)))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return NetTeacher("ff", net)


def test_auto_placement_splits_feed_forward_module_teachers_and_puts_the_others_in_the_actors():
    from kickstart.kickstarting.plan import placement

    spec = spec_of()
    ff, rec = bind(ff_teacher(), spec), bind(lstm_teacher(), spec)
    fn = bind(FunctionTeacher("fn", constant_teacher), spec)
    module = bind(FunctionTeacher("ts", torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1000, 6))), spec)
    assert [placement(n, "auto", t) for n, t in (("ff", ff), ("rec", rec), ("fn", fn), ("ts", module))] == \
        ["split", "actor", "actor", "split"]
    assert {placement(n, "actor", t) for n, t in (("ff", ff), ("rec", rec), ("fn", fn))} == {"actor"}
    assert placement("fn", "learner", fn) == "learner" and placement("ff", "learner", ff) == "learner"
    with pytest.raises(UserError, match="'rec' is recurrent.*placement=auto or actor"):
        placement("rec", "learner", rec)
    with pytest.raises(UserError, match="kickstart.placement=.gpu. is not valid; choose one of: auto, actor, learner"):
        load_config(None, ["kickstart.placement=gpu"])


@pytest.mark.parametrize("max_rows", [None, 7])
def test_a_teacher_in_the_learner_gives_the_loss_and_metrics_of_the_same_teacher_in_the_actors(max_rows):
    """The same real unrolls, scored by a term that reads the actors' logits and by one whose batch the
    learner's placement completed by running the teacher itself (columns it covers only; in pieces
    of ``max_rows`` rows)."""
    cfg = EnvConfig(id="minatar5", sticky_actions=0.0)
    env = make_batched_env(cfg, [0, 1, 2, 3, 4, 1], seed=5)
    spec = env.spec
    student = build_net(NetConfig(torso="minatar", hidden_size=16), spec)
    covered = [spec.task_names.index("minatar:Breakout"), spec.task_names.index("minatar:Seaquest")]
    meanings = ("NOOP", "FIRE", "LEFT", "RIGHT")             # mapped into the student's six actions
    hook = TeacherHook("ff", bind(ff_teacher(meanings), spec), covered)
    T = 8
    actor = Actor(env, student, T, seed=5, hooks=[hook])
    fields = unroll_fields(spec, net_num_logits(student), student.initial_state(1), hook.fields)
    buf = allocate(fields, T, 6)
    actor.collect(buf)
    actor.collect(buf)                                       # a second unroll: entry 0 copied from the first
    actor.close()
    ks = KickstartConfig(teachers={"ff": TeacherConfig(path="unused")}, lambda_0=0.7)
    in_actors = KickstartTerm(ks, {"ff": covered}, spec.num_tasks)
    in_learner = KickstartTerm(ks, {"ff": covered}, spec.num_tasks, filled={"ff"})
    inference = learner_inference("ff", bind(ff_teacher(meanings), spec), covered, spec.num_tasks, split=False)
    inference.max_rows = max_rows
    placement = Placement([inference])
    out, _ = student(*net_inputs(buf["obs"], buf["last_action"], buf["reward"], buf["first"]),
                     tuple(buf[k] for k in buf if k.startswith("core_state.")), buf["task"])
    published = in_learner.actor_hparams(dict(in_learner.hparams), 0)      # the teacher's lambda, as the learner's
    filled = placement.fill({k: v for k, v in buf.items() if k != hook.key}, published)
    results = []
    for term, batch in ((in_actors, buf), (in_learner, filled)):
        logits = out.policy_logits.detach().requires_grad_()
        ctx = LossContext(batch=batch, out=AgentOutput(logits, out.baseline, {}), dist=Categorical(6),
                          hparams=dict(term.hparams), reduction="sum", frames=0)
        loss, metrics = term(ctx)
        loss.backward()
        results.append((loss.item(), metrics, logits.grad))
    (la, ma, ga), (ll, ml, gl) = results
    assert la > 0 and ll == pytest.approx(la, rel=1e-5)
    assert ma.keys() == ml.keys() and all(ml[k] == pytest.approx(ma[k], rel=1e-5, abs=1e-6) for k in ma)
    assert ma["kickstart/ff/coverage"] == pytest.approx(3 / 6)
    assert torch.allclose(gl, ga, atol=1e-6) and ga[:, [0, 2, 4]].abs().sum() == 0   # Asterix, Freeway, SpaceInvaders


def test_a_learner_teacher_with_lambda_zero_is_not_run():
    fn = CountingTeacher()
    spec = spec_of()
    ks = KickstartConfig(teachers={"t": TeacherConfig(callable="x:y")}, lambda_0=1.0)
    term = KickstartTerm(ks, {"t": [0, 2]}, 3, filled={"t"})
    placement = Placement([learner_inference("t", bind(FunctionTeacher("t", fn), spec), [0, 2], 3, split=False)])
    batch, _, out = context()
    batch = {k: v for k, v in batch.items() if not k.startswith("teacher_logits/")}
    obs, first, last_action, reward = random_stream(4, 4)
    batch.update(obs=obs, first=first, last_action=last_action, reward=reward)
    calls = fn.calls
    hparams = dict(term.hparams, **{"kickstart/alpha": 0.0})
    ctx = LossContext(batch=placement.fill(batch, term.actor_hparams(hparams, 0)), out=out, dist=Categorical(6),
                      hparams=hparams, reduction="mean", frames=0)
    loss, metrics = term(ctx)
    assert fn.calls == calls and loss.item() == 0.0 and "kickstart/t/kl" not in metrics
    ctx.hparams["kickstart/alpha"] = 1.0
    ctx.batch = placement.fill(batch, term.actor_hparams(ctx.hparams, 0))
    loss, metrics = term(ctx)
    assert fn.calls == calls + 1 and metrics["kickstart/t/coverage"] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def tiny_ff_teacher(tmp_path_factory):
    """A tiny feed-forward teacher (runs in the learner by default)."""
    return train_tiny(tmp_path_factory, "ff", 2000)


def test_a_feed_forward_teacher_is_split_by_default_frozen_and_outside_the_optimizer(tiny_ff_teacher, out_dir):
    cfg = load_config(None, ["env.id=minatar5", *TINY, "learner.unroll_length=10", "learner.batch_size=10",
                             "runtime.envs_per_actor=10", "run.total_frames=3000", f"run.out_dir={out_dir}",
                             "run.name=student", "run.log_every_s=0.2",
                             f"kickstart.teachers={{brk: {{path: '{tiny_ff_teacher}', tasks: [minatar:Breakout]}}}}"])
    setup = kickstarting.build(cfg, env_spec(cfg.env))
    assert list(setup.extra_fields) == ["teacher_logits/brk"]              # the actors' share goes here
    (term,) = setup.terms
    (inference,) = setup.split_inference                                   # the learner runs the rest
    assert inference.share == "kickstart/actor_share" and inference.field == "teacher_logits/brk"
    assert term.filled == {"brk"}
    teacher_net = inference.net.teacher.net
    (out_dir / "student").mkdir()
    trainer = Trainer(cfg, out_dir / "student", setup.terms, setup.hook_factory, setup.extra_fields,
                      split_inference=setup.split_inference)
    try:
        assert trainer.placement.items == [inference] and trainer.learner.placement is trainer.placement
        assert trainer.run_until(cfg.run.total_frames)
        (hook,) = trainer.backend.actors[0].hooks
        assert hook.split and not hook.teacher.recurrent
        saved = load_checkpoint(tiny_ff_teacher)["learner"]["net"]
        for net in (teacher_net, hook.teacher.teacher.net):
            assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())
            assert not any(p.requires_grad or p.grad is not None for p in net.parameters())
        in_optimizer = {id(p) for group in trainer.learner.optimizer.param_groups for p in group["params"]}
        assert not in_optimizer & {id(p) for p in teacher_net.parameters()}
    finally:
        trainer.close()
    metrics = read_metrics(out_dir / "student" / "metrics.csv")
    coverage = [v for _, v in metrics["kickstart/brk/coverage"]]
    assert all(v == pytest.approx(0.2) for v in coverage)                  # 2 of 10 envs play Breakout
    assert all(math.isfinite(v) for _, v in metrics["kickstart/brk/kl"])
    actor_cfg = load_config(None, ["env.id=minatar5",
                                   f"kickstart.teachers={{brk: {{path: '{tiny_ff_teacher}'}}}}",
                                   "kickstart.placement=actor"])
    actor_setup = kickstarting.build(actor_cfg, env_spec(actor_cfg.env))
    assert list(actor_setup.extra_fields) == ["teacher_logits/brk"] and actor_setup.split_inference == []
    learner_cfg = load_config(None, ["env.id=minatar5",
                                     f"kickstart.teachers={{brk: {{path: '{tiny_ff_teacher}'}}}}",
                                     "kickstart.placement=learner"])
    learner_setup = kickstarting.build(learner_cfg, env_spec(learner_cfg.env))
    assert learner_setup.extra_fields == {} and learner_setup.hook_factory is None     # nothing in the actors
    assert [i.share for i in learner_setup.split_inference] == [None] and learner_setup.terms[0].filled == {"brk"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_learner_teacher_follows_the_batch_to_the_gpu():
    spec = spec_of()
    ks = KickstartConfig(teachers={"ff": TeacherConfig(path="unused")})
    term = KickstartTerm(ks, {"ff": [0, 1, 2]}, 3, filled={"ff"})
    placement = Placement([learner_inference("ff", bind(ff_teacher(), spec), [0, 1, 2], 3, split=False)])
    batch, _, out = context()
    batch = {k: v.cuda() for k, v in batch.items() if not k.startswith("teacher_logits/")}
    obs, first, last_action, reward = random_stream(4, 4)
    batch.update(obs=obs.cuda(), first=first.cuda(), last_action=last_action.cuda(), reward=reward.cuda())
    batch = placement.fill(batch, {})
    out = AgentOutput(out.policy_logits.cuda(), out.baseline.cuda(), {})
    loss, metrics = term(LossContext(batch=batch, out=out, dist=Categorical(6), hparams=dict(term.hparams),
                                     reduction="mean", frames=0))
    assert loss.device.type == "cuda" and math.isfinite(metrics["kickstart/ff/kl"])


@pytest.mark.parametrize("recurrent", [False, True])
def test_a_bf16_teacher_gives_float32_log_probs_close_to_its_fp32_self(recurrent):
    from kickstart.kickstarting.adapt import load_bound_teacher

    teacher = lstm_teacher() if recurrent else ff_teacher()
    spec = spec_of()
    fp32 = bind(teacher, spec)
    low = bind(NetTeacher("low", copy.deepcopy(teacher.net)).with_precision("bf16"), spec)
    assert all(p.dtype == (torch.float32 if recurrent else torch.bfloat16) for p in low.teacher.net.parameters())
    obs, first, last_action, reward = random_stream(6, 5)
    a, _ = fp32.unroll(obs, first, last_action, reward, fp32.initial_state(5))
    b, sb = low.unroll(obs, first, last_action, reward, low.initial_state(5))
    assert b.dtype == torch.float32 and all(s.dtype == torch.float32 for s in sb)
    assert torch.allclose(b.exp().sum(-1), torch.ones(6, 5), atol=1e-3)
    assert (a - b).abs().max() < 0.25 and not torch.equal(a, b)     # rounded, not the same numbers
    with pytest.raises(UserError, match="precision=bf16 applies to checkpoint teachers only"):
        load_bound_teacher("fn", TeacherConfig(callable="test_kickstarting:constant_teacher", precision="bf16"), spec)
    with pytest.raises(UserError, match="precision=.fp16. is not valid; choose one of: auto, fp32, bf16"):
        TeacherConfig(path="x", precision="fp16")


def test_pbt_evolves_each_teachers_lambda_as_alpha_times_rho(tiny_ff_teacher, tmp_path):
    """Per-teacher PBT (Sec. 4.2): kickstart/alpha and kickstart/rho/<t> are explored by factors, and
    each member trains with lambda = schedule * alpha * rho of its explored values."""
    import json

    from kickstart.cli import main

    code = main(["train", "--no-progress", "configs/minatar5.yaml", *TINY, "net.core=ff", "learner.minibatches=1",
                 "learner.unroll_length=8", "learner.batch_size=10", "runtime.backend=serial",
                 "runtime.envs_per_actor=10", "run.tensorboard=false", "run.log_every_s=0.05",
                 f"run.out_dir={tmp_path}", "run.name=pop", "run.total_frames=960",
                 f"kickstart.teachers={{brk: {{path: '{tiny_ff_teacher}', tasks: [minatar:Breakout], rho: 0.5}}}}",
                 "pbt.population_size=2", "pbt.backend=serial", "pbt.ready_frames=320", "pbt.explore_probability=1.0",
                 "pbt.exploit=none", "pbt.mutable={kickstart/alpha: {low: 0.5, high: 2.0}, "
                 "kickstart/rho/brk: {distribution: fixed}}"])
    assert code == 0
    recs = [json.loads(line) for line in (tmp_path / "pop" / "pbt" / "lineage.jsonl").read_text().splitlines()]
    ready = [r for r in recs if r["event"] == "ready"]
    assert ready
    for r in ready:
        for k in ("kickstart/alpha", "kickstart/rho/brk"):
            before, after = r["hparams_before"][k], r["hparams_after"][k]
            assert after == pytest.approx(before * 0.8) or after == pytest.approx(before * 1.2)
    for i in (0, 1):
        last = [r for r in ready if r["member"] == i][-1]["hparams_after"]
        lam = read_metrics(tmp_path / "pop" / "members" / str(i) / "metrics.csv")["kickstart/brk/lambda"][-1][1]
        assert lam == pytest.approx(last["kickstart/alpha"] * last["kickstart/rho/brk"], rel=1e-5)


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_a_split_teacher_gives_the_loss_of_the_same_teacher_in_the_actors(share):
    """Split placement: the actor hook runs the teacher on the first share of its covered columns,
    the learner's placement on the others (where the field holds NaN); the loss and metrics are
    those of the teacher run entirely in the actors."""
    cfg = EnvConfig(id="minatar5", sticky_actions=0.0)
    env = make_batched_env(cfg, [0, 1, 2, 3, 4, 1, 1, 0], seed=3)
    spec = env.spec
    student = build_net(NetConfig(torso="minatar", hidden_size=16), spec)
    covered = [spec.task_names.index("minatar:Breakout"), spec.task_names.index("minatar:Asterix")]
    meanings = ("NOOP", "FIRE", "LEFT", "RIGHT")
    whole, part = (TeacherHook("ff", bind(ff_teacher(meanings), spec), covered, split=split) for split in (False, True))
    part.set_hparams({"kickstart/actor_share": share})
    T = 6
    buffers = []
    for hook in (whole, part):
        actor = Actor(make_batched_env(cfg, [0, 1, 2, 3, 4, 1, 1, 0], seed=3), student, T, seed=3, hooks=[hook])
        buf = allocate(unroll_fields(spec, net_num_logits(student), student.initial_state(1), hook.fields), T, 8)
        actor.collect(buf)
        actor.collect(buf)
        actor.close()
        buffers.append(buf)
    env.close()
    n_cov = int(torch.isin(buffers[1]["task"][0], torch.tensor(covered)).sum())
    ran = (~torch.isnan(buffers[1]["teacher_logits/ff"][1:, :, 0])).any(0).sum().item()
    assert ran == round(share * n_cov)                                    # the actor's share of columns
    ks = KickstartConfig(teachers={"ff": TeacherConfig(path="unused")}, lambda_0=0.7)
    in_actors = KickstartTerm(ks, {"ff": covered}, spec.num_tasks)
    split = KickstartTerm(ks, {"ff": covered}, spec.num_tasks, filled={"ff"})
    placement = Placement([learner_inference("ff", bind(ff_teacher(meanings), spec), covered, spec.num_tasks, True)])
    completed = placement.fill(buffers[1], split.actor_hparams(dict(split.hparams), 0))
    results = []
    for term, buf in ((in_actors, buffers[0]), (split, completed)):
        out, _ = student(*net_inputs(buf["obs"], buf["last_action"], buf["reward"], buf["first"]),
                         tuple(buf[k] for k in buf if k.startswith("core_state.")), buf["task"])
        ctx = LossContext(batch=buf, out=out, dist=Categorical(6), hparams=dict(term.hparams), reduction="sum",
                          frames=0)
        loss, metrics = term(ctx)
        results.append((loss.item(), metrics))
    (la, ma), (ls, ms) = results
    assert la > 0 and ls == pytest.approx(la, rel=1e-5)
    for k in ("kickstart/ff/kl", "kickstart/ff/cross_entropy", "kickstart/ff/agreement", "kickstart/ff/coverage"):
        assert ms[k] == pytest.approx(ma[k], rel=1e-5, abs=1e-6)


def test_split_teachers_share_one_published_actor_share_that_the_placement_balances():
    """The balancing rule itself is tested in test_placement.py; here, kickstarting's use of it."""
    spec = spec_of()
    split = [learner_inference(n, bind(ff_teacher(), spec), [0, 1, 2], 3, split=True) for n in ("a", "b")]
    placement = Placement(split)
    assert placement.published() == {"kickstart/actor_share": 0.0} and len(placement.balancers) == 1
    for _ in range(100):
        placement.balance(0.0)                      # the learner never waits: the actors take everything
    assert placement.published() == {"kickstart/actor_share": 1.0}
    assert placement.metrics() == {"kickstart/actor_share": 1.0}
    learner_only = Placement([learner_inference("ff", bind(ff_teacher(), spec), [0, 1, 2], 3, split=False)])
    learner_only.balance(0.0)
    assert "kickstart/actor_share" not in learner_only.published()
    with pytest.raises(ValueError, match="'rec' is recurrent"):
        learner_inference("rec", bind(lstm_teacher(), spec), [0], 3, split=True)


def test_a_term_whose_learner_teacher_was_not_run_is_an_error():
    """A trainer given the terms but not the setup's split_inference would silently train on the
    actors' share only; the term refuses."""
    spec = spec_of()
    ks = KickstartConfig(teachers={"ff": TeacherConfig(path="unused")})
    term = KickstartTerm(ks, {"ff": [0, 1, 2]}, 3, filled={"ff"})
    batch, _, out = context()
    batch = {k: v for k, v in batch.items() if not k.startswith("teacher_logits/")}
    ctx = LossContext(batch=batch, out=out, dist=Categorical(6), hparams=dict(term.hparams), reduction="mean", frames=0)
    with pytest.raises(KeyError, match="no 'teacher_logits/ff'.*split_inference"):
        term(ctx)
    ctx.batch["teacher_logits/ff"] = torch.full((4, 4, 6), math.nan)   # a split teacher at share 0, not filled
    with pytest.raises(RuntimeError, match="ff: covered steps without logits.*split_inference"):
        term(ctx)
    obs, first, last_action, reward = random_stream(4, 4)
    batch.update(obs=obs, first=first, last_action=last_action, reward=reward)
    placement = Placement([learner_inference("ff", bind(ff_teacher(), spec), [0, 1, 2], 3, split=True)])
    ctx.batch = placement.fill(ctx.batch, {})
    loss, metrics = term(ctx)
    assert metrics["kickstart/ff/coverage"] == 1.0 and math.isfinite(metrics["kickstart/ff/kl"])
