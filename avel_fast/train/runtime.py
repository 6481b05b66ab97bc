"""How this process computes a run: seeding, deterministic algorithms and precision (docs/training.md#determinism,
docs/training.md#engine)."""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_deterministic(device: str) -> None:
    """Switch on PyTorch's deterministic algorithms for this process (a warning, not an error, for an op that
    has none); on CUDA first set ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, which deterministic cuBLAS needs before its
    first call, unless the user set it. Uninitialised memory is not filled: our kernels write every output
    element, and the fill would cost a pass over each new tensor (docs/training.md#determinism)."""
    if torch.device(device).type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def configure_precision(config) -> str | None:
    """Set TF32 matmuls on CUDA for ``tf32``; returns a note for the user when the request has no effect."""
    on_cuda = torch.device(config.device).type == "cuda"
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = config.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = config.precision == "tf32"
    if config.precision == "tf32" and not on_cuda:
        return "--precision tf32 only changes CUDA matmuls: on the CPU this run computes in fp32"
    return None


def autocast(config):
    """bf16 autocast for ``precision="bf16"``; fp32 (or TF32 matmuls on CUDA) otherwise."""
    if config.precision == "bf16":
        return torch.autocast(torch.device(config.device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
