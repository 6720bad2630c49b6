"""kickstart export: the policy alone, smaller than the training checkpoint, same outputs."""

import subprocess
import sys

import torch

from kickstart.evaluate import load_policy
from kickstart.methods import load_config
from kickstart.train import train


def test_export_keeps_the_policy_and_drops_the_optimiser(out_dir, tmp_path):
    cfg = load_config(None, ["env.id=minatar:Breakout", "net.torso=minatar", "net.hidden_size=32",
                             "learner.unroll_length=8", "learner.batch_size=8", "runtime.envs_per_actor=4",
                             "runtime.num_actors=1", "runtime.backend=serial", "run.total_frames=512",
                             f"run.out_dir={out_dir}", "run.progress=false", "run.tensorboard=false"])
    run = train(cfg).run_dir
    out = tmp_path / "policy.pt"
    proc = subprocess.run([sys.executable, "-m", "kickstart.cli", "export", str(run), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size < (run / "checkpoint.pt").stat().st_size
    full, _, _ = load_policy(str(run))
    small, small_cfg, state = load_policy(str(out))
    assert "optimizer" not in state["learner"]
    assert small_cfg.env.id == "minatar:Breakout"
    obs = torch.randint(0, 2, (3, 2, 4, 10, 10), dtype=torch.uint8)
    args = (obs, torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.bool), ())
    torch.testing.assert_close(small(*args)[0].policy_logits, full(*args)[0].policy_logits, rtol=0, atol=0)


def test_episode_quotas_are_fixed_in_advance_and_sum_to_the_request():
    from kickstart.evaluate import episode_quotas

    assert episode_quotas(10, 4) == [3, 3, 2, 2]
    assert sum(episode_quotas(7, 8)) == 7
    assert episode_quotas(3, 1) == [3]


def test_evaluate_plays_exactly_the_requested_episodes_per_task():
    from kickstart.envs import env_spec
    from kickstart.evaluate import evaluate
    from kickstart.nets import build_net

    cfg = load_config(None, ["env.id=minatar5", "net.torso=minatar", "net.hidden_size=16"])
    net = build_net(cfg.net, env_spec(cfg.env))
    env_cfg = load_config(None, ["env.id=minatar5", "env.max_episode_steps=50"]).env   # Freeway is long
    results = evaluate(net, env_cfg, episodes=5, seed=1, envs_per_task=2)
    assert [r.task for r in results] == ["minatar:Asterix", "minatar:Breakout", "minatar:Freeway",
                                         "minatar:Seaquest", "minatar:SpaceInvaders"]
    assert all(len(r.returns) == 5 for r in results)
