"""Lines of descent through a PBT lineage (kickstart/pbt/ancestry.py) and their table in the report."""

import json
import math

import numpy as np
import pytest

from kickstart.configio import save_config
from kickstart.methods import load_config
from kickstart.metrics import CSVLogger
from kickstart.pbt.ancestry import drift, line_of_descent
from kickstart.report import report

LR = "learning_rate"


def _start(t, m, lr):
    return {"time": t, "event": "start", "member": m, "hparams": {LR: lr}, "resumed": False}


def _ready(t, m, frames, before, after, donor=None, donor_frames=None, donor_lr=None):
    r = {"time": t, "event": "ready", "member": m, "frames": frames, "hparams_before": {LR: before},
         "hparams_after": {LR: after}, "donor": donor, "explored": [LR] if after != (donor_lr or before) else []}
    if donor is not None:
        r.update(donor_frames=donor_frames, donor_hparams={LR: donor_lr})
    return r


def test_line_of_descent_golden():
    recs = [_start(0.0, 0, 1.0), _start(0.1, 1, 2.0),
            _ready(1.0, 0, 100, 1.0, 1.2),                       # on member 1's final line
            _ready(2.0, 1, 100, 2.0, 1.6),                       # member 1's own past: cut off by the exploit
            _ready(3.0, 0, 200, 1.2, 1.44),                      # after member 0's snapshot at 200: not inherited
            _ready(4.0, 1, 200, 1.6, 0.96, donor=0, donor_frames=200, donor_lr=1.2),
            _ready(5.0, 1, 300, 0.96, 0.96)]                     # ready, nothing explored
    founder, initial, line = line_of_descent(recs, 1)
    assert founder == 0 and initial == {LR: 1.0}
    assert [(r["member"], r["frames"]) for r in line] == [(0, 100), (1, 200), (1, 300)]
    d = drift(recs, 1, LR, [0.8, 1.2])
    assert (d.founder, d.initial, d.final, d.steps) == (0, 1.0, 0.96, 2)
    assert d.explored_log == pytest.approx(math.log(1.2) + math.log(0.8))
    assert d.expected_log == pytest.approx(2 * (math.log(0.8) + math.log(1.2)) / 2)
    d0 = drift(recs, 0, LR, [0.8, 1.2])                           # member 0 never exploited: its own line
    assert (d0.founder, d0.final, d0.steps) == (0, 1.44, 2)


def _simulate(seed, members=5, events=400):
    """A population under PBT's rules: a report snapshots the member before the controller decides on
    it, an exploit copies the donor's latest snapshot, an explore multiplies by 0.8 or 1.2."""
    rng = np.random.default_rng(seed)
    cur = {m: float(np.exp(rng.uniform(-7, -5))) for m in range(members)}
    snap, frames = {}, dict.fromkeys(range(members), 0)
    recs = [_start(0.01 * m, m, cur[m]) for m in range(members)]
    for k in range(events):
        m = int(rng.integers(members))
        frames[m] += int(rng.integers(1, 5)) * 100
        snap[m] = (frames[m], cur[m])
        donors = [d for d in snap if d != m]
        donor = int(rng.choice(donors)) if donors and rng.random() < 0.3 else None
        base = snap[donor][1] if donor is not None else cur[m]
        after = base * (1.2 if rng.random() < 0.5 else 0.8) if rng.random() < 0.25 else base
        recs.append(_ready(1.0 + k, m, frames[m], cur[m], after, donor,
                           snap[donor][0] if donor is not None else None, base))
        cur[m] = after
    return recs, cur


@pytest.mark.parametrize("seed", range(5))
def test_every_line_explains_its_final_value(seed):
    recs, final = _simulate(seed)
    rng = np.random.default_rng(seed)
    rng.shuffle(recs)                                              # the order in the file does not matter
    for m, value in final.items():
        d = drift(list(recs), m, LR, [0.8, 1.2])
        assert d.final == pytest.approx(value)
        assert d.initial * math.exp(d.explored_log) == pytest.approx(value)
        assert d.expected_log == pytest.approx(d.steps * math.log(0.96) / 2)


def test_a_missing_start_record_is_an_error():
    recs = [_ready(1.0, 0, 100, 1.0, 1.2)]
    with pytest.raises(ValueError, match="no start record of member 0"):
        line_of_descent(recs, 0)


def test_report_tables_the_lines_of_descent_of_a_population(tmp_path):
    pbt = tmp_path / "pop"
    recs, final = _simulate(7, members=4)
    for i in range(4):
        (pbt / "members" / str(i)).mkdir(parents=True)
        log = CSVLogger(pbt / "members" / str(i) / "metrics.csv")
        for f in (0, 1_000_000, 2_000_000):
            log.write(f, {"episode/return/minatar:Breakout": i * f / 1e6})
        log.close()
    (pbt / "pbt").mkdir()
    (pbt / "pbt" / "lineage.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    cfg = load_config(None, ["pbt.population_size=4"])
    save_config(cfg, pbt / "config.yaml")
    md, _ = report([str(pbt)], out=tmp_path / "out")
    text = md.read_text()
    assert "## PBT: what moved the hyperparameters" in text
    rows = [line for line in text.splitlines() if line.startswith("| pop | ")]
    # the top 3 members (1, 2, 3) and the mutable hyperparameters the config explores by multiplying
    assert sorted({r.split(" | ")[1] for r in rows}) == ["1", "2", "3"]
    row = next(r for r in rows if r.split(" | ")[1] == "3" and r.split(" | ")[2] == LR)
    assert float(row.split(" | ")[5]) == pytest.approx(final[3], rel=1e-2)
