"""What an H100 will see of every Triton kernel at the paper shapes, without a GPU (docs/fast-path.md#kernel-report).

Usage: ``python bench/kernel_report.py [--json PATH]``. The kernels are found in the modules of
`avel_fast.kernels` (every ``@triton.jit`` function that no other one calls); their launches are recorded by
running the workloads of `workloads.py` (forward and backward of each fast op at the paper shapes) on CPU tensors
with the Triton backend forced and ``JITFunction.run`` intercepted, so grid, arguments, constexprs and
``num_warps`` come from each op's own launch code and nothing is computed. Each launch is then compiled for
sm_90 by Triton's own toolchain (``triton.compile``, ptxas), as the JIT would specialise it, and reported:
registers per thread, spill bytes, shared memory, CTAs per SM, grid and waves over 132 SMs, bytes and FLOPs
per launch and the lower bound on its time. A model, not a measurement: bytes are every tensor argument
touched once (compulsory traffic), FLOPs count the kernel's arithmetic per `FLOPS` (padded lanes of
``tl.dot`` included), and the bound is ``max(bytes / bandwidth, FLOPs / fp32 peak)`` (the kernels compute in
fp32 on the CUDA cores, ``tl.dot(input_precision="ieee")`` included).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import math
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import WORKLOADS, Workload  # noqa: E402


@dataclass(frozen=True)
class Gpu:
    """The limits an occupancy and roofline model needs (H100 SXM5; the CUDA occupancy rules of sm_90)."""

    name: str = "H100 SXM5 (sm_90)"
    sms: int = 132
    registers_per_sm: int = 65536
    register_unit: int = 256  # registers are allocated per warp in units of 256
    shared_per_sm: int = 228 * 1024
    shared_reserved_per_cta: int = 1024
    threads_per_sm: int = 2048
    ctas_per_sm: int = 32
    bandwidth: float = 3.35e12  # HBM3, bytes/s
    peak_flops: tuple = (("fp32", 67e12), ("tf32", 494.7e12), ("bf16", 989.4e12))  # non-tensor; dense tensor cores


H100 = Gpu()
KERNEL_PRECISION = "fp32"
"""The peak the kernels' bound uses: fp32 on the CUDA cores (non-tensor)."""
MIN_CTAS_PER_SM = 2
"""Fewer resident CTAs per SM than this leaves no other CTA to hide a stall: the report flags it."""


def peak(precision: str, gpu: Gpu = H100) -> float:
    return dict(gpu.peak_flops)[precision]


# --- discovery and capture ---------------------------------------------------------------------------------

def kernel_modules() -> list:
    """Every module of `avel_fast.kernels` (imported: its ``@triton.jit`` functions are compiled ones only if
    Triton's interpreter is off at import)."""
    package = importlib.import_module("avel_fast.kernels")
    names = [info.name for info in pkgutil.iter_modules(package.__path__)]
    return [importlib.import_module(f"{package.__name__}.{name}") for name in names]


def kernels() -> dict[str, object]:
    """``module.function`` -> JITFunction of every Triton kernel, i.e. every ``@triton.jit`` function of the
    kernel modules that no other one calls (those are helpers, inlined into the kernels)."""
    from triton.runtime.jit import JITFunction

    functions = {}
    for module in kernel_modules():
        for value in vars(module).values():
            if isinstance(value, JITFunction):
                functions[f"{value.fn.__module__}.{value.fn.__name__}"] = value
    called = {name for function in functions.values() for name in function.fn.__code__.co_names}
    return {key: function for key, function in sorted(functions.items()) if function.fn.__name__ not in called}


@dataclass
class Launch:
    """One recorded kernel launch: the workload that made it, the kernel and what the launch passed."""

    workload: str
    kernel: object  # triton JITFunction
    grid: tuple
    args: tuple
    kwargs: dict

    @property
    def name(self) -> str:
        return self.kernel.fn.__name__

    @property
    def arguments(self) -> dict:
        """Every argument by parameter name (positional and keyword, constexprs included)."""
        return kernel_arguments(self.kernel.fn, self.args, self.kwargs)

    @property
    def ctas(self) -> int:
        return math.prod(self.grid)

    @property
    def bytes(self) -> int:
        """Every distinct tensor argument once: the traffic no kernel avoids."""
        tensors = {id(value): value for value in self.arguments.values() if isinstance(value, torch.Tensor)}
        return sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())

    @property
    def flops(self) -> float | None:
        """FLOPs of the launch by `FLOPS`, None for a kernel it does not know."""
        model = FLOPS.get(self.name)
        try:
            return float(model(self.arguments, self.grid)) if model else None
        except KeyError:  # the kernel's parameters changed: the model no longer applies
            return None


