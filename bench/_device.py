"""What the op and model benchmarks share: the device they measure on, its width, a barrier, the JSON record, the
timed rounds of an op."""
import math
import os
import time

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


WARMUP_SECONDS = MEASURE_SECONDS = 0.1
"""An op's warm-up and its least measuring time, the same for every implementation (`timed_rounds`)."""


def timed_rounds(benchmark, fn, rounds: int):
    """`benchmark.pedantic` of `fn` after calling it for `WARMUP_SECONDS` (at least twice), over `rounds` rounds or
    as many as fill `MEASURE_SECONDS`: both sides of a ratio get the same warm-up and measuring time, so a 0.2 ms
    fast op is not timed over its first milliseconds while its 10 ms reference is timed over 0.2 s."""
    start = time.perf_counter()
    calls = 0
    while calls < 2 or time.perf_counter() - start < WARMUP_SECONDS:
        call_start = time.perf_counter()
        fn()
        calls += 1
    last_call = time.perf_counter() - call_start
    return benchmark.pedantic(fn, rounds=max(rounds, math.ceil(MEASURE_SECONDS / last_call)), warmup_rounds=0)
