"""The ``kickstart`` command line: train, eval, plot.

Exit status:

* 0: done.
* 2: a user mistake (bad config key or value, unknown env or network, missing or corrupt
  checkpoint, ...): one line on stderr, ``kickstart: error: <what is wrong; what is valid>``, and
  no traceback. Checks that need no torch (config, env ids, paths) run before torch is imported,
  so mistakes are answered at once.
* 130: stopped early by SIGINT (Ctrl-C) *or* SIGTERM (``kill``, a cluster scheduler's preemption).
  Both mean the same thing: on the signal, a checkpoint of the last completed update is written at
  once (within moments, however long the current update takes); training then stops at the end of
  the current update, writes its final checkpoint, and ``kickstart train --resume RUN_DIR``
  continues the run. A second signal exits at once, also with 130: the first one's checkpoint is on
  disk (only the update in progress is lost). In a PBT population every member does the same. (The shell convention would
  give SIGTERM 143; one code for "stopped on request, resumable" is simpler for job scripts, and
  the training loop does not report which signal stopped it.)
* anything else: a bug or a crash (with its traceback); the checkpoint is still written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from kickstart.errors import UserError

EXAMPLES = """examples:
  kickstart train configs/minatar_breakout.yaml run.total_frames=500000
  kickstart train configs/minatar5.yaml net.core=lstm --no-progress learner.learning_rate=3e-4
  kickstart train env.id=CartPole-v1 run.total_frames=200000     # no CONFIG: the built-in defaults
  kickstart train configs/minatar_breakout.yaml pbt.population_size=4 pbt.ready_frames=50000
  kickstart train --resume runs/minatar-breakout-20261121-101500 run.total_frames=4000000
  kickstart eval runs/minatar-breakout-20261121-101500 --episodes 20
  kickstart plot runs/minatar-breakout-20261121-101500
