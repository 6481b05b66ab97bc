"""Compile a Triton kernel for the H100 (sm_90) without a GPU, through Triton's own toolchain, and read its
resource usage from the cubin (docs/fast-path.md#kernels): what the GPU will see, measured without one."""
from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import pytest

REGISTERS_PER_SM, WARPS_PER_SM, CTAS_PER_SM, SHARED_PER_SM = 65536, 64, 32, 228 * 1024


def sm90_usage(kernel, *args, **kwargs) -> dict[str, int]:
    """Compile `kernel` as ``kernel[grid](*args, **kwargs)`` would on an H100 (the same argument specialisation:
    types, alignment, strides of 1 as constants; CPU tensors stand in for device ones) and return ``registers``
    per thread, ``spill_bytes`` (local memory and stack per thread), ``shared`` bytes and the resident
    ``ctas_per_sm``. Skips the calling test where Triton's CUDA backend is missing or interpreted."""
    triton = pytest.importorskip("triton")
    from avel_fast.backend import triton_interpreted

    if triton_interpreted():
        pytest.skip("TRITON_INTERPRET=1 replaces the compiler")
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not cuobjdump.is_file():
        pytest.skip("Triton's CUDA backend (cuobjdump) is not installed")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    target = GPUTarget("cuda", 90, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs, debug=False)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target, options=options.__dict__)
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        report = subprocess.run([cuobjdump, "-res-usage", cubin.name], capture_output=True, text=True, check=True)
    usage = {key: int(value) for key, value in re.findall(r"(REG|STACK|LOCAL):(\d+)", report.stdout)}
    shared, num_warps = compiled.metadata.shared, options.num_warps
    registers_per_warp = -(-usage["REG"] * 32 // 256) * 256
    ctas = min(REGISTERS_PER_SM // (registers_per_warp * num_warps), WARPS_PER_SM // num_warps, CTAS_PER_SM,
               SHARED_PER_SM // (shared + 1024))
    return {"registers": usage["REG"], "spill_bytes": usage["LOCAL"] + usage["STACK"], "shared": shared,
            "ctas_per_sm": ctas}


class LaunchRecorder:
    """Stands in for a Triton kernel: ``recorder[grid](*args, **kwargs)`` records the launch instead of running it."""

    def __init__(self) -> None:
        self.launches: list[tuple[tuple, tuple, dict]] = []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launches.append((grid, args, kwargs))


def paper_launch(monkeypatch, module, name: str, launch, *args) -> tuple[tuple, tuple, dict]:
    """``(grid, args, kwargs)`` of the one launch of `module.name` that ``launch(*args)`` makes (run with CPU
    tensors of the paper shapes; the kernel itself does not run)."""
    recorder = LaunchRecorder()
    monkeypatch.setattr(module, name, recorder)
    launch(*args)
    monkeypatch.undo()
    (launched,) = recorder.launches
    return launched
