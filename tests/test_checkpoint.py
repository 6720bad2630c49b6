"""Checkpoints: round trip, atomic writes, the format header, and refusing files that hold code."""

import os
import pickle

import pytest
import torch

from kickstart import checkpoint as ckpt
from kickstart.errors import CheckpointError


def _state(scale: float = 1.0) -> dict:
    return {
        "learner": {"net": {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3) * scale,
                            "b": torch.tensor([scale])},
                    "steps": int(7 * scale)},
        "counters": {"frames": 1024, "agent_steps": 256, "elapsed": 3.5},
        "rng": {"torch": torch.get_rng_state(), "name": "MT19937"},
        "config": {"env": {"id": "minatar:Breakout", "sticky_actions": None}, "net": {"mlp_sizes": [64, 64]}},
    }


def _assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    else:
        assert a == b


def test_round_trip_keeps_every_value_and_adds_the_header(tmp_path):
    state = _state()
    path = ckpt.save_checkpoint(tmp_path / "deep" / "dir" / "checkpoint.pt", state)
    assert path == tmp_path / "deep" / "dir" / "checkpoint.pt"
    loaded = ckpt.load_checkpoint(path)
    assert loaded.pop("format") == ckpt.FORMAT
    assert loaded.pop("version") == ckpt.VERSION
    _assert_same(loaded, state)


def test_a_run_directory_stands_for_its_checkpoint(tmp_path):
    ckpt.save_checkpoint(tmp_path / "checkpoint.pt", _state(2.0))
    assert ckpt.resolve_checkpoint(tmp_path) == tmp_path / "checkpoint.pt"
    assert ckpt.load_checkpoint(tmp_path)["learner"]["steps"] == 14


def test_save_leaves_only_the_checkpoint(tmp_path):
    ckpt.save_checkpoint(tmp_path / "checkpoint.pt", _state())
    ckpt.save_checkpoint(tmp_path / "checkpoint.pt", _state(3.0))   # overwrite in place
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]
    assert ckpt.load_checkpoint(tmp_path / "checkpoint.pt")["learner"]["steps"] == 21


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "ctrl-c"])
def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, error):
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint(path, _state(1.0))
    before = path.read_bytes()
    real_save = torch.save

    def save_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)   # a whole payload reaches the temp file ...
        f.write(b"\0" * 100)
        f.flush()
        raise error                          # ... and then the write fails

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(type(error)):
        ckpt.save_checkpoint(path, _state(5.0))
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]   # the temp file is cleaned up
    assert path.read_bytes() == before
    assert ckpt.load_checkpoint(path)["learner"]["steps"] == 7


def test_a_failed_rename_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint(path, _state(1.0))

    def no_replace(*_args):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(ckpt.os, "replace", no_replace)
    with pytest.raises(PermissionError):
        ckpt.save_checkpoint(path, _state(5.0))
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]
    assert ckpt.load_checkpoint(path)["learner"]["steps"] == 7


@pytest.mark.parametrize("payload, message", [
    ({"learner": {}}, "no 'kickstart-checkpoint' header"),
    ({"format": "something-else", "version": 1}, "no 'kickstart-checkpoint' header"),
    (torch.zeros(3), "no 'kickstart-checkpoint' header"),
    ({"format": ckpt.FORMAT, "version": 99}, "has format version 99; this kickstart reads version 1"),
    ({"format": ckpt.FORMAT}, "has format version None; this kickstart reads version 1"),
], ids=["no-header", "other-format", "not-a-dict", "future-version", "no-version"])
def test_header_is_checked(tmp_path, payload, message):
    path = tmp_path / "x.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        ckpt.load_checkpoint(path)


def test_missing_checkpoint_names_the_path_and_what_is_valid(tmp_path):
    with pytest.raises(CheckpointError, match=r"'.*checkpoint\.pt' does not exist; pass a checkpoint file or "
                                              r"a run directory"):
        ckpt.load_checkpoint(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped"])
def test_damaged_files_are_one_line_errors(tmp_path, damage):
    path = tmp_path / "checkpoint.pt"
    state = _state()
    ckpt.save_checkpoint(path, state)
    data = path.read_bytes()
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = b""
    else:  # one flipped bit inside a tensor's bytes: torch.load alone would return wrong weights
        at = data.find(state["rng"]["torch"].numpy().tobytes()[:64])
        assert at > 0
        data = data[:at + 7] + bytes([data[at + 7] ^ 0x10]) + data[at + 8:]
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as info:
        ckpt.load_checkpoint(path)
    msg = str(info.value)
    assert "\n" not in msg and "corrupt or not a kickstart checkpoint" in msg, msg
    assert "weights_only` set to `False`" not in msg   # never torch's advice to load unsafely


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["pickle0", "pickle2", "pickle5", "torch.save"])
def test_a_file_that_would_run_code_is_refused(tmp_path, writer):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    evil = {"format": ckpt.FORMAT, "version": ckpt.VERSION, "learner": _RunsCode(marker)}
    if writer == "torch.save":
        torch.save(evil, path)
    else:
        path.write_bytes(pickle.dumps(evil, protocol=int(writer[-1])))
    with pytest.raises(CheckpointError, match=r"refusing to load .*weights_only=True.*never runs code") as info:
        ckpt.load_checkpoint(path)
    assert "system" in str(info.value)        # it names what the file would have called
    assert not marker.exists()
