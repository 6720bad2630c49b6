"""The Ray backend and Ray-hosted PBT, against a real two-node Ray cluster on loopback.

The module starts one cluster (a head and a second node, both bound to 127.0.0.1, no dashboard) and
connects this process to it. Against it:

* training with ``runtime.backend=ray``: actors on both nodes; the unrolls they return were made
  with the parameters the learner published (the learner reproduces their logits exactly, before
  and after a publish); an actor whose process is killed mid-run is replaced with a fresh seed and
  the run finishes;
* PBT with ``pbt.backend=ray``: a population of two on both nodes runs to the end through its ready
  events; a donor's checkpoint reaches the copying member through the object store (the donor's
  file is deleted first); a member whose process is killed is restarted from its checkpoint;
* bad input: unknown and malformed ``ray.*`` settings, an address where no cluster answers
  (through the real CLI, in a fresh process), Ray not installed.

The killed actor, the killed member and the lost node are in the slow tier (``pytest -m slow``):
the default tier covers the first two on the local backend (tests/test_runtime.py,
tests/test_pbt_population.py) and keeps the Ray-only behaviours here.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[test,ray]'): "
                                        "the Ray backend tests need a real Ray cluster")

from ray.cluster_utils import Cluster

from kickstart.checkpoint import load_checkpoint
from kickstart.cli import main
from kickstart.config import RayConfig
from kickstart.errors import ConfigError
from kickstart.methods import load_config
from kickstart.pbt.controller import run_population
from kickstart.pbt.member import MemberSpec
from kickstart.pbt.ray_host import RayHost
from kickstart.pbt.records import read_lineage
from kickstart.runtime.actor import actor_seed
from kickstart.runtime.ray_backend import _loopback_only, connect
from kickstart.runtime.unroll import core_state_of, net_inputs
from kickstart.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = ["env.id=minatar:Breakout", "net.torso=minatar", "net.hidden_size=32", "learner.optimizer=adam",
        "learner.lr_schedule=constant", "learner.loss_reduction=mean", "learner.unroll_length=8",
        "run.progress=false", "run.tensorboard=false", "run.log_every_s=0.5"]
RAY_RUNTIME = ["runtime.backend=ray", "runtime.num_actors=2", "runtime.envs_per_actor=4", "learner.batch_size=8"]
MEMBER_RUNTIME = ["runtime.backend=serial", "runtime.num_actors=1", "runtime.envs_per_actor=8",
                  "learner.batch_size=8"]
FRAMES_PER_UPDATE = 8 * 8


@pytest.fixture(scope="module")
def ray_cluster():
    """A head and a second node on 127.0.0.1 (2 logical CPUs each, no dashboard); this process
    connected to it the way ``ray.address=host:port`` connects."""
    _loopback_only()
    nodes = {"num_cpus": 2, "node_ip_address": "127.0.0.1", "object_store_memory": 200 * 2**20}
    # A dead node is declared dead after 3 missed 1 s health checks (Ray's default: 5 x 3 s).
    health = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
    c = Cluster(initialize_head=True, head_node_args={**nodes, "include_dashboard": False, "_system_config": health})
    try:
        c.add_node(**nodes)
        assert connect(RayConfig(address=c.address)) is False      # joined, not started
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        from ray._private.utils import get_ray_address_file

        addr_file = Path(get_ray_address_file(None))          # no stale "auto" address left behind
        if addr_file.exists() and addr_file.read_text().strip() == c.address:
            addr_file.unlink()


@pytest.fixture
def cluster(ray_cluster):
    """The module's cluster, once the actors of earlier tests have released their CPUs (``ray.kill``
    returns before they have): a test's actors are then placed on an idle cluster."""
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources().get("CPU", 0) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    return ray_cluster


def _node_ids() -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


def _cfg(tmp_path, *overrides):
    return load_config(None, [*TINY, f"run.out_dir={tmp_path}", *overrides])


