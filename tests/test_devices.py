"""A learner on another device than the actors' CPU. There is no GPU here: PyTorch's "meta" device
(shapes without data) stands in for it where only shapes and devices matter."""

import pytest

from kickstart.config import NetConfig
from kickstart.nets import build_net
from kickstart.specs import EnvSpec
from kickstart.train import net_num_logits


@pytest.mark.parametrize("core", ["ff", "lstm"])
def test_the_unroll_is_sized_on_the_learners_device(core):
    spec = EnvSpec(obs_shape=(4, 10, 10), obs_dtype="uint8", obs_scale=1.0, action_nvec=(6,), multi_discrete=False,
                   action_meanings=tuple(f"a{i}" for i in range(6)), frames_per_step=1, task_names=("t",))
    net = build_net(NetConfig(torso="minatar", core=core, precision="fp32"), spec)
    assert net_num_logits(net) == 6
    assert net_num_logits(net.to("meta")) == 6        # was: CPU zeros fed to a net on another device
