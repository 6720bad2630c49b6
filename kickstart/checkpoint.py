"""Atomic, code-free checkpoints.

A checkpoint is a dict of tensors and plain Python values saved with ``torch.save`` and always read
with ``torch.load(weights_only=True)``: loading one can never run code. Writes go to a temporary
file in the same directory, are flushed to disk, and replace the old file with one ``os.replace``,
so a crash mid-write leaves the previous checkpoint intact (and no temporary file behind).
Reading checks the CRC-32 of every entry of the archive (``torch.load`` does not), so a file damaged
after it was written is reported instead of loading wrong weights.

``torch`` is imported inside the functions so that the CLI can answer a mistake such as a missing
checkpoint without paying for the torch import.
"""

from __future__ import annotations

import os
import pickletools
import warnings
import zipfile
from pathlib import Path

from kickstart.errors import CheckpointError

FORMAT = "kickstart-checkpoint"
VERSION = 1

# Pickle opcodes that import or call Python objects; a weights-only checkpoint never needs them
# outside torch's own allow-list, which the zip format goes through.
_CODE_OPS = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX"}


def save_checkpoint(path: str | Path, state: dict) -> Path:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    payload = {"format": FORMAT, "version": VERSION, **state}
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a failed or interrupted write leaves the old checkpoint and no debris
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
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


def _pickled_callable(p: Path, limit: int = 64 << 20) -> str | None:
    """If ``p`` is a plain pickle that imports or calls Python objects, the first one it names.

    Reads the opcodes only (``pickletools.genops`` never executes anything). None when the file is
    not a parsable pickle or calls nothing.
    """
    if p.stat().st_size > limit:
        return None
    strings: list[str] = []
    try:
        with open(p, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if isinstance(arg, str):
                    strings.append(arg)
                if op.name == "GLOBAL":
                    return str(arg).replace(" ", ".")
                if op.name == "STACK_GLOBAL":
                    return ".".join(strings[-2:]) if len(strings) >= 2 else "a Python object"
                if op.name in _CODE_OPS:
                    return "a Python object"
    except Exception:  # noqa: BLE001 - not a pickle (random bytes, a zip file, ...)
        return None
    return None


def _load_failure(p: Path, e: BaseException) -> CheckpointError:
    """One line that says why ``p`` could not be read (never torch's advice to drop weights_only)."""
    import pickle

    text = str(e)
    if isinstance(e, pickle.UnpicklingError):
        blocked = next((ln.strip() for ln in text.splitlines() if "GLOBAL" in ln), None)
        called = _pickled_callable(p) if blocked is None else None
        if blocked is not None or called is not None:
            what = blocked.rstrip(".") if blocked is not None else f"it would call {called}"
            return CheckpointError(f"refusing to load {str(p)!r}: it holds Python objects, not only tensors and "
                                   f"plain values ({what}); kickstart loads checkpoints with weights_only=True "
                                   f"and never runs code from a file")
        detail = next((ln.strip() for ln in reversed(text.splitlines())
                       if ln.strip().startswith("Unsupported")), "not a torch file")
        reason = f"not a readable torch file: {detail}"
    elif isinstance(e, EOFError):
        reason = "the file is empty or ends early"
    elif isinstance(e, OSError) and e.strerror:
        reason = e.strerror
    else:
        first = (text.strip().splitlines() or [type(e).__name__])[0]
        reason = first.split(". ")[0][:160]
    return CheckpointError(f"checkpoint {str(p)!r} is corrupt or not a kickstart checkpoint ({reason})")


def _check_crcs(p: Path) -> None:
    """Verify the CRC-32 of each entry of a zip-format checkpoint (a no-op for other files)."""
    try:
        if not zipfile.is_zipfile(p):
            return  # legacy or damaged beyond recognition: torch.load reports it
        with zipfile.ZipFile(p) as z:
            for info in z.infolist():
                if info.CRC == 0 and info.file_size:  # written with torch's CRC computation off
                    continue
                with z.open(info) as f:
                    while f.read(1 << 22):
                        pass
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        detail = str(e).strip() or type(e).__name__
        raise CheckpointError(f"checkpoint {str(p)!r} is corrupt or not a kickstart checkpoint ({detail}); it was "
                              f"damaged after it was written: use an intact copy") from None


def load_checkpoint(path: str | Path, map_location=None) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; raise :class:`CheckpointError` if unusable."""
    import torch

    p = resolve_checkpoint(path)
    _check_crcs(p)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; the error below says it all
            warnings.simplefilter("ignore")
            state = torch.load(p, map_location=map_location or "cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read means the file is unusable
        raise _load_failure(p, e) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(p)!r} is not a kickstart checkpoint (no '{FORMAT}' header); "
                              f"pass a checkpoint.pt written by 'kickstart train'")
    if state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {str(p)!r} has format version {state.get('version')!r}; "
                              f"this kickstart reads version {VERSION}")
    return state
