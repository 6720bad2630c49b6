"""The placement service on its own (kickstart/runtime/placement.py): frozen networks split between
actors and learner, the balance of the share, the learner's fill on its device. No method involved:
a toy network stands in for a teacher (kickstarting's use is tested in test_kickstarting.py)."""

import math

import pytest
import torch

from kickstart.runtime.placement import (
    MAX_ROWS,
    Balancer,
    Placement,
    SplitInference,
    actor_columns,
    unroll_in_pieces,
)
from kickstart.runtime.unroll import net_inputs

W = 3            # output width
SHARE = "toy/share"
GATE = "toy/weight"


class ToyNet:
    """Feed-forward: each step's output is a fixed function of that step's inputs alone. Records the
    rows of every call and every move."""

    def __init__(self):
        self.calls: list[int] = []       # rows per call
        self.moves: list[torch.device] = []
        self.weight = torch.tensor([1.0, -2.0, 0.5])

    def initial_state(self, batch_size):
        return ()

    def unroll(self, obs, first, last_action, last_reward, state):
        assert obs.device == self.weight.device, "the network runs where its weights are"
        self.calls.append(first.numel())
        x = obs.float().flatten(2).sum(-1, keepdim=True) + last_action.float()[..., None] + last_reward[..., None]
        return x * self.weight + first.float()[..., None], state

    def to(self, device):
        self.moves.append(torch.device(device))
        self.weight = self.weight.to(device)
        return self


def batch_of(T=4, B=6, seed=0, tasks=(0, 1, 2, 0, 1, 2)):
    g = torch.Generator().manual_seed(seed)
    first = torch.rand(T + 1, B, generator=g) < 0.2
    return {"obs": torch.randint(0, 3, (T + 1, B, 2, 2), generator=g, dtype=torch.uint8),
            "last_action": torch.randint(0, 4, (T + 1, B), generator=g), "reward": torch.randn(T + 1, B, generator=g),
            "first": first, "task": torch.tensor(tasks).expand(T + 1, B).clone()}


def expected(net, batch):
    """The network over every entry and column of the batch, as either side computes it."""
    obs, la, r, f = net_inputs(batch["obs"], batch["last_action"], batch["reward"], batch["first"])
    out, _ = ToyNet().unroll(obs, f, la, r, ())
    return out


def inference(net=None, tasks=(0, 2), share=SHARE, **kw):
    return SplitInference(name="toy", field="toy/out", net=net or ToyNet(), width=W, tasks=list(tasks), num_tasks=3,
                          share=share, gate=GATE, **kw)


# -- the balance ------------------------------------------------------------------------------------

def test_balance_moves_the_share_towards_the_side_with_slack_and_stays_in_range():
    t = Balancer()
    assert t.share == 0.0
    shares = []
    for _ in range(4):                              # the learner never waits beyond its floor: the bottleneck
        shares.append(t.update(0.01))
    assert shares == pytest.approx([0.1, 0.25, 0.45, 0.65])            # steps 0.1, 0.15, 0.2 (the largest), 0.2
    t.update(0.025)                                 # within the band above the floor (0.01): hold
    assert t.share == pytest.approx(0.65)
    t.update(0.2)                                   # the learner waits: the actors are the bottleneck
    assert t.share == pytest.approx(0.55)           # reversed: half the step
    t.update(0.01)
    assert t.share == pytest.approx(0.6)            # reversed again: half again
    for idle in [0.01, 0.3] * 20:                   # oscillating around the balance point: the smallest step
        t.update(idle)
        assert 0.0 <= t.share <= 1.0
    assert t._step == pytest.approx(0.025)
    for _ in range(100):
        t.update(0.0)
    assert t.share == 1.0
    gpu = Balancer()                                # a GPU learner waits for the actors most of the time
    for idle in [0.6, 0.5, 0.55, 0.45] * 10:
        gpu.update(idle)
        assert gpu.share == 0.0


def test_the_placement_balances_one_share_per_hyperparameter_and_publishes_it():
    a, b, alone = inference(), inference(share=SHARE), inference(share=None)
    b.field, alone.field = "toy/b", "toy/alone"
    placement = Placement([a, b, alone])
    assert list(placement.balancers) == [SHARE] and placement.published() == {SHARE: 0.0}
    placement.balance(0.0)
    assert placement.published() == placement.metrics() == {SHARE: pytest.approx(0.1)}
    assert Placement().published() == {} and Placement([alone]).published() == {}
    with pytest.raises(ValueError, match="toy/out"):
        Placement([inference(), inference()])


# -- the learner's fill -----------------------------------------------------------------------------

def test_actor_columns_are_the_first_share_of_the_covered_ones():
    cols = torch.tensor([1, 4, 5, 7])
    assert actor_columns(cols, 0.0).tolist() == [] and actor_columns(cols, 1.0).tolist() == [1, 4, 5, 7]
    assert actor_columns(cols, 0.5).tolist() == [1, 4] and actor_columns(cols, 0.6).tolist() == [1, 4]


