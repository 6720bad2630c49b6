"""A PBT population survives a hard stop: ``kickstart train --resume RUN_DIR`` after the whole process
group was SIGKILLed (no signal handler ran, no final checkpoint was written) continues every member
from its last checkpoint, with its frame count, hyperparameters and evaluation windows, and the
population's lineage and last reports go on where they stopped."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kickstart.checkpoint import load_checkpoint
from kickstart.pbt.member import MemberReport
from kickstart.pbt.records import Lineage, load_reports, read_lineage, save_reports

ROOT = Path(__file__).resolve().parents[1]
UPDATE = 8 * 8                                  # frames per update of the tiny members
EVERY = 4 * UPDATE                              # pbt.ready_frames
TINY = ["env.id=minatar:Breakout", "net.torso=minatar", "net.hidden_size=32", "learner.optimizer=adam",
        "learner.lr_schedule=constant", "learner.loss_reduction=mean", "learner.unroll_length=8",
        "learner.batch_size=8", "runtime.backend=serial", "runtime.num_actors=1", "runtime.envs_per_actor=8",
        "run.tensorboard=false", "run.log_every_s=0.5", "pbt.population_size=2", "pbt.exploit=none",
        "pbt.ready_episodes=0", f"pbt.ready_frames={EVERY}", "pbt.explore_probability=1.0",
        "pbt.ttest_window=100000"]


def _cli(*args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "kickstart.cli", "train", "--no-progress", *args],
                            cwd=kw.pop("cwd"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kw)


def _stop_once_running(run: Path, overrides: list[str], sig: int, wait: float) -> None:
    """Train a population of 2 in ``run`` and send ``sig`` to its whole process group once both
    members have had 2 ready events (both running, none still starting)."""
    p = _cli("configs/minatar_breakout.yaml", *overrides, f"run.out_dir={run.parent}", f"run.name={run.name}",
             f"run.total_frames={1000 * UPDATE}", cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and p.poll() is None:
            ready = [r for r in read_lineage(run) if r["event"] == "ready"]
            if all(sum(r["member"] == i for r in ready) >= 2 for i in (0, 1)):
                break
            time.sleep(0.05)
        assert p.poll() is None, p.stdout.read()
        os.killpg(p.pid, sig)
        p.wait(wait)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def test_a_sigkilled_population_resumes_every_member_where_its_checkpoint_left_it(tmp_path):
    run = tmp_path / "pop"
    _stop_once_running(run, TINY, signal.SIGKILL, 30)   # the controller and its member processes, at once
    before = read_lineage(run)
    saved = {}
    for i in (0, 1):
        state = load_checkpoint(run / "members" / str(i) / "checkpoint.pt")
        windows = state["extras"]["pbt_member"]["windows"]["minatar:Breakout"]
        saved[i] = (state["counters"]["frames"], state["learner"]["hparams"], windows)
        assert saved[i][0] >= EVERY and len(windows) > 0
    reports = load_reports(run)
    assert sorted(reports) == [0, 1] and all(r.frames >= EVERY for r in reports.values())

    target = max(f for f, _, _ in saved.values()) + 2 * EVERY
    q = _cli("--resume", str(run), f"run.total_frames={target}", cwd=tmp_path)
    out, _ = q.communicate(timeout=300)
    assert q.returncode == 0, out
    after = read_lineage(run)
    assert after[:len(before)] == before               # the lineage goes on, nothing rewritten
    new = after[len(before):]
    for i, (frames, hparams, windows) in saved.items():
        mine = [r for r in new if r.get("member") == i]
        assert mine[0]["event"] == "start" and mine[0]["resumed"] and mine[0]["hparams"] == hparams
        reports_after = [r for r in mine if r["event"] in ("ready", "done")]
        assert reports_after[0]["frames"] == min(frames + EVERY, target) and reports_after[-1]["frames"] == target
        # The window kept the returns of before the stop: the first report's samples begin with them.
        first = json.loads((run / "pbt" / "reports.json").read_text())  # the last reports, at least as long
        samples = first[str(i)]["samples"]
        assert samples[:len(windows)] == pytest.approx(windows) and len(samples) > len(windows)
    rows = (run / "pbt" / "population.csv").read_text().splitlines()
    assert rows[0].startswith("time,member") and sum(r.startswith("time,") for r in rows) == 1


def test_reports_round_trip_and_a_lost_snapshot_cannot_be_copied(tmp_path):
    (tmp_path / "pbt").mkdir()
    snap = tmp_path / "snap.pt"
    snap.write_bytes(b"x")
    reps = {0: MemberReport(0, 640, 12, True, False, False, [1.0, 2.0], {"learning_rate": 1e-3}, str(snap), 3.5),
            1: MemberReport(1, 512, 9, True, False, False, [0.5], {"learning_rate": 2e-3}, str(tmp_path / "gone.pt"),
                            2.0, {"minatar:Breakout": 0.5})}
    save_reports(tmp_path, reps)
    back = load_reports(tmp_path)
    assert back[0] == reps[0]
    assert back[1].checkpoint is None and back[1].samples == [0.5] and back[1].mean_returns == {"minatar:Breakout": 0.5}
    assert load_reports(tmp_path / "elsewhere") == {}


def test_a_resumed_member_waits_for_ready_episodes_new_since_its_checkpoint(tmp_path):
    """The episode count comes back with the checkpoint; the next ready event still needs
    pbt.ready_episodes episodes finished after the resume, not one update."""
    from kickstart.methods import load_config
    from kickstart.pbt.member import Member, MemberSpec

    ready = 20
    over = [o for o in TINY if not o.startswith(("pbt.ready_episodes", "pbt.ready_frames"))]
    cfg = load_config(str(ROOT / "configs/minatar_breakout.yaml"),
                      [*over, f"pbt.ready_episodes={ready}", "pbt.ready_frames=0", "run.progress=false"])
    first = Member(MemberSpec(0, cfg, str(tmp_path / "m0"), {"learning_rate": 1e-3}))
    try:
        report = first.run_until(10**9)
        assert report.ready and report.episodes >= ready
        first.save()
    finally:
        first.close()
    again = Member(MemberSpec(0, cfg, str(tmp_path / "m0"), resume=True))
    try:
        start = again.trainer.stats.episodes
        assert start == load_checkpoint(tmp_path / "m0" / "checkpoint.pt")["extras"]["episode_stats"]["count"][
            "minatar:Breakout"] > 0
        report = again.run_until(10**9)
        assert report.ready and report.episodes - start >= ready
    finally:
        again.close()


@pytest.mark.parametrize("snapshots_lost", [False, True])
def test_after_a_graceful_stop_a_resumed_population_still_exploits(tmp_path, snapshots_lost):
    """A stopped member's last report (interrupted) is what the resumed controller compares first, so
    it comes with a snapshot to copy; no ready member may be sent to copy a report without one (its
    snapshot lost with a machine: that crashed the member and spent the restart budget)."""
    run = tmp_path / "pop"
    truncation = [o for o in TINY if not o.startswith("pbt.exploit")] + ["pbt.exploit=truncation",
                                                                          "pbt.truncation_fraction=0.5"]
    _stop_once_running(run, truncation, signal.SIGINT, 60)   # as Ctrl-C: every member checkpoints and reports
    reports = load_reports(run)
    assert sorted(reports) == [0, 1] and all(r.interrupted for r in reports.values())
    # Every report comes with weights to copy. A member stopped just after it copied the other has an
    # empty window (restore clears it: those samples were the replaced weights'), so only the donor's
    # samples are certain to be there, and only a report with samples can be copied from.
    assert all(r.checkpoint is not None for r in reports.values())
    assert any(r.samples for r in reports.values())
    before = len(read_lineage(run))
    if snapshots_lost:
        for m in (0, 1):
            (run / "members" / str(m) / "pbt_snapshot.pt").unlink()

    start = max(r.frames for r in reports.values())
    q = _cli("--resume", str(run), f"run.total_frames={start + 3 * EVERY}", cwd=tmp_path)
    out, _ = q.communicate(timeout=300)
    assert q.returncode == 0, out
    new = read_lineage(run)[before:]
    assert not [r for r in new if r["event"] == "restart"], new
    assert [r for r in new if r["event"] == "ready" and r.get("donor") is not None], new


def test_read_lineage_leaves_out_a_line_cut_by_a_kill_and_reads_on(tmp_path):
    (tmp_path / "pbt").mkdir()
    assert read_lineage(tmp_path) == []                      # no file before the first record
    whole = [{"event": "start", "member": 0}, {"event": "ready", "member": 0, "frames": 8}]
    torn = json.dumps({"event": "done", "member": 0})[:-5]
    (tmp_path / "pbt" / "lineage.jsonl").write_text("".join(json.dumps(r) + "\n" for r in whole) + torn)
    assert read_lineage(tmp_path) == whole
    # A resumed run's records start on a line of their own and are read after the torn one.
    lineage = Lineage(tmp_path, ["learning_rate"])
    again = lineage.record({"event": "start", "member": 0, "resumed": True})
    lineage.close()
    assert read_lineage(tmp_path) == [*whole, again]
