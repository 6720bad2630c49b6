"""Precision that fits the hardware (kickstart/precision.py): both branches of the detection on any
machine (forced through ``KICKSTART_NATIVE_BF16``, or by limiting oneDNN to AVX2 in a subprocess,
which reproduces an AVX2-only CPU's missing bf16 LSTM primitive), and every network and teacher
kind in explicit bf16 where bf16 is not native."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kickstart import precision
from kickstart.config import NetConfig
from kickstart.kickstarting.config import TeacherConfig
from kickstart.nets import build_net
from kickstart.specs import EnvSpec

ROOT = Path(__file__).resolve().parents[1]


def spec_of(obs_shape=(4, 10, 10)) -> EnvSpec:
    return EnvSpec(obs_shape=obs_shape, obs_dtype="uint8", obs_scale=1.0, action_nvec=(6,), multi_discrete=False,
                   action_meanings=tuple(f"a{i}" for i in range(6)), frames_per_step=1, task_names=("t",))


def inputs(T=5, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 2, (T, B, 4, 10, 10), generator=g, dtype=torch.uint8)
    first = torch.rand(T, B, generator=g) < 0.3
    return obs, torch.randint(0, 6, (T, B), generator=g), torch.randn(T, B, generator=g), first


@pytest.fixture
def native(monkeypatch):
    """Force the detection: ``native(True)`` / ``native(False)``."""
    def force(value: bool):
        monkeypatch.setenv(precision.FORCE_ENV, "1" if value else "0")
    return force


@pytest.mark.parametrize("is_native", [True, False])
def test_auto_is_bf16_exactly_where_bf16_is_native(native, is_native):
    native(is_native)
    for device in ("cpu", "cuda"):
        assert precision.resolve("auto", device) == ("bf16" if is_native else "fp32")
        assert precision.resolve("fp32", device) == "fp32"
        assert precision.resolve("bf16", device) == "bf16"       # explicit bf16 is honoured everywhere
    warning = precision.slow_bf16_warning("net.precision", "bf16", "cpu")
    assert (warning is None) == is_native
    if warning is not None:
        assert "\n" not in warning and "net.precision=auto" in warning
    assert precision.slow_bf16_warning("net.precision", "auto", "cpu") is None
    with pytest.raises(ValueError, match="choose one of: auto, fp32, bf16"):
        precision.resolve("fp16", "cpu")


def test_cpu_detection_reads_the_flags_and_the_isa_limits(monkeypatch):
    monkeypatch.delenv(precision.FORCE_ENV, raising=False)

    def detect(flags, **env):
        monkeypatch.setattr(precision, "_cpu_flags", lambda: set(flags))
        for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        precision._cpu_native_bf16.cache_clear()
        precision._cpu_bf16_pays.cache_clear()
        try:
            # (native bf16, bf16 pays, what auto resolves to)
            return precision.native_bf16("cpu"), precision.bf16_pays("cpu"), precision.resolve("auto", "cpu")
        finally:
            precision._cpu_native_bf16.cache_clear()
            precision._cpu_bf16_pays.cache_clear()

    amx = {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
    assert detect(amx) == (True, True, "bf16")
    assert detect({"avx2", "amx_bf16", "amx_tile"}) == (True, True, "bf16")
    # AVX512-BF16 without AMX: native, but every network ran 1.3-2x slower than in fp32
    assert detect({"avx2", "avx512f", "avx512_bf16"}) == (True, False, "fp32")
    assert detect({"avx2", "fma"}) == (False, False, "fp32")                         # AVX2-only (the AMD EPYC)
    assert detect({"avx2", "avx512f", "avx512bw"}) == (False, False, "fp32")         # AVX-512 without bf16
    assert detect(amx, ONEDNN_MAX_CPU_ISA="AVX2") == (False, False, "fp32")          # oneDNN limited to AVX2
    assert detect(amx, ATEN_CPU_CAPABILITY="avx2") == (False, False, "fp32")
    assert detect(amx, ONEDNN_MAX_CPU_ISA="avx512_core_bf16") == (True, False, "fp32")   # AMX ruled out
    assert detect(amx, ONEDNN_MAX_CPU_ISA="avx512_core_amx") == (True, True, "bf16")


def test_native_bf16_without_amx_runs_fp32_by_default_and_bf16_without_a_warning(monkeypatch):
    from kickstart.precision import plan, plan_lines

    monkeypatch.delenv(precision.FORCE_ENV, raising=False)
    for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    precision._cpu_native_bf16.cache_clear()
    precision._cpu_bf16_pays.cache_clear()
    try:
        assert precision.resolve("auto", "cpu") == "fp32"
        assert precision.slow_bf16_warning("net.precision", "bf16", "cpu") is None     # not emulated
        lines = plan_lines(plan("auto", "cpu"))
        assert len(lines) == 1 and "cpu yes, no AMX: auto is fp32" in lines[0], lines
        assert "actors fp32, learner fp32" in lines[0]
    finally:
        precision._cpu_native_bf16.cache_clear()
        precision._cpu_bf16_pays.cache_clear()


@pytest.mark.parametrize("core", ["ff", "lstm"])
@pytest.mark.parametrize("is_native", [True, False])
def test_networks_run_in_bf16_where_auto_says_so_and_stay_float32_outside(native, is_native, core):
    native(is_native)
    torch.manual_seed(0)
    net = build_net(NetConfig(torso="minatar", core=core, precision="auto"), spec_of())
    seen = []
    net.torso.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    obs, la, lr, first = inputs()
    out, state = net(obs, la, lr, first, net.initial_state(3))
    assert out.policy_logits.dtype == out.baseline.dtype == torch.float32
    assert all(s.dtype == torch.float32 for s in state)
    assert seen == [torch.bfloat16 if is_native else torch.float32]    # the torso ran under autocast, or not
    if not is_native:
        ref = build_net(NetConfig(torso="minatar", core=core, precision="fp32"), spec_of())
        ref.load_state_dict(net.state_dict())
        torch.testing.assert_close(ref(obs, la, lr, first, ref.initial_state(3))[0].policy_logits, out.policy_logits,
                                   rtol=0, atol=0)


@pytest.mark.parametrize("core", ["ff", "lstm"])
def test_explicit_bf16_where_not_native_works_and_matches_fp32_closely(native, core):
    native(False)
    torch.manual_seed(0)
    net = build_net(NetConfig(torso="minatar", core=core, precision="bf16"), spec_of())
    ref = build_net(NetConfig(torso="minatar", core=core, precision="fp32"), spec_of())
    ref.load_state_dict(net.state_dict())
    obs, la, lr, first = inputs()
    out, _ = net(obs, la, lr, first, net.initial_state(3))
    out.policy_logits.sum().backward()                                  # the learner's path too
    want, _ = ref(obs, la, lr, first, ref.initial_state(3))
    diff = (out.policy_logits - want.policy_logits).abs().max().item()
    assert 0 < diff < 0.1, diff                                         # rounded, not the same numbers


_AVX2_CHILD = r"""
import json, sys, torch
sys.path.insert(0, "tests")
from kickstart import precision
from kickstart.config import NetConfig
from kickstart.nets import build_net
from kickstart.kickstarting.teachers import NetTeacher
from test_precision import spec_of, inputs
out = {"native": precision.native_bf16("cpu"), "auto": precision.resolve("auto", "cpu")}
obs, la, lr, first = inputs()
with torch.autocast("cpu", dtype=torch.bfloat16):        # what oneDNN refuses on an AVX2-only CPU
    try:
        torch.nn.LSTM(8, 8)(torch.randn(3, 2, 8)); out["raw_lstm"] = "ok"
    except RuntimeError as e:
        out["raw_lstm"] = str(e).splitlines()[0]
