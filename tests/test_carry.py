"""scripts/carry.sh: unfinished runs travel through git to a machine that starts with an empty disk."""

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "carry.sh"


@pytest.fixture
def repo(tmp_path):
    """A repository root holding the script and one population-shaped run directory."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "carry.sh")
    run = tmp_path / "runs" / "exp" / "pop"
    (run / "members" / "0" / "tb").mkdir(parents=True)
    (run / "members" / "0" / "checkpoint.pt").write_bytes(b"weights")
    (run / "members" / "0" / "metrics.csv").write_text("frames,time,name,value\n")
    (run / "members" / "0" / "tb" / "events.out").write_bytes(b"x" * 1000)
    (run / "reports.json").write_text("[]")
    return tmp_path


def carry(repo, *args):
    return subprocess.run(["bash", str(repo / "scripts" / "carry.sh"), *map(str, args)], cwd=repo,
                          capture_output=True, text=True, timeout=60)


def test_pack_then_unpack_on_an_empty_disk_puts_the_run_back_without_its_events(repo):
    p = carry(repo, "pack", "runs/exp/pop")
    assert p.returncode == 0, p.stderr
    assert (repo / "carry" / "runs" / "exp" / "pop.tar.gz").is_file()
    shutil.rmtree(repo / "runs")                               # the next machine
    p = carry(repo, "unpack")
    assert p.returncode == 0 and "runs/exp/pop put back" in p.stdout, p.stderr
    member = repo / "runs" / "exp" / "pop" / "members" / "0"
    assert (member / "checkpoint.pt").read_bytes() == b"weights"
    assert (member / "metrics.csv").is_file() and (repo / "runs" / "exp" / "pop" / "reports.json").is_file()
    assert not (member / "tb").exists()


def test_unpack_leaves_a_run_that_is_already_here_alone(repo):
    assert carry(repo, "pack", "runs/exp/pop").returncode == 0
    ckpt = repo / "runs" / "exp" / "pop" / "members" / "0" / "checkpoint.pt"
    ckpt.write_bytes(b"newer weights")                         # trained on since it was packed
    p = carry(repo, "unpack")
    assert p.returncode == 0 and "already here" in p.stdout
    assert ckpt.read_bytes() == b"newer weights"


def test_drop_forgets_a_carried_run(repo):
    assert carry(repo, "pack", "runs/exp/pop").returncode == 0
    assert carry(repo, "drop", "runs/exp/pop").returncode == 0
    assert not (repo / "carry" / "runs" / "exp" / "pop.tar.gz").exists()


@pytest.mark.parametrize("args, message", [
    (["pack", "runs/missing"], "runs/missing is not a directory"),
    (["pack", "/"], "is not inside"),
    (["pack", "scripts"], "scripts holds no checkpoint.pt"),
    (["drop", "runs/exp/pop"], "runs/exp/pop is not carried"),
    (["send", "runs/exp/pop"], "unknown command send; valid: pack, unpack, drop"),
])
def test_bad_input_is_a_one_line_error(repo, args, message):
    p = carry(repo, *args)
    assert p.returncode == 2
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_git_keeps_what_carry_stores():
    """carry/ holds paths such as carry/runs/...: an ignore pattern for run directories must not hide them."""
    root = SCRIPT.parent.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    p = subprocess.run(["git", "check-ignore", "-q", "carry/runs/learning/pong-s2.tar.gz"], cwd=root)
    assert p.returncode == 1, "git ignores carry/runs/...: scripts/carry.sh's archives would never be committed"
    assert subprocess.run(["git", "check-ignore", "-q", "runs/learning/pong-s2/checkpoint.pt"], cwd=root).returncode == 0
