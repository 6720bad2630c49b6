"""The ``kickstart`` command line: train, eval, plot.

Every user mistake ends in one line on stderr (``kickstart: error: ...``) and exit status 2;
an interrupted run writes its checkpoint and exits with 130.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from kickstart.errors import UserError

EXAMPLES = """examples:
  kickstart train configs/minatar_breakout.yaml run.total_frames=500000
  kickstart train configs/minatar5.yaml net.core=lstm learner.learning_rate=3e-4
  kickstart train --resume runs/minatar-breakout-20261121-101500 run.total_frames=4000000
  kickstart eval runs/minatar-breakout-20261121-101500 --episodes 20
  kickstart plot runs/minatar-breakout-20261121-101500
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kickstart", description="Train RL agents fast from agents that already exist.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("train", help="train an agent from a YAML config (or resume a run)",
                       description="Train an agent. Settings come from CONFIG (YAML) and then from "
                                   "dotted overrides such as learner.learning_rate=3e-4.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("config", nargs="?", help="YAML config file (omit with --resume)")
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

    pl = sub.add_parser("plot", help="write learning-curve PNGs for runs",
                        description="Plot learning curves of one or more run directories.")
    pl.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    pl.add_argument("--out", help="output directory (default: RUN_DIR/plots for one run, ./plots otherwise)")
    return p


def _split_config_and_overrides(args) -> tuple[str | None, list[str]]:
    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:  # only overrides were given (e.g. with --resume)
        overrides.insert(0, config)
        config = None
    return config, overrides


def cmd_train(args, console) -> int:
    from kickstart.config import load_config
    from kickstart.train import load_run_config, train

    config, overrides = _split_config_and_overrides(args)
    if args.resume:
        if config is not None:
            raise UserError("give either a CONFIG file or --resume RUN_DIR, not both (overrides may follow --resume)")
        cfg = load_run_config(args.resume, overrides)
    else:
        if config is None:
            raise UserError("missing CONFIG: pass a YAML file, e.g. 'kickstart train configs/minatar_breakout.yaml'")
        cfg = load_config(config, overrides)
    result = train(cfg, resume_dir=args.resume, console=console,
                   progress_bar=False if args.no_progress else None)
    print_train_result(console, result)
    return 130 if result.interrupted else 0


def print_train_result(console, result) -> None:
    from rich.table import Table

    table = Table(title=f"run {result.run_dir}")
    table.add_column("task")
    table.add_column("mean return (last 100 episodes)", justify="right")
    for task, r in sorted(result.mean_returns.items()):
        table.add_row(task, f"{r:.2f}")
    if result.suite_score is not None:
        table.add_row("suite score (capped, normalised)", f"{result.suite_score:.1f}")
    console.print(table)
    state = "interrupted at" if result.interrupted else "trained"
    console.print(f"{state} {result.frames:,} frames ({result.agent_steps:,} agent steps) in "
                  f"{result.seconds:.0f} s: {result.fps:,.0f} frames/s. Checkpoint: {result.run_dir / 'checkpoint.pt'}")
    if result.interrupted:
        console.print(f"resume with: kickstart train --resume {result.run_dir}")


def cmd_eval(args, console) -> int:
    import yaml
    from rich.table import Table

    from kickstart.evaluate import evaluate, load_policy, summary_table

    if args.episodes < 1:
        raise UserError(f"--episodes={args.episodes} must be >= 1")
    overrides = {}
    for item in args.env_overrides:
        if "=" not in item:
            raise UserError(f"--env {item!r} must look like key=value, e.g. --env sticky_actions=0")
        k, v = item.split("=", 1)
        overrides[k] = yaml.safe_load(v)
    net, cfg, _ = load_policy(args.checkpoint, overrides)
    results = evaluate(net, cfg.env, args.episodes, seed=args.seed, greedy=args.greedy)
    table = Table(title=f"{args.checkpoint}: {args.episodes} episodes per task"
                        f"{' (greedy)' if args.greedy else ''}")
    for col in ("task", "mean return", "std", "capped score"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for row in summary_table(results):
        table.add_row(*row)
    console.print(table)
    return 0


def cmd_plot(args, console) -> int:
    from kickstart.plot import plot_runs

    paths = plot_runs(args.run_dirs, args.out)
    for p in paths:
        console.print(f"wrote {p}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    args = _parser().parse_args(argv)
    console = Console(stderr=False)
    try:
        return {"train": cmd_train, "eval": cmd_eval, "plot": cmd_plot}[args.command](args, console)
    except UserError as e:
        print(f"kickstart: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kickstart: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
