"""scripts/resumable.sh: experiment runs that survive a stopped script and, kept without their
checkpoints, a machine that lost its runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "resumable.sh"
CONFIG = ROOT / "configs" / "cartpole.yaml"       # serial backend: a run of 640 frames takes seconds


def bash(cwd: Path, body: str, keep: Path | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KS": f"{sys.executable} -m kickstart.cli", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    env.pop("KEEP", None)
    if keep is not None:
        env["KEEP"] = str(keep)
    return subprocess.run(["bash", "-c", f"set -euo pipefail; source {SCRIPT}; {body}"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_kept_run_is_done_on_a_machine_that_lost_it(tmp_path):
    keep = tmp_path / "results" / "runs"
    p = bash(tmp_path, f"run_or_resume runs r 640 {CONFIG}", keep)
    assert p.returncode == 0, p.stderr
    kept = keep / "r"
    assert (kept / "KEPT").read_text().strip() == "640"
    assert (kept / "metrics.csv").is_file() and (kept / "config.yaml").is_file()
    assert not (kept / "checkpoint.pt").exists() and (tmp_path / "runs" / "r" / "checkpoint.pt").is_file()
    assert bash(tmp_path, "run_path runs r", keep).stdout.strip() == "runs/r"

    subprocess.run(["rm", "-rf", str(tmp_path / "runs")], check=True)            # the next machine
    p = bash(tmp_path, f"run_or_resume runs r 640 {CONFIG}", keep)
    assert p.returncode == 0 and "finished earlier (640 frames)" in p.stdout, p.stderr
    assert not (tmp_path / "runs" / "r").exists()                              # nothing trained again
    assert bash(tmp_path, "run_path runs r", keep).stdout.strip() == str(kept)

    p = bash(tmp_path, f"run_or_resume runs r 1280 {CONFIG}", keep)             # more frames: impossible
    assert p.returncode == 2 and not (tmp_path / "runs" / "r").exists()
    assert len(p.stderr.strip().splitlines()) == 1
    assert "at 640 frames without its checkpoints" in p.stderr and f"delete {kept}" in p.stderr


def test_without_keep_nothing_is_kept_and_a_finished_run_is_resumed(tmp_path):
    p = bash(tmp_path, f"run_or_resume runs r 640 {CONFIG}", None)
    assert p.returncode == 0, p.stderr
    assert not (tmp_path / "results").exists()
    assert bash(tmp_path, "run_path runs gone", None).stdout.strip() == "runs/gone"


def test_keep_run_leaves_out_every_checkpoint_of_a_population(tmp_path):
    pop = tmp_path / "runs" / "pop"
    for m in ("0", "1"):
        (pop / "members" / m).mkdir(parents=True)
        (pop / "members" / m / "checkpoint.pt").write_bytes(b"weights")
        (pop / "members" / m / "pbt_snapshot.pt").write_bytes(b"weights")      # PBT's copy of them
        (pop / "members" / m / "metrics.csv").write_text("frames,time,name,value\n")
    (pop / "lineage.jsonl").write_text("{}\n")
    keep = tmp_path / "kept"
    p = bash(tmp_path, "keep_run runs pop 100", keep)
    assert p.returncode == 0, p.stderr
    assert sorted(str(f.relative_to(keep / "pop")) for f in (keep / "pop").rglob("*") if f.is_file()) == [
        "KEPT", "lineage.jsonl", "members/0/metrics.csv", "members/1/metrics.csv"]


def test_run_or_resume_resumes_a_run_with_a_checkpoint(tmp_path):
    """A run directory with a checkpoint goes on from it (a finished one returns at once), rather than
    starting again: its metadata gains a session."""
    assert bash(tmp_path, f"run_or_resume runs r 640 {CONFIG}", None).returncode == 0
    p = bash(tmp_path, f"run_or_resume runs r 640 {CONFIG}", None)
    assert p.returncode == 0, p.stderr
    assert len(json.loads((tmp_path / "runs" / "r" / "meta.json").read_text())["sessions"]) == 2


@pytest.mark.parametrize("path", ["results/replication/runs/pop/members/0/metrics.csv",
                                  "results/doom/kickstart/runs/scratch-s0/KEPT",
                                  "results/doom/mixmatch/runs/basic-mm-s0/metrics.csv"])
def test_the_scripts_keep_folders_are_committable(path):
    """The experiment scripts' KEEP folders must not fall under .gitignore's runs/."""
    p = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
    assert p.returncode == 1, f"{path} is ignored by git"
