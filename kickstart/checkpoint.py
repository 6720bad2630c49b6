"""Atomic, code-free checkpoints.

A checkpoint is a dict of tensors and plain Python values saved with ``torch.save`` and always read
with ``torch.load(weights_only=True)``: loading one can never run code. Writes go to a temporary
file in the same directory, are flushed to disk, and replace the old file with one ``os.replace``,
so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from kickstart.errors import CheckpointError

FORMAT = "kickstart-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, state: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    payload = {"format": FORMAT, "version": VERSION, **state}
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (its ``checkpoint.pt``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pt"
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist; pass a checkpoint file or a run directory "
                              f"that holds checkpoint.pt")
    return p


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    p = resolve_checkpoint(path)
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read means the file is unusable
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"checkpoint {str(p)!r} is corrupt or not a kickstart checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(p)!r} is not a kickstart checkpoint (no '{FORMAT}' header)")
    if state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {str(p)!r} has format version {state.get('version')}; "
                              f"this kickstart reads version {VERSION}")
    return state
