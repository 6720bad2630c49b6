"""Compute precision that fits the hardware: which devices run bfloat16 natively, where bfloat16
pays, and what a ``precision`` setting (``auto``, ``fp32``, ``bf16``) means on each.

bfloat16 runs natively on CUDA devices that support it and on x86 CPUs with AVX512-BF16 or AMX.
Elsewhere (AVX2-only CPUs, older AVX-512 ones) oneDNN emulates it, measured 6-11x slower than fp32
on an AVX2-only AMD EPYC, and has no bf16 LSTM primitive at all: an explicit ``bf16`` there still
works but is worth one warning line.

Native is not yet faster. On the CPU bf16 pays only with AMX's tile units: with them it trained the
Atari nets about 2.4x faster than fp32; with AVX512-BF16 alone (an Intel Xeon whose virtual machine
exposed no AMX) every network here ran 1.3-2x slower than fp32, the learner's update and the actors'
inference alike, the MinAtar LSTM student included. So ``auto`` (the default) picks bf16 on CUDA
devices with native bf16 and on CPUs with AMX, and fp32 everywhere else.

The CPU answers come from the kernel's CPU flags, narrowed by what oneDNN and ATen were told they
may use (``ONEDNN_MAX_CPU_ISA``, ``ATEN_CPU_CAPABILITY``: a machine limited to AVX2 that way behaves
like an AVX2 CPU, which is how the tests exercise that branch on any machine).
``KICKSTART_NATIVE_BF16=1`` or ``0`` forces both answers for every device.
"""

from __future__ import annotations

import functools
import os

PRECISIONS = ("auto", "fp32", "bf16")

FORCE_ENV = "KICKSTART_NATIVE_BF16"

# oneDNN ISA limits (ONEDNN_MAX_CPU_ISA) under which it still has native bf16 instructions.
_ONEDNN_BF16_ISAS = ("ALL", "DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX",
                     "AVX512_CORE_AMX_FP16", "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16",
                     "AVX10_2_512", "AVX10_2_512_AMX_2")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.lru_cache(maxsize=None)
def _cpu_native_bf16() -> bool:
    flags = _cpu_flags()
    if not ({"avx512_bf16", "amx_bf16"} & flags):
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if isa and isa not in _ONEDNN_BF16_ISAS:
        return False
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    return aten in ("", "default", "avx512")


# oneDNN ISA limits under which it may still use AMX.
_ONEDNN_AMX_ISAS = ("ALL", "DEFAULT", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX",
                    "AVX10_1_512_AMX_FP16", "AVX10_2_512_AMX_2")


@functools.lru_cache(maxsize=None)
def _cpu_bf16_pays() -> bool:
    if not (_cpu_native_bf16() and "amx_bf16" in _cpu_flags()):
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return not isa or isa in _ONEDNN_AMX_ISAS


@functools.lru_cache(maxsize=None)
def _cuda_native_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))


def _answer(device_type: str, cpu) -> bool:
    """``KICKSTART_NATIVE_BF16`` if set; else CUDA's native bf16, or ``cpu()`` on the CPU."""
    forced = os.environ.get(FORCE_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if device_type == "cuda":
        return _cuda_native_bf16()
    return cpu() if device_type == "cpu" else False


def native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` (``cpu``, ``cuda``) runs bfloat16 arithmetic natively."""
    return _answer(device_type, _cpu_native_bf16)


def bf16_pays(device_type: str) -> bool:
    """Whether bfloat16 runs faster than float32 on ``device_type``: native bf16 on a CUDA device,
    AMX on the CPU (see the module docstring)."""
    return _answer(device_type, _cpu_bf16_pays)


def resolve(precision: str, device_type: str) -> str:
    """What ``precision`` means on ``device_type``: ``fp32`` or ``bf16`` (``auto``: bf16 where it pays)."""
    if precision == "auto":
        return "bf16" if bf16_pays(device_type) else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not valid; choose one of: {', '.join(PRECISIONS)}")
    return precision


def slow_bf16_warning(what: str, precision: str, device_type: str) -> str | None:
    """A one-line warning when ``precision`` asks for bf16 on a device without native bf16, else None."""
    if precision != "bf16" or native_bf16(device_type):
        return None
    where = "this CPU has neither AVX512-BF16 nor AMX" if device_type == "cpu" else \
        f"this {device_type} device has no native bf16"
    return (f"{what}=bf16 but {where}: bf16 is emulated there and runs several times slower than fp32; "
            f"use {what}=auto (fp32 here) unless you mean it")


def _present(device_types: tuple[str, ...]) -> list[str]:
    import torch

    return [d for d in device_types if d != "cuda" or torch.cuda.is_available()]


def describe(device_types: tuple[str, ...] = ("cpu", "cuda")) -> dict[str, bool]:
    """``{device_type: native bf16}`` for the device types present here (for meta.json and logs)."""
    return {d: native_bf16(d) for d in _present(device_types)}


def describe_pays(device_types: tuple[str, ...] = ("cpu", "cuda")) -> dict[str, bool]:
    """``{device_type: bf16 pays}`` (what ``auto`` follows) for the device types present here."""
    return {d: bf16_pays(d) for d in _present(device_types)}


def plan(net_precision: str, learner_device: str, others: dict[str, str] | None = None) -> dict:
    """What each precision setting of a run resolves to on this machine: the network in the actors
    (CPU) and in the learner (``learner_device``), and each other network a method runs, by the
    config key of its setting (``others``, e.g. a kickstarting teacher's), on the CPU. Written to
    ``meta.json`` with every session, since a resumed run may land on another machine."""
    return {"native_bf16": describe(), "bf16_pays": describe_pays(),
            "net": {"setting": net_precision, "actors": resolve(net_precision, "cpu"),
                    "learner": resolve(net_precision, learner_device), "learner_device": learner_device},
            "others": {key: {"setting": p, "cpu": resolve(p, "cpu")} for key, p in (others or {}).items()}}


def plan_lines(p: dict) -> list[str]:
    """The start-up log of a :func:`plan`: one line of choices, then one warning line per setting
    that asks for bf16 where it is emulated."""
    pays = p.get("bf16_pays", p["native_bf16"])     # plans written before bf16_pays: auto followed native
    native = ", ".join(f"{d} {'yes' if v else 'no'}" + (", no AMX: auto is fp32" if v and not pays.get(d, v) else "")
                       for d, v in p["native_bf16"].items())
    net = p["net"]
    parts = [f"net.precision={net['setting']}: actors {net['actors']}, learner {net['learner']}"]
    parts += [f"{key}={o['setting']}: {o['cpu']}" for key, o in p["others"].items()]
    lines = [f"precision (native bf16: {native}): {'; '.join(parts)}"]
    checks = [("net.precision", net["setting"], "cpu"), ("net.precision", net["setting"], net["learner_device"])]
    checks += [(key, o["setting"], "cpu") for key, o in p["others"].items()]
    for what, setting, device in checks:
        line = slow_bf16_warning(what, setting, device)
        if line is not None and line not in lines:
            lines.append(line)
    return lines
