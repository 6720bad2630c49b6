import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
# precision=auto (the default) means bf16 where it pays (CPUs with AMX, CUDA) and fp32 elsewhere. The suite
# pins it to fp32 so that every numeric assertion means the same on every machine; the bf16
# branches are tested explicitly (tests/test_precision.py). KICKSTART_NATIVE_BF16=1 runs the whole
# suite with auto = bf16 instead. Subprocesses (the CLI, actor processes) inherit the setting.
os.environ.setdefault("KICKSTART_NATIVE_BF16", "0")
torch.set_num_threads(1)


@pytest.fixture
def out_dir(tmp_path):
    """A runs directory for training tests."""
    d = tmp_path / "runs"
    d.mkdir()
    return d


@pytest.fixture
def learning_seed():
    """``runtime.seed`` of the default tier's learning smoke runs: 0, or ``$KICKSTART_TEST_SEED``, to
    recheck their thresholds on other seeds (each records what it measured: ``--junitxml``)."""
    return int(os.environ.get("KICKSTART_TEST_SEED", "0"))
