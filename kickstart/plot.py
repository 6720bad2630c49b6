"""Learning-curve PNGs from run directories (``kickstart plot RUN_DIR [RUN_DIR ...]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from kickstart.errors import UserError

GROUPS = {
    "returns": "episode/return/",
    "scores": "episode/score/",
    "losses": "loss/",
    "perf": "perf/fps",
    "entropy": "policy/entropy",
}


def _labels(run_dirs: Sequence[str | Path]) -> list[str]:
    """Legend labels: the directory names, or the paths where two runs share a name."""
    names = [Path(d).resolve().name for d in run_dirs]
    if len(set(names)) == len(names):
        return names
    return [str(d) for d in run_dirs]


def subplot_grid(names: Sequence[str], height: float = 3.4):
    """A figure with one axis per name, three to a row; the spare axes of the last row hidden."""
    import matplotlib.pyplot as plt

    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, height * rows), squeeze=False)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    return fig, list(axes.flat)[:len(names)]


def _load(run_dirs: Sequence[str | Path]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    for d in run_dirs:  # check every path before the (slow) metrics import
        if not (Path(d) / "metrics.csv").is_file():
            raise UserError(f"{str(d)!r} is not a run directory with metrics (no metrics.csv); "
                            f"pass directories created by 'kickstart train'")
    from kickstart.metrics import read_metrics

    runs = {}
    for d, label in zip(run_dirs, _labels(run_dirs)):
        p = Path(d) / "metrics.csv"
        try:
            runs[label] = read_metrics(p)
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{str(p)!r} is malformed ({type(e).__name__}: {str(e)[:120]}); expected the "
                            f"columns frames,time,name,value written by 'kickstart train'") from None
    return runs


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> list[Path]:
    """Write one PNG per metric group; several runs are overlaid. Returns the written paths."""
    runs = _load(run_dirs)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out) if out else (Path(run_dirs[0]) / "plots" if len(run_dirs) == 1 else Path("plots"))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for group, prefix in GROUPS.items():
        names = sorted({n for m in runs.values() for n in m if n.startswith(prefix)})
        if group == "scores":
            names += [n for n in ("episode/suite_score", "episode/worst_score") if any(n in m for m in runs.values())]
        if not names:
            continue
        fig, axes = subplot_grid(names)
        for ax, name in zip(axes, names):
            for run, m in runs.items():
                if name in m:
                    xs, ys = zip(*m[name])
                    ax.plot(xs, ys, label=run, linewidth=1.2)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("env frames")
            ax.grid(alpha=0.3)
        if len(runs) > 1:
            axes[0].legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{group}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    if not written:
        raise UserError("no metrics to plot yet in " + ", ".join(str(d) for d in run_dirs))
    return written
