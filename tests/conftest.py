import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def out_dir(tmp_path):
    """A runs directory for training tests."""
    d = tmp_path / "runs"
    d.mkdir()
    return d
