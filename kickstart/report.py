"""``kickstart report``: the papers' tables and plots for any set of runs.

Runs are grouped (``--group LABEL=DIR[,DIR...]``, or by run name with a trailing ``-s<N>`` /
``-seed<N>`` removed), and each group is summarised over its seeds:

* score at fixed frame budgets (Kickstarting Tables 1 and 3, left half);
* frames to reach fixed scores (right half): the first frame from which the curve, smoothed over
  ``--smooth`` logged points, stays at or above the score for the rest of the run (an early noisy
  spike does not count); a group reaches a score when every seed does, and reports the mean of the
  seeds' frames;
* improvement of each group over the baseline group, in % (scores; a signed difference where the
  baseline is at or below zero) and x (frames), and the
  papers' headline: the frames each group needs to reach (and stay at) the baseline's final score,
  against the frames the baseline trained for (Kickstarting Sec. 5.2: "matching ... in 9.58x fewer
  steps");
* plots: the metric against frames (mean and min-max over seeds), per-task curves, the weight of
  each kickstarting teacher over training, Mix & Match's alpha, KL, collision entropy and marginal
  action distribution over training (M&M Fig. 5), and for PBT runs the hyperparameters of the best
  member over training (Kickstarting Fig. 2, bottom);
* for PBT runs, what moved each multiplicatively explored hyperparameter of the top members: the
  founding member their line of descent starts from, and the sum of the explore steps along it against
  the drift the perturbation factors alone would give (:mod:`kickstart.pbt.ancestry`).

A PBT run directory (one holding ``members/``) counts as a group of its top-3 members by final
score (smoothed over ``--smooth`` points, as the final column is), as in the papers' figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from kickstart.errors import UserError
from kickstart.method import Panel
from kickstart.methods import METHODS
from kickstart.metrics import read_metrics
from kickstart.plot import subplot_grid

SUITE_METRIC = "episode/suite_score"


@dataclass
class Curve:
    frames: np.ndarray
    values: np.ndarray


def _metrics_of(run: Path) -> dict[str, list[tuple[int, float]]]:
    p = run / "metrics.csv"
    if not p.is_file():
        raise UserError(f"{str(run)!r} is not a run directory with metrics (no metrics.csv)")
    return read_metrics(p)


def default_metric(metrics: dict[str, list]) -> str:
    """The suite score for suites, else the single task's return."""
    if SUITE_METRIC in metrics:
        return SUITE_METRIC
    returns = sorted(k for k in metrics if k.startswith("episode/return/"))
    if len(returns) == 1:
        return returns[0]
    if not returns:
        raise UserError("no episode metrics in these runs yet")
    raise UserError(f"several tasks but no suite score; choose --metric among: {', '.join(returns)}")


def curve(metrics: dict[str, list], name: str, smooth: int = 1) -> Curve | None:
    pts = metrics.get(name)
    if not pts:
        return None
    f = np.array([p[0] for p in pts], dtype=np.float64)
    v = np.array([p[1] for p in pts], dtype=np.float64)
    if smooth > 1 and len(v) >= smooth:
        kernel = np.ones(smooth) / smooth
        v = np.concatenate([np.cumsum(v[:smooth - 1]) / np.arange(1, smooth), np.convolve(v, kernel, "valid")])
    return Curve(f, v)


def score_at(c: Curve, frames: float) -> float | None:
    """The metric at ``frames`` (linear interpolation; None beyond the run)."""
    if c is None or frames > c.frames[-1] or frames < c.frames[0]:
        return None if c is None or frames > c.frames[-1] else float(c.values[0])
    return float(np.interp(frames, c.frames, c.values))


def frames_to_reach(c: Curve, score: float) -> float | None:
    """First frame from which the curve stays >= ``score`` to its end (None if it ends below)."""
    if c is None or c.values[-1] < score:
        return None
    below = np.nonzero(c.values < score)[0]
    return float(c.frames[below[-1] + 1]) if len(below) else float(c.frames[0])


