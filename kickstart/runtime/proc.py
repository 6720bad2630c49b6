"""Per-process setup shared by the learner and the actors."""

from __future__ import annotations

import ctypes
import ctypes.util

import torch

# glibc's mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_malloc() -> bool:
    """Keep freed memory in the process instead of handing it back to the OS after every step.

    With glibc's defaults, the large temporaries of a forward pass over an unroll are mapped fresh
    on every call and returned afterwards: measured here, thousands of page faults per unroll and a
    teacher's per-unroll forward pass twice as slow. Raising the mmap and trim thresholds to 32 and
    256 MiB removes them. A no-op (False) where glibc is not the allocator.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20) == 1
        return libc.mallopt(_M_TRIM_THRESHOLD, 256 * 2**20) == 1 and ok
    except (OSError, AttributeError):
        return False


def setup_process(threads: int) -> None:
    """One call at the start of every learner or actor process: torch threads and the allocator."""
    torch.set_num_threads(threads)
    tune_malloc()


def start_shielded(process) -> None:
    """Start a spawned child with SIGINT and SIGTERM ignored until it installs its own handlers.

    Ignored dispositions survive the spawn's exec (a blocked mask would not), so a Ctrl-C that
    reaches the whole process group while the child still imports torch cannot kill it; the
    parent decides when its children stop.
    """
    import signal
    import threading

    swap = threading.current_thread() is threading.main_thread()
    prev = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)} if swap else {}
    try:
        process.start()
    finally:
        for s, h in prev.items():
            signal.signal(s, h)
