"""A rich progress bar for training: frames, frames/s and the latest returns."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainProgress:
    def __init__(self, console, total_frames: int, start_frames: int = 0, every_s: float = 0.5):
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
            TextColumn("{task.fields[fps]:>8} f/s"), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
        self.task = self.progress.add_task("train", total=total_frames, completed=start_frames, fps="-", info="")
        self.every_s = every_s
        self._last = 0.0

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, trainer) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        m = trainer.last_metrics
        fps = m.get("perf/fps")
        returns = trainer.stats.mean_returns()
        if trainer.stats.suite_score() is not None:
            info = f"suite score {trainer.stats.suite_score():.1f}"
        elif len(returns) == 1:
            info = f"return {next(iter(returns.values())):.2f}"
        else:
            info = " ".join(f"{k.split(':')[-1]} {v:.1f}" for k, v in returns.items())
        self.progress.update(self.task, completed=min(trainer.frames, self.progress.tasks[0].total),
                             fps=f"{fps:,.0f}" if fps else "-", info=info)
