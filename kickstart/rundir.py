"""Run directories: making one, reading its config back, and ``meta.json``, the record of the
sessions that trained in it (code version, packages, machine, command line, and what the precision
and runtime settings resolved to there: a resumed run may land on another machine).
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Sequence

from kickstart.configio import apply_overrides, from_dict
from kickstart.errors import CheckpointError, UserError
from kickstart.method import enabled_methods
from kickstart.methods import Config
from kickstart.runtime.resources import available_cores, resolve_runtime

CHECKPOINT = "checkpoint.pt"


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def precision_plan(cfg: Config) -> dict:
    """What the run's precision settings resolve to on this machine (:func:`kickstart.precision.plan`)."""
    from kickstart.learner import pick_device
    from kickstart.precision import plan

    others = {key: p for m in enabled_methods(cfg) for key, p in m.precisions(cfg).items()}
    return plan(cfg.net.precision, pick_device(cfg.learner.device).type, others)


def run_metadata(cfg: Config | None = None) -> dict:
    """One session's entry in ``meta.json``: code version, packages, machine, command line and,
    given the config, what its precision settings resolve to here."""
    versions = {}
    for pkg in ("kickstart", "torch", "numpy", "gymnasium", "ale-py", "MinAtar", "scipy", "ray"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {"git_commit": _git_commit(), "packages": versions, "python": platform.python_version(),
            "platform": platform.platform(), "cpu": _cpu_model(), "argv": sys.argv,
            "started": _dt.datetime.now().isoformat(timespec="seconds"),
            **({"precision": precision_plan(cfg), "runtime": runtime_plan(cfg)} if cfg is not None else {})}


def runtime_plan(cfg: Config) -> dict:
    """The cores this session may use and the actors per learner that ``runtime.num_actors`` gives."""
    members = cfg.pbt.population_size
    return {"cores": available_cores(), "num_actors": resolve_runtime(cfg, members=members).runtime.num_actors,
            "learner_threads": cfg.runtime.learner_threads}


def log_precision(plan: dict, console=None) -> None:
    """Say at start-up what precision the run uses here (on ``console``), and warn on stderr, one
    line each, where it asks for bf16 that this machine only emulates."""
    from kickstart.precision import plan_lines

    info, *warnings = plan_lines(plan)
    if console is not None:
        console.print(info, markup=False, highlight=False, soft_wrap=True)
    for line in warnings:
        print(f"kickstart: warning: {line}", file=sys.stderr, flush=True)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def new_run_dir(cfg: Config) -> Path:
    name = cfg.run.name or f"{re.sub(r'[^A-Za-z0-9]+', '-', cfg.env.id).strip('-').lower()}-" \
                           f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    d = Path(cfg.run.out_dir) / name
    if (d / CHECKPOINT).exists():
        raise UserError(f"run directory {str(d)!r} already holds a run; resume it with "
                        f"'kickstart train --resume {d}' or choose another run.name")
    d.mkdir(parents=True, exist_ok=True)
    return d


def load_run_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> Config:
    """The resolved config saved in a run directory, with optional overrides (e.g. a larger budget)."""
    import yaml

    p = Path(run_dir) / "config.yaml"
    if not p.is_file():
        raise CheckpointError(f"{str(run_dir)!r} is not a run directory (no config.yaml); "
                              f"pass the directory a previous 'kickstart train' created")
    data = yaml.safe_load(p.read_text()) or {}
    apply_overrides(data, list(overrides), Config)
    return from_dict(Config, data)


def record_session(run_dir: Path, cfg: Config) -> list[dict]:
    """Append this session's :func:`run_metadata` to ``run_dir/meta.json``; return every session's
    entry so far, this one last."""
    meta_path = Path(run_dir) / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    sessions = meta.setdefault("sessions", [])
    sessions.append(run_metadata(cfg))
    meta_path.write_text(json.dumps(meta, indent=2))
    return sessions
