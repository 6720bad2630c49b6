"""kickstart export: the policy alone, smaller than the training checkpoint, same outputs."""

import subprocess
import sys

import torch

from kickstart.config import load_config
from kickstart.evaluate import load_policy
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
