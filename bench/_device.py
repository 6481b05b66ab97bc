"""What the op and model benchmarks share: the device they measure on, its width, a barrier, the JSON record."""
import os

import torch

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DEVICE_NAME = torch.cuda.get_device_name() if CUDA else "cpu"
DIM = int(os.environ.get("AVEL_FAST_BENCH_DIM", 768 if CUDA else 256))
"""Feature width: the paper's D = 768 on CUDA, 256 on CPU (docs/fast-path.md#speed); ``AVEL_FAST_BENCH_DIM``
overrides it (bench/gpu.sh --dry-run: tiny sizes)."""


def synchronize() -> None:
    """Wait for queued CUDA work, so a timed call includes it (no-op on the CPU)."""
    if CUDA:
        torch.cuda.synchronize()


def record(benchmark, group: str, impl: str) -> None:
    """Name the benchmark's group and implementation for `speedup_table.py`, with the device and width."""
    benchmark.group = group
    benchmark.extra_info.update(impl=impl, device=DEVICE_NAME, dim=DIM)