class Lines:
    """Collects what the trainer prints (its console)."""

    def __init__(self):
        self.lines: list[str] = []

    def print(self, msg, **_kw):
        self.lines.append(str(msg))


def _logits(net, batch):
    with torch.no_grad():
        out, _ = net(*net_inputs(batch["obs"], batch["last_action"], batch["reward"], batch["first"]),
                     core_state_of(batch), batch["task"])
    return out.policy_logits


# -- runtime.backend=ray ---------------------------------------------------------------------------

def test_actors_on_both_nodes_return_unrolls_made_with_the_published_parameters(cluster, tmp_path):
    cfg = _cfg(tmp_path, *RAY_RUNTIME, "run.total_frames=3000")
    (tmp_path / "run").mkdir()
    trainer = Trainer(cfg, tmp_path / "run")
    try:
        trainer.start()
        backend = trainer.backend
        nodes = {node for node, _ in backend.actor_locations()}
        assert nodes == _node_ids() and len(nodes) == 2                 # SPREAD: one actor per node
        net = trainer.learner.net
        batch = backend.get_batch()
        assert batch["obs"].shape[:2] == (9, 8)                         # [T+1, B]
        torch.testing.assert_close(_logits(net, batch), batch["logits"], rtol=1e-5, atol=1e-5)
        # Publish other parameters (feed-forward net: logits depend on the entry alone). Unrolls made
        # or requested before the publish carry the old ones, every later one the new ones: per
        # unroll, the logits match exactly one set.
        k = backend.unrolls_per_batch
        stale = len(backend.ready) + len(backend.inflight)
        old = {key: v.clone() for key, v in net.state_dict().items()}
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(-1.5)
        new = {key: v.clone() for key, v in net.state_dict().items()}
        backend.publish(new, trainer.learner.published_hparams(0))
        made_with = []
        for _ in range(-(-stale // k) + 2):
            batch = backend.get_batch()
            n = cfg.runtime.envs_per_actor
            for j in range(k):
                unroll = {key: v[:, j * n:(j + 1) * n] if backend.fields[key].per_step else v[j * n:(j + 1) * n]
                          for key, v in batch.items()}
                matches = []
                for name, params in (("old", old), ("new", new)):
                    net.load_state_dict(params)
                    # entry 0 repeats the previous unroll's last entry, made before the switch
                    if torch.allclose(_logits(net, unroll)[1:], unroll["logits"][1:], rtol=1e-5, atol=1e-5):
                        matches.append(name)
                assert len(matches) == 1, matches
                made_with += matches
        assert made_with.count("old") <= stale and made_with.count("new") >= 2 * k, made_with
        net.load_state_dict(old)
        assert trainer.run_until(cfg.run.total_frames)
        assert trainer.frames >= 3000 and trainer.learner.steps > 0
        assert sum(trainer.stats.count.values()) > 0                    # episodes came back from the actors
    finally:
        trainer.close()
    assert ray.is_initialized()                                          # a joined cluster is not shut down


@pytest.mark.slow   # the Ray twin of test_runtime.py::test_local_backend_survives_a_killed_actor (default tier)
def test_an_actor_killed_mid_run_is_replaced_and_the_run_finishes(cluster, tmp_path):
    cfg = _cfg(tmp_path, *RAY_RUNTIME, "run.total_frames=4000", "runtime.actor_restarts=1")
    console = Lines()
    (tmp_path / "run").mkdir()
    trainer = Trainer(cfg, tmp_path / "run", console=console)
    killed = []

    def kill_actor_0_once(t):
        if t.learner.steps == 5 and not killed:
            _, pid = t.backend.actor_locations()[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    try:
        assert trainer.run_until(cfg.run.total_frames, progress=kill_actor_0_once)
        backend = trainer.backend
        assert killed and backend.total_restarts == 1 and backend.restarts == [1, 0]
        assert backend.seeds[0] == actor_seed(cfg.runtime.seed, 0, 1, 0) != actor_seed(cfg.runtime.seed, 0, 0, 0)
        new_pid = backend.actor_locations()[0][1]
        assert new_pid != killed[0]
        assert any("Ray actor 0 lost" in line and "restarted" in line for line in console.lines), console.lines
        assert trainer.frames >= cfg.run.total_frames
    finally:
        trainer.close()


# -- pbt.backend=ray -------------------------------------------------------------------------------

def test_a_population_on_both_nodes_runs_to_the_end(cluster, tmp_path):
    total, every = 12 * FRAMES_PER_UPDATE, 4 * FRAMES_PER_UPDATE
    cfg = _cfg(tmp_path, *MEMBER_RUNTIME, "run.name=pop", f"run.total_frames={total}", "pbt.population_size=2",
               "pbt.backend=ray", "pbt.ready_episodes=0", f"pbt.ready_frames={every}", "pbt.explore_probability=1.0")
    nodes = set()

    def where(rec, controller):
        if rec["event"] == "start":
            nodes.add(controller.handles[rec["member"]].where()[0])

    result = run_population(cfg, on_event=where)
    assert nodes == _node_ids() and len(nodes) == 2
    recs = read_lineage(tmp_path / "pop")
    ready = [r for r in recs if r["event"] == "ready"]
    assert len(ready) == 4 and all(r["explored"] for r in ready)        # 2 per member; explore_probability=1
    assert sorted(r["member"] for r in recs if r["event"] == "done") == [0, 1]
    for i in (0, 1):
        state = load_checkpoint(tmp_path / "pop" / "members" / str(i) / "checkpoint.pt")
        assert state["counters"]["frames"] == total
        last = [r for r in recs if r["member"] == i and r["event"] in ("ready", "done")][-1]
        assert state["learner"]["hparams"] == last.get("hparams_after", last.get("hparams"))
    assert sorted(result.reports) == [0, 1] and all(r.frames == total for r in result.reports.values())
    assert not result.interrupted


def test_a_donor_checkpoint_reaches_the_copying_member_through_the_object_store(cluster, tmp_path):
    every = 4 * FRAMES_PER_UPDATE
    cfg = _cfg(tmp_path, *MEMBER_RUNTIME, "run.total_frames=100000", "pbt.population_size=2", "pbt.backend=ray",
               "pbt.ready_episodes=0", f"pbt.ready_frames={every}")
    host = RayHost(cfg)
    lrs = {0: 1e-3, 1: 2e-3}
    handles = [host.spawn(MemberSpec(i, cfg, str(tmp_path / f"m{i}"), {"learning_rate": lrs[i]})) for i in (0, 1)]
    try:
        assert [h.result()["learning_rate"] for h in handles] == [1e-3, 2e-3]
        reports = [h.call("run_until", 10**6) for h in handles]
        assert all(r.ready and r.checkpoint for r in reports)
        donor_ckpt = Path(reports[1].checkpoint)
        donor_state = load_checkpoint(donor_ckpt)
        donor_ckpt.unlink()                              # the copy must come through the object store
        hp = handles[0].call("restore", str(donor_ckpt))
        assert hp["learning_rate"] == 2e-3
        saved = load_checkpoint(handles[0].call("save"))
        for k, v in donor_state["learner"]["net"].items():
            torch.testing.assert_close(saved["learner"]["net"][k], v)
        assert saved["counters"]["frames"] == reports[0].frames       # its own frame counter is kept
    finally:
        for h in handles:
            h.close()
        host.close()


@pytest.mark.slow   # the Ray twin of test_pbt_population.py::test_a_member_process_that_dies_is_restarted_...
def test_a_member_killed_mid_run_is_restarted_from_its_checkpoint(cluster, tmp_path):
    killed = []

    def kill_member_1_once(rec, controller):
        if rec["event"] == "ready" and rec["member"] == 1 and not killed:
            _, pid = controller.handles[1].where()
            os.kill(pid, signal.SIGKILL)          # after the explore was saved, before it trains on
            killed.append(rec["frames"])

    total, every = 12 * FRAMES_PER_UPDATE, 4 * FRAMES_PER_UPDATE
    cfg = _cfg(tmp_path, *MEMBER_RUNTIME, "run.name=pop", f"run.total_frames={total}", "pbt.population_size=2",
               "pbt.backend=ray", "pbt.exploit=none", "pbt.ready_episodes=0", f"pbt.ready_frames={every}",
               "pbt.explore_probability=1.0", "pbt.member_restarts=1")
    result = run_population(cfg, on_event=kill_member_1_once)
    recs = read_lineage(tmp_path / "pop")
    events = [(r["event"], r.get("member")) for r in recs]
    assert killed == [every] and result.restarts == 1
    k = events.index(("restart", 1))
    assert "member 1 died" in recs[k]["reason"] and recs[k]["frames"] == every
    explored = next(r for r in recs if r["event"] == "ready" and r["member"] == 1)["hparams_after"]
    mine = [r for r in recs[k + 1:] if r.get("member") == 1]
    assert mine[0]["event"] == "start" and mine[0]["resumed"] and mine[0]["hparams"] == explored
    assert [r["frames"] for r in mine if r["event"] in ("ready", "done")] == [2 * every, total]
    assert sorted(result.reports) == [0, 1] and all(r.frames == total for r in result.reports.values())


# -- a node lost -----------------------------------------------------------------------------------

def _lose_worker_node(cluster) -> str:
    """Remove the second node (every process on it dies with it); return its node id."""
    (node,) = cluster.worker_nodes
    node_id = node.node_id
    cluster.remove_node(node, allow_graceful=False)
    return node_id


@pytest.fixture
def node_lost(cluster):
    """Lets a test remove the second node; puts a fresh one back afterwards."""
    yield lambda: _lose_worker_node(cluster)
    if len(_node_ids()) < 2:
        cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1", object_store_memory=200 * 2**20)


@pytest.mark.slow   # timing-dependent on 2 shared cores (node-death detection); opt-in
def test_actors_lost_with_their_node_are_replaced_and_the_run_finishes(node_lost, tmp_path):
    """The second node goes away mid-run: the learner trains on with the actor left while Ray notices,
    then the lost actor is replaced on the node left and the run finishes."""
    cfg = _cfg(tmp_path, *RAY_RUNTIME, "run.total_frames=10000000", "runtime.actor_restarts=2")
    console = Lines()
    (tmp_path / "run").mkdir()
    trainer = Trainer(cfg, tmp_path / "run", console=console)
    lost = []

    def lose_a_node_once(t):
        if t.learner.steps == 5 and not lost:
            lost.append(node_lost())

    def replaced_and_trained_on(t):       # (or long enough to know it never will be)
        return (t.backend.total_restarts > 0 and t.learner.steps > 40) or t.learner.steps > 3000

    try:
        trainer.start()
        assert len({node for node, _ in trainer.backend.actor_locations()}) == 2     # one actor on the lost node
        assert not trainer.run_until(cfg.run.total_frames, progress=lose_a_node_once, until=replaced_and_trained_on)
        backend = trainer.backend
        assert lost and backend.total_restarts == 1 and backend.restarts.count(1) == 1   # the actor on that node
        assert {node for node, _ in backend.actor_locations()} == _node_ids() and lost[0] not in _node_ids()
        assert any("Ray actor" in line and "restarted" in line for line in console.lines), console.lines
        frames = trainer.frames
        assert trainer.run_until(frames + 2000)                   # and the run goes on to its budget
    finally:
        trainer.close()


@pytest.mark.slow   # timing-dependent on 2 shared cores (node-death detection); opt-in
def test_a_member_lost_with_its_node_is_restarted_from_its_checkpoint(node_lost, tmp_path):
    """The member on the second node is lost while it trains, after its first ready event; it
    restarts on the head from its checkpoint (not from scratch) and the population finishes."""
    total, every = 16 * FRAMES_PER_UPDATE, 4 * FRAMES_PER_UPDATE
    head = ray.get_runtime_context().get_node_id()
    lost = {}

    def lose_the_other_node(rec, controller):
        if rec["event"] != "ready" or lost:
            return
        where = {i: h.where()[0] for i, h in enumerate(controller.handles)}
        away = [i for i, node in where.items() if node != head]
        if away and controller.latest.get(away[0]) is not None:              # it has a checkpoint
            lost["member"], lost["frames"] = away[0], controller.latest[away[0]].frames
            node_lost()

    cfg = _cfg(tmp_path, *MEMBER_RUNTIME, "run.name=pop", f"run.total_frames={total}", "pbt.population_size=2",
               "pbt.backend=ray", "pbt.exploit=none", "pbt.ready_episodes=0", f"pbt.ready_frames={every}",
               "pbt.explore_probability=1.0", "pbt.member_restarts=1")
    result = run_population(cfg, on_event=lose_the_other_node)
    assert lost and result.restarts == 1
    m = lost["member"]
    recs = read_lineage(tmp_path / "pop")
    k = [(r["event"], r.get("member")) for r in recs].index(("restart", m))
    mine = [r for r in recs[k + 1:] if r.get("member") == m]
    assert mine[0]["event"] == "start" and mine[0]["resumed"]
    after = [r["frames"] for r in mine if r["event"] in ("ready", "done")]
    assert after[0] > lost["frames"] and after[-1] == total                  # went on from its checkpoint
    assert sorted(result.reports) == [0, 1] and all(r.frames == total for r in result.reports.values())


# -- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("ray.adress=auto", ("unknown config key 'ray.adress' (did you mean 'address'?); valid keys in ray: address, "
                         "host, dashboard, num_cpus, cpus_per_actor, cpus_per_member")),
    ("ray.address=headnode", ("ray.address='headnode' is not valid; use '' (a private local instance), 'auto' "
                              "(the cluster started on this machine) or host:port, e.g. 127.0.0.1:6379")),
    ("ray.address=10.0.0.1:99999", ("ray.address='10.0.0.1:99999' is not valid; use '' (a private local instance), "
                                    "'auto' (the cluster started on this machine) or host:port, e.g. 127.0.0.1:6379")),
    ("ray.host=10.0.0.1:6379", "ray.host='10.0.0.1:6379' must be an IP address without a port, e.g. 127.0.0.1"),
    ("ray.cpus_per_actor=-1", "ray.cpus_per_actor=-1.0 must be >= 0"),
    ("runtime.backend=rayy", "runtime.backend='rayy' is not valid; choose one of: local, serial, ray"),
])
def test_bad_ray_settings_are_one_line_errors(tmp_path, capsys, override, message):
    code = main(["train", "configs/minatar_breakout.yaml", f"run.out_dir={tmp_path}", "runtime.backend=ray", override])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"kickstart: error: {message}"
    assert not any(tmp_path.iterdir())


def test_an_address_where_no_cluster_answers_fails_fast_through_the_cli(tmp_path):
    """In a fresh process (this one is connected to the test cluster): one line, exit status 2, no
    run directory, and no minutes of Ray retries."""
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "kickstart.cli", "train", "configs/minatar_breakout.yaml",
                          f"run.out_dir={tmp_path}", "runtime.backend=ray", "ray.address=127.0.0.1:9"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == ("kickstart: error: ray.address='127.0.0.1:9': no Ray cluster answers at "
                                  "127.0.0.1:9; start its head with 'ray start --head --node-ip-address <ip>', or "
                                  "leave ray.address empty for a private instance")
    assert time.monotonic() - t0 < 60 and not any(tmp_path.iterdir())


def test_ray_not_installed_is_a_one_line_error(monkeypatch):
    from kickstart.runtime.ray_backend import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)          # what an environment without Ray raises
    with pytest.raises(ConfigError, match=r"^runtime.backend=ray needs Ray, which is not installed: "
                                          r"pip install -e '\.\[ray\]'$"):
        import_ray("runtime.backend")
