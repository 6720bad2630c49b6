"""Short real learning runs with hard frame budgets: unit tests on the math are not enough.

Random play scores 0.49 on MinAtar Breakout and about 22 on CartPole-v1. The budgets are fixed in
frames, so these tests always end; the thresholds sit well below what the runs reach (about 4x and
5x random) and well above random.
"""

from kickstart.config import load_config
from kickstart.train import train


def test_minatar_breakout_learns_with_local_actors(out_dir):
    cfg = load_config("configs/minatar_breakout.yaml", [
        "run.total_frames=400000", f"run.out_dir={out_dir}", "run.progress=false", "run.tensorboard=false",
        "runtime.num_actors=2", "runtime.envs_per_actor=32", "learner.batch_size=64"])
    result = train(cfg)
    assert result.frames >= 400_000
    ret = result.mean_returns["minatar:Breakout"]
    assert ret > 1.5, f"Breakout return {ret:.2f} after 400k frames (random: 0.49)"


def test_cartpole_learns_serially(out_dir):
    cfg = load_config(None, [
        "env.id=CartPole-v1", "net.torso=mlp", "net.hidden_size=64", "learner.optimizer=adam",
        "learner.learning_rate=0.002", "learner.loss_reduction=mean", "learner.lr_schedule=constant",
        "learner.entropy_cost=0.01", "learner.unroll_length=20", "learner.batch_size=16",
        "runtime.backend=serial", "runtime.num_actors=1", "runtime.envs_per_actor=16",
        "run.total_frames=150000", f"run.out_dir={out_dir}", "run.progress=false", "run.tensorboard=false"])
    result = train(cfg)
    ret = result.mean_returns["CartPole-v1"]
    assert ret > 100, f"CartPole return {ret:.1f} after 150k frames (random: about 22)"