for core in ("ff", "lstm"):
    net = build_net(NetConfig(torso="minatar", core=core, precision="bf16"), spec_of())
    o, _ = net(obs, la, lr, first, net.initial_state(3))
    o.policy_logits.sum().backward()
    t = NetTeacher("t", build_net(NetConfig(torso="minatar", core=core), spec_of())).with_precision("bf16")
    logits, _ = t.unroll(obs, first, la, lr, t.initial_state(3))
    out[core] = bool(torch.isfinite(o.policy_logits).all() and torch.isfinite(logits).all())
print(json.dumps(out))
"""


def test_an_avx2_only_cpu_runs_every_core_and_teacher_kind_in_explicit_bf16():
    """A subprocess with oneDNN and ATen limited to AVX2 behaves like the AVX2-only AMD EPYC where
    a bf16 LSTM crashed: detection says fp32, and explicit bf16 still runs everywhere."""
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2", OMP_NUM_THREADS="1")
    env.pop(precision.FORCE_ENV, None)
    r = subprocess.run([sys.executable, "-c", _AVX2_CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["native"] is False and out["auto"] == "fp32"
    assert out["ff"] is True and out["lstm"] is True
    if precision._cpu_flags() & {"avx512_bf16", "amx_bf16"} or out["raw_lstm"] != "ok":
        # the limit is real: oneDNN's own bf16 LSTM fails where ours runs
        assert "primitive descriptor" in out["raw_lstm"]


def test_teacher_precision_auto_follows_the_cpu(native):
    from kickstart.kickstarting.teachers import NetTeacher

    for is_native in (True, False):
        native(is_native)
        t = NetTeacher("t", build_net(NetConfig(torso="minatar"), spec_of())).with_precision("auto")
        want = torch.bfloat16 if is_native else torch.float32
        assert all(p.dtype == want for p in t.net.parameters())
    assert TeacherConfig(path="x").precision == "auto"
    assert NetConfig().precision == "auto"


def test_the_choice_is_logged_at_start_up_and_in_meta_json(native, tmp_path, capsys):
    from kickstart.methods import load_config
    from kickstart.train import train

    native(False)
    cfg = load_config(None, ["env.id=CartPole-v1", "runtime.backend=serial", "runtime.envs_per_actor=4",
                             "learner.batch_size=4", "learner.unroll_length=5", "run.total_frames=200",
                             f"run.out_dir={tmp_path}", "run.name=r", "run.progress=false", "run.tensorboard=false",
                             "net.precision=bf16"])
    train(cfg)
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    plan = meta["sessions"][-1]["precision"]
    assert plan["native_bf16"]["cpu"] is False
    assert plan["net"] == {"setting": "bf16", "actors": "bf16", "learner": "bf16", "learner_device": "cpu"}
    err = capsys.readouterr().err.strip().splitlines()
    warnings = [line for line in err if line.startswith("kickstart: warning: net.precision=bf16")]
    assert len(warnings) == 1 and "slower than fp32" in warnings[0]


def test_plan_reports_the_networks_methods_run_by_their_config_keys(monkeypatch):
    """A kickstarting teacher's precision is reported (and warned about) under its own config key, as
    the method declares it; the core names no method."""
    from kickstart.methods import load_config
    from kickstart.precision import plan_lines
    from kickstart.rundir import precision_plan

    monkeypatch.setenv("KICKSTART_NATIVE_BF16", "0")
    cfg = load_config("configs/kickstart_breakout.yaml", ["kickstart.teachers.breakout.precision=bf16"])
    p = precision_plan(cfg)
    assert p["others"] == {"kickstart.teachers.breakout.precision": {"setting": "bf16", "cpu": "bf16"}}
    info, *warnings = plan_lines(p)
    assert "kickstart.teachers.breakout.precision=bf16: bf16" in info
    assert any("kickstart.teachers.breakout.precision" in w for w in warnings)