"""


class _IntermixedParser(argparse.ArgumentParser):
    """A subcommand's parser that takes its options anywhere among its positionals:
    ``kickstart train CONFIG a=1 --no-progress b=2`` (plain argparse stops taking positionals at the
    first option and answers "unrecognized arguments: b=2")."""

    _parsing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._parsing:  # parse_known_intermixed_args calls back in here (Python <= 3.12)
            return super().parse_known_args(args, namespace)
        self._parsing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing = False


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kickstart", description="Train RL agents fast from agents that already exist.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_IntermixedParser)
    sub.required = True

    t = sub.add_parser("train", help="train an agent from a YAML config (or resume a run)",
                       description="Train an agent. Settings come from CONFIG (YAML) and then from dotted\n"
                                   "overrides such as learner.learning_rate=3e-4. Without CONFIG, overrides alone\n"
                                   "start from the built-in defaults (MinAtar Breakout, torso picked to fit the env),\n"
                                   "e.g. 'kickstart train env.id=CartPole-v1'; 'kickstart train' with nothing at all\n"
                                   "is an error, not a full-length run. Options may come anywhere: before, between\n"
                                   "or after the overrides.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("config", nargs="?", metavar="CONFIG",
                   help="YAML config file (omit it with --resume, or to start from the built-in defaults)")
    t.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (plain log lines)")

    e = sub.add_parser("eval", help="mean return of a checkpoint over N episodes per task",
                       description="Evaluate a checkpoint (a file or a run directory).")
    e.add_argument("checkpoint", help="checkpoint file or run directory")
    e.add_argument("--episodes", type=int, default=10, help="episodes per task (default 10)")
    e.add_argument("--greedy", action="store_true", help="act greedily instead of sampling")
    e.add_argument("--seed", type=int, default=12345)
    e.add_argument("--env", dest="env_overrides", action="append", default=[], metavar="key=value",
                   help="override an env setting, e.g. --env sticky_actions=0")

    x = sub.add_parser("export", help="write the policy alone (weights + config, no optimiser) to a file",
                       description="Export a checkpoint's policy as a small standalone checkpoint that "
                                   "'kickstart eval' runs and kickstarting accepts as a teacher.")
    x.add_argument("checkpoint", help="checkpoint file or run directory")
    x.add_argument("out", help="output file, e.g. teachers/minatar-breakout.pt")

    r = sub.add_parser("report", help="the papers' tables and plots for sets of runs (markdown + PNG)",
                       description="Score at fixed frame budgets, frames to reach fixed scores, improvement "
                                   "over a baseline group, and plots, for groups of runs (seeds) or PBT runs "
                                   "(top-3 members). Runs named NAME-s<N> are grouped as NAME.")
    r.add_argument("run_dirs", nargs="*", metavar="RUN_DIR")
    r.add_argument("--group", action="append", default=[], metavar="LABEL=DIR[,DIR...]",
                   help="an explicit group of runs (repeatable)")
    r.add_argument("--metric", help="metric to compare (default: suite score, or the single task's return)")
    r.add_argument("--budgets", default="", help="comma-separated frame budgets, e.g. 1e6,5e6,1e7")
    r.add_argument("--scores", default="", help="comma-separated target scores, e.g. 10,20,30 (with a negative first: --scores=-19,0,15)")
    r.add_argument("--baseline", help="group the others are compared with (default: the first)")
    r.add_argument("--smooth", type=int, default=5, help="moving average over N logged points (default 5)")
    r.add_argument("--out", default="report", help="output directory (default ./report)")

    pl = sub.add_parser("plot", help="write learning-curve PNGs for runs",
                        description="Plot learning curves of one or more run directories.")
    pl.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    pl.add_argument("--out", help="output directory (default: RUN_DIR/plots for one run, ./plots otherwise)")
    return p


def _split_config_and_overrides(args) -> tuple[str | None, list[str]]:
    """CONFIG is optional, so the first positional is an override when it holds '=' (and is not
    the name of an existing file): only overrides were given (with --resume, or from the defaults)."""
    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).exists():
        overrides.insert(0, config)
        config = None
    return config, overrides


# Settings a resumed run cannot change. The network and the optimiser are rebuilt from the config
# and then loaded from the checkpoint, so a different value either does not fit the checkpoint or
# is silently replaced by the checkpoint's (the optimiser's hyperparameters and the PBT-mutable
# learning rate and entropy cost are restored from it).
# net.precision is not among them: it changes how the same weights are computed, not what they are,
# and a run resumed on another machine may need another (auto re-resolves it there).
_FIXED_ON_RESUME = ("net.", "env.id", "env.full_action_space", "env.frame_stack", "env.doom.", "learner.optimizer",
                    "learner.learning_rate", "learner.entropy_cost", "learner.rmsprop_", "learner.adam_",
                    "pbt.population_size")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resume_changes(saved, new) -> None:
    """Refuse overrides that a resumed run cannot honour (see ``_FIXED_ON_RESUME``)."""
    from kickstart.configio import to_dict

    before, after = _flat(to_dict(saved)), _flat(to_dict(new))
    bad = [k for k in after if after[k] != before.get(k) and k.startswith(_FIXED_ON_RESUME) and k != "net.precision"]
    if bad:
        changes = ", ".join(f"{k} {before.get(k)!r} -> {after[k]!r}" for k in bad)
        raise UserError(f"--resume cannot change {changes}: the checkpoint's network and optimiser state fix "
                        f"them; only run.*, runtime.* and the other learner/env settings may change on resume "
                        f"(start a new run to change these)")


def _check_env_and_net(cfg) -> None:
    """Fail on an unknown env, a network that does not fit it or a missing device before a run
    directory is made (the env check needs no torch)."""
    from kickstart.envs import env_spec

    spec = env_spec(cfg.env)
    from kickstart.learner import pick_device
    from kickstart.methods import build_agent

    build_agent(cfg, spec)
    pick_device(cfg.learner.device)
    if cfg.runtime.backend == "ray" or (cfg.pbt.enabled and cfg.pbt.backend == "ray"):
        from kickstart.runtime.ray_backend import connect

        connect(cfg.ray)  # a cluster that does not answer is reported now, before a run directory exists


def cmd_train(args, console) -> int:
    config, overrides = _split_config_and_overrides(args)
    if args.resume:
        if config is not None:
            raise UserError("give either a CONFIG file or --resume RUN_DIR, not both (overrides may follow --resume)")
        if not (Path(args.resume) / "config.yaml").is_file():  # answered before torch is imported
            raise UserError(f"{args.resume!r} is not a run directory (no config.yaml); pass the directory "
                            f"a previous 'kickstart train' created")
        from kickstart.rundir import load_run_config

        cfg = load_run_config(args.resume, overrides)
        check_resume_changes(load_run_config(args.resume), cfg)
    else:
        if config is None and not overrides:
            raise UserError("missing CONFIG: pass a YAML file, e.g. 'kickstart train configs/minatar_breakout.yaml', "
                            "or overrides alone to start from the built-in defaults, e.g. "
                            "'kickstart train env.id=minatar:Breakout'")
        from kickstart.methods import load_config  # the run's config class: every built-in method's section

        cfg = load_config(config, overrides)  # config None: the built-in defaults
    _check_env_and_net(cfg)
    if cfg.pbt.enabled:  # pbt.population_size > 1: a population, trained with PBT
        from kickstart.pbt.controller import run_population

        result = run_population(cfg, resume_dir=args.resume, console=console)
        return 130 if result.interrupted else 0
    from kickstart.train import train

    result = train(cfg, resume_dir=args.resume, console=console,
                   progress_bar=False if args.no_progress else None)
    print_train_result(console, result)
    return 130 if result.interrupted else 0


def _say(console, text: str) -> None:
    """Print plain text: no rich markup (paths may hold '['), no wrapping (the line is copied)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def print_train_result(console, result) -> None:
    import shlex

    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"run {result.run_dir}"))
    table.add_column("task")
    table.add_column("mean return (last 100 episodes)", justify="right")
    for task, r in sorted(result.mean_returns.items()):
        table.add_row(task, f"{r:.2f}")
    if result.suite_score is not None and len(result.mean_returns) > 1:
        table.add_row("suite score (capped, normalised)", f"{result.suite_score:.1f}")
    console.print(table)
    state = "interrupted at" if result.interrupted else "trained"
    _say(console, f"{state} {result.frames:,} frames ({result.agent_steps:,} agent steps) in "
                  f"{result.seconds:.0f} s: {result.fps:,.0f} frames/s. Checkpoint: {result.run_dir / 'checkpoint.pt'}")
    if result.interrupted:
        _say(console, f"resume with: kickstart train --resume {shlex.quote(str(result.run_dir))}")


