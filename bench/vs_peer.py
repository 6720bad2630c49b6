"""Side by side with the fastest peer: kickstart and TorchBeast's monobeast on Pong, in one sitting.

    .venv/bin/python bench/throughput --vs-peer [--rounds 3] [--seconds 120] [--warmup 30]

Absolute frames/s differ from machine to machine (monobeast measured 3,144 frames/s on one 2-core
machine and 1,338-1,581 on another), so the figure that carries over is the ratio, measured with
both programs on the same machine one after the other. Each round runs monobeast
(``../shared/peers/run_monobeast.sh``: 4 actors, batch 8 x unroll 80, 2 learner threads, Nature CNN,
fp32) and then ``kickstart train configs/atari_pong.yaml net.torso=nature net.precision=fp32
runtime.num_actors=1 runtime.envs_per_actor=32`` (the same network and precision; our own batch and
learner threads, as a user gets them; see ``OURS`` for the actor layout) for the same wall time, as process trees under ``timeout``. Both rates are env frames consumed by the
learner per second after the same warm-up, read from each program's own log
(monobeast's ``logs.csv``, our ``metrics.csv``); memory is the peak sum of PSS of each process tree
(``../shared/peers/pssmon.py``, the same sampler for both). Prints figures, not verdicts.
"""

from __future__ import annotations

import csv
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT.parent / "shared" / "peers"
OURS = ("configs/atari_pong.yaml", "net.torso=nature", "net.precision=fp32", "runtime.num_actors=1",
        "runtime.envs_per_actor=32", "learner.epochs=1", "learner.minibatches=1", "learner.pg_clip=0",
        "learner.advantage_norm=false", "learner.optimizer=rmsprop", "learner.learning_rate=0.0006",
        "learner.loss_reduction=sum", "learner.unroll_length=20", "learner.vtrace_lambda=1", "learner.max_grad_norm=40")
"""Our side: the shipped Pong config with monobeast's network and precision and the papers' one-pass
RMSProp learner (monobeast's kind of update; the shipped config makes four passes per batch), in the actor layout an
fp32 Nature run is best with on 2 cores: one actor process stepping 32 envs. The learner is the
bottleneck there, so a second actor process adds nothing (measured on a quiet Sapphire Rapids-class
Xeon, 75 s runs: 4,330 and 4,428 frames/s with 1 x 32 against 4,418 and 4,167 with 2 x 16) but
costs its own ~170 MB (977-999 MB PSS against 1,122-1,203)."""


def peer_ready() -> str | None:
    """None if monobeast can run here, else why not."""
    venv = Path(os.environ.get("PEERS_VENV", Path.home() / ".cache" / "kickstart-peers" / "venv"))
    if not (PEERS / "run_monobeast.sh").is_file():
        return f"no peer at {PEERS} (the project's shared/peers folder)"
    if not (venv / "bin" / "python").is_file():
        return f"no peers venv at {venv}: run {PEERS / 'setup.sh'} once"
    return None


def run_peer(seconds: float, warmup: float) -> dict:
    out = subprocess.run(["bash", str(PEERS / "run_monobeast.sh"), str(int(seconds)), str(int(warmup))],
                         capture_output=True, text=True, timeout=seconds + 120)
    vals = dict(re.findall(r"^(MEM_MB|FPS) (\S+)$", out.stdout, re.M))
    if "FPS" not in vals:
        raise RuntimeError(f"monobeast printed no FPS (exit {out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}")
    return {"fps": float(vals["FPS"]), "mem_mb": float(vals.get("MEM_MB", "nan"))}


def learner_fps(metrics_csv: Path, t0: float, warmup: float) -> float:
    """Env frames/s over the logged (time, frames) points after ``t0 + warmup``: the frames the
    learner consumed, as monobeast's figure counts them."""
    points = sorted({(float(r["time"]), int(r["frames"])) for r in csv.DictReader(open(metrics_csv))})
    win = [p for p in points if p[0] >= t0 + warmup]
    if len(win) < 2 or win[-1][0] <= win[0][0]:
        return float("nan")
    (ta, fa), (tb, fb) = win[0], win[-1]
    return (fb - fa) / (tb - ta)


def run_ours(seconds: float, warmup: float, extra: list[str]) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="kickstart-vs-peer-"))
    cmd = ["timeout", "-s", "TERM", "-k", "20", str(int(seconds)), str(ROOT / ".venv" / "bin" / "kickstart"), "train",
           *OURS, f"run.out_dir={tmp}", "run.name=ours", "run.progress=false", "run.tensorboard=false",
           "run.total_frames=100000000000", "run.log_every_s=2", "run.checkpoint_every_s=100000", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    mem_file = tmp / "mem.txt"
    mon = subprocess.Popen([sys.executable, str(PEERS / "pssmon.py"), str(proc.pid), str(mem_file), "1.0",
                            "--exclude-root"])
    _, err = proc.communicate(timeout=seconds + 120)
    mon.wait(timeout=30)
    metrics = tmp / "ours" / "metrics.csv"
    if not metrics.is_file():
        raise RuntimeError(f"kickstart wrote no metrics (exit {proc.returncode}): {err[-800:]}")
    fps = learner_fps(metrics, t0, warmup)
    mem_kb = int(mem_file.read_text().split()[0]) if mem_file.is_file() else float("nan")
    subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return {"fps": fps, "mem_mb": mem_kb / 1024}


def vs_peer(rounds: int, seconds: float, warmup: float, extra: list[str], say=print) -> dict:
    """Alternate monobeast and kickstart ``rounds`` times; the per-round ratios and their median."""
    why = peer_ready()
    if why is not None:
        raise SystemExit(f"bench/throughput --vs-peer: {why}")
    say(f"vs peer: {rounds} rounds of monobeast then kickstart, {seconds:.0f} s each ({warmup:.0f} s warm-up); "
        f"ours: kickstart train {' '.join(OURS + tuple(extra))}")
    rows = []
    for r in range(rounds):
        peer = run_peer(seconds, warmup)
        ours = run_ours(seconds, warmup, extra)
        ratio = ours["fps"] / peer["fps"]
        rows.append({"round": r + 1, "peer": peer, "ours": ours, "ratio": ratio})
        say(f"  round {r + 1}: monobeast {peer['fps']:,.0f} frames/s ({peer['mem_mb']:,.0f} MB PSS), "
            f"kickstart {ours['fps']:,.0f} frames/s ({ours['mem_mb']:,.0f} MB PSS): x{ratio:.2f}")
    ratios = [r["ratio"] for r in rows]
    med = statistics.median(ratios)
    say(f"  median ratio x{med:.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
    return {"rounds": rows, "median_ratio": med, "seconds": seconds, "warmup": warmup,
            "ours": list(OURS) + list(extra)}