def kernel_arguments(fn, args: tuple, kwargs: dict) -> dict:
    """The arguments of a launch by the kernel's parameter names; launch options (``num_warps``, ...) left out."""
    signature = inspect.signature(fn)
    own = {name: value for name, value in kwargs.items() if name in signature.parameters}
    return signature.bind_partial(*args, **own).arguments


def _grid(grid, arguments: dict) -> tuple:
    grid = grid(arguments) if callable(grid) else grid
    return tuple(int(size) for size in grid) + (1,) * (3 - len(grid))


@contextlib.contextmanager
def capture_launches(workload: str, launches: list[Launch]) -> Iterator[None]:
    """Record instead of run every Triton launch, with the fast modules dispatching CPU tensors to the Triton
    backend (``TRITON_INTERPRET=1`` read at call time by `avel_fast.backend`; the kernels were compiled
    functions at import)."""
    from triton.runtime.jit import JITFunction

    kernels()  # import every kernel module while the interpreter is off
    original = JITFunction.run

    def record(self, *args, grid, warmup, **kwargs):
        launches.append(Launch(workload, self, _grid(grid, kernel_arguments(self.fn, args, kwargs)), args, kwargs))

    saved = {name: os.environ.get(name) for name in ("TRITON_INTERPRET", "AVEL_FAST_BACKEND")}
    os.environ.update(TRITON_INTERPRET="1", AVEL_FAST_BACKEND="triton")
    JITFunction.run = record
    try:
        yield
    finally:
        JITFunction.run = original
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_workload(workload: Workload, module: torch.nn.Module, device: str, videos: int | None = None) -> None:
    """One forward and backward of `workload` on its fast module (seeded inputs)."""
    torch.manual_seed(0)
    inputs = workload.inputs(videos or workload.videos, device)
    workload.objective(module, *inputs).backward()


def record_launches(workloads: tuple[Workload, ...] = WORKLOADS) -> list[Launch]:
    """The launches of every workload's forward and backward on CPU tensors at the paper shapes."""
    launches: list[Launch] = []
    for workload in workloads:
        torch.manual_seed(0)
        _, fast = workload.modules("cpu")
        with capture_launches(workload.name, launches):
            run_workload(workload, fast, "cpu")
    return launches


# --- compilation for sm_90 ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Compiled:
    registers: int
    spill_bytes: int  # spill stores + spill loads, per thread
    shared_bytes: int
    num_warps: int
    seconds: float


def sm90_target():
    from triton.backends.compiler import GPUTarget

    return GPUTarget("cuda", 90, 32)


def cuda_backend_unavailable() -> str | None:
    """Why Triton's CUDA backend cannot compile for sm_90 here, or None when it can."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas
        from triton.compiler import make_backend

        make_backend(sm90_target())
        get_ptxas(90).path
    except Exception as err:  # noqa: BLE001: any failure means "cannot compile here"
        return f"{type(err).__name__}: {err}"
    return None


def ptxas_usage(ptx: str) -> tuple[int, int]:
    """``(registers, spill bytes)`` of the one kernel in `ptx`, from ``ptxas -v`` for sm_90a (the flags Triton
    passes that change allocation: ``--regAllocOptLevel=2``)."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    with tempfile.TemporaryDirectory() as directory:
        source = Path(directory) / "kernel.ptx"
        source.write_text(ptx)
        command = [get_ptxas(90).path, "-v", "--regAllocOptLevel=2", f"--gpu-name={sm_arch_from_capability(90)}",
                   str(source), "-o", str(source.with_suffix(".cubin"))]
        log = subprocess.run(command, capture_output=True, text=True, check=True).stderr
    registers = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if registers is None or spills is None:
        raise RuntimeError(f"unexpected ptxas -v output:\n{log}")
    return int(registers.group(1)), int(spills.group(1)) + int(spills.group(2))


