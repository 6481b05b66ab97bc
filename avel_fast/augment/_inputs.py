"""Input conversion shared by the sampler front-ends: backend names and numpy views of torch tensors."""
from __future__ import annotations

import numpy as np
import torch

from avel_fast.backend import SAMPLER_BACKENDS


def check_backend(backend: str) -> str:
    """`backend` if it is ``"cpp"`` (the native sampler) or ``"python"`` (the pure-Python twin)."""
    if backend not in SAMPLER_BACKENDS:
        raise ValueError(f"backend must be 'cpp' or 'python', got {backend!r}")
    return backend


def as_numpy(values) -> np.ndarray:
    """A numpy view of an array-like; torch tensors are detached and moved to the CPU (dtype unchanged)."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)
