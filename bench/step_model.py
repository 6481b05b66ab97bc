"""How long a step would take on an H100 at the paper sizes, counted without a GPU (docs/fast-path.md#gpu-run).
A model, not a measurement; its assumptions are the constants below.

A step (a workload's forward and backward, `workloads.py`) runs once on fake tensors (``FakeTensorMode``: shapes
only, nothing computed) with the Triton launches recorded as `kernel_report.py` records them. Every other
PyTorch op that is not a view is one kernel: its bytes (inputs and outputs once) and FLOPs (PyTorch's FLOP
counter: matmuls, convolutions) give it a roofline time, the Triton launches theirs from `kernel_report.FLOPS`.
The GPU time is their sum plus `GPU_LAUNCH_SECONDS` per kernel; the host time is what issuing them costs
(`HOST_SECONDS`); the step takes the larger of the two. Under ``torch.compile`` the non-GEMM PyTorch ops are
fused `FUSION` to a kernel and issued from compiled code.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

import kernel_report
from workloads import Workload

GPU_LAUNCH_SECONDS = 2e-6
"""Per kernel on the GPU: launch latency and the tail of a grid that does not fill the machine."""
HOST_SECONDS = {"aten": 6e-6, "triton": 10e-6, "compiled": 3e-6}
"""Per kernel on the host: an eager PyTorch op (dispatcher, autograd), a Triton launch from Python (argument
binding, ≈ 10 µs), a kernel issued by compiled code."""
FUSION = 4
"""Non-GEMM PyTorch ops per Inductor kernel."""
PRECISION_PEAK = {"fp32": "fp32", "bf16": "bf16"}
"""The peak the GEMMs of a run reach: fp32 runs use no TF32 (PyTorch's default for matmuls), bf16 autocast
the dense bf16 tensor cores; bf16 halves the bytes of every PyTorch op (Triton kernels keep fp32 math)."""
_FREE = {"empty", "empty_strided", "new_empty", "detach", "_local_scalar_dense", "lift_fresh", "alias"}
"""Ops that launch no kernel (allocations, aliases)."""


@dataclass
class StepCount:
    """The kernels of one step: PyTorch ops (bytes, FLOPs each) and Triton launches."""

    ops: list[tuple[int, float]] = field(default_factory=list)  # (bytes, FLOPs) per PyTorch kernel
    launches: list[kernel_report.Launch] = field(default_factory=list)

    @property
    def gemms(self) -> int:
        return sum(1 for _, flops in self.ops if flops > 0)

    def seconds(self, precision: str = "fp32", compiled: bool = False, gpu: kernel_report.Gpu = kernel_report.H100
                ) -> float:
        """Step time on `gpu` (module docstring)."""
        scale = 0.5 if precision == "bf16" else 1.0
        peak = kernel_report.peak(PRECISION_PEAK[precision], gpu)
        others = len(self.ops) - self.gemms
        kernels = self.gemms + (math.ceil(others / FUSION) if compiled else others) + len(self.launches)
        gpu_seconds = sum(max(size * scale / gpu.bandwidth, flops / peak) for size, flops in self.ops)
        gpu_seconds += sum(kernel_report.lower_bound_seconds(launch.bytes, launch.flops, gpu)
                           for launch in self.launches)
        gpu_seconds += kernels * GPU_LAUNCH_SECONDS
        if compiled:
            host = kernels * HOST_SECONDS["compiled"]
        else:
            host = len(self.ops) * HOST_SECONDS["aten"] + len(self.launches) * HOST_SECONDS["triton"]
        return max(gpu_seconds, host)


class _OpCounter(TorchDispatchMode):
    """Records every PyTorch op that launches a kernel; answers value reads (``.item()``) with 0, as fake
    tensors hold no values."""

    def __init__(self, count: StepCount) -> None:
        super().__init__()
        self.count = count

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default:
            return 0
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if func.is_view or name in _FREE:
            return out
        leaves = torch.utils._pytree.tree_leaves((args, kwargs, out))
        tensors = {id(t): t for t in leaves if isinstance(t, torch.Tensor)}
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        counter = flop_registry.get(func.overloadpacket)
        flops = float(counter(*args, **kwargs, out_val=out)) if counter is not None else 0.0
        self.count.ops.append((size, flops))
        return out


def count_step(workload: Workload, fast: bool) -> StepCount:
    """The kernels of one forward and backward of `workload` at its paper batch, reference or fast."""
    count = StepCount()
    with FakeTensorMode(allow_non_fake_inputs=True), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Accessing the data pointer of FakeTensor")  # deepcopy asks
        reference, fast_module = workload.modules("cpu")
        module = fast_module if fast else reference
        inputs = workload.inputs(workload.videos, "cpu")
        with kernel_report.capture_launches(workload.name, count.launches), _OpCounter(count):
            workload.objective(module, *inputs).backward()
    return count