def cmd_eval(args, console) -> int:
    import yaml

    from kickstart.checkpoint import resolve_checkpoint

    if args.episodes < 1:
        raise UserError(f"--episodes={args.episodes} must be >= 1")
    if not 0 <= args.seed < 2**63:
        raise UserError(f"--seed={args.seed} must be an integer in [0, 2**63)")
    overrides = {}
    for item in args.env_overrides:
        if "=" not in item:
            raise UserError(f"--env {item!r} must look like key=value, e.g. --env sticky_actions=0")
        k, v = item.split("=", 1)
        try:
            overrides[k] = yaml.safe_load(v)
        except yaml.YAMLError:
            overrides[k] = v
    resolve_checkpoint(args.checkpoint)  # a missing file is reported before torch is imported

    from rich.table import Table
    from rich.text import Text

    from kickstart.evaluate import evaluate, load_policy, summary_table

    net, cfg, _ = load_policy(args.checkpoint, overrides)
    results = evaluate(net, cfg.env, args.episodes, seed=args.seed, greedy=args.greedy)
    table = Table(title=Text(f"{args.checkpoint}: {args.episodes} episodes per task"
                             f"{' (greedy)' if args.greedy else ''}"))
    for col in ("task", "mean return", "std", "capped score"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for row in summary_table(results):
        table.add_row(*row)
    console.print(table)
    return 0


def cmd_export(args, console) -> int:
    from kickstart.evaluate import export_policy

    out = export_policy(args.checkpoint, args.out)
    _say(console, f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{what}={text!r} must be comma-separated numbers, e.g. 1e6,5e6") from None


def cmd_report(args, console) -> int:
    from kickstart.report import report

    if args.smooth < 1:
        raise UserError(f"--smooth={args.smooth} must be >= 1")
    path, pngs = report(args.run_dirs, args.group, args.metric, _floats(args.budgets, "--budgets"),
                        _floats(args.scores, "--scores"), args.baseline, args.out, args.smooth)
    text = path.read_text()
    print(text[:text.index("![")] if "![" in text else text, end="", flush=True)  # tables unwrapped
    _say(console, f"wrote {path} and {len(pngs)} plots ({', '.join(p.name for p in pngs)})")
    return 0


def cmd_plot(args, console) -> int:
    from kickstart.plot import plot_runs

    paths = plot_runs(args.run_dirs, args.out)
    for p in paths:
        _say(console, f"wrote {p}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    args = _parser().parse_args(argv)
    console = Console(stderr=False)
    try:
        return {"train": cmd_train, "eval": cmd_eval, "export": cmd_export, "report": cmd_report,
                "plot": cmd_plot}[args.command](args, console)
    except UserError as e:
        message = " ".join(str(e).split())  # one line, whatever the message holds
        print(f"kickstart: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kickstart: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
