"""PopArt (Hessel et al. 2019): statistics, normalisation, and the preserved-outputs property."""

import math

import pytest
import torch

from kickstart.nets.popart import PopArtHead


def _head(num_tasks=3, beta=0.1, seed=0):
    torch.manual_seed(seed)
    return PopArtHead(8, num_tasks, beta=beta)


def test_starts_as_identity_normalisation():
    h = _head()
    x = torch.randn(5, 8)
    task = torch.tensor([0, 1, 2, 0, 1])
    v, n = h(x, task)
    torch.testing.assert_close(v, n)
    torch.testing.assert_close(h.sigma(), torch.ones(3))


def test_update_moves_moments_of_seen_tasks_only():
    """Moments are an exponential moving average with step beta, per task; an absent task keeps its own."""
    h = _head(beta=0.25)
    targets = torch.tensor([10.0, 20.0, -4.0])
    task = torch.tensor([0, 0, 1])
    h.update(targets, task)
    # naive: mu_i <- (1-b) mu_i + b mean(targets_i); nu_i <- (1-b) nu_i + b mean(targets_i^2)
    assert h.mu.tolist() == pytest.approx([0.75 * 0 + 0.25 * 15.0, 0.25 * -4.0, 0.0])
    assert h.nu.tolist() == pytest.approx([0.75 + 0.25 * (100 + 400) / 2, 0.75 + 0.25 * 16.0, 1.0])
    sigma = h.sigma()
    assert sigma[0].item() == pytest.approx(math.sqrt(h.nu[0] - h.mu[0] ** 2))
    assert sigma[2].item() == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(4))
def test_preserves_unnormalised_outputs(seed):
    """The property that defines PopArt: after an update, the normalised statistics have changed and
    the unnormalised value of every input on every task has not."""
    h = _head(num_tasks=3, beta=0.3, seed=seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 8, generator=g)
    tasks = [torch.full((64,), k, dtype=torch.int64) for k in range(3)]
    before = [h(x, t)[0].clone() for t in tasks]
    norm_before = [h(x, t)[1].clone() for t in tasks]
    for _ in range(5):  # targets of very different scales per task
        task = torch.randint(0, 2, (32,), generator=g)   # task 2 never seen
        targets = torch.randn(32, generator=g) * torch.tensor([1.0, 300.0])[task] + torch.tensor([5.0, -800.0])[task]
        h.update(targets, task)
    for k in range(3):
        v, n = h(x, tasks[k])
        torch.testing.assert_close(v, before[k], rtol=1e-4, atol=1e-3)
        if k < 2:
            assert not torch.allclose(n, norm_before[k], atol=1e-3)
    assert h.sigma()[1] > 50 * h.sigma()[0]
    assert h.mu[2] == 0 and h.nu[2] == 1


def test_normalise_inverts_unnormalise():
    h = _head()
    h.update(torch.tensor([3.0, 7.0, 100.0, -50.0]), torch.tensor([0, 0, 1, 1]))
    x = torch.randn(4, 8)
    task = torch.tensor([0, 1, 2, 1])
    v, n = h(x, task)
    torch.testing.assert_close(h.normalise(v, task), n, rtol=1e-5, atol=1e-5)


def test_sigma_is_bounded_below():
    h = _head(beta=1.0)
    h.update(torch.full((10,), 4.0), torch.zeros(10, dtype=torch.int64))  # all targets alike: variance 0
    assert h.sigma()[0].item() == pytest.approx(h.sigma_min)
    assert torch.isfinite(h(torch.randn(2, 8), torch.zeros(2, dtype=torch.int64))[0]).all()


def test_gradients_flow_through_normalised_output_only_to_the_linear_layer():
    h = _head()
    x = torch.randn(6, 8, requires_grad=True)
    v, n = h(x, torch.tensor([0, 1, 2, 0, 1, 2]))
    n.sum().backward()
    assert h.linear.weight.grad is not None and x.grad is not None
    assert not h.mu.requires_grad and not h.nu.requires_grad


def test_bad_beta_names_range():
    with pytest.raises(ValueError, match=r"beta=0.0 must be in \(0, 1\]"):
        PopArtHead(4, 2, beta=0.0)


# -- in the agent network and the learner --------------------------------------------------------

def _popart_learner(beta=0.5):
    from kickstart.envs import env_spec
    from kickstart.learner import Learner
    from kickstart.methods import load_config
    from kickstart.nets import build_net

    cfg = load_config(None, ["env.id=minatar5", "net.torso=minatar", "net.hidden_size=16", "net.popart=true",
                             f"net.popart_beta={beta}", "learner.loss_reduction=mean", "learner.batch_size=5",
                             "runtime.envs_per_actor=5"])
    spec = env_spec(cfg.env)
    torch.manual_seed(0)
    net = build_net(cfg.net, spec)
    assert isinstance(net.baseline_head, PopArtHead) and net.baseline_head.num_tasks == 5
    return cfg, spec, net, Learner(net, cfg.learner, 10_000, device=torch.device("cpu"))