def group_runs(run_dirs: Sequence[str], groups: Sequence[str], metric: str | None,
               smooth: int = 1) -> dict[str, list[Path]]:
    """Label -> run directories. PBT run dirs expand to their top-3 members by final score, smoothed
    over ``smooth`` logged points as the tables' final column is."""
    out: dict[str, list[Path]] = {}
    if groups:
        for g in groups:
            if "=" not in g:
                raise UserError(f"--group {g!r} must look like LABEL=DIR[,DIR...]")
            label, dirs = g.split("=", 1)
            out[label] = [Path(d) for d in dirs.split(",") if d]
    for d in run_dirs:
        p = Path(d)
        label = re.sub(r"-(s|seed)\d+$", "", p.name)
        out.setdefault(label, []).append(p)
    if not out:
        raise UserError("give run directories (or --group LABEL=DIR,...)")
    expanded = {}
    for label, dirs in out.items():
        runs = []
        for d in dirs:
            if not d.is_dir():
                raise UserError(f"run directory {str(d)!r} does not exist")
            members = sorted((d / "members").glob("*/metrics.csv")) if (d / "members").is_dir() else []
            if members:
                runs.extend(_top_members([m.parent for m in members], metric, 3, smooth))
            else:
                runs.append(d)
        expanded[label] = runs
    return expanded


def _top_members(members: list[Path], metric: str | None, k: int, smooth: int = 1) -> list[Path]:
    scored = []
    for m in members:
        met = _metrics_of(m)
        c = curve(met, metric or default_metric(met), smooth)
        scored.append((float(c.values[-1]) if c is not None else -np.inf, m))
    scored.sort(key=lambda t: -t[0])
    return [m for _, m in scored[:k]]


@dataclass
class GroupSummary:
    label: str
    runs: list[Path]
    scores: dict[float, float | None]          # budget -> mean score over seeds
    reach: dict[float, float | None]           # score -> mean frames over seeds (None if a seed never did)
    final: float | None
    final_frames: float
    curves: list[Curve]


def summarise(label: str, runs: list[Path], metric: str, budgets: Sequence[float], targets: Sequence[float],
              smooth: int) -> GroupSummary:
    curves = [curve(_metrics_of(r), metric, smooth) for r in runs]
    curves = [c for c in curves if c is not None]
    if not curves:
        raise UserError(f"group {label!r} has no {metric!r} metric yet")
    scores = {}
    for b in budgets:
        vals = [score_at(c, b) for c in curves]
        scores[b] = float(np.mean(vals)) if all(v is not None for v in vals) else None
    reach = {}
    for s in targets:
        vals = [frames_to_reach(c, s) for c in curves]
        reach[s] = float(np.mean(vals)) if all(v is not None for v in vals) else None
    final = float(np.mean([c.values[-1] for c in curves]))
    return GroupSummary(label, runs, scores, reach, final, float(min(c.frames[-1] for c in curves)), curves)


def frames_to_match(s: GroupSummary, score: float) -> float | None:
    """Mean over ``s``'s seeds of the frames from which each stays at or above ``score`` (None if a
    seed ends below it)."""
    vals = [frames_to_reach(c, score) for c in s.curves]
    return float(np.mean(vals)) if vals and all(v is not None for v in vals) else None


def _fmt_frames(f: float | None) -> str:
    if f is None:
        return "-"
    return f"{f / 1e9:.2f}B" if f >= 1e9 else f"{f / 1e6:.2f}M" if f >= 1e6 else f"{f / 1e3:.0f}k"


def improvement(score: float | None, base: float | None) -> str:
    """``score`` against ``base``: in % where the baseline is positive, else as a signed difference.

    A percentage of a baseline at or below zero says nothing (Pong from scratch at -20 "improved" by
    +182% to +16), so there the table gives the difference in score points.
    """
    if score is None or base is None:
        return "-"
    if base > 0:
        return f"{100 * (score - base) / base:+.1f}%"
    return f"{score - base:+.2f} points"


