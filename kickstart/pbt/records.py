"""What a PBT population leaves behind: ``pbt/lineage.jsonl``, ``pbt/population.csv`` and the
``pbt/*`` metrics (:class:`Lineage`), the console line of each lineage record, and the result of a
run (:class:`PopulationResult`)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kickstart.pbt.member import MemberReport

MEMBERS = "members"
"""The folder of a population's run directory that holds the members' run directories."""


REPORTS = "reports.json"
"""``pbt/reports.json``: every member's last report, what the next decisions compare; rewritten after
each change, so that a resumed population decides as the stopped one would have."""


def save_reports(run_dir: Path, reports: dict[int, MemberReport]) -> None:
    path = run_dir / "pbt" / REPORTS
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({str(i): dataclasses.asdict(r) for i, r in sorted(reports.items())}))
    os.replace(tmp, path)          # atomic: a kill leaves the old file or the new one


def load_reports(run_dir: Path) -> dict[int, MemberReport]:
    """The reports :func:`save_reports` left (none before the first); a report whose snapshot is gone
    keeps its samples but can no longer be copied from."""
    path = run_dir / "pbt" / REPORTS
    if not path.exists():
        return {}
    out = {}
    for i, d in json.loads(path.read_text()).items():
        rep = MemberReport(**d)
        if rep.checkpoint is not None and not Path(rep.checkpoint).exists():
            rep = dataclasses.replace(rep, checkpoint=None)
        out[int(i)] = rep
    return out


def read_lineage(run_dir: Path) -> list[dict]:
    """The records of a population's ``pbt/lineage.jsonl`` in the order they were written (none before the
    first); a line cut short by a kill mid-write is left out, and the records a resumed run wrote after it
    are kept (``Lineage`` starts them on a line of their own)."""
    path = Path(run_dir) / "pbt" / "lineage.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class Lineage:
    """``pbt/lineage.jsonl``, ``pbt/population.csv`` and the ``pbt/*`` metrics of ``metrics.csv``."""

    def __init__(self, run_dir: Path, hparam_names: list[str]):
        from kickstart.metrics import CSVLogger

        d = run_dir / "pbt"
        d.mkdir(parents=True, exist_ok=True)
        self.names = hparam_names
        jsonl = d / "lineage.jsonl"
        # A kill mid-write leaves a torn last line: a resumed run's first record must not be glued to it.
        torn = jsonl.exists() and jsonl.stat().st_size > 0 and not jsonl.read_bytes().endswith(b"\n")
        self._jsonl = open(jsonl, "a")
        if torn:
            self._jsonl.write("\n")
        path = d / "population.csv"
        new = not path.exists()
        self._csv_f = open(path, "a", newline="")
        self._csv = csv.writer(self._csv_f)
        if new:
            self._csv.writerow(["time", "member", "frames", "episodes", "event", "eval_mean", "eval_std", "eval_n",
                                "donor", *self.names])
        self._metrics = CSVLogger(run_dir / "metrics.csv")

    def record(self, rec: dict) -> dict:
        rec = {"time": round(time.time(), 3), **rec}
        self._jsonl.write(json.dumps(rec) + "\n")
        self._jsonl.flush()
        return rec

    def row(self, rep: MemberReport, event: str, hparams: dict[str, float], donor: int | None = None) -> None:
        s = np.asarray(rep.samples, dtype=np.float64)
        mean = float(s.mean()) if s.size else float("nan")
        std = float(s.std()) if s.size else float("nan")
        self._csv.writerow([round(time.time(), 3), rep.index, rep.frames, rep.episodes, event, f"{mean:.6g}",
                            f"{std:.6g}", int(s.size), "" if donor is None else donor,
                            *(f"{hparams.get(k, float('nan')):.6g}" for k in self.names)])
        self._csv_f.flush()
        m = {f"pbt/{rep.index}/{k}": v for k, v in hparams.items()}
        if s.size:
            m[f"pbt/{rep.index}/eval_mean"] = mean
        self._metrics.write(rep.frames, m)

    def close(self) -> None:
        self._jsonl.close()
        self._csv_f.close()
        self._metrics.close()


@dataclass
class PopulationResult:
    run_dir: Path
    reports: dict[int, MemberReport]
    """Each member's last report."""
    best: int | None
    """The member with the highest mean evaluation in its last report."""
    exploits: int
    restarts: int
    interrupted: bool
    seconds: float
    hparams: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def best_score(self) -> float | None:
        return None if self.best is None else self.reports[self.best].eval_mean

    def summary_lines(self) -> list[str]:
        lines = []
        for i in sorted(self.reports):
            r = self.reports[i]
            ev = "-" if r.eval_mean is None else f"{r.eval_mean:.3g}"
            hp = ", ".join(f"{k}={v:.3g}" for k, v in sorted(self.hparams.get(i, r.hparams).items()))
            lines.append(f"member {i}: {r.frames:,} frames, eval mean {ev} over {len(r.samples)}; {hp}")
        if self.best is not None:
            r = self.reports[self.best]
            hp = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.hparams.get(self.best, r.hparams).items()))
            ckpt = self.run_dir / MEMBERS / str(self.best) / "checkpoint.pt"
            lines.append(f"best member {self.best}: eval mean {r.eval_mean:.4g} over its last {len(r.samples)} "
                         f"evaluations; {hp}; checkpoint {ckpt}")
        state = " (interrupted)" if self.interrupted else ""
        lines.append(f"{self.exploits} exploits, {self.restarts} member restarts, {self.seconds:.0f} s{state}; "
                     f"lineage: {self.run_dir / 'pbt' / 'lineage.jsonl'}")
        if self.interrupted:
            import shlex

            lines.append(f"resume with: kickstart train --resume {shlex.quote(str(self.run_dir))}")
        return lines


def describe(rec: dict) -> str:
    """One console line for a lineage record."""
    ev = rec["event"]
    if ev == "stop":
        return "pbt: stop requested; members finish their current update"
    if ev == "restart":
        return f"pbt: member {rec['member']} restarted ({rec['reason']})"
    if ev == "done":
        mean = rec.get("eval_mean")
        ev_text = "-" if mean is None else f"{mean:.3g}"
        return f"pbt: member {rec['member']} done at {rec['frames']:,} frames, eval {ev_text}"
    mean = rec.get("eval_mean")
    ev_text = "-" if mean is None else f"{mean:.3g}"
    what = f"pbt: member {rec['member']} at {rec['frames']:,} frames, eval {ev_text}"
    if rec.get("donor") is not None:
        what += f", copied member {rec['donor']} ({rec.get('donor_eval_mean', 0):.3g})"
    if rec.get("explored"):
        what += ", explored " + ", ".join(f"{k}={rec['hparams_after'][k]:.3g}" for k in rec["explored"])
    return what