_COMPILED: dict[str, Compiled] = {}


def compile_launch(launch: Launch) -> Compiled:
    """Compile `launch` for sm_90 as the JIT would specialise it (Triton's binder: pointer alignment, integer
    specialisations, constexprs and options from the launch), once per distinct specialisation."""
    import triton
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    kernel, target = launch.kernel, sm90_target()
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*launch.args, **launch.kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, launch.kwargs, bound, specialization, options)
    key = repr((launch.name, kernel.fn.__module__, signature, constexprs, attrs, sorted(options.__dict__.items())))
    if key not in _COMPILED:
        started = time.perf_counter()
        compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target,
                                  options=options.__dict__)
        registers, spills = ptxas_usage(compiled.asm["ptx"])
        _COMPILED[key] = Compiled(registers, spills, compiled.metadata.shared, compiled.metadata.num_warps,
                                  time.perf_counter() - started)
    return _COMPILED[key]


# --- the model ---------------------------------------------------------------------------------------------

def ctas_per_sm(registers: int, shared_bytes: int, num_warps: int, gpu: Gpu = H100) -> int:
    """Resident CTAs per SM: the least of what the registers (per warp, in allocation units), the shared memory
    (plus the per-CTA reservation), the threads and the CTA slots allow."""
    unit = gpu.register_unit
    registers_per_warp = math.ceil(registers * 32 / unit) * unit
    by_registers = (gpu.registers_per_sm // registers_per_warp) // num_warps
    by_shared = gpu.shared_per_sm // (shared_bytes + gpu.shared_reserved_per_cta)
    by_threads = gpu.threads_per_sm // (32 * num_warps)
    return min(by_registers, by_shared, by_threads, gpu.ctas_per_sm)


def low_occupancy(ctas: int) -> bool:
    return ctas < MIN_CTAS_PER_SM


def lower_bound_seconds(bytes_moved: float, flops: float | None, gpu: Gpu = H100,
                        precision: str = KERNEL_PRECISION) -> float:
    """``max(bytes / bandwidth, FLOPs / peak)``; bytes alone when the FLOPs are unknown."""
    return max(bytes_moved / gpu.bandwidth, (flops or 0.0) / peak(precision, gpu))


FLOPS: dict[str, Callable[[dict, tuple], float]] = {
    # RGCT, per node (G videos x 2 modalities x T per program): 6x6 scores of length D, mean_r A times V,
    # Swish + dropout + add; backward: dA·V, dS·K, dSᵀ·Q, Āᵀ·dNĀ and the epilogues.
    "_attention_forward": lambda a, grid: a["num_groups"] * a["group_size"] * 2 * a["steps"] * a["dim"] * (72 + 12 + 8),
    "_attention_backward": lambda a, grid: a["num_groups"] * a["group_size"] * 2 * a["steps"] * a["dim"] * (
        12 + 72 + 72 + 12 + 10),
    # TemporalConv + Swish: the k-tap sum, bias, SiLU; backward: SiLU' and the spread.
    "temporal_conv_swish_forward_kernel": lambda a, grid: 2 * a["rows_per_modality"] * a["dim"] * (
        a["KERNEL_SIZE"] + 5),
    "temporal_conv_swish_backward_kernel": lambda a, grid: 2 * a["rows_per_modality"] * a["dim"] * 8,
    # gated fusion: tap sum, bias, sigmoid, convex combination; backward: three products and the spread.
    "gated_fusion_forward_kernel": lambda a, grid: grid[0] * a["dim"] * (a["KERNEL_SIZE"] + 8),
    "gated_fusion_backward_kernel": lambda a, grid: grid[0] * a["dim"] * 8,
    # LSS, per video: three [T', T'] x [T', D] products (T' = BLOCK_T, padded) and their squares; backward:
    # three [T', T'] Gram matrices and one [T', T'] x [T', D] product.
    "lss_forward_kernel": lambda a, grid: grid[0] * 6 * a["BLOCK_T"] * (a["BLOCK_T"] + 1) * a["dim"],
    "lss_backward_kernel": lambda a, grid: grid[0] * 2 * a["BLOCK_T"] ** 2 * (3 * a["BLOCK_T"] + a["dim"]),
    # audio-guided attention, per segment: tanh and scores on [L, D], softmax, αᵀV on [L, C]; backward: V·df
    # and α dfᵀ on [L, C], dP and the partials on [L, D].
    "attention_forward_kernel": lambda a, grid: grid[0] * a["locations"] * (6 * a["dim"] + 2 * a["channels"] + 5),
    "attention_backward_kernel": lambda a, grid: grid[0] * a["locations"] * (10 * a["dim"] + 4 * a["channels"]),
}
"""FLOPs per launch from the launch's arguments and grid, by kernel name (module docstring)."""


@dataclass
class Row:
    """One line of the report."""

    workload: str
    kernel: str
    grid: int
    num_warps: int
    registers: int
    spill_bytes: int
    shared_bytes: int
    ctas_per_sm: int
    waves: float
    bytes: int
    flops: float | None
    bound_seconds: float
    compile_seconds: float

    @property
    def warnings(self) -> list[str]:
        notes = []
        if self.spill_bytes:
            notes.append(f"spills {self.spill_bytes} B")
        if low_occupancy(self.ctas_per_sm):
            notes.append(f"low occupancy: {self.ctas_per_sm} CTA/SM < {MIN_CTAS_PER_SM}")
        if self.flops is None:
            notes.append("no FLOP model")
        return notes


def report_row(launch: Launch, compiled: Compiled, gpu: Gpu = H100) -> Row:
    ctas = ctas_per_sm(compiled.registers, compiled.shared_bytes, compiled.num_warps, gpu)
    flops = launch.flops
    return Row(
        launch.workload, launch.name, launch.ctas, compiled.num_warps, compiled.registers, compiled.spill_bytes,
        compiled.shared_bytes, ctas, launch.ctas / max(ctas * gpu.sms, 1), launch.bytes, flops,
        lower_bound_seconds(launch.bytes, flops, gpu), compiled.seconds,
    )  # fmt: skip


def report(workloads: tuple[Workload, ...] = WORKLOADS) -> tuple[list[Row], list[str]]:
    """The rows of every distinct launch (workload, kernel, grid) and the kernels no workload launched."""
    launches, seen, rows = record_launches(workloads), set(), []
    for launch in launches:
        key = (launch.workload, launch.name, launch.grid)
        if key not in seen:
            seen.add(key)
            rows.append(report_row(launch, compile_launch(launch)))
    launched = {f"{launch.kernel.fn.__module__}.{launch.name}" for launch in launches}
    return rows, [name for name in kernels() if name not in launched]


def markdown(rows: list[Row], missing: list[str], gpu: Gpu = H100) -> str:
    lines = [
        f"Model, not a measurement: {gpu.name}, {gpu.bandwidth / 1e12:.2f} TB/s, "
        f"{peak(KERNEL_PRECISION, gpu) / 1e12:.0f} TFLOP/s {KERNEL_PRECISION} (non-tensor); Triton "
        f"{importlib.import_module('triton').__version__}, ptxas for sm_90a.",
        "",
        "| workload | kernel | grid | warps | regs | spills (B) | smem (KB) | CTAs/SM | waves | MB | MFLOP | "
        "bound (µs) | warnings |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        flops = "?" if row.flops is None else f"{row.flops / 1e6:.1f}"
        lines.append(
            f"| {row.workload} | `{row.kernel}` | {row.grid} | {row.num_warps} | {row.registers} | "
            f"{row.spill_bytes} | {row.shared_bytes / 1024:.1f} | {row.ctas_per_sm} | {row.waves:.2f} | "
            f"{row.bytes / 1e6:.2f} | {flops} | {row.bound_seconds * 1e6:.1f} | {'; '.join(row.warnings)} |"
        )
    lines += [f"\nNot launched by any workload: `{name}`" for name in missing]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("error: TRITON_INTERPRET is set: the kernels must be compiled ones (unset it)", file=sys.stderr)
        return 1
    reason = cuda_backend_unavailable()
    if reason is not None:
        print(f"error: Triton's CUDA backend cannot compile for sm_90 here ({reason})", file=sys.stderr)
        return 1
    rows, missing = report()
    print(markdown(rows, missing))
    if args.json:
        args.json.write_text(json.dumps({"rows": [asdict(row) for row in rows], "not_launched": missing}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