def same(a, b):
    """Equal, NaN included."""
    return torch.equal(torch.nan_to_num(a, 7.0), torch.nan_to_num(b, 7.0))


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_the_learner_computes_exactly_the_covered_steps_the_actors_left_nan(share):
    batch = batch_of()
    T, B = batch["first"].shape[0] - 1, batch["first"].shape[1]
    full = expected(None, batch)
    covered = torch.isin(batch["task"][0], torch.tensor([0, 2]))
    cols = covered.nonzero().squeeze(-1)
    stored = torch.full((T + 1, B, W), math.nan)
    mine = actor_columns(cols, share)                     # what the actor computed and stored ...
    stored[:, mine] = full[:, mine] + 100.0               # ... marked, to tell its values from the learner's
    stored[2, cols[-1]] = math.nan                        # and one step it skipped in another column
    batch["toy/out"] = stored
    before = stored.clone()
    net = ToyNet()
    out = inference(net).fill(batch, {GATE: 1.0})
    got = out["toy/out"]
    assert same(batch["toy/out"], before)                 # the batch's own tensor is not written
    assert out is not batch and all(out[k] is batch[k] for k in batch if k != "toy/out")
    need = covered & torch.isnan(before[:-1, :, 0])       # [T, B]: the steps the learner owes
    assert torch.allclose(got[:-1][need], full[:-1][need])
    assert same(got[:-1][~need], before[:-1][~need])     # everything else as stored: the actors' values, NaN
    assert torch.isnan(got[:, ~covered]).all()            # other tasks: nobody computes them
    assert same(got[-1], before[-1])                      # entry T (the next unroll's entry 0) as stored
    assert net.calls == [T * int(need.any(0).sum())]      # one call over the columns with a step to fill


def test_without_a_share_the_learner_creates_the_field_and_a_zero_gate_skips_the_network():
    batch = batch_of()
    net = ToyNet()
    alone = inference(net, tasks=(1,), share=None)
    skipped = alone.fill(batch, {GATE: 0.0})
    assert skipped is batch and "toy/out" not in skipped and net.calls == []
    out = alone.fill(batch, {GATE: 0.5})
    covered = batch["task"][0] == 1
    full = expected(None, batch)
    assert out["toy/out"].shape == (5, 6, W) and out["toy/out"].dtype == torch.float32
    assert torch.allclose(out["toy/out"][:-1, covered], full[:-1, covered])
    assert torch.isnan(out["toy/out"][:, ~covered]).all() and torch.isnan(out["toy/out"][-1]).all()
    assert net.calls == [4 * 2]                                           # T entries of the 2 covered columns
    assert Placement([alone]).fill(batch, {})["toy/out"].shape == (5, 6, W)   # no gate published: computed


@pytest.mark.parametrize("max_rows", [None, 7, MAX_ROWS])
def test_pieces_of_max_rows_give_the_same_outputs(max_rows):
    batch = batch_of(T=5, B=6, tasks=(0,) * 6)
    net = ToyNet()
    out = inference(net, tasks=(0,), max_rows=max_rows).fill(batch, {})
    assert torch.allclose(out["toy/out"][:-1], expected(None, batch)[:-1])
    assert sum(net.calls) == 30 and len(net.calls) == {None: 1, 7: 5, MAX_ROWS: 1}[max_rows]
    obs, la, r, f = net_inputs(batch["obs"], batch["last_action"], batch["reward"], batch["first"])
    whole, _ = unroll_in_pieces(ToyNet(), obs, f, la, r, (), None)
    parts, _ = unroll_in_pieces(ToyNet(), obs, f, la, r, (), 4)
    assert torch.equal(whole, parts)


def test_the_network_moves_once_to_the_batch_device():
    net = ToyNet()
    item = inference(net)
    for _ in range(3):
        item.fill(batch_of(), {})
    assert net.moves == [torch.device("cpu")]                          # moved once, not per batch


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_network_follows_the_batch_to_the_gpu():
    net = ToyNet()
    batch = {k: v.cuda() for k, v in batch_of().items()}
    out = Placement([inference(net, share=None)]).fill(batch, {})
    assert out["toy/out"].device.type == "cuda" and net.weight.device.type == "cuda"
    assert torch.allclose(out["toy/out"][:-1, [0, 2, 3, 5]].cpu(), expected(None, batch_of())[:-1, [0, 2, 3, 5]],
                          atol=1e-5)


def test_nan_outputs_and_recurrent_networks_are_refused():
    class Broken(ToyNet):
        def unroll(self, obs, first, last_action, last_reward, state):
            out, state = super().unroll(obs, first, last_action, last_reward, state)
            return out * math.nan, state

    with pytest.raises(FloatingPointError, match="'toy' produced NaN"):
        inference(Broken()).fill(batch_of(), {})

    class Recurrent(ToyNet):
        recurrent = True

    with pytest.raises(ValueError, match="'toy' is recurrent"):
        inference(Recurrent())