def _batch(spec, T=6, B=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    first = torch.zeros(T + 1, B, dtype=torch.bool)
    first[0] = True
    first[3, 1] = True
    return {
        "obs": torch.randint(0, 2, (T + 1, B, *spec.obs_shape), generator=g).to(torch.uint8),
        "last_action": torch.randint(0, spec.action_nvec[0], (T + 1, B), generator=g),
        "action": torch.randint(0, spec.action_nvec[0], (T + 1, B), generator=g),
        "reward": torch.randn(T + 1, B, generator=g) * torch.tensor([0.1, 1.0, 0.5, 0.2, 0.9]),
        "first": first,
        "logits": torch.randn(T + 1, B, spec.action_nvec[0], generator=g),
        "task": torch.arange(B).repeat(T + 1, 1),
    }


def _by_hand(net, batch):
    """The network's outputs on ``batch`` and the log-probabilities of the taken actions under it and
    under the behaviour logits, computed without the learner."""
    from kickstart.runtime.unroll import net_inputs

    o, la, r, f = net_inputs(batch["obs"], batch["last_action"], batch["reward"], batch["first"])
    out, _ = net(o, la, r, f, (), batch["task"])
    a = batch["action"][:-1, :, None]
    logp = torch.log_softmax(out.policy_logits[:-1], -1).gather(-1, a).squeeze(-1)
    blogp = torch.log_softmax(batch["logits"][:-1], -1).gather(-1, a).squeeze(-1)
    return out, logp, blogp


def test_learner_popart_losses_match_naive_reference():
    """Policy and baseline losses with PopArt, against the paper's formulas written out by hand:
    V-trace on unnormalised values; 0.5 * ((v_s - mu_i) / sigma_i - n_i(x_s))^2; advantages / sigma_i."""
    from kickstart.learner import vtrace_targets

    cfg, spec, net, learner = _popart_learner()
    head = net.baseline_head
    head.update(torch.tensor([5.0, 9.0, -3.0, 40.0, 0.5]), torch.arange(5))   # unequal statistics per task
    batch = _batch(spec)
    _, m = learner.loss(batch, 0)
    with torch.no_grad():
        out, logp, blogp = _by_hand(net, batch)
        vt = vtrace_targets(batch, logp - blogp, out.baseline, cfg.learner)
        task = batch["task"][:-1]
        mu, sigma = head.mu[task], head.sigma()[task]
        n = out.extras["baseline_normalised"][:-1]
        torch.testing.assert_close(out.baseline, head.sigma()[batch["task"]] * out.extras["baseline_normalised"]
                                   + head.mu[batch["task"]])
        naive_baseline = cfg.learner.baseline_cost * (0.5 * ((vt.vs - mu) / sigma - n) ** 2).mean()
        naive_pg = -(logp * vt.pg_advantages / sigma).mean()
    assert m["loss/baseline"] == pytest.approx(naive_baseline.item(), rel=1e-5)
    assert m["loss/policy"] == pytest.approx(naive_pg.item(), rel=1e-5)
    assert m["popart/sigma_max"] > m["popart/sigma_min"]


def test_learner_step_moves_statistics_towards_targets():
    """After one step each task's mu has moved by beta towards the mean V-trace target of its samples."""
    cfg, spec, net, learner = _popart_learner(beta=0.5)
    batch = _batch(spec)
    learner.loss(batch, 0)
    vs, task = learner._popart_targets
    expected = torch.stack([0.5 * vs[task == k].mean() for k in range(5)])   # mu starts at 0
    learner.step(batch, 0)
    torch.testing.assert_close(net.baseline_head.mu, expected, rtol=1e-4, atol=1e-5)
    assert learner._popart_targets is None


def test_advantage_norm_matches_naive_reference():
    """``learner.advantage_norm``: the policy loss uses (A - mean A) / std A over the batch."""
    from kickstart.envs import env_spec
    from kickstart.learner import Learner, vtrace_targets
    from kickstart.methods import load_config
    from kickstart.nets import build_net

    cfg = load_config(None, ["env.id=minatar5", "net.torso=minatar", "net.hidden_size=16", "learner.advantage_norm=true",
                             "learner.loss_reduction=mean", "learner.batch_size=5", "runtime.envs_per_actor=5"])
    spec = env_spec(cfg.env)
    torch.manual_seed(0)
    net = build_net(cfg.net, spec)
    learner = Learner(net, cfg.learner, 10_000, device=torch.device("cpu"))
    batch = _batch(spec)
    _, m = learner.loss(batch, 0)
    with torch.no_grad():
        out, logp, blogp = _by_hand(net, batch)
        adv = vtrace_targets(batch, logp - blogp, out.baseline, cfg.learner).pg_advantages
        a = adv.flatten().tolist()
        mean = sum(a) / len(a)
        std = (sum((x - mean) ** 2 for x in a) / (len(a) - 1)) ** 0.5
        naive = -(logp * ((adv - mean) / (std + 1e-8))).mean()
    assert m["loss/policy"] == pytest.approx(naive.item(), rel=1e-5)


@pytest.mark.parametrize("backend", ["serial", "local"])
def test_actors_receive_the_popart_statistics(tmp_path, backend):
    """The statistics are buffers of the network, published with the weights: the actors' values (which
    bootstrap truncated episodes) are unnormalised with the learner's mu and sigma, not the initial ones."""
    from kickstart.methods import load_config
    from kickstart.train import Trainer

    cfg = load_config(None, ["env.id=CartPole-v1", "net.torso=mlp", "net.hidden_size=8", "net.popart=true",
                             "net.popart_beta=0.5", f"runtime.backend={backend}", "runtime.num_actors=1",
                             "runtime.envs_per_actor=4", "learner.batch_size=4", "learner.unroll_length=8",
                             f"run.out_dir={tmp_path}", "run.tensorboard=false", "run.progress=false"])
    tr = Trainer(cfg, tmp_path, loggers=[])
    try:
        tr.start()
        for _ in range(3):
            tr._update(tr.backend.get_batch())
        tr.publish()
        mu = tr.learner.net.baseline_head.mu.clone()
        assert mu.abs().sum() > 0
        if backend == "serial":
            torch.testing.assert_close(tr.backend.actors[0].net.baseline_head.mu, mu)
        else:
            torch.testing.assert_close(tr.backend.store.tensors["baseline_head.mu"], mu)
    finally:
        tr.close()
