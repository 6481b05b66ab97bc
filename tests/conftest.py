"""Shared fixtures: the real AVE files in ../shared/data/ave (tests skip cleanly without them), one thread."""
import warnings
from pathlib import Path

import pytest
import torch

from avel_fast.data import split_labels

SHARED_AVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ave"


@pytest.fixture(scope="session")
def real_ave_dir() -> Path:
    """The directory of the real small AVE files; skips the test when it is absent."""
    if not (SHARED_AVE / "Annotations.txt").is_file():
        pytest.skip(f"real AVE files not found at {SHARED_AVE}")
    return SHARED_AVE


@pytest.fixture(scope="session")
def train_labels(real_ave_dir):
    """Segment labels ``[V, 10]`` of the real training split, rebuilt from ``Annotations.txt``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the one video with StartTime == EndTime
        return split_labels(real_ave_dir, "train")


@pytest.fixture
def one_thread():
    """Smoke shapes are tiny: one thread is faster and keeps the runs independent of the machine's load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def torch_backend(monkeypatch):
    """The fast modules on their PyTorch path (``AVEL_FAST_BACKEND=torch``)."""
    monkeypatch.setenv("AVEL_FAST_BACKEND", "torch")