def markdown(summaries: list[GroupSummary], metric: str, budgets, targets, baseline: str) -> str:
    base = next((s for s in summaries if s.label == baseline), summaries[0])
    head = ["group", "seeds"] + [f"score @ {_fmt_frames(b)}" for b in budgets] + \
           [f"frames to {t:g}" for t in targets] + ["final score"]
    lines = [f"Metric: `{metric}` (mean over seeds; PBT runs: top-3 members).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        row = [s.label, str(len(s.runs))] + ["-" if s.scores[b] is None else f"{s.scores[b]:.2f}" for b in budgets] + \
              [_fmt_frames(s.reach[t]) for t in targets] + [f"{s.final:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    for s in summaries:
        if s is base:
            continue
        row = [f"improvement of {s.label} over {base.label}", ""]
        for b in budgets:
            row.append(improvement(s.scores[b], base.scores[b]))
        for t in targets:
            a, o = s.reach[t], base.reach[t]
            row.append("-" if a is None or o is None or a == 0 else f"{o / a:.2f}x")
        row.append(improvement(s.final, base.final))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    for s in summaries:
        if s is base:
            continue
        at = frames_to_match(s, base.final)
        if at is None:
            reached = "does not stay at it"
        elif at == 0:
            reached = "is at or above it from its first logged point"
        else:
            reached = (f"reaches it at {_fmt_frames(at)} frames, {base.final_frames / at:.2f}x fewer than the "
                       f"{_fmt_frames(base.final_frames)} {base.label} trained for")
        lines.append(f"- {s.label} against {base.label}'s final score ({base.final:.2f}): {reached}; it ends at "
                     f"{s.final:.2f} ({improvement(s.final, base.final)}).")
    lines.append("")
    lines.append("Runs: " + "; ".join(f"{s.label}: " + ", ".join(str(r) for r in s.runs) for s in summaries))
    return "\n".join(lines) + "\n"


def ancestry_markdown(groups: dict[str, list[Path]]) -> str:
    """The lines-of-descent table for every PBT group (empty when there is none, or no lineage)."""
    from kickstart.pbt.ancestry import drift
    from kickstart.pbt.config import perturb_rule
    from kickstart.pbt.records import read_lineage
    from kickstart.rundir import load_run_config

    rows, factors_seen = [], set()
    for label, runs in groups.items():
        members = [r for r in runs if r.parent.name == "members" and r.name.isdigit()]
        if not members:
            continue
        population = members[0].parent.parent
        records = read_lineage(population)
        if not records:
            continue
        cfg = load_run_config(population)
        factors = tuple(cfg.pbt.perturb_factors)
        names = [n for n, prior in sorted(cfg.pbt.mutable.items())
                 if perturb_rule(n, prior, type(cfg).methods) == "multiply"]
        for m in members:
            for name in names:
                try:
                    d = drift(records, int(m.name), name, factors)
                except (KeyError, ValueError):      # a lineage written before these fields existed
                    continue
                factors_seen.add(factors)
                rows.append(f"| {label} | {d.member} | {name} | {d.founder} | {d.initial:.3g} | {d.final:.3g} | "
                            f"{d.steps} | {d.explored_log:+.2f} | {d.expected_log:+.2f} | "
                            f"{d.explored_log - d.expected_log:+.2f} |")
    if not rows:
        return ""
    fs = "; ".join("x" + " or x".join(f"{f:g}" for f in fac) for fac in sorted(factors_seen))
    return "\n".join([
        "## PBT: what moved the hyperparameters", "",
        "Each top member followed back through its exploits to the member its line starts from (the founder, "
        "with its initial value). *explore* is the sum of ln(after / before) over the explore steps along the "
        f"line (so final = initial * exp(explore)); *drift* is what as many unselected steps ({fs}, chosen "
        "uniformly) add on average; *selected* = explore - drift is the share PBT's selection among the "
        "steps added.", "",
        "| population | member | hyperparameter | founder | initial | final | steps | explore (ln) | drift (ln) "
        "| selected (ln) |",
        "|---|---|---|---|---|---|---|---|---|---|", *rows, ""])


def _plot(groups: dict[str, list[Path]], metric: str, out: Path, smooth: int) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    # 1. the metric, mean and min-max over seeds
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, runs in groups.items():
        cs = [c for c in (curve(_metrics_of(r), metric, smooth) for r in runs) if c is not None]
        if not cs:
            continue
        grid = np.linspace(0, min(c.frames[-1] for c in cs), 200)
        ys = np.stack([np.interp(grid, c.frames, c.values) for c in cs])
        line, = ax.plot(grid, ys.mean(0), label=f"{label} ({len(cs)})")
        if len(cs) > 1:
            ax.fill_between(grid, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("env frames")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out / "score.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    written.append(p)
    # 2. per-task curves, then each method's own figures (Method.report_panels)
    panels = (Panel("episode/return/", "tasks.png"), *(p for m in METHODS for p in m.report_panels))
    for panel in panels:
        fname = panel.filename
        names = sorted({n for runs in groups.values() for r in runs for n in _metrics_of(r) if panel.shows(n)})
        if not names:
            continue
        fig, axes = subplot_grid(names, height=3.3)
        for ax, name in zip(axes, names):
            for label, runs in groups.items():
                cs = [c for c in (curve(_metrics_of(r), name, smooth) for r in runs) if c is not None]
                if cs:
                    grid = np.linspace(0, min(c.frames[-1] for c in cs), 200)
                    ax.plot(grid, np.mean([np.interp(grid, c.frames, c.values) for c in cs], 0), label=label)
            ax.set_title(name, fontsize=9)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        p = out / fname
        fig.savefig(p, dpi=90)
        plt.close(fig)
        written.append(p)
    # 5. PBT: the hyperparameters of each population's best member over training (Kickstarting Fig. 2
    # bottom): its lambda factors, learning rate, entropy cost.
    best = {label: runs[0] for label, runs in groups.items() if runs and runs[0].parent.name == "members"}
    names = sorted({n for r in best.values() for n in _metrics_of(r) if n.startswith("hparams/")})
    if names:
        fig, axes = subplot_grid(names, height=3.3)
        for ax, name in zip(axes, names):
            for label, run in best.items():
                c = curve(_metrics_of(run), name)
                if c is not None:
                    ax.plot(c.frames, c.values, label=f"{label}: best member {run.name}")
            ax.set_title(name, fontsize=9)
            ax.set_yscale("log" if name.endswith(("learning_rate", "entropy_cost")) else "linear")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        p = out / "pbt_hparams.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        written.append(p)
    return written


def report(run_dirs: Sequence[str], groups: Sequence[str] = (), metric: str | None = None,
           budgets: Sequence[float] = (), targets: Sequence[float] = (), baseline: str | None = None,
           out: str | Path = "report", smooth: int = 5) -> tuple[Path, list[Path]]:
    grouped = group_runs(run_dirs, groups, metric, smooth)
    first = next(iter(grouped.values()))[0]
    metric = metric or default_metric(_metrics_of(first))
    summaries = [summarise(label, runs, metric, budgets, targets, smooth) for label, runs in grouped.items()]
    if not budgets:
        end = min(s.final_frames for s in summaries)
        budgets = [end / 4, end / 2, end]
        summaries = [summarise(s.label, s.runs, metric, budgets, targets, smooth) for s in summaries]
    if baseline is not None and baseline not in grouped:
        raise UserError(f"--baseline {baseline!r} is not a group; groups: {', '.join(grouped)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pngs = _plot(grouped, metric, out, smooth)
    md = "# Report\n\n" + markdown(summaries, metric, budgets, targets, baseline or next(iter(grouped))) + \
         "\n" + ancestry_markdown(grouped) + "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in pngs) + "\n"
    path = out / "report.md"
    path.write_text(md)
    return path, pngs
