"""The ``kickstart`` command line, run as a user runs it (a subprocess).

Every mistake must end with exit status 2 and exactly one stderr line, ``kickstart: error: ...``,
that names what is wrong and what is valid; never a traceback. The bad-input cases are started
together (each is a separate process) and checked one by one.
"""

import os
import pickle
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kickstart.checkpoint import FORMAT, VERSION
from kickstart.methods import load_config
from kickstart.train import train

TINY = ["env.id=minatar:Breakout", "net.torso=minatar", "net.hidden_size=32", "learner.unroll_length=8",
        "learner.batch_size=8", "runtime.envs_per_actor=4", "runtime.backend=serial", "run.progress=false",
        "run.tensorboard=false"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def cli(*args, cwd, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kickstart.cli", *map(str, args)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def assert_user_error(rc: int, stderr: str, *fragments: str) -> None:
    """Exit 2, one stderr line starting 'kickstart: error:', holding every fragment, no traceback."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert rc == 2, f"exit status {rc}, stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith("kickstart: error: "), lines[0]
    for f in fragments:
        assert f in lines[0], f"{f!r} not in: {lines[0]}"


class _RunsCode:
    """Unpickling this runs ``touch MARKER``: a checkpoint must never be loaded that way."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A trained tiny run, a config file, and a zoo of broken and hostile checkpoint files."""
    d = tmp_path_factory.mktemp("cli")
    (d / "tiny.yaml").write_text("env:\n  id: minatar:Breakout\nnet:\n  torso: minatar\n  hidden_size: 32\n")
    cfg = load_config(None, [*TINY, f"run.out_dir={d / 'runs'}", "run.name=good", "run.total_frames=1024",
                             "run.log_every_s=0.2"])
    result = train(cfg)
    assert result.frames >= 1024
    good = d / "runs" / "good"
    data = (good / "checkpoint.pt").read_bytes()
    (d / "truncated.pt").write_bytes(data[: len(data) // 2])
    (d / "random.pt").write_bytes(random.Random(0).randbytes(4096))
    payload = {"format": FORMAT, "version": VERSION, "learner": None}
    payload["learner"] = _RunsCode(d / "MARKER_PICKLE")
    (d / "evil_pickle.pt").write_bytes(pickle.dumps(payload))
    payload["learner"] = _RunsCode(d / "MARKER_TORCH")
    torch.save(payload, d / "evil_torch.pt")
    (d / "not_a_run").mkdir()
    (d / "latin1.yaml").write_bytes("env:\n  id: minatar:Breakout\nrun:\n  name: caf\u00e9\n".encode("latin-1"))
    (d / "ks_cli_teachers.py").write_text(
        "from kickstart.kickstarting import register_teacher\n"
        "register_teacher('jumper', lambda obs: obs.flatten(1)[:, :3], action_meanings=['NOOP', 'JUMP', 'SPIN'])\n")
    return d


BAD_TRAIN = ["run.total_frames=64", "run.out_dir=bad_runs"]   # where a wrongly accepted run would go

# (id, argv, fragments the error line must hold)
CASES = [
    ("env-game", ["train", "tiny.yaml", "env.id=minatar:Pacman", *BAD_TRAIN],
     ["'Pacman'", "minatar:Breakout", "minatar:SpaceInvaders"]),
    ("env-gym", ["train", "tiny.yaml", "env.id=NoSuchEnv-v0", *BAD_TRAIN],
     ["'NoSuchEnv-v0'", "valid env ids", "CartPole-v1", "minatar5"]),
    ("env-suite", ["train", "tiny.yaml", "env.id=minatar6", *BAD_TRAIN],
     ["'minatar6'", "minatar5", "atari57"]),
    ("torso", ["train", "tiny.yaml", "net.torso=resnet", *BAD_TRAIN],
     ["net.torso='resnet'", "impala_deep", "minatar", "mlp"]),
    ("torso-misfit", ["train", "tiny.yaml", "env.id=CartPole-v1", *BAD_TRAIN],
     ["net.torso='minatar'", "(4,)", "mlp"]),
    ("key", ["train", "tiny.yaml", "learner.lerning_rate=1", *BAD_TRAIN],
     ["'learner.lerning_rate'", "did you mean 'learning_rate'", "valid keys in learner"]),
    ("range", ["train", "tiny.yaml", "learner.discount=2", *BAD_TRAIN],
     ["learner.discount=2", "must be in [0, 1]"]),
    ("mm-no-image", ["train", "tiny.yaml", "mixmatch.components=[{actions: [NOOP, JUMP]}, {}]", *BAD_TRAIN],
     ["mixmatch.components[0]", "['JUMP']", "no image", "LEFT"]),
    ("mm-alpha", ["train", "tiny.yaml", "mixmatch.components=[{action_set: minimal}, {}]", "mixmatch.alpha=1.5",
                  *BAD_TRAIN], ["mixmatch.alpha=1.5", "[0, 1]"]),
    ("mm-k1", ["train", "tiny.yaml", "mixmatch.components=[{core: lstm}]", *BAD_TRAIN],
     ["mixmatch.components has 1 component", "K >= 2"]),
    ("teacher-missing", ["train", "tiny.yaml", "kickstart.teachers={t: {path: missing.pt}}", *BAD_TRAIN],
     ["teacher 't'", "'missing.pt' does not exist"]),
    ("teacher-corrupt", ["train", "tiny.yaml", "kickstart.teachers={t: {path: truncated.pt}}", *BAD_TRAIN],
     ["teacher 't'", "'truncated.pt' is corrupt"]),
    ("teacher-obs", ["train", "tiny.yaml", "env.id=minatar:Seaquest", "kickstart.teachers={t: {path: runs/good}}",
                     *BAD_TRAIN], ["teacher 't' expects observations of shape (4, 10, 10)", "(10, 10, 10)"]),
    ("teacher-actions", ["train", "tiny.yaml", "kickstart.teachers={t: {callable: 'ks_cli_teachers:jumper'}}",
                         *BAD_TRAIN], ["teacher 't' has actions the student cannot take: JUMP, SPIN", "NOOP, LEFT"]),
    ("teacher-unknown", ["train", "tiny.yaml", "kickstart.teachers={t: {path: runs/good}}",
                         "kickstart.task_teachers={minatar:Breakout: teacher}", *BAD_TRAIN],
     ["maps task 'minatar:Breakout' to an unknown teacher 'teacher'", "teachers: t"]),
    ("teacher-task", ["train", "tiny.yaml", "kickstart.teachers={t: {path: runs/good, tasks: [minatar:Pong]}}",
                      *BAD_TRAIN], ["covers task 'minatar:Pong'", "tasks: minatar:Breakout"]),
    ("no-config-file", ["train", "nope.yaml"], ["'nope.yaml' does not exist", "YAML file"]),
    ("no-config", ["train"], ["missing CONFIG", "YAML file", "overrides alone", "built-in defaults"]),
    ("config-binary", ["train", "runs/good/checkpoint.pt", *BAD_TRAIN],
     ["config file 'runs/good/checkpoint.pt' is binary", "expected a YAML text file"]),
    ("config-not-utf8", ["train", "latin1.yaml", *BAD_TRAIN],
     ["config file 'latin1.yaml' is not UTF-8 text", "byte 0xe9 at offset 44", "expected a YAML text file"]),
    ("config-dir", ["train", "not_a_run", *BAD_TRAIN], ["config file 'not_a_run' is a directory", "YAML file"]),
    ("config-run-dir", ["train", "runs/good", "run.total_frames=64", "--no-progress"],
     ["config file 'runs/good' is a directory", "kickstart train --resume runs/good"]),
    ("config-and-resume", ["train", "--resume", "runs/good", "--no-progress", "tiny.yaml", "run.total_frames=64"],
     ["either a CONFIG file or --resume RUN_DIR, not both"]),
    ("resume-not-a-run", ["train", "--resume", "not_a_run"], ["'not_a_run' is not a run directory", "config.yaml"]),
    ("resume-other-net", ["train", "--resume", "runs/good", "net.hidden_size=64"],
     ["net.hidden_size 32 -> 64", "run.*"]),
    ("eval-missing", ["eval", "missing.pt"], ["'missing.pt' does not exist", "run directory"]),
    ("eval-random", ["eval", "random.pt"], ["'random.pt'", "not a kickstart checkpoint"]),
    ("eval-truncated", ["eval", "truncated.pt"], ["'truncated.pt' is corrupt"]),
    ("eval-pickle", ["eval", "evil_pickle.pt"], ["refusing to load 'evil_pickle.pt'", "system", "weights_only"]),
    ("eval-torch-save", ["eval", "evil_torch.pt"], ["refusing to load 'evil_torch.pt'", "system"]),
    ("eval-episodes", ["eval", "runs/good", "--episodes", "0"], ["--episodes=0", ">= 1"]),
    ("eval-seed", ["eval", "runs/good", "--seed", "-1"], ["--seed=-1", "[0, 2**63)"]),
    ("eval-env-misfit", ["eval", "runs/good", "--env", "id=minatar:Seaquest"],
     ["observation shape (4, 10, 10)", "(10, 10, 10)"]),
    ("plot-no-metrics", ["plot", "not_a_run"], ["'not_a_run'", "no metrics.csv"]),
]


@pytest.fixture(scope="module")
def bad_runs(work):
    """Start every bad-input case at once; return {id: (exit status, stdout, stderr)}."""
    procs = {}
    for case_id, argv, _ in CASES:
        procs[case_id] = subprocess.Popen([sys.executable, "-m", "kickstart.cli", *argv], cwd=work, env=_env(),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    try:
        for case_id, p in procs.items():
            stdout, stderr = p.communicate(timeout=180)
            out[case_id] = (p.returncode, stdout, stderr)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    return out


@pytest.mark.parametrize("case_id, fragments", [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(bad_runs, case_id, fragments):
    rc, _, stderr = bad_runs[case_id]
    assert_user_error(rc, stderr, *fragments)


def test_bad_input_leaves_nothing_behind(bad_runs, work):
    """No rejected train command created a run directory, and no hostile file ran its code."""
    assert set(bad_runs) == {c[0] for c in CASES}
    assert not (work / "bad_runs").exists() or not any((work / "bad_runs").iterdir())
    assert not list(work.glob("MARKER*"))
    # a refused resume leaves the run as it was
    assert "hidden_size: 32" in (work / "runs" / "good" / "config.yaml").read_text()
    assert "learning_rate: 0.0006" in (work / "runs" / "good" / "config.yaml").read_text()


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "--help"], ["plot", "--help"]],
                         ids=["main", "train", "eval", "plot"])
def test_help(tmp_path, argv):
    p = cli(*argv, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: kickstart") and p.stderr == ""


def test_no_command_is_a_usage_error(tmp_path):
    p = cli(cwd=tmp_path)
    assert p.returncode == 2 and "usage: kickstart" in p.stderr and "Traceback" not in p.stderr


def _table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in ln.strip("│ ").split("│")] for ln in text.splitlines() if ln.startswith("│")]


def test_eval_prints_the_mean_return_per_task(work):
    from kickstart.evaluate import evaluate, load_policy

    # pick a seed whose 3 episodes score something, so a table of zeros cannot pass
    net, cfg, _ = load_policy(str(work / "runs" / "good"))
    seed, expected = next((s, r) for s in range(50) for r in evaluate(net, cfg.env, 3, seed=s) if r.mean > 0)
    assert len(expected.returns) == 3

    p = cli("eval", "runs/good", "--episodes", "3", "--seed", seed, cwd=work)
    assert p.returncode == 0, p.stderr
    assert "3 episodes per task" in p.stdout
    rows = {r[0]: r for r in _table_rows(p.stdout)}
    assert "minatar:Breakout" in rows, p.stdout
    _, mean, std, _ = rows["minatar:Breakout"]
    assert float(mean) == pytest.approx(expected.mean, abs=0.006)
    assert float(std) == pytest.approx(expected.std, abs=0.006)


def test_train_summary_prints_paths_verbatim_on_one_line(tmp_path):
    """Rich would read '[b]' in a path as markup and wrap a long line: the hint must stay copyable."""
    from rich.console import Console

    from kickstart.cli import print_train_result
    from kickstart.train import TrainResult

    run_dir = tmp_path / ("a-very-long-directory-name-" * 4) / "exp[b]1"
    console = Console(record=True, width=60, force_terminal=False)
    print_train_result(console, TrainResult(run_dir, 640, 640, 2.0, {"minatar:Breakout": 0.5}, -0.3,
                                            interrupted=True))
    text = console.export_text()
    assert f"resume with: kickstart train --resume {shlex.quote(str(run_dir))}\n" in text
    assert f"Checkpoint: {run_dir / 'checkpoint.pt'}\n" in text
    assert "suite score" not in text            # one task: no suite


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    assert data[-12:-8] == b"\0\0\0\0" and data[-8:-4] == b"IEND", f"{path} is truncated"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_writes_pngs(work):
    p = cli("plot", "runs/good", cwd=work)
    assert p.returncode == 0, p.stderr
    plots = work / "runs" / "good" / "plots"
    for name in ("returns.png", "losses.png"):
        assert re.search(rf"wrote .*{name}", p.stdout), p.stdout
        w, h = _png_size(plots / name)
        assert w >= 200 and h >= 200


# -- a command line that forgives order -----------------------------------------------------------

@pytest.mark.parametrize("argv, config, overrides, resume, no_progress", [
    (["--no-progress", "c.yaml", "a=1"], "c.yaml", ["a=1"], None, True),
    (["c.yaml", "a=1", "--no-progress", "b=2"], "c.yaml", ["a=1", "b=2"], None, True),
    (["c.yaml", "a=1", "b=2", "--no-progress"], "c.yaml", ["a=1", "b=2"], None, True),
    (["--resume", "runs/x", "a=1", "--no-progress", "b=2"], None, ["a=1", "b=2"], "runs/x", True),
    (["a=1", "--resume=runs/x", "b=2"], None, ["a=1", "b=2"], "runs/x", False),
    (["env.id=CartPole-v1"], None, ["env.id=CartPole-v1"], None, False),
    (["env.id=CartPole-v1", "--no-progress", "run.name=x"], None, ["env.id=CartPole-v1", "run.name=x"], None, True),
    ([], None, [], None, False),
], ids=["option-first", "option-between", "option-last", "resume-between", "resume-after", "overrides-only",
        "overrides-only-between", "nothing"])
def test_train_options_go_anywhere(argv, config, overrides, resume, no_progress):
    from kickstart.cli import _parser, _split_config_and_overrides

    args = _parser().parse_args(["train", *argv])
    assert _split_config_and_overrides(args) == (config, overrides)
    assert (args.resume, args.no_progress) == (resume, no_progress)


def test_a_config_path_with_an_equals_sign_is_still_a_config(tmp_path):
    from kickstart.cli import _parser, _split_config_and_overrides

    path = tmp_path / "lr=3e-4.yaml"
    path.write_text("env:\n  id: CartPole-v1\n")
    args = _parser().parse_args(["train", str(path), "--no-progress", "a=1"])
    assert _split_config_and_overrides(args) == (str(path), ["a=1"])


def test_other_commands_take_options_anywhere(tmp_path):
    from kickstart.cli import _parser

    args = _parser().parse_args(["plot", "runs/a", "--out", "plots", "runs/b"])
    assert (args.run_dirs, args.out) == (["runs/a", "runs/b"], "plots")
    args = _parser().parse_args(["eval", "--episodes", "3", "runs/a", "--greedy"])
    assert (args.checkpoint, args.episodes, args.greedy) == ("runs/a", 3, True)
    p = cli("train", "c.yaml", "a=1", "--bogus", "b=2", cwd=tmp_path)   # a wrong option is still refused
    assert p.returncode == 2 and "unrecognized arguments: --bogus" in p.stderr and "Traceback" not in p.stderr


def _saved_config(run_dir: Path) -> dict:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())


def _trained_frames(stdout: str) -> int:
    m = re.search(r"trained ([\d,]+) frames", stdout)
    assert m, stdout
    return int(m.group(1).replace(",", ""))


def test_train_and_resume_with_options_between_overrides(work, tmp_path):
    """`train CONFIG a=1 --no-progress b=2` and `train --resume RUN_DIR a=1 --no-progress b=2` both run,
    and both overrides, before and after the option, reach the run's config.yaml."""
    runs = tmp_path / "runs"
    p = cli("train", work / "tiny.yaml", *TINY, "run.total_frames=512", "--no-progress", f"run.out_dir={runs}",
            "run.name=mixed", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    run_dir = runs / "mixed"
    saved = _saved_config(run_dir)
    assert saved["run"]["total_frames"] == 512 and saved["run"]["out_dir"] == str(runs)
    assert saved["net"]["hidden_size"] == 32        # from CONFIG
    assert _trained_frames(p.stdout) >= 512

    p = cli("train", "--resume", run_dir, "run.total_frames=1024", "--no-progress", "run.log_every_s=0.5",
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    saved = _saved_config(run_dir)
    assert saved["run"]["total_frames"] == 1024 and saved["run"]["log_every_s"] == 0.5
    assert _trained_frames(p.stdout) >= 1024
    import json

    sessions = json.loads((run_dir / "meta.json").read_text())["sessions"]
    assert len(sessions) == 2 and "--no-progress" in sessions[1]["argv"]
    assert list(runs.iterdir()) == [run_dir]        # the resume made no new run


def test_train_from_the_defaults_with_overrides_only(tmp_path):
    """No CONFIG: the built-in defaults (their `auto` torso fits CartPole's vector observations)."""
    from kickstart.configio import to_dict

    runs = tmp_path / "runs"
    overrides = ["env.id=CartPole-v1", "run.total_frames=2000", "runtime.backend=serial", "run.tensorboard=false",
                 f"run.out_dir={runs}", "run.name=defaults"]
    p = cli("train", *overrides[:2], "--no-progress", *overrides[2:], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    saved = _saved_config(runs / "defaults")
    assert saved["env"]["id"] == "CartPole-v1" and saved["run"]["total_frames"] == 2000
    assert saved == to_dict(load_config(None, overrides))     # the defaults, and nothing else, changed
    assert (runs / "defaults" / "checkpoint.pt").is_file()
    assert _trained_frames(p.stdout) >= 2000
    assert "CartPole-v1" in {r[0] for r in _table_rows(p.stdout)}, p.stdout
